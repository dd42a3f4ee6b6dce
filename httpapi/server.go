package httpapi

import (
	"fmt"
	"net/http"
	"net/netip"
	"time"

	"go.uber.org/zap"
)

// ServerConfig holds the listener address and the limits that keep slow or hostile clients
// from holding the daemon.
type ServerConfig struct {
	// Listen is the TCP address, loopback by default: the gateway runs on the same host.
	Listen string `toml:"listen"`
	// ReadHeaderTimeout bounds reading a request's headers (slowloris).
	ReadHeaderTimeout time.Duration `toml:"read-header-timeout"`
	// ReadTimeout bounds reading a whole request.
	ReadTimeout time.Duration `toml:"read-timeout"`
	// WriteTimeout bounds handling and writing one response, on-miss lookup included.
	WriteTimeout time.Duration `toml:"write-timeout"`
	// IdleTimeout closes keep-alive connections idle this long.
	IdleTimeout time.Duration `toml:"idle-timeout"`
	// MaxHeaderBytes caps the request line and headers, query string included.
	MaxHeaderBytes int `toml:"max-header-bytes"`
	// TLSCertFile and TLSKeyFile (PEM) turn TLS on; the certificate is reloaded on SIGHUP
	// and when the files change.
	TLSCertFile string `toml:"tls-cert-file"`
	TLSKeyFile  string `toml:"tls-key-file"`
	// ClientCAFile (PEM), with TLS, requires client certificates signed by this CA.
	ClientCAFile string `toml:"client-ca-file"`
	// AllowedClients lists the addresses or CIDR blocks of the only peers served; empty
	// allows all.
	AllowedClients []string `toml:"allowed-clients"`
}

// TLS reports whether the listener serves TLS.
func (c ServerConfig) TLS() bool { return c.TLSCertFile != "" }

// TLSFiles returns the PEM files of the listener's TLS configuration.
func (c ServerConfig) TLSFiles() TLSFiles {
	return TLSFiles{CertFile: c.TLSCertFile, KeyFile: c.TLSKeyFile, ClientCAFile: c.ClientCAFile}
}

// ParseAllowedClients parses allowed-clients entries: CIDR blocks ("10.0.0.0/16") or single
// addresses ("::1").
func ParseAllowedClients(entries []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(entries))
	for i, e := range entries {
		if p, err := netip.ParsePrefix(e); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(e)
		if err != nil {
			return nil, fmt.Errorf("[%d]: %q is neither an IP address nor a CIDR block", i, e)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// DefaultServerConfig returns the defaults: 127.0.0.1:9000, the address the gateway's
// documentation uses, with limits generous for the gateway and tight for anything else.
func DefaultServerConfig() ServerConfig {
	return ServerConfig{
		Listen:            "127.0.0.1:9000",
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
}

// NewServer returns an http.Server for h with every limit of c set. Its own errors (TLS
// handshakes, accept failures) go to log.
func NewServer(c ServerConfig, h http.Handler, log *zap.Logger) *http.Server {
	if log == nil {
		log = zap.NewNop()
	}
	errLog, _ := zap.NewStdLogAt(log.Named("http"), zap.WarnLevel)
	return &http.Server{
		Addr:              c.Listen,
		Handler:           h,
		ReadHeaderTimeout: c.ReadHeaderTimeout,
		ReadTimeout:       c.ReadTimeout,
		WriteTimeout:      c.WriteTimeout,
		IdleTimeout:       c.IdleTimeout,
		MaxHeaderBytes:    c.MaxHeaderBytes,
		ErrorLog:          errLog,
	}
}
