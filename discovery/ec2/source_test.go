package ec2

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/smithy-go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/dcv-ec2-resolver/dcv-ec2-resolver/discovery"
	"github.com/dcv-ec2-resolver/dcv-ec2-resolver/discovery/ec2/ec2fake"
)

const region = "us-east-1"

var launched = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

// countingCreds hands out static keys and counts how often they were fetched.
type countingCreds struct{ n atomic.Int32 }

func (c *countingCreds) Retrieve(context.Context) (aws.Credentials, error) {
	c.n.Add(1)
	return aws.Credentials{AccessKeyID: "AKIDFAKE", SecretAccessKey: "fake", Source: "test"}, nil
}

func testClientConfig() ClientConfig {
	c := DefaultClientConfig()
	c.MaxAttempts, c.MaxBackoff, c.CallTimeout = 3, time.Millisecond, 2*time.Second
	return c
}

// newClient returns a real SDK EC2 client for region, pointed at the fake, with the same
// retryer, instrumentation and credential cache the daemon uses.
func newClient(t *testing.T, srv *ec2fake.Server, m *Metrics, log *zap.Logger) (*awsec2.Client, *countingCreds) {
	t.Helper()
	creds := &countingCreds{}
	cc := testClientConfig()
	cc.Endpoint, cc.Regions = srv.URL(), []string{region}
	cfg := aws.Config{Region: region, Credentials: aws.NewCredentialsCache(creds), Retryer: cc.NewRetryer,
		HTTPClient: newHTTPClient(cc.CallTimeout)}
	clients := NewClients(cfg, cc, m, log)
	if len(clients) != 1 || clients[0].Region != region {
		t.Fatalf("NewClients = %+v", clients)
	}
	return clients[0].Client, creds
}

func newTestSource(t *testing.T, srv *ec2fake.Server, opts Options, log *zap.Logger) *Source {
	t.Helper()
	client, _ := newClient(t, srv, opts.Metrics, log)
	if opts.Tags == (discovery.TagKeys{}) {
		opts.Tags = discovery.DefaultTagKeys()
	}
	if opts.Defaults == (discovery.Defaults{}) {
		opts.Defaults = discovery.DefaultDefaults()
	}
	return NewSource(region, client, opts, log)
}

func instance(id, sessions string, extra ...string) ec2fake.Instance {
	tags := map[string]string{"dcv:session-id": sessions}
	for i := 0; i+1 < len(extra); i += 2 {
		tags[extra[i]] = extra[i+1]
	}
	n := strings.TrimPrefix(id, "i-")
	return ec2fake.Instance{
		ID: id, PrivateDNS: "ip-" + n + ".ec2.internal", PrivateIP: "10.0.0." + n,
		LaunchTime: launched, Tags: tags,
	}
}

func byInstance(targets []discovery.Target) map[string]discovery.Target {
	m := make(map[string]discovery.Target, len(targets))
	for _, t := range targets {
		m[t.InstanceID] = t
	}
	return m
}

func TestPollTurnsTagsIntoTargets(t *testing.T) {
	srv := ec2fake.NewServer()
	defer srv.Close()
	srv.Put(region, instance("i-1", "s1"))
	srv.Put(region, instance("i-2", "a, b c,,d", "dcv:server-session-id", "console",
		"dcv:http-port", "9443", "dcv:quic-port", "9444", "dcv:web-url-path", "/dcv"))
	srv.Put(region, instance("i-3", "only-http", "dcv:http-port", "8080"))
	stopped := instance("i-4", "stopped-session")
	stopped.State = "stopped"
	srv.Put(region, stopped)
	untagged := instance("i-5", "")
	untagged.Tags = map[string]string{"Name": "not a dcv host"}
	srv.Put(region, untagged)

	src := newTestSource(t, srv, Options{}, nil)
	targets, err := src.Poll(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := byInstance(targets)
	if len(got) != 3 {
		t.Fatalf("got %d targets %v, want i-1..i-3 (not the stopped or untagged ones)", len(got), got)
	}
	want := map[string]discovery.Target{
		"i-1": {SessionIDs: []string{"s1"}, Host: "ip-1.ec2.internal", HTTPPort: 8443, QUICPort: 8443, WebURLPath: "/"},
		"i-2": {SessionIDs: []string{"a", "b", "c", "d"}, ServerSessionID: "console", Host: "ip-2.ec2.internal",
			HTTPPort: 9443, QUICPort: 9444, WebURLPath: "/dcv"},
		"i-3": {SessionIDs: []string{"only-http"}, Host: "ip-3.ec2.internal", HTTPPort: 8080, QUICPort: 8080, WebURLPath: "/"},
	}
	for id, w := range want {
		g := got[id]
		w.InstanceID, w.Region, w.LaunchTime = id, region, launched
		if fmt.Sprint(g) != fmt.Sprint(w) {
			t.Errorf("%s:\n got %+v\nwant %+v", id, g, w)
		}
	}

	// The poll asked EC2 to do the filtering, a page at a time.
	reqs := srv.Requests()
	if len(reqs) != 1 || reqs[0].MaxResults != 1000 {
		t.Fatalf("requests %+v, want one with MaxResults=1000", reqs)
	}
	if v, ok := reqs[0].FilterValues("tag-key"); !ok || fmt.Sprint(v) != "[dcv:session-id]" {
		t.Errorf("tag-key filter = %v", v)
	}
	if v, ok := reqs[0].FilterValues("instance-state-name"); !ok || fmt.Sprint(v) != "[running]" {
		t.Errorf("instance-state-name filter = %v", v)
	}
}

func TestPollHonoursUserFiltersAndCustomTags(t *testing.T) {
	srv := ec2fake.NewServer()
	defer srv.Close()
	srv.Put(region, ec2fake.Instance{ID: "i-1", PrivateDNS: "a", Tags: map[string]string{"fleet:sid": "s1", "dcv:fleet": "prod"}})
	srv.Put(region, ec2fake.Instance{ID: "i-2", PrivateDNS: "b", Tags: map[string]string{"fleet:sid": "s2", "dcv:fleet": "dev"}})
	tags := discovery.DefaultTagKeys()
	tags.SessionID = "fleet:sid"
	src := newTestSource(t, srv, Options{Tags: tags, Filters: []Filter{{Name: "tag:dcv:fleet", Values: []string{"prod"}}}}, nil)
	targets, err := src.Poll(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(targets) != 1 || targets[0].InstanceID != "i-1" {
		t.Fatalf("got %+v, want only the prod instance", targets)
	}
}

func TestPollPagesThroughEveryInstance(t *testing.T) {
	srv := ec2fake.NewServer()
	defer srv.Close()
	const n = 2500
	insts := make([]ec2fake.Instance, n)
	for i := range insts {
		insts[i] = ec2fake.Instance{ID: fmt.Sprintf("i-%05d", i), PrivateDNS: fmt.Sprintf("h%d", i),
			Tags: map[string]string{"dcv:session-id": fmt.Sprintf("s%d", i)}}
	}
	srv.PutMany(region, insts)
	src := newTestSource(t, srv, Options{}, nil)
	targets, err := src.Poll(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, tg := range targets {
		seen[tg.SessionIDs[0]] = true
	}
	if len(targets) != n || len(seen) != n {
		t.Fatalf("%d targets, %d distinct sessions; want %d of each", len(targets), len(seen), n)
	}
	if calls := srv.Calls("DescribeInstances"); calls != 3 {
		t.Fatalf("%d DescribeInstances calls for %d instances, want ceil(n/1000) = 3", calls, n)
	}
}

func TestBadTagDropsOnlyThatInstance(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	m := NewMetrics(nil)
	srv := ec2fake.NewServer()
	defer srv.Close()
	srv.Put(region, instance("i-1", "good"))
	srv.Put(region, instance("i-2", "bad-port", "dcv:http-port", "70000"))
	srv.Put(region, instance("i-3", "bad-path", "dcv:web-url-path", "dcv"))
	srv.Put(region, instance("i-4", " , "))
	src := newTestSource(t, srv, Options{Metrics: m}, zap.New(core))
	targets, err := src.Poll(context.Background())
	if err != nil {
		t.Fatalf("a bad tag failed the poll: %v", err)
	}
	if len(targets) != 1 || targets[0].InstanceID != "i-1" {
		t.Fatalf("got %+v, want only i-1", targets)
	}
	entries := logs.FilterMessage("dropping instance with a bad tag").All()
	if len(entries) != 3 {
		t.Fatalf("%d warnings, want 3", len(entries))
	}
	lines := map[string]string{}
	for _, e := range entries {
		lines[fmt.Sprint(e.ContextMap()["instance"])] = fmt.Sprint(e.ContextMap()["error"])
	}
	for inst, tag := range map[string]string{"i-2": `dcv:http-port="70000"`, "i-3": `dcv:web-url-path="dcv"`, "i-4": `dcv:session-id=" , "`} {
		if !strings.Contains(lines[inst], tag) {
			t.Errorf("warning for %s is %q; it should name %s", inst, lines[inst], tag)
		}
	}
	if got := counterValue(t, m.dropped.WithLabelValues(region, "bad-tag")); got != 3 {
		t.Errorf("dropped bad-tag counter = %v, want 3", got)
	}
}

func TestAddressChoiceAndFallback(t *testing.T) {
	srv := ec2fake.NewServer()
	defer srv.Close()
	full := ec2fake.Instance{ID: "i-1", PrivateDNS: "ip-10-0-0-1.ec2.internal", PrivateIP: "10.0.0.1",
		PublicDNS: "ec2-198-51-100-1.compute-1.amazonaws.com", PublicIP: "198.51.100.1", IPv6: "2001:db8::1",
		Tags: map[string]string{"dcv:session-id": "s1"}}
	bare := ec2fake.Instance{ID: "i-2", PrivateIP: "10.0.0.2", Tags: map[string]string{"dcv:session-id": "s2"}}
	srv.Put(region, full)
	srv.Put(region, bare)
	for _, tc := range []struct {
		kind       AddressType
		full, bare string
	}{
		{AddressPrivateDNS, "ip-10-0-0-1.ec2.internal", "10.0.0.2"},
		{AddressPrivateIP, "10.0.0.1", "10.0.0.2"},
		{AddressPublicDNS, "ec2-198-51-100-1.compute-1.amazonaws.com", "10.0.0.2"},
		{AddressPublicIP, "198.51.100.1", "10.0.0.2"},
		{AddressIPv6, "2001:db8::1", "10.0.0.2"},
	} {
		core, logs := observer.New(zap.WarnLevel)
		src := newTestSource(t, srv, Options{Address: tc.kind}, zap.New(core))
		for range 2 {
			targets, err := src.Poll(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			got := byInstance(targets)
			if got["i-1"].Host != tc.full || got["i-2"].Host != tc.bare {
				t.Fatalf("%s: hosts %q and %q, want %q and %q", tc.kind, got["i-1"].Host, got["i-2"].Host, tc.full, tc.bare)
			}
		}
		fallbacks := logs.FilterMessage("instance has no address of the configured kind; using its private IP").Len()
		want := 1
		if tc.kind == AddressPrivateIP {
			want = 0
		}
		if fallbacks != want {
			t.Errorf("%s: %d fallback warnings over two polls, want %d (once per instance)", tc.kind, fallbacks, want)
		}
	}
	if err := AddressType("elastic").Validate(); err == nil {
		t.Error("unknown address kind accepted")
	}
}

func TestLookupFindsAFreshlyTaggedInstance(t *testing.T) {
	srv := ec2fake.NewServer()
	defer srv.Close()
	srv.Put(region, instance("i-1", "s10, s11"))
	src := newTestSource(t, srv, Options{}, nil)
	ctx := context.Background()

	got, err := src.Lookup(ctx, "s1")
	if err != nil || len(got) != 0 {
		t.Fatalf("s1 matched %+v (%v); s10 must not count as s1", got, err)
	}
	srv.SetTag(region, "i-1", "dcv:session-id", "s10, s1")
	got, err = src.Lookup(ctx, "s1")
	if err != nil || len(got) != 1 || got[0].InstanceID != "i-1" {
		t.Fatalf("freshly tagged s1: %+v, %v", got, err)
	}
	req := srv.Requests()[len(srv.Requests())-1]
	if _, ok := req.FilterValues("tag:dcv:session-id"); !ok {
		t.Fatalf("lookup did not filter on the session tag: %+v", req.Filters)
	}
	if v, _ := req.FilterValues("instance-state-name"); fmt.Sprint(v) != "[running]" {
		t.Fatalf("lookup did not filter on running: %+v", req.Filters)
	}
}

func TestLookupEscapesWildcards(t *testing.T) {
	srv := ec2fake.NewServer()
	defer srv.Close()
	srv.Put(region, instance("i-1", "abc"))
	srv.Put(region, instance("i-2", `x\y`))
	srv.Put(region, instance("i-3", "a*"))
	src := newTestSource(t, srv, Options{}, nil)
	for id, want := range map[string]string{"a*": "i-3", "?bc": "", "*": "", "a?c": "", `x\y`: "i-2", `x\\y`: ""} {
		got, err := src.Lookup(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		ids := ""
		for _, g := range got {
			ids += g.InstanceID
		}
		if ids != want {
			t.Errorf("Lookup(%q) found %q, want %q", id, ids, want)
		}
	}
	// Whatever the ID, the filter values it produces match only that ID.
	for _, v := range TagValuePatterns(`a*b?c\`) {
		if !strings.Contains(v, `a\*b\?c\\`) {
			t.Errorf("pattern %q lets a wildcard through", v)
		}
	}
}

func TestThrottlingIsRetriedAndCounted(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	m := NewMetrics(nil)
	srv := ec2fake.NewServer()
	defer srv.Close()
	srv.Put(region, instance("i-1", "s1"))
	srv.FailNext(2, 503, "RequestLimitExceeded")
	src := newTestSource(t, srv, Options{Metrics: m}, zap.New(core))
	targets, err := src.Poll(context.Background())
	if err != nil || len(targets) != 1 {
		t.Fatalf("throttled poll: %v, %d targets", err, len(targets))
	}
	if calls := srv.Calls("DescribeInstances"); calls != 3 {
		t.Fatalf("%d calls, want 2 throttled + 1", calls)
	}
	if got := counterValue(t, m.errors.WithLabelValues("DescribeInstances", region, "RequestLimitExceeded")); got != 2 {
		t.Errorf("throttling errors counted %v, want 2", got)
	}
	if got := counterValue(t, m.calls.WithLabelValues("DescribeInstances", region)); got != 3 {
		t.Errorf("calls counted %v, want 3", got)
	}
	if logs.FilterMessageSnippet("throttling").Len() != 1 {
		t.Errorf("throttling should be logged once per 10s, got %d lines", logs.FilterMessageSnippet("throttling").Len())
	}
}

func TestErrorsNameRegionAndCode(t *testing.T) {
	srv := ec2fake.NewServer()
	defer srv.Close()
	src := newTestSource(t, srv, Options{}, nil)
	for _, tc := range []struct {
		status int
		code   string
	}{{403, "UnauthorizedOperation"}, {500, "InternalError"}, {503, "Unavailable"}} {
		srv.SetFault(func(ec2fake.Request) *ec2fake.Fault { return &ec2fake.Fault{Status: tc.status, Code: tc.code} })
		_, err := src.Poll(context.Background())
		var apiErr smithy.APIError
		if !errors.As(err, &apiErr) || apiErr.ErrorCode() != tc.code || !strings.HasPrefix(err.Error(), "describe instances in us-east-1: ") {
			t.Errorf("%s: got %v", tc.code, err)
		}
	}
}

func TestAuthFailureRefreshesCredentials(t *testing.T) {
	srv := ec2fake.NewServer()
	defer srv.Close()
	srv.Put(region, instance("i-1", "s1"))
	client, creds := newClient(t, srv, nil, nil)
	src := NewSource(region, client, Options{Tags: discovery.DefaultTagKeys(), Defaults: discovery.DefaultDefaults()}, nil)
	ctx := context.Background()
	if _, err := src.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if n := creds.n.Load(); n != 1 {
		t.Fatalf("credentials fetched %d times for two good polls, want 1 (cached)", n)
	}
	srv.FailNext(1, 401, "AuthFailure")
	if _, err := src.Poll(ctx); err == nil {
		t.Fatal("AuthFailure not reported")
	}
	if _, err := src.Poll(ctx); err != nil {
		t.Fatalf("poll after rotation: %v", err)
	}
	if n := creds.n.Load(); n != 2 {
		t.Fatalf("credentials fetched %d times, want a fresh fetch after AuthFailure (2)", n)
	}
}

func TestEachPollHasItsOwnRetryQuota(t *testing.T) {
	srv := ec2fake.NewServer()
	defer srv.Close()
	srv.Put(region, instance("i-1", "s1"))
	client, _ := newClient(t, srv, nil, nil)
	cc := testClientConfig()
	cc.MaxAttempts = 1000 // let the quota, not the attempt limit, end the retries
	src := NewSource(region, client, Options{Tags: discovery.DefaultTagKeys(), Defaults: discovery.DefaultDefaults(),
		NewRetryer: cc.NewRetryer}, nil)
	srv.SetFault(func(ec2fake.Request) *ec2fake.Fault { return &ec2fake.Fault{Code: "InternalError"} })
	ctx := context.Background()
	for poll := 1; poll <= 2; poll++ {
		before := srv.Calls("DescribeInstances")
		_, err := src.Poll(ctx)
		if err == nil || !strings.Contains(err.Error(), "retry quota exceeded") {
			t.Fatalf("poll %d: %v, want the retry quota to run dry", poll, err)
		}
		// The standard quota (500 tokens) allows a few dozen retries a poll; a second poll
		// sharing the first one's empty quota would get none.
		if n := srv.Calls("DescribeInstances") - before; n < 20 {
			t.Fatalf("poll %d made only %d attempts: it did not start with a full quota", poll, n)
		}
	}
	srv.SetFault(nil)
	if targets, err := src.Poll(ctx); err != nil || len(targets) != 1 {
		t.Fatalf("poll after the outage: %v", err)
	}
}

func TestCheckPermission(t *testing.T) {
	srv := ec2fake.NewServer()
	defer srv.Close()
	src := newTestSource(t, srv, Options{}, nil)
	if err := src.CheckPermission(context.Background()); err != nil {
		t.Fatalf("permitted DryRun: %v", err)
	}
	if !srv.Requests()[0].DryRun {
		t.Fatal("the check did not set DryRun")
	}
	srv.SetFault(func(ec2fake.Request) *ec2fake.Fault { return &ec2fake.Fault{Code: "UnauthorizedOperation"} })
	if err := src.CheckPermission(context.Background()); !errors.Is(err, ErrPermissionDenied) {
		t.Fatalf("denied DryRun: %v, want ErrPermissionDenied", err)
	}
}

func TestPollRespectsContext(t *testing.T) {
	srv := ec2fake.NewServer()
	defer srv.Close()
	srv.SetFault(func(ec2fake.Request) *ec2fake.Fault { return &ec2fake.Fault{Hang: true} })
	src := newTestSource(t, srv, Options{}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := src.Poll(ctx); err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("hanging endpoint: %v after %v", err, time.Since(start))
	}
}

// TestFastEndpointNeverDropsConnections guards against the SDK race in which a request body
// closed early makes net/http drop the connection under the response (see newHTTPClient). A
// fake answering instantly on loopback triggered it on about every other call.
func TestFastEndpointNeverDropsConnections(t *testing.T) {
	srv := ec2fake.NewServer()
	defer srv.Close()
	srv.SetLatency(0)
	for i := range 100 {
		srv.Put(region, instance(fmt.Sprintf("i-%d", i), fmt.Sprintf("s%d", i)))
	}
	client, _ := newClient(t, srv, nil, nil)
	src := NewSource(region, client, Options{Tags: discovery.DefaultTagKeys(), Defaults: discovery.DefaultDefaults()}, nil)
	once := func(o *awsec2.Options) { o.Retryer = retry.AddWithMaxAttempts(o.Retryer, 1) }
	for i := range 200 {
		if _, err := src.api.DescribeInstances(context.Background(), &awsec2.DescribeInstancesInput{MaxResults: aws.Int32(1000)}, once); err != nil {
			t.Fatalf("call %d failed without retries: %v", i, err)
		}
	}
}

func TestEscapeFilterValue(t *testing.T) {
	for in, want := range map[string]string{"plain": "plain", "a*b": `a\*b`, "?": `\?`, `\`: `\\`, `*?\`: `\*\?\\`} {
		if got := EscapeFilterValue(in); got != want {
			t.Errorf("EscapeFilterValue(%q) = %q, want %q", in, got, want)
		}
	}
}
