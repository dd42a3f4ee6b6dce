package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

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

// daemon is one running resolver: its sources, index, refresh loops and HTTP server.
type daemon struct {
	cfg        Config
	log        *zap.Logger
	index      *resolve.Index
	resolver   *resolve.Resolver
	refreshers []*resolve.Refresher
	server     *http.Server
	listener   net.Listener
}

// newDaemon builds everything the configuration asks for and binds the listener, so that a
// bad file, an unusable AWS set-up or a busy port fails start-up with a clear error. It does
// not wait for the first EC2 poll.
func newDaemon(ctx context.Context, cfg Config, log *zap.Logger) (*daemon, error) {
	d := &daemon{cfg: cfg, log: log, index: resolve.NewIndex(log.Named("index"))}

	if cfg.File.Path != "" {
		src := sessionfile.NewSource(cfg.File.Path, cfg.Defaults)
		targets, err := src.Refresh(ctx)
		if err != nil {
			return nil, fmt.Errorf("sessions file: %w", err)
		}
		s := resolve.Source{Name: fileSourceName, Pinned: true}
		d.index.Publish(s, targets, time.Now())
		log.Info("loaded sessions file", zap.String("path", cfg.File.Path), zap.Int("sessions", len(targets)))
		d.refreshers = append(d.refreshers, &resolve.Refresher{
			Source: s, Refresh: src.Refresh, Index: d.index,
			Interval: cfg.File.CheckInterval, Log: log.Named("file"),
		})
	}

	var lookup resolve.LookupFunc
	if cfg.EC2.Enabled {
		sources, err := newEC2Sources(ctx, cfg, log.Named("ec2"))
		if err != nil {
			return nil, err
		}
		for _, src := range sources {
			d.refreshers = append(d.refreshers, &resolve.Refresher{
				Source: resolve.Source{Name: src.Region()}, Refresh: src.Poll, Index: d.index,
				Interval: cfg.EC2.PollInterval, Timeout: cfg.EC2.PollTimeout, StartDelay: true,
				Log: log.Named("ec2"),
			})
		}
		if cfg.EC2.OnMissLookup {
			lookup = lookupAll(sources)
		}
	}
	if len(d.refreshers) == 0 {
		log.Warn("no session source configured: every session will get 404; add an [ec2] table or [file] path")
	}
	d.resolver = resolve.NewResolver(d.index, lookup, cfg.EC2.missConfig(), log.Named("lookup"))

	lvl, on, _ := cfg.requestLevel()
	reqLog := log.Named("request")
	if !on {
		reqLog = zap.NewNop()
	}
	h := httpapi.NewHandler(d.resolver, httpapi.Options{RequestLog: reqLog, RequestLogLevel: lvl})
	d.server = httpapi.NewServer(cfg.Server, h, log)

	ln, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		d.resolver.Close()
		return nil, fmt.Errorf("server.listen: %w", err)
	}
	d.listener = ln
	return d, nil
}

// newEC2Sources loads AWS credentials and region and returns one source per region.
func newEC2Sources(ctx context.Context, cfg Config, log *zap.Logger) ([]*ec2.Source, error) {
	cc := cfg.EC2.clientConfig()
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	awsCfg, err := ec2.LoadAWSConfig(lctx, cc)
	if err != nil {
		return nil, err
	}
	opts := ec2.Options{Filters: cfg.EC2.Filters, Address: cfg.EC2.Address, Tags: cfg.Tags, Defaults: cfg.Defaults}
	var sources []*ec2.Source
	for _, rc := range ec2.NewClients(awsCfg, cc) {
		sources = append(sources, ec2.NewSource(rc.Region, rc.Client, opts, log))
	}
	regions := make([]string, len(sources))
	for i, s := range sources {
		regions[i] = s.Region()
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

// run serves until ctx is done, then shuts down gracefully: it stops accepting, lets
// in-flight requests finish (up to shutdownTimeout), and stops every refresh loop.
func (d *daemon) run(ctx context.Context) error {
	var wg sync.WaitGroup
	loops, stopLoops := context.WithCancel(ctx)
	defer stopLoops()
	for _, r := range d.refreshers {
		wg.Go(func() { r.Run(loops) })
	}

	wg.Go(func() { d.notifyReady(loops) })

	serveErr := make(chan error, 1)
	go func() { serveErr <- d.server.Serve(d.listener) }()
	d.log.Info("serving", zap.String("listen", d.listener.Addr().String()))

	var err error
	select {
	case <-ctx.Done():
		d.log.Info("shutting down")
	case err = <-serveErr:
		err = fmt.Errorf("serve: %w", err)
	}
	_ = sdNotify("STOPPING=1")
	stopLoops()
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if serr := d.server.Shutdown(sctx); serr != nil {
		d.log.Warn("shutdown did not finish cleanly", zap.Error(serr))
	}
	if err == nil {
		<-serveErr // returns http.ErrServerClosed once Shutdown started
	}
	d.resolver.Close()
	wg.Wait()
	return err
}

// notifyReady tells systemd the daemon is ready once every source has finished its first
// poll, successfully or not: the gateway can be started and sessions will resolve or fail
// for a reason that is in the log.
func (d *daemon) notifyReady(ctx context.Context) {
	for _, r := range d.refreshers {
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
