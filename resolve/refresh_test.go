package resolve

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/dcv-ec2-resolver/dcv-ec2-resolver/discovery"
)

// scriptedSource answers polls from a list of results, repeating the last one.
type scriptedSource struct {
	mu      sync.Mutex
	results []func() ([]discovery.Target, error)
	calls   atomic.Int32
	polled  chan struct{}
}

func (s *scriptedSource) refresh(context.Context) ([]discovery.Target, error) {
	s.mu.Lock()
	f := s.results[0]
	if len(s.results) > 1 {
		s.results = s.results[1:]
	}
	s.mu.Unlock()
	s.calls.Add(1)
	defer func() {
		select {
		case s.polled <- struct{}{}:
		default:
		}
	}()
	return f()
}

func ok(ts ...discovery.Target) func() ([]discovery.Target, error) {
	return func() ([]discovery.Target, error) { return ts, nil }
}

func fail(err error) func() ([]discovery.Target, error) {
	return func() ([]discovery.Target, error) { return nil, err }
}

func waitPolls(t *testing.T, s *scriptedSource, n int32) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for s.calls.Load() < n {
		select {
		case <-s.polled:
		case <-deadline:
			t.Fatalf("only %d of %d polls happened", s.calls.Load(), n)
		}
	}
}

func TestRefresherKeepsLastGoodDataThroughFailures(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	ix := NewIndex(nil, nil)
	outage := errors.New("describe instances in us-east-1: RequestLimitExceeded")
	src := &scriptedSource{polled: make(chan struct{}, 1), results: []func() ([]discovery.Target, error){
		ok(target("i-1", "a", t0, "s1")),
		fail(outage), fail(outage), fail(outage),
		ok(target("i-2", "b", t0, "s2")),
	}}
	r := &Refresher{Source: east, Refresh: src.refresh, Index: ix, Interval: 20 * time.Millisecond,
		MinBackoff: time.Millisecond, Log: zap.New(core)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()

	waitPolls(t, src, 4)
	if hostOf(ix, "s1") != "a" {
		t.Fatal("failed polls emptied the index")
	}
	st := r.Status()
	if st.Failures < 1 || st.LastError == nil || st.LastSuccess.IsZero() {
		t.Fatalf("status during outage: %+v", st)
	}
	waitPolls(t, src, 5)
	cancel()
	<-done

	if hostOf(ix, "s2") != "b" || hostOf(ix, "s1") != "" {
		t.Fatal("recovery poll not published")
	}
	if st := r.Status(); st.Failures != 0 || st.LastError != nil {
		t.Fatalf("status after recovery: %+v", st)
	}
	warns := logs.FilterMessage("refresh failed").All()
	if len(warns) != 3 {
		t.Fatalf("%d failure lines, want 3", len(warns))
	}
	if warns[0].ContextMap()["data"] != "serving last good data" {
		t.Fatalf("failure line does not say stale data is served: %v", warns[0].ContextMap())
	}
	if _, ok := warns[0].ContextMap()["data_age"]; !ok {
		t.Fatal("failure line lacks data_age")
	}
	if logs.FilterMessage("source recovered").Len() != 1 {
		t.Fatal("recovery not logged")
	}
}

func TestRefresherNotModifiedLeavesIndex(t *testing.T) {
	ix := NewIndex(nil, nil)
	ix.Publish(file, []discovery.Target{target("", "h", t0, "s1")}, time.Now())
	src := &scriptedSource{polled: make(chan struct{}, 1), results: []func() ([]discovery.Target, error){
		fail(discovery.ErrNotModified),
	}}
	r := &Refresher{Source: file, Refresh: src.refresh, Index: ix, Interval: time.Hour}
	if err := r.RefreshNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	if hostOf(ix, "s1") != "h" || r.Status().LastSuccess.IsZero() {
		t.Fatal("not-modified refresh changed the index or was not counted as success")
	}
}

func TestRefresherPollsNeverOverlapAndStop(t *testing.T) {
	var running, overlaps atomic.Int32
	var calls atomic.Int32
	r := &Refresher{Source: east, Index: NewIndex(nil, nil), Interval: time.Millisecond,
		Refresh: func(ctx context.Context) ([]discovery.Target, error) {
			if running.Add(1) > 1 {
				overlaps.Add(1)
			}
			time.Sleep(2 * time.Millisecond) // slower than the interval
			running.Add(-1)
			calls.Add(1)
			return nil, nil
		}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	for calls.Load() < 10 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not stop on cancel")
	}
	if overlaps.Load() != 0 {
		t.Fatalf("%d overlapping polls", overlaps.Load())
	}
}

func TestRefresherPollTimeout(t *testing.T) {
	r := &Refresher{Source: east, Index: NewIndex(nil, nil), Interval: time.Hour, Timeout: 20 * time.Millisecond,
		Refresh: func(ctx context.Context) ([]discovery.Target, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}}
	start := time.Now()
	err := r.RefreshNow(context.Background())
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > time.Second {
		t.Fatalf("poll not bounded by Timeout: %v after %v", err, time.Since(start))
	}
}

func TestBackoffGrowsToInterval(t *testing.T) {
	r := &Refresher{Interval: 30 * time.Second, MinBackoff: time.Second}
	for failures, max := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 10: 30 * time.Second} {
		for range 20 {
			d := r.backoff(failures)
			if d < max/2 || d > max {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", failures, d, max/2, max)
			}
		}
	}
	for range 100 {
		if d := jitter(30 * time.Second); d < 27*time.Second || d > 33*time.Second {
			t.Fatalf("jitter(30s) = %v", d)
		}
	}
}
