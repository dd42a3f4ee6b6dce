package httpapi

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/dcv-ec2-resolver/dcv-ec2-resolver/discovery"
	"github.com/dcv-ec2-resolver/dcv-ec2-resolver/resolve"
)

// discardWriter is the least a ResponseWriter can be: a reused header map and a byte count, so
// the benchmarks measure the handler and not httptest.ResponseRecorder.
type discardWriter struct {
	h      http.Header
	status int
	n      int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }
func (w *discardWriter) Write(b []byte) (int, error) { w.n += len(b); return len(b), nil }

// benchResolver is the real resolver over an index of 1,000 sessions, with on-miss lookups off.
func benchResolver(b *testing.B) *resolve.Resolver {
	targets := make([]discovery.Target, 1000)
	for i := range targets {
		targets[i] = discovery.Target{
			SessionIDs: []string{"session-" + time.Duration(i).String()},
			Host:       "dcv.example.com", HTTPPort: 8443, QUICPort: 8443, WebURLPath: "/",
		}
	}
	targets[0].SessionIDs = []string{"session-123"}
	index := resolve.NewIndex(nil, nil)
	index.Publish(resolve.Source{Name: "file", Pinned: true}, targets, time.Now())
	// NegativeTTL 0: an expiring negative cache starts a goroutine that nothing stops
	// (expirable.NewLRU), which goleak would report.
	cfg := resolve.DefaultMissConfig()
	cfg.NegativeTTL = 0
	r := resolve.NewResolver(index, nil, cfg, nil)
	b.Cleanup(r.Close)
	return r
}

func benchServe(b *testing.B, target string, wantStatus int) {
	h := NewHandler(benchResolver(b), Options{})
	req := httptest.NewRequest(http.MethodPost, target, nil)
	w := &discardWriter{h: make(http.Header, 4)}
	h.ServeHTTP(w, req)
	if w.status != wantStatus {
		b.Fatalf("status %d, want %d", w.status, wantStatus)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		h.ServeHTTP(w, req)
	}
}

func BenchmarkResolveHit(b *testing.B) {
	benchServe(b, "/resolveSession?sessionId=session-123&transport=QUIC&clientIpAddress=192.0.2.10", http.StatusOK)
}

func BenchmarkResolveMiss(b *testing.B) {
	benchServe(b, "/resolveSession?sessionId=no-such-session&transport=HTTP&clientIpAddress=192.0.2.10", http.StatusNotFound)
}

func BenchmarkBadRequest(b *testing.B) {
	benchServe(b, "/resolveSession?sessionId=session-123&transport=TCP&clientIpAddress=192.0.2.10", http.StatusBadRequest)
}
