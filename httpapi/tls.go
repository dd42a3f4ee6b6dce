package httpapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// TLSFiles names the PEM files for TLS on the resolver listener, as the gateway's [resolver]
// section expects them: a server certificate and key, and optionally a CA whose client
// certificates are required (mutual TLS).
type TLSFiles struct {
	CertFile, KeyFile string
	// ClientCAFile, when set, makes a client certificate signed by this CA mandatory.
	ClientCAFile string
}

// TLSReloader serves the listener's TLS configuration and reloads it from its files without a
// restart: on Reload (SIGHUP) and, through Watch, whenever a file changes. A file that fails to
// load leaves the previous configuration in force.
type TLSReloader struct {
	files TLSFiles
	log   *zap.Logger
	cur   atomic.Pointer[tls.Config]

	mu     sync.Mutex
	stamps []fileStamp
}

type fileStamp struct {
	size    int64
	modTime time.Time
}

// NewTLSReloader loads the files once; it fails when they do not make a usable configuration.
func NewTLSReloader(files TLSFiles, log *zap.Logger) (*TLSReloader, error) {
	if log == nil {
		log = zap.NewNop()
	}
	t := &TLSReloader{files: files, log: log}
	if _, err := t.load(true); err != nil {
		return nil, err
	}
	return t, nil
}

// Config returns the tls.Config to serve with. Each handshake picks up the latest loaded
// certificate and client CA pool.
func (t *TLSReloader) Config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return t.cur.Load(), nil
		},
	}
}

// Reload reads the files again if they changed since the last load. It returns the error of
// a failed load; the running configuration then stays as it was.
func (t *TLSReloader) Reload() error {
	changed, err := t.load(false)
	if err != nil {
		t.log.Error("TLS files not reloaded; keeping the current certificate", zap.Error(err))
		return err
	}
	if changed {
		t.log.Info("reloaded TLS certificate", zap.String("cert_file", t.files.CertFile))
	}
	return nil
}

// Watch calls Reload every interval until ctx is done.
func (t *TLSReloader) Watch(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			_ = t.Reload()
		}
	}
}

func (t *TLSReloader) load(force bool) (changed bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	paths := []string{t.files.CertFile, t.files.KeyFile}
	if t.files.ClientCAFile != "" {
		paths = append(paths, t.files.ClientCAFile)
	}
	stamps := make([]fileStamp, len(paths))
	for i, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return false, fmt.Errorf("tls: %w", err)
		}
		stamps[i] = fileStamp{size: fi.Size(), modTime: fi.ModTime()}
	}
	if !force && equalStamps(stamps, t.stamps) {
		return false, nil
	}

	cert, err := tls.LoadX509KeyPair(t.files.CertFile, t.files.KeyFile)
	if err != nil {
		return false, fmt.Errorf("tls: certificate %s / key %s: %w", t.files.CertFile, t.files.KeyFile, err)
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"h2", "http/1.1"},
	}
	if t.files.ClientCAFile != "" {
		pem, err := os.ReadFile(t.files.ClientCAFile)
		if err != nil {
			return false, fmt.Errorf("tls: client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return false, fmt.Errorf("tls: client CA %s: %w", t.files.ClientCAFile, errors.New("no PEM certificate in it"))
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	t.cur.Store(cfg)
	t.stamps = stamps
	return true, nil
}

func equalStamps(a, b []fileStamp) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].size != b[i].size || !a[i].modTime.Equal(b[i].modTime) {
			return false
		}
	}
	return true
}
