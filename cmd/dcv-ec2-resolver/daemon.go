package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/dcv-ec2-resolver/dcv-ec2-resolver/discovery"
	"github.com/dcv-ec2-resolver/dcv-ec2-resolver/discovery/ec2"
	"github.com/dcv-ec2-resolver/dcv-ec2-resolver/discovery/sessionfile"
	"github.com/dcv-ec2-resolver/dcv-ec2-resolver/httpapi"
	"github.com/dcv-ec2-resolver/dcv-ec2-resolver/resolve"
)

// fileSourceName is the index source name of the sessions file; EC2 sources are named by
// their region.
const fileSourceName = "file"

// shutdownTimeout bounds how long in-flight requests may take to finish on shutdown.
const shutdownTimeout = 10 * time.Second

// tlsCheckInterval is how often the TLS files are checked for a renewed certificate.
const tlsCheckInterval = 30 * time.Second

// daemon is one running resolver: its sources, index, refresh loops and HTTP servers. The
// parts a reload may change (sources, handler options, log level) are swapped under mu; the
// index, metrics and listeners live as long as the process.
type daemon struct {
	log        *zap.Logger
	logLevel   zap.AtomicLevel
	registry   *prometheus.Registry
	ec2Metrics *ec2.Metrics
	index      *resolve.Index
	resolver   *resolve.Resolver
	handler    atomic.Pointer[httpapi.Handler]
	httpMetric *httpapi.Metrics
	tls        *httpapi.TLSReloader

	server, metricsServer     *http.Server
	listener, metricsListener net.Listener

	mu      sync.Mutex
	cfg     Config
	sources *sourceSet
	loops   context.Context // parent of every source set's loops; set by run
}

// sourceSet is the sources one configuration asks for and their refresh loops.
type sourceSet struct {
	refreshers []*resolve.Refresher
	file       []discovery.Target // the sessions file as read when the set was built
	ec2        map[string]bool    // names of EC2 sources, for staleness checks
	lookup     resolve.LookupFunc
	maxStale   time.Duration
	cancel     context.CancelFunc
	wg         sync.WaitGroup
}

// newDaemon builds everything the configuration asks for and binds the listeners, so that a
// bad file, an unusable AWS set-up or a busy port fails start-up with a clear error. It does
// not wait for the first EC2 poll.
func newDaemon(ctx context.Context, cfg Config, log *zap.Logger, level zap.AtomicLevel) (*daemon, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	d := &daemon{
		log:        log,
		logLevel:   level,
		registry:   reg,
		ec2Metrics: ec2.NewMetrics(reg),
		httpMetric: httpapi.NewMetrics(reg),
		cfg:        cfg,
	}
	d.index = resolve.NewIndex(log.Named("index"), resolve.NewMetrics(reg))

	sources, err := d.buildSources(ctx, cfg)
	if err != nil {
		return nil, err
	}
	sources.publishFile(d.index)
	d.sources = sources
	d.resolver = resolve.NewResolver(d.index, sources.lookup, cfg.EC2.missConfig(), log.Named("lookup"))
	if err := d.setHandler(cfg); err != nil {
		return nil, err
	}

	if cfg.Server.TLS() {
		if d.tls, err = httpapi.NewTLSReloader(cfg.Server.TLSFiles(), log.Named("tls")); err != nil {
			return nil, fmt.Errorf("server.tls-cert-file: %w", err)
		}
	}
	d.server = httpapi.NewServer(cfg.Server, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.handler.Load().ServeHTTP(w, r)
	}), log)
	if d.listener, err = net.Listen("tcp", cfg.Server.Listen); err != nil {
		return nil, fmt.Errorf("server.listen: %w", err)
	}
	if cfg.Metrics.Listen != "" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: zap.NewStdLog(log)}))
		mcfg := cfg.Server
		mcfg.Listen = cfg.Metrics.Listen
		d.metricsServer = httpapi.NewServer(mcfg, mux, log)
		if d.metricsListener, err = net.Listen("tcp", cfg.Metrics.Listen); err != nil {
			d.listener.Close()
			return nil, fmt.Errorf("metrics.listen: %w", err)
		}
	}
	d.warnIfExposed(cfg)
	return d, nil
}

// warnIfExposed warns when the resolver, which knows the internal address of every host,
// listens beyond loopback with neither TLS nor an allow-list.
func (d *daemon) warnIfExposed(cfg Config) {
	if exposed(d.listener.Addr().String(), cfg) {
		d.log.Warn("listening beyond loopback without TLS or an allow-list: anyone who can reach this port can map session IDs to internal hosts; set server.allowed-clients or server.tls-cert-file",
			zap.String("listen", d.listener.Addr().String()))
	}
}

// exposed reports whether a listener on addr is reachable beyond this host with neither TLS
// nor an allow-list in front of it.
func exposed(addr string, cfg Config) bool {
	host, _, _ := net.SplitHostPort(addr)
	if a, err := netip.ParseAddr(host); err == nil && a.IsLoopback() {
		return false
	}
	return !cfg.Server.TLS() && len(cfg.Server.AllowedClients) == 0
}

// setHandler builds the resolver listener's handler for cfg and puts it in service.
func (d *daemon) setHandler(cfg Config) error {
	allowed, err := httpapi.ParseAllowedClients(cfg.Server.AllowedClients)
	if err != nil {
		return fmt.Errorf("server.allowed-clients: %w", err)
	}
	lvl, on, _ := cfg.requestLevel()
	reqLog := d.log.Named("request")
	if !on {
		reqLog = zap.NewNop()
	}
	d.handler.Store(httpapi.NewHandler(d.resolver, httpapi.Options{
		RequestLog: reqLog, RequestLogLevel: lvl, Log: d.log.Named("http"),
		AllowedClients: allowed, Ready: d.ready, Metrics: d.httpMetric,
	}))
	return nil
}

// buildSources creates the sources cfg asks for. The sessions file is read at once, so a
// broken file fails here; EC2 sources are only set up, and poll when started.
func (d *daemon) buildSources(ctx context.Context, cfg Config) (*sourceSet, error) {
	set := &sourceSet{ec2: map[string]bool{}, maxStale: cfg.EC2.MaxStaleness}
	if cfg.File.Path != "" {
		src := sessionfile.NewSource(cfg.File.Path, cfg.Defaults)
		targets, err := src.Refresh(ctx)
		if err != nil {
			return nil, fmt.Errorf("file.path: %w", err)
		}
		set.file = targets
		d.log.Info("loaded sessions file", zap.String("path", cfg.File.Path), zap.Int("sessions", len(targets)))
		set.refreshers = append(set.refreshers, &resolve.Refresher{
			Source: fileSource, Refresh: src.Refresh, Index: d.index,
			Interval: cfg.File.CheckInterval, Log: d.log.Named("file"),
		})
	}
	if cfg.EC2.Enabled {
		sources, err := d.newEC2Sources(ctx, cfg)
		if err != nil {
			return nil, err
		}
		for _, src := range sources {
			set.ec2[src.Region()] = true
			set.refreshers = append(set.refreshers, &resolve.Refresher{
				Source: resolve.Source{Name: src.Region()}, Refresh: src.Poll, Index: d.index,
				Interval: cfg.EC2.PollInterval, Timeout: cfg.EC2.PollTimeout, StartDelay: true,
				Log: d.log.Named("ec2"),
			})
		}
		if cfg.EC2.OnMissLookup {
			set.lookup = lookupAll(sources)
		}
	}
	if len(set.refreshers) == 0 {
		d.log.Warn("no session source configured: every session will get 404; add an [ec2] table or [file] path")
	}
	return set, nil
}

// newEC2Sources loads AWS credentials and region and returns one source per region.
func (d *daemon) newEC2Sources(ctx context.Context, cfg Config) ([]*ec2.Source, error) {
	log := d.log.Named("ec2")
	cc := cfg.EC2.clientConfig()
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	awsCfg, err := ec2.LoadAWSConfig(lctx, cc)
	if err != nil {
		return nil, err
	}
	opts := cfg.sourceOptions(d.ec2Metrics)
	var sources []*ec2.Source
	var regions []string
	for _, rc := range ec2.NewClients(awsCfg, cc, d.ec2Metrics, log) {
		sources = append(sources, ec2.NewSource(rc.Region, rc.Client, opts, log))
		regions = append(regions, rc.Region)
	}
	log.Info("EC2 discovery on", zap.Strings("regions", regions), zap.Duration("poll_interval", cfg.EC2.PollInterval),
		zap.String("address", string(cfg.EC2.Address)), zap.Bool("on_miss_lookup", cfg.EC2.OnMissLookup))
	return sources, nil
}

// lookupAll asks every region at once about a session. Found targets are returned even when
// some region failed; the error says which.
func lookupAll(sources []*ec2.Source) resolve.LookupFunc {
	return func(ctx context.Context, sessionID string) ([]discovery.Target, error) {
		if len(sources) == 1 {
			return sources[0].Lookup(ctx, sessionID)
		}
		var (
			mu      sync.Mutex
			wg      sync.WaitGroup
			targets []discovery.Target
			errs    []error
		)
		for _, s := range sources {
			wg.Go(func() {
				ts, err := s.Lookup(ctx, sessionID)
				mu.Lock()
				defer mu.Unlock()
				targets = append(targets, ts...)
				if err != nil {
					errs = append(errs, err)
				}
			})
		}
		wg.Wait()
		return targets, errors.Join(errs...)
	}
}

// fileSource is the sessions file's place in the index: pinned, it wins every conflict.
var fileSource = resolve.Source{Name: fileSourceName, Pinned: true}

// publishFile puts the sessions file read by buildSources into the index.
func (s *sourceSet) publishFile(ix *resolve.Index) {
	if s.file != nil {
		ix.Publish(fileSource, s.file, time.Now())
	}
}

// start runs the set's refresh loops until stop or until parent is done.
func (s *sourceSet) start(parent context.Context) {
	ctx, cancel := context.WithCancel(parent)
	s.cancel = cancel
	for _, r := range s.refreshers {
		s.wg.Go(func() { r.Run(ctx) })
	}
}

// stop ends the set's loops and waits for them.
func (s *sourceSet) stop() {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
}

// ready reports why the daemon should not be sent traffic yet: a source that has not loaded
// once, or an EC2 region whose last good poll is older than ec2.max-staleness.
func (d *daemon) ready() error {
	d.mu.Lock()
	set := d.sources
	d.mu.Unlock()
	var errs []error
	for _, r := range set.refreshers {
		st := r.Status()
		name := r.Source.Name
		switch {
		case st.LastSuccess.IsZero() && name == fileSourceName:
			// The file was loaded when the source was built.
		case st.LastSuccess.IsZero():
			errs = append(errs, fmt.Errorf("%s: no successful poll yet", name))
		case set.ec2[name] && time.Since(st.LastSuccess) > set.maxStale:
			errs = append(errs, fmt.Errorf("%s: last successful poll %s ago, more than ec2.max-staleness %s",
				name, time.Since(st.LastSuccess).Round(time.Second), set.maxStale))
		}
	}
	return errors.Join(errs...)
}

// run serves until ctx is done, reloading the configuration from path on every value received
// from reload, then shuts down gracefully: it stops accepting, lets in-flight requests finish
// (up to shutdownTimeout), and stops every loop.
func (d *daemon) run(ctx context.Context, path string, reload <-chan struct{}) error {
	loops, stopLoops := context.WithCancel(ctx)
	defer stopLoops()
	var wg sync.WaitGroup
	d.mu.Lock()
	d.loops = loops
	d.sources.start(loops)
	d.mu.Unlock()
	wg.Go(func() { d.notifyReady(loops) })
	if d.tls != nil {
		wg.Go(func() { d.tls.Watch(loops, tlsCheckInterval) })
	}

	serveErr := make(chan error, 2)
	go func() {
		if d.tls != nil {
			d.server.TLSConfig = d.tls.Config()
			serveErr <- d.server.ServeTLS(d.listener, "", "")
			return
		}
		serveErr <- d.server.Serve(d.listener)
	}()
	servers := 1
	if d.metricsServer != nil {
		servers++
		go func() { serveErr <- d.metricsServer.Serve(d.metricsListener) }()
		d.log.Info("serving metrics", zap.String("listen", d.metricsListener.Addr().String()))
	}
	d.log.Info("serving", zap.String("listen", d.listener.Addr().String()), zap.Bool("tls", d.tls != nil))

	var err error
loop:
	for {
		select {
		case <-ctx.Done():
			d.log.Info("shutting down")
			break loop
		case <-reload:
			if rerr := d.reload(ctx, path); rerr != nil {
				d.log.Error("configuration not reloaded; the running configuration stays", zap.Error(rerr))
			}
		case err = <-serveErr:
			servers--
			err = fmt.Errorf("serve: %w", err)
			break loop
		}
	}
	_ = sdNotify("STOPPING=1")
	stopLoops()
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	for _, s := range []*http.Server{d.server, d.metricsServer} {
		if s == nil {
			continue
		}
		if serr := s.Shutdown(sctx); serr != nil {
			d.log.Warn("shutdown did not finish cleanly", zap.Error(serr))
		}
	}
	for ; servers > 0; servers-- {
		<-serveErr // each returns http.ErrServerClosed once Shutdown started
	}
	d.resolver.Close()
	d.mu.Lock()
	d.sources.stop()
	d.mu.Unlock()
	wg.Wait()
	return err
}

// reload applies the configuration file at path. An invalid file, or sources that cannot be
// built, change nothing. Unchanged sources keep running with their data; changed ones are
// replaced, and sources no longer configured leave the index. Settings of the listeners
// themselves take effect at the next restart, which is logged.
func (d *daemon) reload(ctx context.Context, path string) error {
	cfg, err := LoadConfig(path)
	if err != nil {
		return err
	}
	d.mu.Lock()
	old := d.cfg
	d.mu.Unlock()
	var set *sourceSet
	if !reflect.DeepEqual(sourceConfig(old), sourceConfig(cfg)) {
		// Built outside the lock: loading AWS credentials may take a while, and /readyz
		// must keep answering meanwhile.
		if set, err = d.buildSources(ctx, cfg); err != nil {
			return err
		}
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	if set != nil {
		d.sources.stop()
		set.publishFile(d.index)
		for _, r := range d.sources.refreshers {
			if !set.has(r.Source.Name) {
				d.index.Forget(r.Source.Name)
			}
		}
		d.sources = set
		set.start(d.loops)
		d.log.Info("sources reconfigured", zap.Int("sources", len(set.refreshers)))
	}
	d.resolver.Reconfigure(d.sources.lookup, cfg.EC2.missConfig())
	if err := d.setHandler(cfg); err != nil {
		return err
	}
	lvl, _ := zap.ParseAtomicLevel(cfg.Log.Level)
	d.logLevel.SetLevel(lvl.Level())
	if d.tls != nil {
		_ = d.tls.Reload()
	}
	if restart := restartOnly(old, cfg); len(restart) > 0 {
		d.log.Warn("some changed settings take effect only at the next restart", zap.Strings("keys", restart))
	}
	d.cfg = cfg
	d.log.Info("configuration reloaded", zap.String("config", path))
	return nil
}

func (s *sourceSet) has(name string) bool {
	for _, r := range s.refreshers {
		if r.Source.Name == name {
			return true
		}
	}
	return false
}

// sourceConfig is the part of a configuration that decides the sources; on-miss limits are
// applied to the running resolver instead.
func sourceConfig(c Config) any {
	e := c.EC2
	e.OnMissRate, e.OnMissBurst, e.OnMissTimeout, e.NegativeCacheSize, e.NegativeCacheTTL = 0, 0, 0, 0, 0
	return struct {
		EC2      EC2Config
		Tags     discovery.TagKeys
		Defaults discovery.Defaults
		File     FileConfig
	}{e, c.Tags, c.Defaults, c.File}
}

// restartOnly names the changed keys a reload cannot apply to a running process.
func restartOnly(a, b Config) []string {
	var keys []string
	diff := func(key string, x, y any) {
		if !reflect.DeepEqual(x, y) {
			keys = append(keys, key)
		}
	}
	diff("server.listen", a.Server.Listen, b.Server.Listen)
	diff("server timeouts and limits", []any{a.Server.ReadHeaderTimeout, a.Server.ReadTimeout, a.Server.WriteTimeout, a.Server.IdleTimeout, a.Server.MaxHeaderBytes},
		[]any{b.Server.ReadHeaderTimeout, b.Server.ReadTimeout, b.Server.WriteTimeout, b.Server.IdleTimeout, b.Server.MaxHeaderBytes})
	diff("server TLS files", a.Server.TLSFiles(), b.Server.TLSFiles())
	diff("metrics.listen", a.Metrics.Listen, b.Metrics.Listen)
	diff("log.format", a.Log.Format, b.Log.Format)
	diff("ec2.negative-cache-ttl", a.EC2.NegativeCacheTTL, b.EC2.NegativeCacheTTL)
	return keys
}

// notifyReady tells systemd the daemon is ready once every source has finished its first
// poll, successfully or not: the gateway can be started and sessions will resolve or fail
// for a reason that is in the log.
func (d *daemon) notifyReady(ctx context.Context) {
	d.mu.Lock()
	refreshers := d.sources.refreshers
	d.mu.Unlock()
	for _, r := range refreshers {
		select {
		case <-r.Attempted():
		case <-ctx.Done():
			return
		}
	}
	snap := d.index.Load()
	d.log.Info("ready", zap.Int("sessions", snap.Sessions()), zap.Int("instances", snap.Instances()))
	if err := sdNotify(fmt.Sprintf("READY=1\nSTATUS=serving %d sessions", snap.Sessions())); err != nil {
		d.log.Warn("cannot notify systemd", zap.Error(err))
	}
}
