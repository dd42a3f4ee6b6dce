package resolve

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dcv-ec2-resolver/dcv-ec2-resolver/discovery"
)

// fakeLookup serves on-miss lookups from a map and counts them.
type fakeLookup struct {
	mu      sync.Mutex
	hosts   map[string][]discovery.Target
	err     error
	calls   atomic.Int32
	release chan struct{} // when set, lookups wait for it
}

func (f *fakeLookup) lookup(ctx context.Context, id string) ([]discovery.Target, error) {
	f.calls.Add(1)
	if f.release != nil {
		select {
		case <-f.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hosts[id], f.err
}

func newTestResolver(f *fakeLookup, cfg MissConfig) *Resolver {
	var lookup LookupFunc
	if f != nil {
		lookup = f.lookup
	}
	return NewResolver(NewIndex(nil, nil), lookup, cfg, nil)
}

func TestResolveOutcomes(t *testing.T) {
	f := &fakeLookup{hosts: map[string][]discovery.Target{
		"late": {target("i-old", "old", t0, "late"), target("i-new", "new", t0.Add(time.Second), "late")},
	}}
	r := newTestResolver(f, DefaultMissConfig())
	defer r.Close()
	r.Index().Publish(east, []discovery.Target{target("i-1", "a", t0, "known")}, time.Now())
	ctx := context.Background()

	steps := []struct {
		id      string
		outcome Outcome
		host    string
		calls   int32
	}{
		{"known", Hit, "a", 0},
		{strings.Repeat("x", 257), Invalid, "", 0},
		{"bad\x00id", Invalid, "", 0},
		{"bad\xffutf8", Invalid, "", 0},
		{"late", MissFound, "new", 1}, // the later launch of the two
		{"late", Hit, "new", 1},       // served from the found overlay, no second call
		{"ghost", NotFound, "", 2},
		{"ghost", NegativeCached, "", 2}, // remembered: no second call
	}
	for _, s := range steps {
		res := r.Resolve(ctx, s.id)
		host := ""
		if res.Target != nil {
			host = res.Target.Host
		}
		if res.Outcome != s.outcome || host != s.host || f.calls.Load() != s.calls {
			t.Fatalf("Resolve(%.20q) = %v %q after %d calls, want %v %q after %d",
				s.id, res.Outcome, host, f.calls.Load(), s.outcome, s.host, s.calls)
		}
		if res.Outcome.Found() != (s.host != "") {
			t.Fatalf("%v.Found() wrong", res.Outcome)
		}
	}
}

func TestResolveWithoutLookup(t *testing.T) {
	r := newTestResolver(nil, DefaultMissConfig())
	defer r.Close()
	if res := r.Resolve(context.Background(), "x"); res.Outcome != Unknown {
		t.Fatalf("got %v, want unknown", res.Outcome)
	}
}

func TestConcurrentMissesShareOneLookup(t *testing.T) {
	f := &fakeLookup{release: make(chan struct{}), hosts: map[string][]discovery.Target{
		"s": {target("i-1", "h", t0, "s")},
	}}
	r := newTestResolver(f, DefaultMissConfig())
	defer r.Close()
	var wg sync.WaitGroup
	results := make(chan Result, 50)
	for range 50 {
		wg.Go(func() { results <- r.Resolve(context.Background(), "s") })
	}
	for f.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // let the rest join the flight
	close(f.release)
	wg.Wait()
	close(results)
	for res := range results {
		if !res.Outcome.Found() || res.Target.Host != "h" {
			t.Fatalf("got %v", res.Outcome)
		}
	}
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("%d lookups for one session, want 1", n)
	}
}

func TestMissesAreRateLimited(t *testing.T) {
	f := &fakeLookup{}
	cfg := DefaultMissConfig()
	cfg.Rate, cfg.Burst = 0.001, 3
	r := newTestResolver(f, cfg)
	defer r.Close()
	limited := 0
	for i := range 100 {
		switch res := r.Resolve(context.Background(), fmt.Sprintf("random-%d", i)); res.Outcome {
		case RateLimited:
			limited++
		case NotFound:
		default:
			t.Fatalf("unexpected outcome %v", res.Outcome)
		}
	}
	if f.calls.Load() != 3 || limited != 97 {
		t.Fatalf("%d lookups and %d rate-limited answers, want 3 and 97", f.calls.Load(), limited)
	}
}

func TestNegativeCacheIsBounded(t *testing.T) {
	f := &fakeLookup{}
	cfg := DefaultMissConfig()
	cfg.Rate, cfg.Burst, cfg.NegativeSize = 1e6, 1e6, 10
	r := newTestResolver(f, cfg)
	defer r.Close()
	for i := range 1000 {
		r.Resolve(context.Background(), fmt.Sprintf("id-%d", i))
	}
	if n := r.negative.Len(); n != 10 {
		t.Fatalf("negative cache holds %d entries, want its bound 10", n)
	}
}

func TestNegativeCacheExpires(t *testing.T) {
	f := &fakeLookup{hosts: map[string][]discovery.Target{}}
	cfg := DefaultMissConfig()
	cfg.NegativeTTL = 50 * time.Millisecond
	r := newTestResolver(f, cfg)
	defer r.Close()
	if res := r.Resolve(context.Background(), "soon"); res.Outcome != NotFound {
		t.Fatalf("got %v", res.Outcome)
	}
	f.mu.Lock()
	f.hosts["soon"] = []discovery.Target{target("i-1", "h", t0, "soon")}
	f.mu.Unlock()
	if res := r.Resolve(context.Background(), "soon"); res.Outcome != NegativeCached {
		t.Fatalf("got %v, want negative-cached", res.Outcome)
	}
	time.Sleep(120 * time.Millisecond)
	if res := r.Resolve(context.Background(), "soon"); res.Outcome != MissFound {
		t.Fatalf("got %v after the TTL, want miss-found", res.Outcome)
	}
}

func TestLookupFailureIsNotCached(t *testing.T) {
	f := &fakeLookup{err: errors.New("describe instances in us-east-1: UnauthorizedOperation")}
	r := newTestResolver(f, DefaultMissConfig())
	defer r.Close()
	for range 2 {
		if res := r.Resolve(context.Background(), "s"); res.Outcome != LookupFailed {
			t.Fatalf("got %v, want lookup-failed", res.Outcome)
		}
	}
	if f.calls.Load() != 2 {
		t.Fatalf("%d calls: a failed lookup must not be cached as unknown", f.calls.Load())
	}
}

func TestResolveHonoursCallerContextAndClose(t *testing.T) {
	f := &fakeLookup{release: make(chan struct{})}
	r := newTestResolver(f, DefaultMissConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	if res := r.Resolve(ctx, "slow"); res.Outcome != LookupFailed || time.Since(start) > time.Second {
		t.Fatalf("got %v after %v", res.Outcome, time.Since(start))
	}
	// The abandoned lookup is still in flight; Close cancels it so nothing leaks.
	r.Close()
	deadline := time.Now().Add(2 * time.Second)
	for {
		if _, err, _ := r.group.Do("probe", func() (any, error) { return nil, nil }); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("lookup not cancelled")
		}
	}
}
