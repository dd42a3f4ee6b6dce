package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/dcv-ec2-resolver/dcv-ec2-resolver/discovery/ec2/ec2fake"
)

// isolateAWSEnv gives the SDK fake static credentials and keeps it away from the machine's
// own AWS set-up and from the instance metadata service.
func isolateAWSEnv(t *testing.T) {
	for k, v := range ec2fake.Env(t.TempDir()) {
		t.Setenv(k, v)
	}
}

// testDaemon is a daemon running in-process on loopback ports chosen by the kernel.
type testDaemon struct {
	*daemon
	t      *testing.T
	url    string
	path   string
	logs   *observer.ObservedLogs
	reload chan struct{}
	stop   context.CancelFunc
	done   chan error
}

// startDaemon writes cfgText to a config file in a temp folder (with any extra files) and
// runs a daemon on it until the test ends.
func startDaemon(t *testing.T, cfgText string, files map[string]string) *testDaemon {
	t.Helper()
	isolateAWSEnv(t)
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "resolver.toml")
	if err := os.WriteFile(path, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.DebugLevel)
	level := zap.NewAtomicLevelAt(zap.DebugLevel)
	ctx, cancel := context.WithCancel(context.Background())
	d, err := newDaemon(ctx, cfg, zap.New(core), level)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	td := &testDaemon{daemon: d, t: t, path: path, logs: logs, reload: make(chan struct{}), stop: cancel, done: make(chan error, 1)}
	scheme := "http"
	if cfg.Server.TLS() {
		scheme = "https"
	}
	td.url = scheme + "://" + d.listener.Addr().String()
	go func() { td.done <- d.run(ctx, path, td.reload) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-td.done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("daemon did not stop")
		}
	})
	return td
}

// rewrite replaces the config file and asks the daemon to reload it, waiting until it has.
func (td *testDaemon) rewrite(cfgText string) {
	td.t.Helper()
	if err := os.WriteFile(td.path, []byte(cfgText), 0o644); err != nil {
		td.t.Fatal(err)
	}
	before := td.logs.Len()
	td.reload <- struct{}{}
	eventually(td.t, "the reload to finish", func() bool {
		for _, e := range td.logs.AllUntimed()[before:] {
			if e.Message == "configuration reloaded" || strings.HasPrefix(e.Message, "configuration not reloaded") {
				return true
			}
		}
		return false
	})
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var testClient = &http.Client{Timeout: 10 * time.Second}

func resolveReq(t *testing.T, client *http.Client, base, session, transport string) (int, string) {
	t.Helper()
	resp, err := client.Post(fmt.Sprintf("%s/resolveSession?sessionId=%s&transport=%s&clientIpAddress=127.0.0.1",
		base, session, transport), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func get(t *testing.T, client *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func ec2Config(endpoint string, extra string) string {
	return fmt.Sprintf(`
[server]
listen = "127.0.0.1:0"
[ec2]
regions = ["us-east-1"]
endpoint = %q
poll-interval = "100ms"
max-attempts = 2
on-miss-burst = 5
%s
[log]
level = "debug"
`, endpoint, extra)
}

func dcvHost(id, sessions string, tags ...string) ec2fake.Instance {
	t := map[string]string{"dcv:session-id": sessions}
	for i := 0; i+1 < len(tags); i += 2 {
		t[tags[i]] = tags[i+1]
	}
	return ec2fake.Instance{ID: id, PrivateDNS: "ip-" + id + ".ec2.internal", PrivateIP: "10.0.0.1",
		LaunchTime: time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC), Tags: t}
}

func TestDaemonServesEC2Sessions(t *testing.T) {
	fake := ec2fake.NewServer()
	defer fake.Close()
	fake.Put("us-east-1", dcvHost("i-1", "s1,s2", "dcv:quic-port", "9444", "dcv:web-url-path", "/dcv"))
	fake.Put("us-east-1", dcvHost("i-2", "desk", "dcv:server-session-id", "console"))
	td := startDaemon(t, ec2Config(fake.URL(), ""), nil)

	eventually(t, "readiness", func() bool { code, _ := get(t, testClient, td.url+"/readyz"); return code == 200 })
	for _, tc := range []struct{ session, transport, want string }{
		{"s1", "HTTP", `{"SessionId":"s1","TransportProtocol":"HTTP","DcvServerEndpoint":"ip-i-1.ec2.internal","Port":8443,"WebUrlPath":"/dcv"}`},
		{"s2", "QUIC", `{"SessionId":"s2","TransportProtocol":"QUIC","DcvServerEndpoint":"ip-i-1.ec2.internal","Port":9444,"WebUrlPath":"/dcv"}`},
		{"desk", "HTTP", `{"SessionId":"console","TransportProtocol":"HTTP","DcvServerEndpoint":"ip-i-2.ec2.internal","Port":8443,"WebUrlPath":"/"}`},
	} {
		if code, body := resolveReq(t, testClient, td.url, tc.session, tc.transport); code != 200 || body != tc.want {
			t.Errorf("%s/%s: %d %s\nwant %s", tc.session, tc.transport, code, body, tc.want)
		}
	}

	// A host tagged a moment ago resolves at once, through the on-miss lookup.
	fake.Put("us-east-1", dcvHost("i-3", "fresh"))
	if code, _ := resolveReq(t, testClient, td.url, "fresh", "HTTP"); code != 200 {
		t.Fatalf("freshly tagged session: %d, want 200 without waiting for a poll", code)
	}
	// A terminated instance is gone after the next poll.
	fake.SetState("us-east-1", "i-1", "terminated")
	eventually(t, "s1 to disappear", func() bool { code, _ := resolveReq(t, testClient, td.url, "s1", "HTTP"); return code == 404 })
	if code, _ := resolveReq(t, testClient, td.url, "desk", "QUIC"); code != 200 {
		t.Fatalf("other sessions lost: %d", code)
	}
}

func TestDaemonKeepsServingThroughAnOutage(t *testing.T) {
	fake := ec2fake.NewServer()
	defer fake.Close()
	// Two pages, so that an endpoint can fail in the middle of a poll.
	hosts := make([]ec2fake.Instance, 1500)
	for i := range hosts {
		hosts[i] = dcvHost(fmt.Sprintf("i-%04d", i), fmt.Sprintf("s%d", i))
	}
	fake.PutMany("us-east-1", hosts)
	td := startDaemon(t, ec2Config(fake.URL(), "max-staleness = \"1s\"\ncall-timeout = \"300ms\""), nil)
	eventually(t, "readiness", func() bool { code, _ := get(t, testClient, td.url+"/readyz"); return code == 200 })

	faults := []struct {
		name  string
		fault func(ec2fake.Request) *ec2fake.Fault
	}{
		{"throttling storm", func(ec2fake.Request) *ec2fake.Fault { return &ec2fake.Fault{Code: "RequestLimitExceeded"} }},
		{"5xx", func(ec2fake.Request) *ec2fake.Fault { return &ec2fake.Fault{Code: "InternalError"} }},
		{"timeouts", func(ec2fake.Request) *ec2fake.Fault { return &ec2fake.Fault{Hang: true} }},
		{"stops answering mid-page", func(r ec2fake.Request) *ec2fake.Fault {
			if r.NextToken != "" {
				return &ec2fake.Fault{Abort: true, AbortAfter: 200}
			}
			return nil
		}},
		{"lost permission", func(ec2fake.Request) *ec2fake.Fault { return &ec2fake.Fault{Code: "UnauthorizedOperation"} }},
		{"expired credentials", func(ec2fake.Request) *ec2fake.Fault { return &ec2fake.Fault{Code: "AuthFailure"} }},
	}
	for _, f := range faults {
		fake.SetFault(f.fault)
		failed := td.logs.FilterMessage("refresh failed").Len()
		eventually(t, f.name+" to fail a poll", func() bool { return td.logs.FilterMessage("refresh failed").Len() > failed })
		for _, s := range []string{"s1", "s1499"} { // on the first page and on the second
			if status, _ := resolveReq(t, testClient, td.url, s, "HTTP"); status != 200 {
				t.Fatalf("during %s: known session %s got %d, want 200 from the last good data", f.name, s, status)
			}
		}
	}
	// Past max-staleness the daemon says it is not ready, and why, without AWS error text.
	var body string
	eventually(t, "not ready", func() bool { var c int; c, body = get(t, testClient, td.url+"/readyz"); return c == 503 })
	if !strings.Contains(body, "us-east-1") || strings.Contains(body, "AuthFailure") {
		t.Fatalf("readyz body %q should name the stale region and no AWS error", body)
	}
	if td.index.Load().Sessions() != 1500 {
		t.Fatalf("index holds %d sessions after the outage, want all 1500", td.index.Load().Sessions())
	}

	// Recovery: the endpoint answers again, new data arrives, the daemon is ready again.
	fake.SetFault(nil)
	fake.Put("us-east-1", dcvHost("i-new", "s-new"))
	eventually(t, "recovery", func() bool { code, _ := get(t, testClient, td.url+"/readyz"); return code == 200 })
	eventually(t, "new data", func() bool { code, _ := resolveReq(t, testClient, td.url, "s-new", "HTTP"); return code == 200 })
	if td.logs.FilterMessage("source recovered").Len() == 0 {
		t.Fatal("recovery not logged")
	}
}

func TestExposedListenerWarning(t *testing.T) {
	for _, tc := range []struct {
		addr    string
		cfg     string
		exposed bool
	}{
		{"127.0.0.1:9000", "", false},
		{"[::1]:9000", "", false},
		{"0.0.0.0:9000", "", true},
		{"10.0.0.5:9000", "", true},
		{"10.0.0.5:9000", "allowed-clients = [\"10.0.0.0/16\"]", false},
		{"10.0.0.5:9000", "tls-cert-file = \"c.pem\"\ntls-key-file = \"k.pem\"", false},
	} {
		cfg, err := ParseConfig([]byte("[server]\n"+tc.cfg), "/")
		if err != nil {
			t.Fatal(err)
		}
		if got := exposed(tc.addr, cfg); got != tc.exposed {
			t.Errorf("%s with %q: exposed = %v, want %v", tc.addr, tc.cfg, got, tc.exposed)
		}
	}
}

func TestDaemonFileSourceAndReload(t *testing.T) {
	sessions := `
[sessions.pinned]
host = "127.0.0.1"
http-port = 8443
`
	cfg := `
[server]
listen = "127.0.0.1:0"
[file]
path = "sessions.toml"
check-interval = "50ms"
`
	td := startDaemon(t, cfg, map[string]string{"sessions.toml": sessions, "other.toml": "[sessions.other]\nhost = \"localhost\"\n"})
	if code, _ := resolveReq(t, testClient, td.url, "pinned", "HTTP"); code != 200 {
		t.Fatalf("pinned session: %d", code)
	}
	// The file is re-read when it changes; a broken version is refused and the last good one stays.
	sessionsPath := filepath.Join(filepath.Dir(td.path), "sessions.toml")
	if err := os.WriteFile(sessionsPath, []byte(sessions+"[sessions.added]\nhost = \"localhost\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the added session", func() bool { c, _ := resolveReq(t, testClient, td.url, "added", "HTTP"); return c == 200 })
	if err := os.WriteFile(sessionsPath, []byte("[sessions.broken]\nhost = 42\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the broken file to be refused", func() bool { return td.logs.FilterMessage("refresh failed").Len() > 0 })
	if code, _ := resolveReq(t, testClient, td.url, "added", "HTTP"); code != 200 {
		t.Fatal("a broken sessions file emptied the index")
	}

	// An invalid config is refused, naming the key, and changes nothing.
	td.rewrite(cfg + "\n[log]\nlevel = \"loud\"\n")
	refused := td.logs.FilterMessage("configuration not reloaded; the running configuration stays").All()
	if len(refused) != 1 || !strings.Contains(fmt.Sprint(refused[0].ContextMap()["error"]), "log.level") {
		t.Fatalf("refusal not logged with the key: %v", refused)
	}
	if code, _ := resolveReq(t, testClient, td.url, "added", "HTTP"); code != 200 {
		t.Fatal("refused reload changed the index")
	}
	// A valid one switches the file without a restart; the old file's sessions leave.
	td.rewrite(strings.Replace(cfg, "sessions.toml", "other.toml", 1))
	if code, _ := resolveReq(t, testClient, td.url, "other", "HTTP"); code != 200 {
		t.Fatal("reloaded file not served")
	}
	if code, _ := resolveReq(t, testClient, td.url, "pinned", "HTTP"); code != 404 {
		t.Fatal("the old file's sessions survived the reload")
	}
}

func TestDaemonAllowList(t *testing.T) {
	files := map[string]string{"s.toml": "[sessions.s1]\nhost = \"localhost\"\n"}
	td := startDaemon(t, "[server]\nlisten = \"127.0.0.1:0\"\nallowed-clients = [\"10.0.0.0/8\"]\n[file]\npath = \"s.toml\"\n", files)
	if code, body := resolveReq(t, testClient, td.url, "s1", "HTTP"); code != 403 || strings.Contains(body, "localhost") {
		t.Fatalf("client outside the allow-list: %d %q, want 403 with nothing about the host", code, body)
	}
	if td.logs.FilterMessage("refused a client not in server.allowed-clients").Len() != 1 {
		t.Fatal("refusal not logged")
	}
	td.rewrite("[server]\nlisten = \"127.0.0.1:0\"\nallowed-clients = [\"10.0.0.0/8\", \"127.0.0.1\"]\n[file]\npath = \"s.toml\"\n")
	if code, _ := resolveReq(t, testClient, td.url, "s1", "HTTP"); code != 200 {
		t.Fatalf("allowed client after reload: %d", code)
	}
}

func TestDaemonMetrics(t *testing.T) {
	fake := ec2fake.NewServer()
	defer fake.Close()
	fake.Put("us-east-1", dcvHost("i-1", "s1"))
	fake.Put("us-east-1", dcvHost("i-2", "bad", "dcv:http-port", "0"))
	td := startDaemon(t, ec2Config(fake.URL(), "")+"\n[metrics]\nlisten = \"127.0.0.1:0\"\n", nil)
	eventually(t, "readiness", func() bool { code, _ := get(t, testClient, td.url+"/readyz"); return code == 200 })
	resolveReq(t, testClient, td.url, "s1", "HTTP")
	resolveReq(t, testClient, td.url, "nope", "HTTP")
	resp, _ := testClient.Post(td.url+"/resolveSession?transport=HTTP", "", nil)
	resp.Body.Close()

	_, body := get(t, testClient, "http://"+td.metricsListener.Addr().String()+"/metrics")
	for _, want := range []string{
		`dcv_resolver_resolve_requests_total{outcome="hit"} 1`,
		`dcv_resolver_resolve_requests_total{outcome="not-found"} 1`,
		`dcv_resolver_resolve_requests_total{outcome="bad-request"} 1`,
		`dcv_resolver_index_sessions{source="us-east-1"} 1`,
		`dcv_resolver_index_instances{source="us-east-1"} 1`,
		`dcv_resolver_polls_total{result="success",source="us-east-1"}`,
		`dcv_resolver_last_successful_poll_timestamp_seconds{source="us-east-1"}`,
		`dcv_resolver_poll_duration_seconds_count{source="us-east-1"}`,
		`dcv_resolver_ec2_api_calls_total{operation="DescribeInstances",region="us-east-1"}`,
		`dcv_resolver_dropped_instances_total{reason="bad-tag",region="us-east-1"}`,
		`dcv_resolver_on_miss_lookups_total{result="not-found"} 1`,
		`dcv_resolver_resolve_duration_seconds_bucket`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// The metrics are not on the resolver port.
	if code, _ := get(t, testClient, td.url+"/metrics"); code != 404 {
		t.Errorf("/metrics on the resolver listener: %d, want 404", code)
	}
}

func TestDaemonFloodOfUnknownIDs(t *testing.T) {
	fake := ec2fake.NewServer()
	defer fake.Close()
	fake.Put("us-east-1", dcvHost("i-1", "known"))
	cfg := strings.Replace(ec2Config(fake.URL(), "negative-cache-size = 1000"), `"100ms"`, `"10s"`, 1)
	td := startDaemon(t, cfg, nil)
	eventually(t, "readiness", func() bool { code, _ := get(t, testClient, td.url+"/readyz"); return code == 200 })
	start := time.Now()
	const ids, workers = 20000, 8
	var wg sync.WaitGroup
	var mu sync.Mutex
	notFound := 0
	for w := range workers {
		wg.Go(func() {
			client := &http.Client{Timeout: 10 * time.Second}
			for i := w; i < ids; i += workers {
				code, _ := resolveReq(t, client, td.url, fmt.Sprintf("random-%d", i), "HTTP")
				if code == 404 {
					mu.Lock()
					notFound++
					mu.Unlock()
				}
				if i%1000 == 0 {
					if code, _ := resolveReq(t, client, td.url, "known", "QUIC"); code != 200 {
						t.Errorf("known session during the flood: %d", code)
					}
				}
			}
			client.CloseIdleConnections()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if notFound != ids {
		t.Fatalf("%d of %d random IDs got 404", notFound, ids)
	}
	// Lookups are bounded by the bucket: burst 5 plus 2 per second.
	budget := 5 + int(2*elapsed.Seconds()) + 2
	lookups := 0
	for _, r := range fake.Requests() {
		if _, ok := r.FilterValues("tag:dcv:session-id"); ok {
			lookups++
		}
	}
	if lookups > budget {
		t.Fatalf("%d EC2 calls for the flood in %v; the on-miss budget allows %d", lookups, elapsed, budget)
	}
	if n := td.resolver.NegativeCacheLen(); n > 1000 {
		t.Fatalf("negative cache grew to %d entries past its bound", n)
	}
}
