package httpapi

import (
	"net/http"
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
