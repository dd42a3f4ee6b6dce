package httpapi

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

const (
	benchHitTarget  = "/resolveSession?sessionId=session-123&transport=QUIC&clientIpAddress=192.0.2.10"
	benchMissTarget = "/resolveSession?sessionId=no-such-session&transport=HTTP&clientIpAddress=192.0.2.10"
	benchBadTarget  = "/resolveSession?sessionId=session-123&transport=TCP&clientIpAddress=192.0.2.10"
)

// daemonOptions are the handler options of the daemon with its defaults: metrics on, and one
// JSON request line per request at info (written to io.Discard here instead of stderr).
func daemonOptions(requestLog bool) Options {
	opts := Options{Metrics: NewMetrics(nil)}
	if requestLog {
		ec := zap.NewProductionEncoderConfig()
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		ec.EncodeDuration = zapcore.MillisDurationEncoder
		opts.RequestLog = zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(ec), zapcore.AddSync(io.Discard), zapcore.InfoLevel))
		opts.RequestLogLevel = zapcore.InfoLevel
	}
	return opts
}

// BenchmarkDaemonHandler is the handler as the daemon configures it, metrics included, with
// the per-request log line on (the default, request-level = "info") and off.
func BenchmarkDaemonHandler(b *testing.B) {
	for _, log := range []bool{true, false} {
		for _, c := range []struct {
			name, target string
			status       int
		}{{"hit", benchHitTarget, 200}, {"miss", benchMissTarget, 404}, {"bad", benchBadTarget, 400}} {
			name := c.name + "/log=off"
			if log {
				name = c.name + "/log=info"
			}
			b.Run(name, func(b *testing.B) {
				h := NewHandler(benchResolver(b), daemonOptions(log))
				req := httptest.NewRequest(http.MethodPost, c.target, nil)
				w := &discardWriter{h: make(http.Header, 4)}
				h.ServeHTTP(w, req)
				if w.status != c.status {
					b.Fatalf("status %d, want %d", w.status, c.status)
				}
				b.ReportAllocs()
				for b.Loop() {
					h.ServeHTTP(w, req)
				}
			})
		}
	}
}

// ceilingHandler is the least any server can do for the gateway: a constant JSON answer with
// the same headers, the yardstick of BenchmarkHTTPRoundTrip.
func ceilingHandler() http.Handler {
	body := []byte(`{"SessionId":"session-123","TransportProtocol":"QUIC","DcvServerEndpoint":"dcv.example.com","Port":8443,"WebUrlPath":"/"}`)
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h["Content-Type"] = jsonContentType
		h["X-Content-Type-Options"] = nosniff
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
	})
}

// BenchmarkHTTPRoundTrip sends requests over one keep-alive HTTP/1.1 connection on loopback to
// a real http.Server with NewServer's limits, from a client that allocates nothing: allocs/op
// is what the server side spends per request. "ceiling" answers a constant body, so the other
// cases' allocs/op minus the ceiling's are the handler's own, beyond net/http.
func BenchmarkHTTPRoundTrip(b *testing.B) {
	for _, c := range []struct {
		name    string
		handler func(b *testing.B) http.Handler
		target  string
		status  int
	}{
		{"ceiling", func(*testing.B) http.Handler { return ceilingHandler() }, benchHitTarget, 200},
		{"hit/log=info", func(b *testing.B) http.Handler { return NewHandler(benchResolver(b), daemonOptions(true)) }, benchHitTarget, 200},
		{"hit/log=off", func(b *testing.B) http.Handler { return NewHandler(benchResolver(b), daemonOptions(false)) }, benchHitTarget, 200},
		{"miss/log=off", func(b *testing.B) http.Handler { return NewHandler(benchResolver(b), daemonOptions(false)) }, benchMissTarget, 404},
	} {
		b.Run(c.name, func(b *testing.B) {
			ts := httptest.NewUnstartedServer(c.handler(b))
			srv := NewServer(DefaultServerConfig(), ts.Config.Handler, nil)
			ts.Config = srv
			ts.Start()
			defer ts.Close()
			conn, err := net.Dial("tcp", ts.Listener.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			req := []byte("POST " + c.target + " HTTP/1.1\r\nHost: resolver\r\nContent-Length: 0\r\n\r\n")
			br := bufio.NewReaderSize(conn, 4096)
			roundTrip := func() {
				if _, err := conn.Write(req); err != nil {
					b.Fatal(err)
				}
				status, err := readResponse(br)
				if err != nil {
					b.Fatal(err)
				}
				if status != c.status {
					b.Fatalf("status %d, want %d", status, c.status)
				}
			}
			roundTrip()
			b.ReportAllocs()
			for b.Loop() {
				roundTrip()
			}
		})
	}
}

// readResponse reads one HTTP/1.1 response with a Content-Length body, without allocating,
// and returns its status.
func readResponse(br *bufio.Reader) (int, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	if len(line) < 12 {
		return 0, io.ErrUnexpectedEOF
	}
	status := int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
	length := 0
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(line) <= 2 {
			break
		}
		if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
			length, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	_, err = br.Discard(length)
	return status, err
}
