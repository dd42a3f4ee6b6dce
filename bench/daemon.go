package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// buildDaemon builds the real dcv-ec2-resolver binary into dir, as `make build` does.
func buildDaemon(dir string) (string, error) {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || len(strings.TrimSpace(string(gomod))) == 0 || strings.TrimSpace(string(gomod)) == os.DevNull {
		return "", fmt.Errorf("run the harness inside the module (go env GOMOD: %v)", err)
	}
	bin := filepath.Join(dir, "dcv-ec2-resolver")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=bench", "-o", bin, "./cmd/dcv-ec2-resolver")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}

// daemonOptions are the settings a run changes from the daemon's defaults.
type daemonOptions struct {
	fakeURL      string
	pollInterval time.Duration
	tls          *certFiles // nil: plain HTTP
	requestLevel string     // log.request-level; "" keeps the default (info)
}

// daemonProc is a running daemon.
type daemonProc struct {
	*child
	addr    string // host:port
	base    string // http(s)://host:port
	logPath string
	client  *http.Client
	started time.Time
}

// startDaemon writes a configuration into dir and starts the daemon at p with fake AWS
// credentials and no instance metadata service; EC2 is the fake at o.fakeURL. The on-miss
// budget is raised so that the harness can warm the negative cache quickly; everything else
// is the default.
func startDaemon(bin, dir string, o daemonOptions, p placement) (*daemonProc, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "[server]\nlisten = %q\n", addr)
	scheme := "http"
	if o.tls != nil {
		scheme = "https"
		fmt.Fprintf(&cfg, "tls-cert-file = %q\ntls-key-file = %q\n", o.tls.cert, o.tls.key)
	}
	fmt.Fprintf(&cfg, "[ec2]\nregions = [%q]\nendpoint = %q\npoll-interval = %q\n", benchRegion, o.fakeURL, o.pollInterval.String())
	fmt.Fprintf(&cfg, "on-miss-rate = 1000.0\non-miss-burst = 1000\nnegative-cache-ttl = \"10m\"\n")
	if o.requestLevel != "" {
		fmt.Fprintf(&cfg, "[log]\nrequest-level = %q\n", o.requestLevel)
	}
	cfgPath := filepath.Join(dir, "resolver.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o644); err != nil {
		return nil, err
	}
	env := []string{"HOME=" + dir,
		"AWS_ACCESS_KEY_ID=AKIDFAKE", "AWS_SECRET_ACCESS_KEY=fake", "AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=" + filepath.Join(dir, "aws-config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(dir, "aws-credentials")}
	logPath := filepath.Join(dir, "daemon.log")
	c, err := startChild("dcv-ec2-resolver", bin, []string{"serve", "--config", cfgPath}, env, p, logPath)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 4, DisableCompression: true}
	if o.tls != nil {
		pem, err := os.ReadFile(o.tls.cert)
		if err != nil {
			c.stop()
			return nil, err
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &daemonProc{child: c, addr: addr, base: scheme + "://" + addr, logPath: logPath,
		client: &http.Client{Transport: tr, Timeout: 10 * time.Second}, started: time.Now()}, nil
}

// waitReady polls GET /readyz until it answers 200: the first full poll has landed.
func (d *daemonProc) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-d.done:
			return fmt.Errorf("daemon exited: %v\n%s", d.err, d.logTail())
		default:
		}
		resp, err := d.client.Get(d.base + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("daemon not ready within %s\n%s", timeout, d.logTail())
}

// resolve sends one gateway request and returns the status.
func (d *daemonProc) resolve(ctx context.Context, sessionID string) (int, error) {
	u := d.base + "/resolveSession?transport=QUIC&sessionId=" + url.QueryEscape(sessionID)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return 0, err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func (d *daemonProc) pid() int { return d.cmd.Process.Pid }

func (d *daemonProc) stop() {
	d.client.CloseIdleConnections()
	d.child.stop()
}

// logTail is the end of the daemon's log, for error messages.
func (d *daemonProc) logTail() string {
	b, _ := os.ReadFile(d.logPath)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// freeAddr returns a free loopback address.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// ceilingProc is a running ceiling server.
type ceilingProc struct {
	*child
	addr string
}

func startCeiling(p placement, tlsFiles *certFiles) (*ceilingProc, error) {
	var args []string
	if tlsFiles != nil {
		args = []string{tlsFiles.cert, tlsFiles.key}
	}
	c, err := startRole("ceiling", args, p)
	if err != nil {
		return nil, err
	}
	addr, err := c.readLine(30 * time.Second)
	if err != nil {
		c.stop()
		return nil, err
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		c.stop()
		return nil, errors.New("ceiling printed " + addr)
	}
	return &ceilingProc{child: c, addr: addr}, nil
}
