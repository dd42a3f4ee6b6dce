package resolve

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/dcv-ec2-resolver/dcv-ec2-resolver/discovery"
)

// RefreshFunc fetches a source's complete target list. It returns discovery.ErrNotModified
// when nothing changed since the last call.
type RefreshFunc func(ctx context.Context) ([]discovery.Target, error)

// Refresher owns the poll loop of one source: timing, jitter, back-off after failures and
// logging. The work itself is its RefreshFunc; the result goes to its Index.
type Refresher struct {
	// Source names what is refreshed; its targets replace the source's previous ones.
	Source Source
	// Refresh does one poll.
	Refresh RefreshFunc
	// Index receives every successful result.
	Index *Index
	// Interval is the time between the end of one poll and the start of the next, varied by
	// up to a tenth either way so that many gateways spread their calls.
	Interval time.Duration
	// Timeout bounds one whole poll, all pages and retries; zero means Interval, at least 1m.
	Timeout time.Duration
	// StartDelay, when true, waits a random part of the interval's first tenth before the
	// first poll, so gateways booted together do not poll in step.
	StartDelay bool
	// MinBackoff is the first wait after a failure, doubled per failure up to Interval;
	// zero means one second.
	MinBackoff time.Duration
	// Log receives one line per failure and per recovery; nil discards them.
	Log *zap.Logger

	status    atomic.Pointer[RefreshStatus]
	initOnce  sync.Once
	doneOnce  sync.Once
	attempted chan struct{}
}

// RefreshStatus is what a Refresher last achieved, for staleness checks and health.
type RefreshStatus struct {
	// LastSuccess is when the last successful poll finished; zero before the first.
	LastSuccess time.Time
	// LastAttempt is when the last poll, good or bad, finished.
	LastAttempt time.Time
	// LastError is the error of the last poll, nil when it succeeded.
	LastError error
	// Failures counts polls failed in a row.
	Failures int
}

// Status returns the refresher's latest status; the zero status before the first poll ends.
func (r *Refresher) Status() RefreshStatus {
	if s := r.status.Load(); s != nil {
		return *s
	}
	return RefreshStatus{}
}

// Attempted returns a channel closed once the first poll has finished, whether it succeeded
// or failed: the moment a service manager may be told the daemon is ready.
func (r *Refresher) Attempted() <-chan struct{} {
	r.initOnce.Do(func() { r.attempted = make(chan struct{}) })
	return r.attempted
}

func (r *Refresher) markAttempted() {
	r.Attempted()
	r.doneOnce.Do(func() { close(r.attempted) })
}

// Run polls until ctx is done. The first poll starts at once (after StartDelay); a poll never
// overlaps the previous one, since the timer is set only when a poll has finished.
func (r *Refresher) Run(ctx context.Context) {
	log := r.logger()
	var delay time.Duration
	if tenth := r.Interval / 10; r.StartDelay && tenth > 0 {
		delay = rand.N(tenth)
	}
	timer := time.NewTimer(delay)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		timer.Reset(r.once(ctx, log))
	}
}

// RefreshNow runs one poll at once, outside the loop, and publishes its result.
func (r *Refresher) RefreshNow(ctx context.Context) error {
	r.once(ctx, r.logger())
	return r.Status().LastError
}

// logger is Log (or a no-op logger) naming the source.
func (r *Refresher) logger() *zap.Logger {
	log := r.Log
	if log == nil {
		log = zap.NewNop()
	}
	return log.With(zap.String("source", r.Source.Name))
}

// once runs one poll and returns how long to wait before the next.
func (r *Refresher) once(ctx context.Context, log *zap.Logger) time.Duration {
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = max(r.Interval, time.Minute)
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	started := time.Now()
	targets, err := r.Refresh(pctx)
	cancel()
	defer r.markAttempted()
	prev := r.Status()
	next := RefreshStatus{LastSuccess: prev.LastSuccess, LastAttempt: time.Now(), LastError: err}

	switch {
	case err == nil || errors.Is(err, discovery.ErrNotModified):
		next.LastError = nil
		next.LastSuccess = next.LastAttempt
		result := "unchanged"
		if err == nil {
			result = "success"
			r.Index.Publish(r.Source, targets, started)
			log.Debug("refreshed", zap.Int("targets", len(targets)), zap.Duration("took", time.Since(started)))
		}
		r.Index.metrics.poll(r.Source.Name, result, time.Since(started), next.LastSuccess)
		if prev.Failures > 0 {
			log.Info("source recovered", zap.Int("failed_polls", prev.Failures))
		}
		r.status.Store(&next)
		return jitter(r.Interval)
	case ctx.Err() != nil:
		r.status.Store(&next) // shutting down: not a failure worth a log line
		return r.Interval
	}

	next.Failures = prev.Failures + 1
	r.status.Store(&next)
	r.Index.metrics.poll(r.Source.Name, "failure", time.Since(started), next.LastAttempt)
	wait := r.backoff(next.Failures)
	fields := []zap.Field{zap.Error(err), zap.Int("failed_polls", next.Failures), zap.Duration("retry_in", wait)}
	if prev.LastSuccess.IsZero() {
		fields = append(fields, zap.String("data", "none loaded yet"))
	} else {
		fields = append(fields, zap.String("data", "serving last good data"),
			zap.Duration("data_age", time.Since(prev.LastSuccess).Round(time.Second)))
	}
	log.Warn("refresh failed", fields...)
	return wait
}

// backoff doubles from MinBackoff per failure, capped at the interval, with full jitter in
// its upper half so that retries from many gateways spread out.
func (r *Refresher) backoff(failures int) time.Duration {
	d := r.MinBackoff
	if d <= 0 {
		d = time.Second
	}
	for i := 1; i < failures && d < r.Interval; i++ {
		d *= 2
	}
	d = min(d, r.Interval)
	if d < 2 {
		return d
	}
	return d/2 + rand.N(d/2)
}

// jitter varies d by up to a tenth either way.
func jitter(d time.Duration) time.Duration {
	if d < 10 {
		return d
	}
	return d - d/10 + rand.N(d/5)
}
