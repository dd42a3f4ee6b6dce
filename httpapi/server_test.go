package httpapi

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestDefaultServerConfig(t *testing.T) {
	c := DefaultServerConfig()
	if c.Listen != "127.0.0.1:9000" || c.ReadHeaderTimeout != 5*time.Second || c.ReadTimeout != 10*time.Second ||
		c.WriteTimeout != 15*time.Second || c.IdleTimeout != 120*time.Second || c.MaxHeaderBytes != 16<<10 {
		t.Errorf("DefaultServerConfig() = %+v", c)
	}
}

func TestNewServerLimits(t *testing.T) {
	c := ServerConfig{
		Listen:            "127.0.0.1:9123",
		ReadHeaderTimeout: 1 * time.Second,
		ReadTimeout:       2 * time.Second,
		WriteTimeout:      3 * time.Second,
		IdleTimeout:       4 * time.Second,
		MaxHeaderBytes:    5000,
	}
	h := NewHandler(newFake(), Options{})
	core, logs := observer.New(zapcore.DebugLevel)
	srv := NewServer(c, h, zap.New(core))
	if srv.Addr != c.Listen || srv.Handler != h || srv.ReadHeaderTimeout != c.ReadHeaderTimeout ||
		srv.ReadTimeout != c.ReadTimeout || srv.WriteTimeout != c.WriteTimeout ||
		srv.IdleTimeout != c.IdleTimeout || srv.MaxHeaderBytes != c.MaxHeaderBytes {
		t.Errorf("NewServer did not copy every limit: %+v", srv)
	}
	if srv.ErrorLog == nil {
		t.Fatal("no ErrorLog")
	}
	srv.ErrorLog.Printf("http: TLS handshake error from %s: EOF", "127.0.0.1:5555")
	entries := logs.AllUntimed()
	if len(entries) != 1 || entries[0].Level != zapcore.WarnLevel || entries[0].LoggerName != "http" ||
		!strings.Contains(entries[0].Message, "TLS handshake error") {
		t.Errorf("ErrorLog wrote %+v, want one warning from the \"http\" logger", entries)
	}

	// A nil logger is allowed.
	if srv := NewServer(DefaultServerConfig(), h, nil); srv.ErrorLog == nil {
		t.Error("no ErrorLog with a nil logger")
	} else {
		srv.ErrorLog.Print("discarded")
	}
}

// startServer serves h on a loopback port with NewServer(c) and returns the address. The
// server is closed, and its Serve has returned, when the test ends.
func startServer(t *testing.T, c ServerConfig, h http.Handler) string {
	t.Helper()
	c.Listen = "127.0.0.1:0"
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(c, h, nil)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

func testConfig() ServerConfig {
	return ServerConfig{
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       5 * time.Second,
		WriteTimeout:      5 * time.Second,
		IdleTimeout:       5 * time.Second,
		MaxHeaderBytes:    1 << 10,
	}
}

const goodRequest = "POST /resolveSession?sessionId=s1&transport=HTTP&clientIpAddress=127.0.0.1 HTTP/1.1\r\nHost: resolver\r\nContent-Length: 0\r\n\r\n"

// roundTrip writes one request on conn and reads its response.
func roundTrip(t *testing.T, conn net.Conn, br *bufio.Reader, req string) *http.Response {
	t.Helper()
	if err := conn.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, res.Body); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res
}

// waitClosed reads conn until the server closes it, and fails if that takes longer than max.
// It returns what the server wrote before closing.
func waitClosed(conn net.Conn, max time.Duration) ([]byte, error) {
	if err := conn.SetReadDeadline(time.Now().Add(max)); err != nil {
		return nil, err
	}
	var buf strings.Builder
	_, err := io.Copy(&buf, conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) {
		return []byte(buf.String()), errors.New("still open")
	}
	return []byte(buf.String()), nil // EOF or reset: the server closed it
}

func TestServerReadHeaderTimeout(t *testing.T) {
	c := testConfig()
	c.ReadHeaderTimeout = 200 * time.Millisecond
	fake := newFake()
	addr := startServer(t, c, NewHandler(fake, Options{}))

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if _, err := io.WriteString(conn, "POST /resolveSession?sessionId=s1&transport=HTTP HTTP/1.1\r\nHost: resolver\r\n"); err != nil {
		t.Fatal(err)
	}
	// Trickle a header byte every 20ms, never finishing the headers: each byte arriving must
	// not extend the deadline.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := conn.Write([]byte("X")); err != nil {
					return
				}
			}
		}
	})
	got, err := waitClosed(conn, 1500*time.Millisecond)
	elapsed := time.Since(start)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("slow client after %v: %v", elapsed, err)
	}
	// net/http hangs up silently, or with a 400 when part of the headers had arrived.
	if len(got) != 0 && !strings.HasPrefix(string(got), "HTTP/1.1 400 ") {
		t.Errorf("slow client got %q before the close", got)
	}
	if calls := fake.takeCalls(); len(calls) != 0 {
		t.Errorf("slow client reached the resolver: %q", calls)
	}
	if elapsed < 150*time.Millisecond || elapsed > time.Second {
		t.Errorf("slow client cut off after %v, want about 200ms", elapsed)
	}

	// A client that sends its headers in time is served.
	conn2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	if res := roundTrip(t, conn2, bufio.NewReader(conn2), goodRequest); res.StatusCode != 200 {
		t.Errorf("prompt client got %d", res.StatusCode)
	}
}

func TestServerMaxHeaderBytes(t *testing.T) {
	c := testConfig()
	c.MaxHeaderBytes = 1 << 10
	fake := newFake()
	addr := startServer(t, c, NewHandler(fake, Options{}))
	// net/http allows 4096 bytes of slack over MaxHeaderBytes; 8 KiB is well over both.
	big := strings.Repeat("a", 8<<10)
	tests := []struct {
		name, req string
		status    int
	}{
		{"small request", goodRequest, 200},
		{"long query string", "POST /resolveSession?sessionId=s1&transport=HTTP&pad=" + big + " HTTP/1.1\r\nHost: resolver\r\n\r\n", 431},
		{"long session ID", "POST /resolveSession?transport=HTTP&sessionId=" + big + " HTTP/1.1\r\nHost: resolver\r\n\r\n", 431},
		{"long header", "POST /resolveSession?sessionId=s1&transport=HTTP HTTP/1.1\r\nHost: resolver\r\nX-Pad: " + big + "\r\n\r\n", 431},
		{"many headers", "POST /resolveSession?sessionId=s1&transport=HTTP HTTP/1.1\r\nHost: resolver\r\n" + strings.Repeat("X-Pad: 0123456789abcdef\r\n", 400) + "\r\n", 431},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fake.takeCalls()
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			res := roundTrip(t, conn, bufio.NewReader(conn), tc.req)
			if res.StatusCode != tc.status {
				t.Errorf("status %d, want %d", res.StatusCode, tc.status)
			}
			if tc.status == 431 {
				if calls := fake.takeCalls(); len(calls) != 0 {
					t.Errorf("oversized request reached the resolver: %d calls", len(calls))
				}
				if _, err := waitClosed(conn, time.Second); err != nil {
					t.Errorf("connection after 431: %v", err)
				}
			}
		})
	}
}

func TestServerIdleTimeout(t *testing.T) {
	c := testConfig()
	c.IdleTimeout = 200 * time.Millisecond
	addr := startServer(t, c, NewHandler(newFake(), Options{}))

	const n = 20
	conns := make([]net.Conn, n)
	for i := range conns {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conns[i] = conn
		br := bufio.NewReader(conn)
		// Two requests on the same connection: keep-alive works before the idle timeout.
		for j := 0; j < 2; j++ {
			res := roundTrip(t, conn, br, goodRequest)
			if res.StatusCode != 200 || res.Close {
				t.Fatalf("conn %d request %d: status %d, close %v", i, j, res.StatusCode, res.Close)
			}
		}
	}
	start := time.Now()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, conn := range conns {
		wg.Go(func() {
			var got []byte
			if got, errs[i] = waitClosed(conn, 1500*time.Millisecond); len(got) != 0 {
				errs[i] = errors.New("unexpected data before close: " + string(got))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	for i, err := range errs {
		if err != nil {
			t.Errorf("idle conn %d: %v", i, err)
		}
	}
	if elapsed > 1200*time.Millisecond {
		t.Errorf("idle connections closed after %v, want about 200ms", elapsed)
	}
}

func TestServerIdleConnectionStaysOpenBeforeTimeout(t *testing.T) {
	c := testConfig()
	c.IdleTimeout = 400 * time.Millisecond
	addr := startServer(t, c, NewHandler(newFake(), Options{}))
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	roundTrip(t, conn, br, goodRequest)
	time.Sleep(100 * time.Millisecond) // idle, but well within the timeout
	if res := roundTrip(t, conn, br, goodRequest); res.StatusCode != 200 {
		t.Errorf("status %d", res.StatusCode)
	}
}
