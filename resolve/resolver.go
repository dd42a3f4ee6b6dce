package resolve

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"

	"github.com/dcv-ec2-resolver/dcv-ec2-resolver/discovery"
)

// Outcome says how a session was resolved, for the request log and metrics.
type Outcome uint8

// The outcomes of Resolve. Only Hit and MissFound carry a target.
const (
	// Hit: the index knew the session.
	Hit Outcome = iota
	// MissFound: an on-miss lookup found a host the index did not know yet.
	MissFound
	// NotFound: an on-miss lookup asked EC2, which knows no running host for the session.
	NotFound
	// Unknown: the session is not indexed and on-miss lookups are off.
	Unknown
	// NegativeCached: an on-miss lookup recently found nothing for the session.
	NegativeCached
	// RateLimited: not indexed, and the on-miss budget is spent for now.
	RateLimited
	// LookupFailed: the on-miss lookup itself failed (EC2 error or timeout).
	LookupFailed
	// Invalid: the ID can never be a session (too long, control characters, bad UTF-8).
	Invalid
)

var outcomeNames = [...]string{"hit", "miss-found", "not-found", "unknown", "negative-cached", "rate-limited", "lookup-failed", "invalid"}

func (o Outcome) String() string { return outcomeNames[o] }

// Found reports whether the outcome carries a target.
func (o Outcome) Found() bool { return o == Hit || o == MissFound }

// LookupFunc finds the running hosts serving one session right now, across every region.
type LookupFunc func(ctx context.Context, sessionID string) ([]discovery.Target, error)

// MissConfig bounds on-miss lookups: how many per second (a token bucket), how long one may
// take, and how long and how many unknown IDs are remembered.
type MissConfig struct {
	Rate         float64       // lookups per second; 2 by default
	Burst        int           // bucket size; 10 by default
	Timeout      time.Duration // one lookup, all regions; 5s by default
	NegativeSize int           // unknown IDs remembered; 10,000 by default
	NegativeTTL  time.Duration // for how long; 30s by default
}

// DefaultMissConfig returns the documented defaults.
func DefaultMissConfig() MissConfig {
	return MissConfig{Rate: 2, Burst: 10, Timeout: 5 * time.Second, NegativeSize: 10000, NegativeTTL: 30 * time.Second}
}

// Result is the answer for one session.
type Result struct {
	Target  *discovery.Target
	Outcome Outcome
}

var errRateLimited = errors.New("on-miss lookup rate limit reached")

// Resolver answers session lookups from the Index and, for sessions it lacks, from a
// rate-limited, deduplicated on-miss lookup whose empty answers are cached for a while.
type Resolver struct {
	index    *Index
	miss     atomic.Pointer[missState]
	ttl      time.Duration // of the negative cache, fixed at creation
	limiter  *rate.Limiter
	group    singleflight.Group
	negative *expirable.LRU[string, struct{}]
	log      *zap.Logger

	base   context.Context
	cancel context.CancelFunc
}

// missState is what Reconfigure swaps: the lookup and its timeout.
type missState struct {
	lookup  LookupFunc
	timeout time.Duration
}

// NewResolver returns a Resolver over index. A nil lookup turns on-miss lookups off; a nil
// logger discards logs. Close it to cancel lookups in flight.
func NewResolver(index *Index, lookup LookupFunc, cfg MissConfig, log *zap.Logger) *Resolver {
	if log == nil {
		log = zap.NewNop()
	}
	r := &Resolver{
		index:    index,
		ttl:      cfg.NegativeTTL,
		limiter:  rate.NewLimiter(rate.Limit(cfg.Rate), cfg.Burst),
		negative: expirable.NewLRU[string, struct{}](cfg.NegativeSize, nil, cfg.NegativeTTL),
		log:      log,
	}
	r.miss.Store(&missState{lookup: lookup, timeout: cfg.Timeout})
	r.base, r.cancel = context.WithCancel(context.Background())
	return r
}

// Reconfigure swaps the lookup and its limits, for a configuration reload; lookups in flight
// finish with the old ones. The negative cache keeps its contents (emptied when lookups change)
// and its TTL, which only a restart changes.
func (r *Resolver) Reconfigure(lookup LookupFunc, cfg MissConfig) {
	r.limiter.SetLimit(rate.Limit(cfg.Rate))
	r.limiter.SetBurst(cfg.Burst)
	r.negative.Resize(cfg.NegativeSize)
	r.negative.Purge() // the new lookup may know what the old one did not
	r.miss.Store(&missState{lookup: lookup, timeout: cfg.Timeout})
	if cfg.NegativeTTL != r.ttl {
		r.log.Warn("a new negative-cache-ttl takes effect at the next restart", zap.Duration("current", r.ttl))
	}
}

// Close cancels on-miss lookups in flight. The Resolver still answers from the index.
func (r *Resolver) Close() {
	r.cancel()
	r.negative.Purge()
}

// NegativeCacheLen is how many unknown session IDs are remembered now.
func (r *Resolver) NegativeCacheLen() int { return r.negative.Len() }

// Index returns the index the resolver reads.
func (r *Resolver) Index() *Index { return r.index }

// Resolve finds the host of sessionID. It never blocks longer than ctx allows; a lookup
// abandoned by one caller still completes for the others waiting on it.
func (r *Resolver) Resolve(ctx context.Context, sessionID string) Result {
	if t := r.index.Lookup(sessionID); t != nil {
		return Result{Target: t, Outcome: Hit}
	}
	if discovery.ValidateSessionID(sessionID) != nil {
		return Result{Outcome: Invalid}
	}
	miss := r.miss.Load()
	if miss.lookup == nil {
		return Result{Outcome: Unknown}
	}
	if _, ok := r.negative.Get(sessionID); ok {
		r.index.metrics.negativeHit()
		return Result{Outcome: NegativeCached}
	}
	ch := r.group.DoChan(sessionID, func() (any, error) { return r.lookupOnce(miss, sessionID) })
	select {
	case <-ctx.Done():
		return Result{Outcome: LookupFailed}
	case res := <-ch:
		switch {
		case errors.Is(res.Err, errRateLimited):
			return Result{Outcome: RateLimited}
		case res.Err != nil:
			return Result{Outcome: LookupFailed}
		case res.Val == nil:
			return Result{Outcome: NotFound}
		}
		return Result{Target: res.Val.(*discovery.Target), Outcome: MissFound}
	}
}

// lookupOnce runs one on-miss lookup, shared by every concurrent request for the session.
func (r *Resolver) lookupOnce(miss *missState, sessionID string) (any, error) {
	// A poll may have published the session while this request waited.
	if t := r.index.Lookup(sessionID); t != nil {
		return t, nil
	}
	if !r.limiter.Allow() {
		r.index.metrics.lookup(RateLimited)
		return nil, errRateLimited
	}
	ctx, cancel := context.WithTimeout(r.base, miss.timeout)
	defer cancel()
	targets, err := miss.lookup(ctx, sessionID)
	if err != nil {
		r.log.Warn("on-miss lookup failed", zap.String("session", sessionID), zap.Error(err))
		if len(targets) == 0 {
			r.index.metrics.lookup(LookupFailed)
			return nil, err
		}
	}
	if len(targets) == 0 {
		r.index.metrics.lookup(NotFound)
		r.negative.Add(sessionID, struct{}{})
		return nil, nil
	}
	r.index.metrics.lookup(MissFound)
	best := &targets[0]
	for i := range targets[1:] {
		if newer(&targets[i+1], best) {
			best = &targets[i+1]
		}
	}
	r.index.AddFound(best, sessionID)
	r.log.Info("found session on miss", zap.String("session", sessionID),
		zap.String("instance", best.InstanceID), zap.String("region", best.Region))
	return best, nil
}
