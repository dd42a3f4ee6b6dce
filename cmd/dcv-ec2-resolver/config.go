package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"go.uber.org/zap/zapcore"

	"github.com/dcv-ec2-resolver/dcv-ec2-resolver/discovery"
	"github.com/dcv-ec2-resolver/dcv-ec2-resolver/discovery/ec2"
	"github.com/dcv-ec2-resolver/dcv-ec2-resolver/httpapi"
	"github.com/dcv-ec2-resolver/dcv-ec2-resolver/resolve"
)

// defaultConfigPath is where the packages install the configuration file.
const defaultConfigPath = "/etc/dcv-ec2-resolver/resolver.toml"

// Config is the daemon's configuration file. Every field has a documented default, so an
// empty file is valid; DefaultConfig holds them and Validate checks a loaded one once.
type Config struct {
	Server   httpapi.ServerConfig `toml:"server"`
	EC2      EC2Config            `toml:"ec2"`
	Tags     discovery.TagKeys    `toml:"tags"`
	Defaults discovery.Defaults   `toml:"defaults"`
	File     FileConfig           `toml:"file"`
	Log      LogConfig            `toml:"log"`
	Metrics  MetricsConfig        `toml:"metrics"`
}

// MetricsConfig places the Prometheus endpoint on a listener of its own, off by default, so
// that metrics never share the gateway's port or its allow-list.
type MetricsConfig struct {
	// Listen is the host:port serving GET /metrics; empty turns metrics off.
	Listen string `toml:"listen"`
}

// EC2Config turns EC2 discovery on when its table is present in the file.
type EC2Config struct {
	// Enabled is true when the [ec2] table is present, unless it says enabled = false.
	Enabled bool `toml:"enabled"`
	// Regions to poll; empty means the environment's region, else the instance's (IMDSv2).
	Regions []string `toml:"regions"`
	// Endpoint overrides the EC2 API endpoint (VPC interface endpoints, tests).
	Endpoint string `toml:"endpoint"`
	// PollInterval is the time between full polls (30s), varied by a tenth either way.
	PollInterval time.Duration `toml:"poll-interval"`
	// PollTimeout bounds one full poll of one region, all pages and retries (2m).
	PollTimeout time.Duration `toml:"poll-timeout"`
	// MaxStaleness is how old a region's last successful poll may be before /readyz reports
	// the daemon not ready (0: five poll intervals).
	MaxStaleness time.Duration `toml:"max-staleness"`
	// Address is the instance address handed to the gateway (private-dns).
	Address ec2.AddressType `toml:"address"`
	// AssumeRoleARN is assumed through STS when set, for fleets in another account.
	AssumeRoleARN string `toml:"assume-role-arn"`
	// Filters narrow the described instances further, e.g. by a fleet tag.
	Filters []ec2.Filter `toml:"filters"`
	// CallTimeout bounds one HTTP attempt of one EC2 call (10s).
	CallTimeout time.Duration `toml:"call-timeout"`
	// MaxAttempts is how often a throttled or failed call is tried, with back-off (5).
	MaxAttempts int `toml:"max-attempts"`
	// OnMissLookup asks EC2 about sessions the index does not know (true).
	OnMissLookup bool `toml:"on-miss-lookup"`
	// OnMissRate and OnMissBurst are the token bucket for those lookups (2/s, 10).
	OnMissRate  float64 `toml:"on-miss-rate"`
	OnMissBurst int     `toml:"on-miss-burst"`
	// OnMissTimeout bounds one lookup across all regions (5s).
	OnMissTimeout time.Duration `toml:"on-miss-timeout"`
	// NegativeCacheSize and NegativeCacheTTL bound the memory of IDs EC2 did not know
	// (10000, 30s).
	NegativeCacheSize int           `toml:"negative-cache-size"`
	NegativeCacheTTL  time.Duration `toml:"negative-cache-ttl"`
}

// FileConfig names the sessions file, if any.
type FileConfig struct {
	// Path of the sessions file; relative paths are relative to the config file. Empty: none.
	Path string `toml:"path"`
	// CheckInterval is how often the file is checked for changes (2s).
	CheckInterval time.Duration `toml:"check-interval"`
}

// LogConfig sets up zap.
type LogConfig struct {
	// Level is the lowest level logged: debug, info, warn or error (info).
	Level string `toml:"level"`
	// Format is json (for the journal and log shippers) or console (for people) (json).
	Format string `toml:"format"`
	// RequestLevel is the level of the one line logged per resolve request (info); set it
	// below Level, or to "off", to keep request lines out of a busy gateway's log.
	RequestLevel string `toml:"request-level"`
}

// DefaultConfig returns the configuration an empty file yields.
func DefaultConfig() Config {
	miss := resolve.DefaultMissConfig()
	client := ec2.DefaultClientConfig()
	return Config{
		Server: httpapi.DefaultServerConfig(),
		EC2: EC2Config{
			Enabled:           true,
			PollInterval:      30 * time.Second,
			PollTimeout:       2 * time.Minute,
			Address:           ec2.AddressPrivateDNS,
			CallTimeout:       client.CallTimeout,
			MaxAttempts:       client.MaxAttempts,
			OnMissLookup:      true,
			OnMissRate:        miss.Rate,
			OnMissBurst:       miss.Burst,
			OnMissTimeout:     miss.Timeout,
			NegativeCacheSize: miss.NegativeSize,
			NegativeCacheTTL:  miss.NegativeTTL,
		},
		Tags:     discovery.DefaultTagKeys(),
		Defaults: discovery.DefaultDefaults(),
		File:     FileConfig{CheckInterval: 2 * time.Second},
		Log:      LogConfig{Level: "info", Format: "json", RequestLevel: "info"},
	}
}

// LoadConfig reads and validates the file at path. Unknown keys and bad values are refused
// with an error naming the key.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	c, err := ParseConfig(data, filepath.Dir(path))
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ParseConfig decodes a config file's contents over the defaults and validates them; dir
// anchors relative paths.
func ParseConfig(data []byte, dir string) (Config, error) {
	c := DefaultConfig()
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&c)
	if err != nil {
		return Config{}, err
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return Config{}, fmt.Errorf("unknown key %s", strings.Join(keys, ", "))
	}
	if !md.IsDefined("ec2") {
		c.EC2.Enabled = false
	}
	for _, p := range []*string{&c.File.Path, &c.Server.TLSCertFile, &c.Server.TLSKeyFile, &c.Server.ClientCAFile} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	if c.EC2.MaxStaleness == 0 {
		c.EC2.MaxStaleness = 5 * c.EC2.PollInterval
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

var regionRE = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-\d+$`)

// Validate checks every value, returning the first problem prefixed by its key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	positive := func(key string, d time.Duration) {
		if d <= 0 {
			bad(key, "must be a positive duration such as \"30s\"")
		}
	}

	s := c.Server
	if _, port, err := net.SplitHostPort(s.Listen); err != nil || port == "" {
		bad("server.listen", "%q is not host:port", s.Listen)
	}
	positive("server.read-header-timeout", s.ReadHeaderTimeout)
	positive("server.read-timeout", s.ReadTimeout)
	positive("server.write-timeout", s.WriteTimeout)
	positive("server.idle-timeout", s.IdleTimeout)
	if s.MaxHeaderBytes < 1024 {
		bad("server.max-header-bytes", "%d is below 1024", s.MaxHeaderBytes)
	}
	switch {
	case (s.TLSCertFile == "") != (s.TLSKeyFile == ""):
		bad("server.tls-key-file", "tls-cert-file and tls-key-file go together")
	case s.ClientCAFile != "" && s.TLSCertFile == "":
		bad("server.client-ca-file", "needs tls-cert-file and tls-key-file: client certificates are a TLS feature")
	}
	if _, err := httpapi.ParseAllowedClients(s.AllowedClients); err != nil {
		bad("server.allowed-clients", "%v", err)
	}
	if c.Metrics.Listen != "" {
		if _, port, err := net.SplitHostPort(c.Metrics.Listen); err != nil || port == "" {
			bad("metrics.listen", "%q is not host:port", c.Metrics.Listen)
		}
	}

	if e := c.EC2; e.Enabled {
		for i, r := range e.Regions {
			if !regionRE.MatchString(r) {
				bad(fmt.Sprintf("ec2.regions[%d]", i), "%q is not an AWS region name", r)
			}
		}
		if e.Endpoint != "" {
			if u, err := url.Parse(e.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				bad("ec2.endpoint", "%q is not an http(s) URL", e.Endpoint)
			}
		}
		positive("ec2.poll-interval", e.PollInterval)
		positive("ec2.poll-timeout", e.PollTimeout)
		if e.MaxStaleness < 0 {
			bad("ec2.max-staleness", "must not be negative")
		}
		positive("ec2.call-timeout", e.CallTimeout)
		positive("ec2.on-miss-timeout", e.OnMissTimeout)
		positive("ec2.negative-cache-ttl", e.NegativeCacheTTL)
		if err := e.Address.Validate(); err != nil {
			bad("ec2.address", "%v", err)
		}
		if e.AssumeRoleARN != "" && !strings.HasPrefix(e.AssumeRoleARN, "arn:") {
			bad("ec2.assume-role-arn", "%q is not an ARN", e.AssumeRoleARN)
		}
		for i, f := range e.Filters {
			if f.Name == "" || len(f.Values) == 0 {
				bad(fmt.Sprintf("ec2.filters[%d]", i), "needs a name and at least one value")
			}
		}
		if e.MaxAttempts < 1 {
			bad("ec2.max-attempts", "must be at least 1")
		}
		if e.OnMissRate <= 0 {
			bad("ec2.on-miss-rate", "must be positive (set on-miss-lookup = false to turn lookups off)")
		}
		if e.OnMissBurst < 1 {
			bad("ec2.on-miss-burst", "must be at least 1")
		}
		if e.NegativeCacheSize < 1 {
			bad("ec2.negative-cache-size", "must be at least 1")
		}
	}
	if err := c.Tags.Validate(); err != nil {
		bad("tags", "%v", err)
	}
	if err := c.Defaults.Validate(); err != nil {
		bad("defaults", "%v", err)
	}
	if c.File.Path != "" {
		positive("file.check-interval", c.File.CheckInterval)
	}
	if _, err := zapcore.ParseLevel(c.Log.Level); err != nil {
		bad("log.level", "%q is not debug, info, warn or error", c.Log.Level)
	}
	if c.Log.Format != "json" && c.Log.Format != "console" {
		bad("log.format", "%q is not json or console", c.Log.Format)
	}
	if _, _, err := c.requestLevel(); err != nil {
		bad("log.request-level", "%q is not debug, info, warn, error or off", c.Log.RequestLevel)
	}
	return errors.Join(errs...)
}

// requestLevel is the level of per-request log lines; off is false for "off".
func (c *Config) requestLevel() (lvl zapcore.Level, on bool, err error) {
	if c.Log.RequestLevel == "off" {
		return zapcore.InfoLevel, false, nil
	}
	lvl, err = zapcore.ParseLevel(c.Log.RequestLevel)
	return lvl, err == nil, err
}

// missConfig is the on-miss lookup configuration in the resolve package's terms.
func (e *EC2Config) missConfig() resolve.MissConfig {
	return resolve.MissConfig{
		Rate: e.OnMissRate, Burst: e.OnMissBurst, Timeout: e.OnMissTimeout,
		NegativeSize: e.NegativeCacheSize, NegativeTTL: e.NegativeCacheTTL,
	}
}

// clientConfig is the EC2 client configuration in the ec2 package's terms.
func (e *EC2Config) clientConfig() ec2.ClientConfig {
	c := ec2.DefaultClientConfig()
	c.Regions, c.Endpoint, c.AssumeRoleARN = e.Regions, e.Endpoint, e.AssumeRoleARN
	c.CallTimeout, c.MaxAttempts = e.CallTimeout, e.MaxAttempts
	return c
}

// sourceOptions says how EC2 sources turn instances into targets, as serve and check share it;
// m (may be nil) counts dropped instances.
func (c *Config) sourceOptions(m *ec2.Metrics) ec2.Options {
	return ec2.Options{Filters: c.EC2.Filters, Address: c.EC2.Address, Tags: c.Tags, Defaults: c.Defaults,
		NewRetryer: c.EC2.clientConfig().NewRetryer, Metrics: m}
}
