package resolve

import (
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/dcv-ec2-resolver/dcv-ec2-resolver/discovery"
)

// benchFleet returns n targets shaped like a poll's result: every tenth instance serves three
// session IDs, the rest one, so a fleet of n instances holds 1.2n sessions. Strings are built
// one by one, as the SDK's decoder allocates them, so that retained-memory figures are honest.
func benchFleet(n int) (targets []discovery.Target, sessions []string) {
	launched := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	targets = make([]discovery.Target, n)
	sessions = make([]string, 0, n+n/5)
	for i := range targets {
		ids := []string{"sess-" + strconv.Itoa(i)}
		if i%10 == 0 {
			ids = append(ids, "sess-"+strconv.Itoa(i)+"-b", "sess-"+strconv.Itoa(i)+"-c")
		}
		sessions = append(sessions, ids...)
		targets[i] = discovery.Target{
			SessionIDs: ids,
			Host:       fmt.Sprintf("ip-10-%d-%d-%d.ec2.internal", byte(i>>16), byte(i>>8), byte(i)),
			HTTPPort:   8443, QUICPort: 8443, WebURLPath: "/",
			InstanceID: fmt.Sprintf("i-%017x", i),
			Region:     "us-east-1",
			LaunchTime: launched.Add(time.Duration(i) * time.Second),
		}
	}
	return targets, sessions
}

var benchSizes = []int{1000, 10000, 100000}

// BenchmarkPublish is the index build of one full poll: merge a region's targets into a new
// snapshot and swap it in. It reports the heap the published index retains per session
// (targets included), the figure the 400 B/session goal is about.
func BenchmarkPublish(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			targets, sessions := benchFleet(n)
			ix := NewIndex(nil, nil)
			src := Source{Name: "us-east-1"}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				ix.Publish(src, targets, time.Now())
			}
			b.StopTimer()
			if got := ix.Load().Sessions(); got != len(sessions) {
				b.Fatalf("%d sessions indexed, want %d", got, len(sessions))
			}
			b.ReportMetric(retainedPerSession(n), "B/session")
		})
	}
}

// retainedPerSession measures the heap that an index of a fresh n-instance fleet keeps alive,
// targets and their strings included, divided by its sessions.
func retainedPerSession(n int) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ix := publishedIndex(n)
	runtime.GC()
	runtime.ReadMemStats(&after)
	count := ix.Load().Sessions()
	runtime.KeepAlive(ix)
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(count)
}

// publishedIndex returns an index holding a fresh n-instance fleet, and nothing else alive.
func publishedIndex(n int) *Index {
	targets, _ := benchFleet(n)
	ix := NewIndex(nil, nil)
	ix.Publish(Source{Name: "us-east-1"}, targets, time.Now())
	return ix
}

// BenchmarkLookup is the read side of every request: one atomic load and a map lookup, for a
// known session (hit) and an unknown one (miss), in an index of 100,000 instances.
func BenchmarkLookup(b *testing.B) {
	targets, sessions := benchFleet(100000)
	ix := NewIndex(nil, nil)
	ix.Publish(Source{Name: "us-east-1"}, targets, time.Now())
	b.Run("hit", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if ix.Lookup(sessions[i]) == nil {
				b.Fatal("miss")
			}
			i++
			if i == len(sessions) {
				i = 0
			}
		}
	})
	b.Run("miss", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if ix.Lookup("no-such-session") != nil {
				b.Fatal("hit")
			}
		}
	})
}
