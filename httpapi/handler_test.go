package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/dcv-ec2-resolver/dcv-ec2-resolver/discovery"
	"github.com/dcv-ec2-resolver/dcv-ec2-resolver/resolve"
)

// fakeResolver answers from a fixed map and records every session ID it is asked about. Like
// the real resolver it answers Invalid, without looking anything up, for IDs that can never
// exist.
type fakeResolver struct {
	targets map[string]*discovery.Target

	mu    sync.Mutex
	calls []string
}

func (f *fakeResolver) Resolve(_ context.Context, id string) resolve.Result {
	f.mu.Lock()
	f.calls = append(f.calls, id)
	f.mu.Unlock()
	if t, ok := f.targets[id]; ok {
		return resolve.Result{Target: t, Outcome: resolve.Hit}
	}
	if discovery.ValidateSessionID(id) != nil {
		return resolve.Result{Outcome: resolve.Invalid}
	}
	return resolve.Result{Outcome: resolve.Unknown}
}

func (f *fakeResolver) takeCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

var (
	hostA   = &discovery.Target{SessionIDs: []string{"s1"}, Host: "dcv1.example.com", HTTPPort: 8443, QUICPort: 9443, WebURLPath: "/"}
	console = &discovery.Target{SessionIDs: []string{"desk"}, ServerSessionID: "console", Host: "10.0.0.5", HTTPPort: 443, QUICPort: 443, WebURLPath: "/dcv"}
	v6Host  = &discovery.Target{SessionIDs: []string{"v6"}, Host: "2001:db8::5", HTTPPort: 8443, QUICPort: 8443, WebURLPath: "/"}
)

// specialIDs are session IDs the index may hold that need escaping in URLs or JSON.
var specialIDs = []string{
	"a/b", "a b", "a+b", "100%", "a&b=c", "a?b#c", `quo"te`, `back\slash`, "<script>", "x&amp;y",
	"日本語", "émoji-😀", "line\u2028sep\u2029", "'single'", "semi;colon", "tab-less~!@$^*()",
	strings.Repeat("z", discovery.MaxSessionIDLength),
}

func newFake() *fakeResolver {
	f := &fakeResolver{targets: map[string]*discovery.Target{"s1": hostA, "desk": console, "v6": v6Host}}
	for _, id := range specialIDs {
		f.targets[id] = &discovery.Target{SessionIDs: []string{id}, Host: "special.example", HTTPPort: 1, QUICPort: 2, WebURLPath: "/p"}
	}
	return f
}

// resolveBody is the gateway's answer; its field order is the protocol's, so json.Marshal of it
// gives the exact bytes the handler must write.
type resolveBody struct {
	SessionId         string
	TransportProtocol string
	DcvServerEndpoint string
	Port              int
	WebUrlPath        string
}

func marshal(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkJSONBody decodes a 200 body strictly: exactly the five protocol keys, nothing else.
func checkJSONBody(t *testing.T, body []byte) resolveBody {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var rb resolveBody
	if err := dec.Decode(&rb); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
	if dec.More() {
		t.Fatalf("trailing data after the JSON object in %q", body)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	if len(m) != 5 {
		t.Fatalf("body has keys %q, want exactly five", keys)
	}
	for _, k := range []string{"SessionId", "TransportProtocol", "DcvServerEndpoint", "Port", "WebUrlPath"} {
		if _, ok := m[k]; !ok {
			t.Fatalf("body %q lacks key %q (case matters)", body, k)
		}
	}
	if p := string(m["Port"]); strings.ContainsAny(p, `".eE`) {
		t.Errorf("Port %s is not a plain integer", p)
	}
	return rb
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// A doer sends one request to the handler, either through httptest.NewRecorder or over a real
// loopback connection to an httptest.Server.
type doer func(t *testing.T, method, target, body string) response

func recorderDoer(h http.Handler) doer {
	return func(t *testing.T, method, target, body string) response {
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req := httptest.NewRequest(method, target, rd)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		res := rec.Result()
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return response{res.StatusCode, res.Header, b}
	}
}

func serverDoer(t *testing.T, h http.Handler) doer {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	client := srv.Client()
	return func(t *testing.T, method, target, body string) response {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequest(method, srv.URL+target, rd)
		if err != nil {
			t.Fatal(err)
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return response{res.StatusCode, res.Header, b}
	}
}

const (
	textPlain = "text/plain; charset=utf-8"
	appJSON   = "application/json"
)

func TestResolveProtocol(t *testing.T) {
	long := strings.Repeat("x", discovery.MaxSessionIDLength+1)
	tests := []struct {
		name           string
		method, target string
		body           string   // request body
		status         int      // want
		resBody        string   // want, exactly
		calls          []string // session IDs the resolver must see; nil: not asked
	}{
		// Found.
		{"HTTP hit", "POST", "/resolveSession?sessionId=s1&transport=HTTP&clientIpAddress=192.0.2.10", "", 200,
			`{"SessionId":"s1","TransportProtocol":"HTTP","DcvServerEndpoint":"dcv1.example.com","Port":8443,"WebUrlPath":"/"}`, []string{"s1"}},
		{"QUIC hit picks the QUIC port", "POST", "/resolveSession?sessionId=s1&transport=QUIC&clientIpAddress=192.0.2.10", "", 200,
			`{"SessionId":"s1","TransportProtocol":"QUIC","DcvServerEndpoint":"dcv1.example.com","Port":9443,"WebUrlPath":"/"}`, []string{"s1"}},
		{"server session ID replaces SessionId", "POST", "/resolveSession?sessionId=desk&transport=HTTP", "", 200,
			`{"SessionId":"console","TransportProtocol":"HTTP","DcvServerEndpoint":"10.0.0.5","Port":443,"WebUrlPath":"/dcv"}`, []string{"desk"}},
		{"IPv6 endpoint", "POST", "/resolveSession?sessionId=v6&transport=QUIC", "", 200,
			`{"SessionId":"v6","TransportProtocol":"QUIC","DcvServerEndpoint":"2001:db8::5","Port":8443,"WebUrlPath":"/"}`, []string{"v6"}},
		{"parameters in any order", "POST", "/resolveSession?clientIpAddress=192.0.2.10&transport=HTTP&sessionId=s1", "", 200,
			`{"SessionId":"s1","TransportProtocol":"HTTP","DcvServerEndpoint":"dcv1.example.com","Port":8443,"WebUrlPath":"/"}`, []string{"s1"}},
		{"no clientIpAddress", "POST", "/resolveSession?sessionId=s1&transport=HTTP", "", 200,
			`{"SessionId":"s1","TransportProtocol":"HTTP","DcvServerEndpoint":"dcv1.example.com","Port":8443,"WebUrlPath":"/"}`, []string{"s1"}},
		{"empty clientIpAddress", "POST", "/resolveSession?sessionId=s1&transport=HTTP&clientIpAddress=", "", 200,
			`{"SessionId":"s1","TransportProtocol":"HTTP","DcvServerEndpoint":"dcv1.example.com","Port":8443,"WebUrlPath":"/"}`, []string{"s1"}},
		{"IPv6 client", "POST", "/resolveSession?sessionId=s1&transport=HTTP&clientIpAddress=2001:db8::1", "", 200,
			`{"SessionId":"s1","TransportProtocol":"HTTP","DcvServerEndpoint":"dcv1.example.com","Port":8443,"WebUrlPath":"/"}`, []string{"s1"}},
		{"IPv6 client percent-encoded", "POST", "/resolveSession?sessionId=s1&transport=HTTP&clientIpAddress=2001%3Adb8%3A%3A1", "", 200,
			`{"SessionId":"s1","TransportProtocol":"HTTP","DcvServerEndpoint":"dcv1.example.com","Port":8443,"WebUrlPath":"/"}`, []string{"s1"}},
		{"IPv6 loopback client", "POST", "/resolveSession?sessionId=s1&transport=HTTP&clientIpAddress=::1", "", 200,
			`{"SessionId":"s1","TransportProtocol":"HTTP","DcvServerEndpoint":"dcv1.example.com","Port":8443,"WebUrlPath":"/"}`, []string{"s1"}},
		{"IPv4-mapped client", "POST", "/resolveSession?sessionId=s1&transport=HTTP&clientIpAddress=::ffff:192.0.2.1", "", 200,
			`{"SessionId":"s1","TransportProtocol":"HTTP","DcvServerEndpoint":"dcv1.example.com","Port":8443,"WebUrlPath":"/"}`, []string{"s1"}},
		{"request body ignored", "POST", "/resolveSession?sessionId=s1&transport=HTTP", `{"sessionId":"other"}`, 200,
			`{"SessionId":"s1","TransportProtocol":"HTTP","DcvServerEndpoint":"dcv1.example.com","Port":8443,"WebUrlPath":"/"}`, []string{"s1"}},
		{"first occurrence wins", "POST", "/resolveSession?sessionId=s1&sessionId=desk&transport=QUIC&transport=bogus", "", 200,
			`{"SessionId":"s1","TransportProtocol":"QUIC","DcvServerEndpoint":"dcv1.example.com","Port":9443,"WebUrlPath":"/"}`, []string{"s1"}},
		{"unknown parameters ignored", "POST", "/resolveSession?x=1&sessionId=s1&foo&transport=HTTP&bar=%zz", "", 200,
			`{"SessionId":"s1","TransportProtocol":"HTTP","DcvServerEndpoint":"dcv1.example.com","Port":8443,"WebUrlPath":"/"}`, []string{"s1"}},
		{"percent-encoded slash", "POST", "/resolveSession?sessionId=a%2Fb&transport=HTTP", "", 200,
			`{"SessionId":"a/b","TransportProtocol":"HTTP","DcvServerEndpoint":"special.example","Port":1,"WebUrlPath":"/p"}`, []string{"a/b"}},
		{"plus is a space", "POST", "/resolveSession?sessionId=a+b&transport=QUIC", "", 200,
			`{"SessionId":"a b","TransportProtocol":"QUIC","DcvServerEndpoint":"special.example","Port":2,"WebUrlPath":"/p"}`, []string{"a b"}},
		{"encoded plus", "POST", "/resolveSession?sessionId=a%2Bb&transport=HTTP", "", 200,
			`{"SessionId":"a+b","TransportProtocol":"HTTP","DcvServerEndpoint":"special.example","Port":1,"WebUrlPath":"/p"}`, []string{"a+b"}},
		{"encoded transport", "POST", "/resolveSession?sessionId=s1&transport=%48TTP", "", 200,
			`{"SessionId":"s1","TransportProtocol":"HTTP","DcvServerEndpoint":"dcv1.example.com","Port":8443,"WebUrlPath":"/"}`, []string{"s1"}},
		{"JSON-escaped quote", "POST", "/resolveSession?sessionId=quo%22te&transport=HTTP", "", 200,
			`{"SessionId":"quo\"te","TransportProtocol":"HTTP","DcvServerEndpoint":"special.example","Port":1,"WebUrlPath":"/p"}`, []string{`quo"te`}},
		{"HTML-escaped", "POST", "/resolveSession?sessionId=%3Cscript%3E&transport=HTTP", "", 200,
			`{"SessionId":"\u003cscript\u003e","TransportProtocol":"HTTP","DcvServerEndpoint":"special.example","Port":1,"WebUrlPath":"/p"}`, []string{"<script>"}},

		// Not found.
		{"unknown session", "POST", "/resolveSession?sessionId=nope&transport=HTTP", "", 404, "session not found\n", []string{"nope"}},
		{"case matters", "POST", "/resolveSession?sessionId=S1&transport=HTTP", "", 404, "session not found\n", []string{"S1"}},
		{"too long", "POST", "/resolveSession?sessionId=" + long + "&transport=HTTP", "", 404, "session not found\n", []string{long}},
		{"NUL", "POST", "/resolveSession?sessionId=a%00b&transport=HTTP", "", 404, "session not found\n", []string{"a\x00b"}},
		{"newline", "POST", "/resolveSession?sessionId=a%0Ab&transport=QUIC", "", 404, "session not found\n", []string{"a\nb"}},
		{"invalid UTF-8", "POST", "/resolveSession?sessionId=%FF&transport=HTTP", "", 404, "session not found\n", []string{"\xff"}},
		{"overlong UTF-8", "POST", "/resolveSession?sessionId=%C0%80&transport=HTTP", "", 404, "session not found\n", []string{"\xc0\x80"}},

		// Bad requests: the resolver is never asked.
		{"no query", "POST", "/resolveSession", "", 400, "missing sessionId\n", nil},
		{"missing sessionId", "POST", "/resolveSession?transport=HTTP", "", 400, "missing sessionId\n", nil},
		{"empty sessionId", "POST", "/resolveSession?sessionId=&transport=HTTP", "", 400, "missing sessionId\n", nil},
		{"sessionId without value", "POST", "/resolveSession?sessionId&transport=HTTP", "", 400, "missing sessionId\n", nil},
		{"empty first sessionId wins", "POST", "/resolveSession?sessionId=&sessionId=s1&transport=HTTP", "", 400, "missing sessionId\n", nil},
		{"parameter name case", "POST", "/resolveSession?sessionid=s1&transport=HTTP", "", 400, "missing sessionId\n", nil},
		{"missing sessionId reported first", "POST", "/resolveSession?transport=bogus&clientIpAddress=bogus", "", 400, "missing sessionId\n", nil},
		{"missing transport", "POST", "/resolveSession?sessionId=s1", "", 400, "transport must be HTTP or QUIC\n", nil},
		{"empty transport", "POST", "/resolveSession?sessionId=s1&transport=", "", 400, "transport must be HTTP or QUIC\n", nil},
		{"lower-case transport", "POST", "/resolveSession?sessionId=s1&transport=http", "", 400, "transport must be HTTP or QUIC\n", nil},
		{"HTTPS transport", "POST", "/resolveSession?sessionId=s1&transport=HTTPS", "", 400, "transport must be HTTP or QUIC\n", nil},
		{"UDP transport", "POST", "/resolveSession?sessionId=s1&transport=UDP", "", 400, "transport must be HTTP or QUIC\n", nil},
		{"transport with space", "POST", "/resolveSession?sessionId=s1&transport=QUIC+", "", 400, "transport must be HTTP or QUIC\n", nil},
		{"transport checked before IP", "POST", "/resolveSession?sessionId=s1&transport=x&clientIpAddress=bogus", "", 400, "transport must be HTTP or QUIC\n", nil},
		{"client IP not an IP", "POST", "/resolveSession?sessionId=s1&transport=HTTP&clientIpAddress=client.example", "", 400, "clientIpAddress is not an IP address\n", nil},
		{"client IP with port", "POST", "/resolveSession?sessionId=s1&transport=HTTP&clientIpAddress=192.0.2.1:5000", "", 400, "clientIpAddress is not an IP address\n", nil},
		{"client IP short", "POST", "/resolveSession?sessionId=s1&transport=HTTP&clientIpAddress=192.0.2", "", 400, "clientIpAddress is not an IP address\n", nil},
		{"client IP bracketed", "POST", "/resolveSession?sessionId=s1&transport=HTTP&clientIpAddress=%5B::1%5D", "", 400, "clientIpAddress is not an IP address\n", nil},
		{"client IP space", "POST", "/resolveSession?sessionId=s1&transport=HTTP&clientIpAddress=+192.0.2.1", "", 400, "clientIpAddress is not an IP address\n", nil},
		{"malformed escape in sessionId", "POST", "/resolveSession?sessionId=a%zzb&transport=HTTP", "", 400, "malformed query string\n", nil},
		{"truncated escape", "POST", "/resolveSession?sessionId=s1&transport=HTTP&clientIpAddress=%2", "", 400, "malformed query string\n", nil},

		// Methods and paths.
		{"GET", "GET", "/resolveSession?sessionId=s1&transport=HTTP", "", 405, "method not allowed: use POST\n", nil},
		{"PUT", "PUT", "/resolveSession?sessionId=s1&transport=HTTP", "x", 405, "method not allowed: use POST\n", nil},
		{"DELETE", "DELETE", "/resolveSession?sessionId=s1&transport=HTTP", "", 405, "method not allowed: use POST\n", nil},
		{"HEAD", "HEAD", "/resolveSession?sessionId=s1&transport=HTTP", "", 405, "method not allowed: use POST\n", nil},
		{"GET without query", "GET", "/resolveSession", "", 405, "method not allowed: use POST\n", nil},
		{"root", "POST", "/?sessionId=s1&transport=HTTP", "", 404, "not found\n", nil},
		{"trailing slash", "POST", "/resolveSession/?sessionId=s1&transport=HTTP", "", 404, "not found\n", nil},
		{"path case", "POST", "/resolvesession?sessionId=s1&transport=HTTP", "", 404, "not found\n", nil},
		{"sub path", "POST", "/resolveSession/s1?transport=HTTP", "", 404, "not found\n", nil},
		{"prefix", "POST", "/api/resolveSession?sessionId=s1&transport=HTTP", "", 404, "not found\n", nil},
		{"other path with GET", "GET", "/sessions", "", 404, "not found\n", nil},
	}

	for _, mode := range []string{"recorder", "server"} {
		t.Run(mode, func(t *testing.T) {
			fake := newFake()
			h := NewHandler(fake, Options{})
			do := recorderDoer(h)
			if mode == "server" {
				do = serverDoer(t, h)
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					fake.takeCalls()
					res := do(t, tc.method, tc.target, tc.body)
					if res.status != tc.status {
						t.Errorf("status %d, want %d (body %q)", res.status, tc.status, res.body)
					}
					wantBody := tc.resBody
					if tc.method == "HEAD" && mode == "server" {
						wantBody = "" // the server drops HEAD bodies
					}
					if string(res.body) != wantBody {
						t.Errorf("body\n%s\nwant\n%s", res.body, wantBody)
					}
					wantCT := textPlain
					if tc.status == 200 {
						wantCT = appJSON
						checkJSONBody(t, res.body)
					}
					if ct := res.header.Values("Content-Type"); len(ct) != 1 || ct[0] != wantCT {
						t.Errorf("Content-Type %q, want %q", ct, wantCT)
					}
					if got := res.header.Get("X-Content-Type-Options"); got != "nosniff" {
						t.Errorf("X-Content-Type-Options %q", got)
					}
					allow := res.header.Values("Allow")
					if tc.status == 405 {
						if len(allow) != 1 || allow[0] != "POST" {
							t.Errorf("Allow %q, want POST", allow)
						}
					} else if len(allow) != 0 {
						t.Errorf("Allow %q on a %d", allow, res.status)
					}
					if calls := fake.takeCalls(); !reflect.DeepEqual(calls, tc.calls) {
						t.Errorf("resolver asked %q, want %q", calls, tc.calls)
					}
				})
			}
		})
	}
}

// TestResolveSpecialSessionIDs sends every awkward session ID the way a client would encode it
// and checks the answer decodes back to the same ID, byte for byte what encoding/json writes.
func TestResolveSpecialSessionIDs(t *testing.T) {
	fake := newFake()
	h := NewHandler(fake, Options{})
	for _, mode := range []string{"recorder", "server"} {
		do := recorderDoer(h)
		if mode == "server" {
			do = serverDoer(t, h)
		}
		for _, id := range specialIDs {
			for _, transport := range []string{"HTTP", "QUIC"} {
				q := url.Values{"sessionId": {id}, "transport": {transport}, "clientIpAddress": {"2001:db8::7"}}
				// Both encodings a client may use for a space: "+" and "%20".
				for _, target := range []string{"/resolveSession?" + q.Encode(), "/resolveSession?" + strings.ReplaceAll(q.Encode(), "+", "%20")} {
					res := do(t, "POST", target, "")
					if res.status != 200 {
						t.Errorf("%s %q: status %d (%q)", mode, target, res.status, res.body)
						continue
					}
					got := checkJSONBody(t, res.body)
					port := 1
					if transport == "QUIC" {
						port = 2
					}
					want := resolveBody{SessionId: id, TransportProtocol: transport, DcvServerEndpoint: "special.example", Port: port, WebUrlPath: "/p"}
					if got != want {
						t.Errorf("%s %q: decoded %+v, want %+v", mode, target, got, want)
					}
					if w := marshal(t, want); string(res.body) != w {
						t.Errorf("%s %q: body\n%s\nencoding/json writes\n%s", mode, target, res.body, w)
					}
				}
			}
		}
		if calls := fake.takeCalls(); len(calls) != len(specialIDs)*4 {
			t.Errorf("%s: resolver asked %d times, want %d", mode, len(calls), len(specialIDs)*4)
		}
	}
}

// TestResolveWithRealResolver runs the handler over the real resolver and index, with an
// on-miss lookup that counts its calls: IDs that can never exist must not reach it.
func TestResolveWithRealResolver(t *testing.T) {
	index := resolve.NewIndex(nil, nil)
	index.Publish(resolve.Source{Name: "file", Pinned: true}, []discovery.Target{
		{SessionIDs: []string{"s1", "s2"}, Host: "dcv1.example.com", HTTPPort: 8443, QUICPort: 9443, WebURLPath: "/"},
		{SessionIDs: []string{"desk"}, ServerSessionID: "console", Host: "10.0.0.5", HTTPPort: 443, QUICPort: 443, WebURLPath: "/dcv"},
	}, time.Now())

	var mu sync.Mutex
	var looked []string
	lookup := func(_ context.Context, id string) ([]discovery.Target, error) {
		mu.Lock()
		looked = append(looked, id)
		mu.Unlock()
		switch id {
		case "late":
			return []discovery.Target{{SessionIDs: []string{"late"}, Host: "10.9.9.9", HTTPPort: 8443, QUICPort: 8443, WebURLPath: "/", InstanceID: "i-9"}}, nil
		case "boom":
			return nil, errors.New("EC2 is down")
		}
		return nil, nil
	}
	taken := func() []string {
		mu.Lock()
		defer mu.Unlock()
		l := looked
		looked = nil
		return l
	}
	// NegativeTTL 0: an expiring cache starts a goroutine that is never stopped (see
	// expirable.NewLRU), which goleak would report.
	cfg := resolve.MissConfig{Rate: 1000, Burst: 1000, Timeout: time.Second, NegativeSize: 100}
	res := resolve.NewResolver(index, lookup, cfg, nil)
	defer res.Close()

	core, logs := observer.New(zapcore.DebugLevel)
	h := NewHandler(res, Options{RequestLog: zap.New(core), RequestLogLevel: zapcore.InfoLevel})
	do := serverDoer(t, h)

	tests := []struct {
		target  string
		status  int
		outcome string
		lookups []string
	}{
		{"/resolveSession?sessionId=s2&transport=QUIC", 200, "hit", nil},
		{"/resolveSession?sessionId=desk&transport=HTTP", 200, "hit", nil},
		{"/resolveSession?sessionId=" + strings.Repeat("a", 257) + "&transport=HTTP", 404, "invalid", nil},
		{"/resolveSession?sessionId=" + strings.Repeat("%E6%97%A5", 86) + "&transport=HTTP", 404, "invalid", nil}, // 258 bytes
		{"/resolveSession?sessionId=a%00&transport=HTTP", 404, "invalid", nil},
		{"/resolveSession?sessionId=%1B%5B2J&transport=HTTP", 404, "invalid", nil},
		{"/resolveSession?sessionId=%C2%85&transport=HTTP", 404, "invalid", nil},
		{"/resolveSession?sessionId=%FF%FE&transport=QUIC", 404, "invalid", nil},
		{"/resolveSession?sessionId=%ED%A0%80&transport=QUIC", 404, "invalid", nil},
		{"/resolveSession?sessionId=" + strings.Repeat("a", 256) + "&transport=HTTP", 404, "not-found", []string{strings.Repeat("a", 256)}},
		{"/resolveSession?sessionId=unknown&transport=HTTP", 404, "not-found", []string{"unknown"}},
		{"/resolveSession?sessionId=unknown&transport=HTTP", 404, "negative-cached", nil},
		{"/resolveSession?sessionId=boom&transport=HTTP", 404, "lookup-failed", []string{"boom"}},
		{"/resolveSession?sessionId=late&transport=HTTP", 200, "miss-found", []string{"late"}},
		{"/resolveSession?sessionId=late&transport=QUIC", 200, "hit", nil},
		{"/resolveSession?sessionId=s1&transport=TCP", 400, "bad-request", nil},
	}
	for _, tc := range tests {
		logs.TakeAll()
		r := do(t, "POST", tc.target, "")
		if r.status != tc.status {
			t.Errorf("%.80s: status %d, want %d", tc.target, r.status, tc.status)
		}
		if r.status == 200 {
			checkJSONBody(t, r.body)
		}
		if got := taken(); !reflect.DeepEqual(got, tc.lookups) {
			t.Errorf("%.80s: lookups %q, want %q", tc.target, got, tc.lookups)
		}
		entries := logs.FilterMessage("resolve").AllUntimed()
		if len(entries) != 1 {
			t.Fatalf("%.80s: %d request log lines", tc.target, len(entries))
		}
		if got := entries[0].ContextMap()["outcome"]; got != tc.outcome {
			t.Errorf("%.80s: outcome %v, want %s", tc.target, got, tc.outcome)
		}
	}
}

func TestRequestLog(t *testing.T) {
	tests := []struct {
		name       string
		target     string
		status     int
		fields     map[string]any // must be present with these values
		extraField string         // one more field that must be present
	}{
		{"hit", "/resolveSession?sessionId=s1&transport=QUIC&clientIpAddress=2001:db8::1", 200,
			map[string]any{"session": "s1", "transport": "QUIC", "client_ip": "2001:db8::1", "outcome": "hit", "status": int64(200), "host": "dcv1.example.com"}, "host"},
		{"unknown", "/resolveSession?sessionId=nope&transport=HTTP&clientIpAddress=192.0.2.1", 404,
			map[string]any{"session": "nope", "transport": "HTTP", "client_ip": "192.0.2.1", "outcome": "unknown", "status": int64(404)}, ""},
		{"invalid", "/resolveSession?sessionId=a%00b&transport=HTTP", 404,
			map[string]any{"session": "a\x00b", "transport": "HTTP", "client_ip": "", "outcome": "invalid", "status": int64(404)}, ""},
		{"bad request", "/resolveSession?sessionId=s1&transport=FTP&clientIpAddress=192.0.2.1", 400,
			map[string]any{"session": "s1", "transport": "FTP", "client_ip": "192.0.2.1", "outcome": "bad-request", "status": int64(400), "reason": "transport must be HTTP or QUIC"}, "reason"},
	}
	for _, tc := range tests {
		for _, level := range []zapcore.Level{zapcore.InfoLevel, zapcore.WarnLevel} {
			t.Run(tc.name+"/"+level.String(), func(t *testing.T) {
				core, logs := observer.New(zapcore.InfoLevel)
				h := NewHandler(newFake(), Options{RequestLog: zap.New(core), RequestLogLevel: level})
				res := recorderDoer(h)(t, "POST", tc.target, "")
				if res.status != tc.status {
					t.Fatalf("status %d, want %d", res.status, tc.status)
				}
				entries := logs.AllUntimed()
				if len(entries) != 1 {
					t.Fatalf("%d log entries, want 1: %v", len(entries), entries)
				}
				e := entries[0]
				if e.Level != level || e.Message != "resolve" {
					t.Errorf("entry %v %q, want %v \"resolve\"", e.Level, e.Message, level)
				}
				m := e.ContextMap()
				for k, v := range tc.fields {
					if m[k] != v {
						t.Errorf("field %s = %#v, want %#v", k, m[k], v)
					}
				}
				want := 6 // session, transport, client_ip, outcome, status, latency
				if tc.extraField != "" {
					want++
				}
				if len(e.Context) != want {
					t.Errorf("%d fields %v, want %d", len(e.Context), m, want)
				}
				var latency *zapcore.Field
				for i := range e.Context {
					if e.Context[i].Key == "latency" {
						latency = &e.Context[i]
					}
				}
				if latency == nil || latency.Type != zapcore.DurationType || time.Duration(latency.Integer) < 0 || time.Duration(latency.Integer) > 10*time.Second {
					t.Errorf("latency field %+v, want a small duration", latency)
				}
			})
		}
	}

	t.Run("below the logger's level", func(t *testing.T) {
		core, logs := observer.New(zapcore.InfoLevel)
		h := NewHandler(newFake(), Options{RequestLog: zap.New(core), RequestLogLevel: zapcore.DebugLevel})
		for _, target := range []string{"/resolveSession?sessionId=s1&transport=HTTP", "/resolveSession?sessionId=x&transport=HTTP", "/resolveSession?transport=HTTP"} {
			recorderDoer(h)(t, "POST", target, "")
		}
		if n := logs.Len(); n != 0 {
			t.Errorf("%d entries logged at debug under an info logger: %v", n, logs.AllUntimed())
		}
	})

	t.Run("not for other paths and methods", func(t *testing.T) {
		core, logs := observer.New(zapcore.DebugLevel)
		h := NewHandler(newFake(), Options{RequestLog: zap.New(core), RequestLogLevel: zapcore.InfoLevel})
		recorderDoer(h)(t, "GET", "/resolveSession?sessionId=s1&transport=HTTP", "")
		recorderDoer(h)(t, "POST", "/other", "")
		if n := logs.Len(); n != 0 {
			t.Errorf("%d entries: %v", n, logs.AllUntimed())
		}
	})

	t.Run("nil logger", func(t *testing.T) {
		h := NewHandler(newFake(), Options{RequestLogLevel: zapcore.ErrorLevel})
		if res := recorderDoer(h)(t, "POST", "/resolveSession?sessionId=s1&transport=HTTP", ""); res.status != 200 {
			t.Errorf("status %d", res.status)
		}
	})
}

func TestConcurrentRequests(t *testing.T) {
	srv := httptest.NewServer(NewHandler(newFake(), Options{}))
	defer srv.Close()
	client := srv.Client()
	post := func(id, transport string) (string, error) {
		res, err := client.Post(srv.URL+"/resolveSession?sessionId="+id+"&transport="+transport, "", nil)
		if err != nil {
			return "", err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		return string(b), err
	}
	want := map[string]string{
		"s1":   `{"SessionId":"s1","TransportProtocol":"HTTP","DcvServerEndpoint":"dcv1.example.com","Port":8443,"WebUrlPath":"/"}`,
		"desk": `{"SessionId":"console","TransportProtocol":"QUIC","DcvServerEndpoint":"10.0.0.5","Port":443,"WebUrlPath":"/dcv"}`,
	}
	var wg sync.WaitGroup
	var bad atomic.Int32
	errs := make(chan error, 16)
	for i := 0; i < 16; i++ {
		wg.Go(func() {
			for j := 0; j < 25; j++ {
				id, transport := "s1", "HTTP"
				if (i+j)%2 == 1 {
					id, transport = "desk", "QUIC"
				}
				body, err := post(id, transport)
				if err != nil {
					errs <- err
					return
				}
				if body != want[id] {
					bad.Add(1)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := bad.Load(); n != 0 {
		t.Errorf("%d wrong answers under concurrency (pooled buffer reused too early?)", n)
	}
}

// jsonStrings are appendJSONString's test inputs: every ASCII byte, the characters
// encoding/json treats specially, and multi-byte UTF-8.
func jsonStrings() []string {
	s := []string{
		"", "plain", `"`, `\`, `\"`, "/", "<>&", "</script>", "\u2028", "\u2029", "a\u2028b\u2029c",
		"\u2027\u202a", "\xe2\x80", "end\xe2", "日本語", "😀", "\u007f", "\u0080", "\u00a0", "\ufeff", "\uffff",
		"tab\there", "new\nline", "cr\rlf\n", "nul\x00", "\x1f", "mixed <a href=\"x\">&amp;</a>\n\t\\",
		strings.Repeat("long-ascii-", 40), strings.Repeat("é\u2028", 50),
	}
	for c := 0; c < 0x80; c++ {
		s = append(s, string(rune(c)), "x"+string(rune(c))+"y")
	}
	return s
}

// encodingJSON is what encoding/json writes for s, with \b and \f in the \u form: since Go 1.22
// encoding/json writes them as \b and \f, appendJSONString as \u0008 and \u000c (same value).
func encodingJSON(t testing.TB, s string) string {
	out := marshal(t, s)
	if !strings.ContainsAny(s, "\b\f") {
		return out
	}
	var b strings.Builder
	for i := 0; i < len(out); i++ {
		if out[i] == '\\' && i+1 < len(out) {
			switch out[i+1] {
			case 'b':
				b.WriteString(`\u0008`)
				i++
				continue
			case 'f':
				b.WriteString(`\u000c`)
				i++
				continue
			default:
				b.WriteByte(out[i])
				b.WriteByte(out[i+1])
				i++
				continue
			}
		}
		b.WriteByte(out[i])
	}
	return b.String()
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range jsonStrings() {
		got := appendJSONString([]byte("prefix"), s)
		if !bytes.HasPrefix(got, []byte("prefix")) {
			t.Fatalf("%q: prefix lost: %q", s, got)
		}
		got = got[len("prefix"):]
		if !utf8.ValidString(s) {
			// Not reachable from requests (validated first); only check the result is still
			// delimited and leaves the bytes alone.
			if got[0] != '"' || got[len(got)-1] != '"' {
				t.Errorf("%q: %q is not quoted", s, got)
			}
			continue
		}
		if want := encodingJSON(t, s); string(got) != want {
			t.Errorf("appendJSONString(%q) = %s, encoding/json: %s", s, got, want)
		}
		var back string
		if err := json.Unmarshal(got, &back); err != nil || back != s {
			t.Errorf("appendJSONString(%q) = %s decodes to %q, %v", s, got, back, err)
		}
	}
}

func TestAppendResponse(t *testing.T) {
	got := appendResponse(nil, `a"b`, "QUIC", "h<1>", 65535, "/p&q")
	want := marshal(t, resolveBody{`a"b`, "QUIC", "h<1>", 65535, "/p&q"})
	if string(got) != want {
		t.Errorf("appendResponse = %s, want %s", got, want)
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "a", `"\`, "<>&", "\u2028\u2029", "\x00\x1f\x7f", "日本", "\xe2\x80\xa8x", "\b\f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := appendJSONString(nil, s)
		if !utf8.ValidString(s) {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("appendJSONString(%q) = %q is not valid JSON", s, out)
		}
		var back string
		if err := json.Unmarshal(out, &back); err != nil || back != s {
			t.Fatalf("appendJSONString(%q) = %q decodes to %q, %v", s, out, back, err)
		}
		if want := encodingJSON(t, s); string(out) != want {
			t.Fatalf("appendJSONString(%q) = %s, encoding/json: %s", s, out, want)
		}
	})
}
