package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dcv-ec2-resolver/dcv-ec2-resolver/discovery/ec2/ec2fake"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds the command once per test run, with a version stamped in as the Makefile does.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "dcv-ec2-resolver-e2e")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "dcv-ec2-resolver")
		out, err := exec.Command("go", "build", "-ldflags", "-X main.version=1.2.3-test", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// binaryEnv is the environment for the built binary: fake credentials, no IMDS, no shared
// config from the machine.
func binaryEnv(t *testing.T) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	for k, v := range ec2fake.Env(t.TempDir()) {
		env = append(env, k+"="+v)
	}
	return env
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// syncBuffer is a bytes.Buffer safe for a process writing while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestBinaryEndToEnd(t *testing.T) {
	bin := binary(t)
	fake := ec2fake.NewServer()
	defer fake.Close()
	fake.Put("eu-west-1", dcvHost("i-1", "alpha beta", "dcv:http-port", "8444"))

	addr := freePort(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "resolver.toml")
	cfg := fmt.Sprintf("[server]\nlisten = %q\n[ec2]\nregions = [\"eu-west-1\"]\nendpoint = %q\npoll-interval = \"200ms\"\n", addr, fake.URL())
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin, "serve", "--config", cfgPath)
	cmd.Env = binaryEnv(t)
	var logs syncBuffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
	}()

	base := "http://" + addr
	eventually(t, "the daemon to answer", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	eventually(t, "the first poll", func() bool { code, _ := resolveReq(t, testClient, base, "beta", "HTTP"); return code == 200 })
	code, body := resolveReq(t, testClient, base, "alpha", "QUIC")
	want := `{"SessionId":"alpha","TransportProtocol":"QUIC","DcvServerEndpoint":"ip-i-1.ec2.internal","Port":8444,"WebUrlPath":"/"}`
	if code != 200 || body != want {
		t.Fatalf("got %d %s, want 200 %s", code, body, want)
	}
	if code, _ := resolveReq(t, testClient, base, "gamma", "HTTP"); code != 404 {
		t.Fatalf("unknown session: %d", code)
	}

	// SIGHUP with a broken file keeps the daemon serving; SIGTERM stops it cleanly.
	if err := os.WriteFile(cfgPath, []byte(cfg+"bogus = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Process.Signal(syscall.SIGHUP)
	eventually(t, "the refused reload", func() bool { return strings.Contains(logs.String(), "configuration not reloaded") })
	if code, _ := resolveReq(t, testClient, base, "alpha", "HTTP"); code != 200 {
		t.Fatalf("after a refused reload: %d", code)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}

	// Every log line is JSON with a level and a message.
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	lines := 0
	for sc.Scan() {
		var entry map[string]any
		if err := json.Unmarshal(sc.Bytes(), &entry); err != nil || entry["level"] == nil || entry["msg"] == nil {
			t.Fatalf("log line is not structured JSON: %s", sc.Text())
		}
		lines++
	}
	if lines < 4 || !strings.Contains(logs.String(), `"outcome":"hit"`) {
		t.Fatalf("expected start-up, request and shutdown lines, got:\n%s", logs.String())
	}
}

func TestBinaryRefusesBadConfig(t *testing.T) {
	bin := binary(t)
	path := filepath.Join(t.TempDir(), "resolver.toml")
	if err := os.WriteFile(path, []byte("[ec2]\npoll-interval = \"often\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--config", path)
	cmd.Env = binaryEnv(t)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "ec2.poll-interval") {
		t.Fatalf("exit %v, output %q: want status 2 naming ec2.poll-interval", err, out)
	}
}

func TestBinaryVersionAndHelp(t *testing.T) {
	bin := binary(t)
	out, err := exec.Command(bin, "version").Output()
	if err != nil || strings.TrimSpace(string(out)) != "dcv-ec2-resolver 1.2.3-test" {
		t.Fatalf("version: %q %v", out, err)
	}
	out, err = exec.Command(bin, "--help").Output()
	if err != nil || !strings.Contains(string(out), "serve") || !strings.Contains(string(out), "check") {
		t.Fatalf("help: %q %v", out, err)
	}
	if err := exec.Command(bin, "frobnicate").Run(); err == nil {
		t.Fatal("unknown command accepted")
	}
}

func TestBinaryCheck(t *testing.T) {
	bin := binary(t)
	fake := ec2fake.NewServer()
	defer fake.Close()
	fake.Put("us-east-1", dcvHost("i-1", "s1 s2"))
	fake.Put("us-east-1", dcvHost("i-2", "s3"))
	path := filepath.Join(t.TempDir(), "resolver.toml")
	cfg := fmt.Sprintf("[ec2]\nregions = [\"us-east-1\"]\nendpoint = %q\nmax-attempts = 1\n", fake.URL())
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func() (string, int) {
		cmd := exec.Command(bin, "check", "--config", path)
		cmd.Env = binaryEnv(t)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return string(out), code
	}
	out, code := run()
	if code != 0 || !strings.Contains(out, "ec2:DescribeInstances is allowed") || !strings.Contains(out, "2 running instances tagged dcv:session-id, serving 3 sessions") {
		t.Fatalf("check on a good set-up: exit %d\n%s", code, out)
	}
	if !fake.Requests()[0].DryRun {
		t.Fatal("check did not start with a DryRun call")
	}

	fake.SetFault(func(ec2fake.Request) *ec2fake.Fault { return &ec2fake.Fault{Code: "UnauthorizedOperation"} })
	out, code = run()
	if code != 1 || !strings.Contains(out, "may not call ec2:DescribeInstances") || !strings.Contains(out, "iam-policy.json") {
		t.Fatalf("check without permission: exit %d\n%s", code, out)
	}
}
