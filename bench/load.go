package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"time"
)

// The load generator runs in a child process of its own (the "load" role), pinned to its own
// CPU when the harness pins, so that it shares nothing with the server it measures but the
// machine. It keeps Conns persistent HTTP/1.1 connections busy in a closed loop: each sends a
// request, reads the whole answer, and sends the next. Requests are pre-built byte strings
// and answers are parsed in place, so the generator spends a few microseconds of CPU per
// request and leaves the rest of the machine to the server; net/http's client would spend
// several times what the server does and blur the difference between servers.

// loadSpec is one load run. The harness passes it to the child as JSON.
type loadSpec struct {
	Addr        string        // host:port of the server
	TLS         bool          // speak TLS, trusting CAFile
	CAFile      string        //
	Conns       int           // persistent connections, each one request at a time
	Warmup      time.Duration // sent but not counted
	Duration    time.Duration // measured
	MaxRequests int64         // bound on requests sent in all, warm-up included
	Fleet       int           // known session IDs are those of a fleet of this size
	Unknown     float64       // fraction of requests for unknown session IDs
	UnknownPool int           // how many distinct unknown IDs
	// Rate, when set, paces the run at this many requests per second in all (open loop):
	// each connection sends on a fixed schedule, and latency counts from the scheduled
	// moment, so a stall is charged to every request it delays.
	Rate float64
	Seed uint64
	// ServerPID is the server's process, whose CPU use the generator samples at the start and
	// the end of the measured window, as it does its own.
	ServerPID int
}

// loadResult is what a run measured. Latencies are in nanoseconds.
type loadResult struct {
	Requests   int64
	Seconds    float64
	RPS        float64
	Hist       map[int]int64 // latency histogram: bucket (see bucketOf) -> count
	Max        int64
	Status     map[int]int64
	Wrong      int64 // answers other than 200 for a known ID and 404 for an unknown one
	Errors     int64 // connection errors (each followed by a new connection)
	FirstError string
	// ServerCPU and GeneratorCPU are their CPU use in the measured window, as shares of one
	// CPU; Others (filled in by the harness) is the share of the machine's CPU that other
	// processes used during the whole run.
	ServerCPU, GeneratorCPU, Others float64
}

// histogram rebuilds the run's latency histogram.
func (r *loadResult) histogram() *histogram {
	h := &histogram{max: r.Max}
	for b, c := range r.Hist {
		h.counts[b] += c
		h.total += c
	}
	return h
}

// requestSet holds pre-built requests: the bytes of request i are buf[off[i]:off[i+1]].
type requestSet struct {
	buf []byte
	off []int
}

func buildRequests(ids []string) requestSet {
	var rs requestSet
	rs.off = append(rs.off, 0)
	for i, id := range ids {
		transport := "QUIC"
		if i%2 == 1 {
			transport = "HTTP"
		}
		rs.buf = fmt.Appendf(rs.buf, "POST /resolveSession?sessionId=%s&transport=%s&clientIpAddress=198.51.100.%d HTTP/1.1\r\nHost: resolver\r\nContent-Length: 0\r\n\r\n",
			id, transport, i%250+1)
		rs.off = append(rs.off, len(rs.buf))
	}
	return rs
}

func (rs *requestSet) len() int             { return len(rs.off) - 1 }
func (rs *requestSet) request(i int) []byte { return rs.buf[rs.off[i]:rs.off[i+1]] }

// runLoad is the "load" role: args[0] is the loadSpec as JSON; the loadResult goes to stdout.
func runLoad(args []string) int {
	exitWithParent()
	var spec loadSpec
	if err := json.Unmarshal([]byte(args[0]), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		return 2
	}
	res, err := generate(spec)
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		return 1
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return 1
	}
	return 0
}

type worker struct {
	hist   histogram
	status map[int]int64
	sent   int64
	wrong  int64
	errs   int64
	first  error
}

func generate(spec loadSpec) (*loadResult, error) {
	known := buildRequests(fleetSessions(spec.Fleet))
	unknown := buildRequests(unknownSessions(max(spec.UnknownPool, 1)))
	dial, err := dialer(spec)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	measureFrom := start.Add(spec.Warmup)
	end := measureFrom.Add(spec.Duration)
	perConn := max(spec.MaxRequests/int64(spec.Conns), 1)
	var every time.Duration // between two requests of one connection, when paced
	if spec.Rate > 0 {
		every = time.Duration(float64(spec.Conns) / spec.Rate * float64(time.Second))
	}

	// Sample both sides' CPU time at the start and the end of the measured window.
	var cpuFrom, cpuTo [2]time.Duration
	sample := func(at time.Time, into *[2]time.Duration) {
		time.Sleep(time.Until(at))
		into[0], _ = cpuTime(spec.ServerPID)
		into[1] = selfCPU()
	}
	var sampler sync.WaitGroup
	if spec.ServerPID > 0 {
		sampler.Go(func() { sample(measureFrom, &cpuFrom); sample(end, &cpuTo) })
	}

	workers := make([]*worker, spec.Conns)
	var wg sync.WaitGroup
	for i := range workers {
		w := &worker{status: map[int]int64{}}
		workers[i] = w
		rng := rand.New(rand.NewPCG(spec.Seed, uint64(i)))
		first := start.Add(every * time.Duration(i) / time.Duration(spec.Conns))
		wg.Go(func() { w.run(dial, &known, &unknown, spec.Unknown, rng, measureFrom, end, perConn, first, every) })
	}
	wg.Wait()
	sampler.Wait()

	res := &loadResult{Status: map[int]int64{}, Seconds: spec.Duration.Seconds()}
	if spec.ServerPID > 0 {
		res.ServerCPU = float64(cpuTo[0]-cpuFrom[0]) / float64(spec.Duration)
		res.GeneratorCPU = float64(cpuTo[1]-cpuFrom[1]) / float64(spec.Duration)
	}
	var h histogram
	for _, w := range workers {
		h.merge(&w.hist)
		for s, n := range w.status {
			res.Status[s] += n
		}
		res.Wrong += w.wrong
		res.Errors += w.errs
		if w.first != nil && res.FirstError == "" {
			res.FirstError = w.first.Error()
		}
	}
	res.Requests = h.total
	res.RPS = float64(h.total) / spec.Duration.Seconds()
	res.Max = h.max
	res.Hist = map[int]int64{}
	for b, c := range h.counts {
		if c > 0 {
			res.Hist[b] = c
		}
	}
	if res.Requests == 0 {
		return res, fmt.Errorf("no request completed: %s", res.FirstError)
	}
	return res, nil
}

func dialer(spec loadSpec) (func() (net.Conn, error), error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if !spec.TLS {
		return func() (net.Conn, error) { return d.Dial("tcp", spec.Addr) }, nil
	}
	pem, err := os.ReadFile(spec.CAFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("no certificate in " + spec.CAFile)
	}
	host, _, _ := net.SplitHostPort(spec.Addr)
	cfg := &tls.Config{RootCAs: pool, ServerName: host, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12}
	return func() (net.Conn, error) {
		return tls.DialWithDialer(d, "tcp", spec.Addr, cfg)
	}, nil
}

// run drives one connection until end or until it has sent limit requests, reconnecting after
// errors (at most 100 times). With every > 0 the requests are due at first, first+every, ...;
// otherwise each is sent as soon as the previous answer is in.
func (w *worker) run(dial func() (net.Conn, error), known, unknown *requestSet, unknownShare float64,
	rng *rand.Rand, measureFrom, end time.Time, limit int64, first time.Time, every time.Duration) {
	due := first
	var conn net.Conn
	var br *bufio.Reader
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for w.sent < limit && w.errs < 100 {
		if conn == nil {
			c, err := dial()
			if err != nil {
				w.fail(err)
				time.Sleep(10 * time.Millisecond)
				if time.Now().After(end) {
					return
				}
				continue
			}
			conn = c
			_ = conn.SetDeadline(end.Add(10 * time.Second)) // nothing waits forever
			br = bufio.NewReaderSize(conn, 4096)
		}
		set, want := known, 200
		if unknownShare > 0 && rng.Float64() < unknownShare {
			set, want = unknown, 404
		}
		req := set.request(rng.IntN(set.len()))

		t0 := time.Now()
		if every > 0 {
			if wait := due.Sub(t0); wait > 0 {
				time.Sleep(wait)
			}
			t0 = due // latency counts from when the request was due
			due = due.Add(every)
		}
		if !t0.Before(end) {
			return
		}
		w.sent++
		status, err := roundTrip(conn, br, req)
		if err != nil {
			w.fail(err)
			conn.Close()
			conn = nil
			continue
		}
		if t0.Before(measureFrom) {
			continue
		}
		w.hist.record(time.Since(t0))
		w.status[status]++
		if status != want {
			w.wrong++
		}
	}
}

func (w *worker) fail(err error) {
	w.errs++
	if w.first == nil {
		w.first = err
	}
}

// roundTrip writes one request and reads its answer: status line, headers, and a body of
// Content-Length bytes. An answer that closes the connection is an error here.
func roundTrip(conn net.Conn, br *bufio.Reader, req []byte) (int, error) {
	if _, err := conn.Write(req); err != nil {
		return 0, err
	}
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	length := -1
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(line) <= 2 {
			break
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		switch {
		case asciiEqualFold(k, "Content-Length"):
			if length, err = strconv.Atoi(string(bytes.TrimSpace(v))); err != nil {
				return 0, fmt.Errorf("bad Content-Length %q", v)
			}
		case asciiEqualFold(k, "Connection") && asciiEqualFold(bytes.TrimSpace(v), "close"):
			return 0, errors.New("server closed the connection")
		}
	}
	if length < 0 {
		return 0, errors.New("answer without Content-Length")
	}
	if _, err := br.Discard(length); err != nil {
		return 0, err
	}
	return status, nil
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		x, y := b[i]|0x20, s[i]|0x20
		if x != y {
			return false
		}
	}
	return true
}

// runLoadChild runs spec in a load-generator child process at p against the server with PID
// serverPID and returns its result.
func runLoadChild(spec loadSpec, p placement, serverPID int) (*loadResult, error) {
	spec.ServerPID = serverPID
	js, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	server0, _ := cpuTime(serverPID)
	in := startInterference(server0)
	c, err := startRole("load", []string{string(js)}, p)
	if err != nil {
		return nil, err
	}
	defer c.stop()
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() { _, err := io.Copy(&out, c.out); done <- err }()
	select {
	case <-done: // EOF: the process has exited and all its output is in
	case <-time.After(spec.Warmup + spec.Duration + time.Minute):
		return nil, errors.New("load generator did not finish")
	}
	<-c.done
	if c.err != nil {
		return nil, fmt.Errorf("load generator: %v", c.err)
	}
	var res loadResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		return nil, fmt.Errorf("load generator output %q: %v", out.String(), err)
	}
	ps := c.cmd.ProcessState
	server, _ := cpuTime(serverPID)
	res.Others = in.others(server, ps.UserTime()+ps.SystemTime())
	return &res, nil
}
