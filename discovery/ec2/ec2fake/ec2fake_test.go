package ec2fake

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

const region = "us-east-1"

// newFake starts a server that is closed when the test ends.
func newFake(t testing.TB) *Server {
	t.Helper()
	srv := NewServer()
	t.Cleanup(srv.Close)
	if !strings.HasPrefix(srv.URL(), "http://127.0.0.1:") {
		t.Fatalf("URL() = %q, want loopback", srv.URL())
	}
	return srv
}

// newClient returns a real SDK client for srv in region, without retries
// unless the options say otherwise.
//
// Its HTTP client hides the request body's io.WriterTo method, which keeps
// the SDK race described at DefaultLatency from ever failing a request, so
// that tests without retries are deterministic. TestDefaultSDKClient covers
// the SDK's own HTTP client.
func newClient(t testing.TB, srv *Server, region string, optFns ...func(*ec2.Options)) *ec2.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	o := ec2.Options{
		Region:           region,
		BaseEndpoint:     aws.String(srv.URL()),
		Credentials:      credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
		RetryMaxAttempts: 1,
		HTTPClient:       &http.Client{Transport: readOnlyBodies{tr}},
	}
	for _, fn := range optFns {
		fn(&o)
	}
	return ec2.New(o)
}

// readOnlyBodies passes request bodies on with only Read and Close.
type readOnlyBodies struct{ base http.RoundTripper }

type readOnlyBody struct{ io.ReadCloser }

func (rt readOnlyBodies) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil && r.Body != http.NoBody {
		r2 := *r
		r2.Body = readOnlyBody{r.Body}
		r = &r2
	}
	return rt.base.RoundTrip(r)
}

// fastRetries uses the SDK's standard retryer (default attempts and
// retryable errors) with a tiny backoff.
func fastRetries(o *ec2.Options) {
	o.RetryMaxAttempts = 0
	o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
		so.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return time.Millisecond, nil })
	})
}

// describeAll pages through DescribeInstances and returns the instance IDs
// in order and the number of pages.
func describeAll(ctx context.Context, c *ec2.Client, in *ec2.DescribeInstancesInput) ([]string, int, error) {
	var ids []string
	pages := 0
	p := ec2.NewDescribeInstancesPaginator(c, in)
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return ids, pages, err
		}
		pages++
		for _, r := range out.Reservations {
			for _, inst := range r.Instances {
				ids = append(ids, aws.ToString(inst.InstanceId))
			}
		}
	}
	return ids, pages, nil
}

func filter(name string, values ...string) types.Filter {
	return types.Filter{Name: aws.String(name), Values: values}
}

// decodeErr returns err's EC2 error code and HTTP status, failing the test if
// err is not an API error.
func decodeErr(t *testing.T, err error) (code string, status int) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T) is not a smithy.APIError", err, err)
	}
	var re *awshttp.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("error %v has no HTTP response", err)
	}
	if re.ServiceRequestID() == "" {
		t.Errorf("error %v has no request ID", err)
	}
	return ae.ErrorCode(), re.HTTPStatusCode()
}

func TestDecodeAllFields(t *testing.T) {
	srv := newFake(t)
	launch := time.Date(2026, 11, 24, 10, 0, 0, 123456789, time.FixedZone("X", 3600))
	tags := map[string]string{
		"Name":                  "web <1> & \"two\" 'three'",
		"dcv:session-id":        "s1, s2\ts3\nline\r\nend",
		"unicode ключ":          "значение 🎉",
		"empty":                 "",
		"bad\x00control\x1futf": "bad\xffutf8",
	}
	srv.Put(region, Instance{
		ID:         "i-0123456789abcdef0",
		State:      "stopping",
		PrivateDNS: "ip-10-0-0-1.ec2.internal",
		PrivateIP:  "10.0.0.1",
		PublicDNS:  "ec2-1-2-3-4.compute-1.amazonaws.com",
		PublicIP:   "1.2.3.4",
		IPv6:       "2600:1f18::1",
		LaunchTime: launch,
		Tags:       tags,
	})
	tags["Name"] = "changed after Put" // Put copied the map

	out, err := newClient(t, srv, region).DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{})
	if err != nil {
		t.Fatal(err)
	}
	if out.NextToken != nil {
		t.Errorf("NextToken = %q, want none", *out.NextToken)
	}
	if len(out.Reservations) != 1 || len(out.Reservations[0].Instances) != 1 {
		t.Fatalf("got %d reservations, want 1 with 1 instance", len(out.Reservations))
	}
	res := out.Reservations[0]
	if !strings.HasPrefix(aws.ToString(res.ReservationId), "r-") || aws.ToString(res.OwnerId) != OwnerID {
		t.Errorf("reservation %q owner %q", aws.ToString(res.ReservationId), aws.ToString(res.OwnerId))
	}
	inst := res.Instances[0]
	for _, c := range []struct{ name, got, want string }{
		{"InstanceId", aws.ToString(inst.InstanceId), "i-0123456789abcdef0"},
		{"State.Name", string(inst.State.Name), "stopping"},
		{"PrivateDnsName", aws.ToString(inst.PrivateDnsName), "ip-10-0-0-1.ec2.internal"},
		{"PrivateIpAddress", aws.ToString(inst.PrivateIpAddress), "10.0.0.1"},
		{"PublicDnsName", aws.ToString(inst.PublicDnsName), "ec2-1-2-3-4.compute-1.amazonaws.com"},
		{"PublicIpAddress", aws.ToString(inst.PublicIpAddress), "1.2.3.4"},
		{"Ipv6Address", aws.ToString(inst.Ipv6Address), "2600:1f18::1"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if aws.ToInt32(inst.State.Code) != 64 {
		t.Errorf("State.Code = %d, want 64", aws.ToInt32(inst.State.Code))
	}
	if want := launch.Truncate(time.Millisecond); !aws.ToTime(inst.LaunchTime).Equal(want) {
		t.Errorf("LaunchTime = %v, want %v", aws.ToTime(inst.LaunchTime), want)
	}
	got := map[string]string{}
	for _, tag := range inst.Tags {
		got[aws.ToString(tag.Key)] = aws.ToString(tag.Value)
	}
	want := map[string]string{
		"Name":                      "web <1> & \"two\" 'three'",
		"dcv:session-id":            "s1, s2\ts3\nline\r\nend",
		"unicode ключ":              "значение 🎉",
		"empty":                     "",
		"bad\uFFFDcontrol\uFFFDutf": "bad\uFFFDutf8",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("tags = %q\nwant %q", got, want)
	}
}

func TestEmptyOptionalFields(t *testing.T) {
	srv := newFake(t)
	srv.Put(region, Instance{ID: "i-1"})
	out, err := newClient(t, srv, region).DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{})
	if err != nil {
		t.Fatal(err)
	}
	inst := out.Reservations[0].Instances[0]
	// Like EC2: both DNS names are always sent (empty), the rest only if set.
	if inst.PrivateDnsName == nil || *inst.PrivateDnsName != "" || inst.PublicDnsName == nil || *inst.PublicDnsName != "" {
		t.Errorf("DNS names = %v, %v; want both empty and present", inst.PrivateDnsName, inst.PublicDnsName)
	}
	if inst.PrivateIpAddress != nil || inst.PublicIpAddress != nil || inst.Ipv6Address != nil || inst.LaunchTime != nil || inst.Tags != nil {
		t.Errorf("unset fields decoded as set: %+v", inst)
	}
	if inst.State.Name != types.InstanceStateNameRunning || aws.ToInt32(inst.State.Code) != 16 {
		t.Errorf("state = %s/%d, want running/16", inst.State.Name, aws.ToInt32(inst.State.Code))
	}
}

// TestWireFormat checks the bytes against EC2's documented response, serving
// the handler without a listener.
func TestWireFormat(t *testing.T) {
	srv := New()
	defer srv.Close()
	srv.Put(region, Instance{
		ID: "i-1", PrivateDNS: "ip-10-0-0-1.ec2.internal", PrivateIP: "10.0.0.1",
		LaunchTime: time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC),
		Tags:       map[string]string{"b": "2", "a": "<1>"},
	})
	srv.Put(region, Instance{ID: "i-2", State: "stopped"})
	body := "Action=DescribeInstances&Version=2016-11-15&Filter.1.Name=tag-key&Filter.1.Value.1=a&MaxResults=5"
	req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKID/20261124/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=x")
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "text/xml;charset=UTF-8" {
		t.Errorf("status %d content type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	want := `<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
		`<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">` +
		`<requestId>ec2fa4e0-0000-4000-8000-000000000001</requestId><reservationSet>` +
		`<item><reservationId>` + newRecord(Instance{ID: "i-1"}).reservationID + `</reservationId><ownerId>123456789012</ownerId><groupSet/>` +
		`<instancesSet><item><instanceId>i-1</instanceId><instanceState><code>16</code><name>running</name></instanceState>` +
		`<privateDnsName>ip-10-0-0-1.ec2.internal</privateDnsName><dnsName/><privateIpAddress>10.0.0.1</privateIpAddress>` +
		`<launchTime>2026-11-24T10:00:00.000Z</launchTime>` +
		`<tagSet><item><key>a</key><value>&lt;1&gt;</value></item><item><key>b</key><value>2</value></item></tagSet>` +
		`</item></instancesSet></item></reservationSet></DescribeInstancesResponse>`
	if got := rec.Body.String(); got != want {
		t.Errorf("body:\n%s\nwant:\n%s", got, want)
	}

	// Errors too.
	req = httptest.NewRequest(http.MethodPost, "/", strings.NewReader("Action=DescribeInstances&Version=2016-11-15&DryRun=true"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKID/20261124/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=x")
	rec = httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	want = `<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
		`<Response><Errors><Error><Code>DryRunOperation</Code><Message>Request would have succeeded, but DryRun flag is set.</Message></Error></Errors>` +
		`<RequestID>ec2fa4e0-0000-4000-8000-000000000002</RequestID></Response>`
	if rec.Code != 412 || rec.Body.String() != want {
		t.Errorf("status %d body:\n%s\nwant 412:\n%s", rec.Code, rec.Body.String(), want)
	}
}

func TestPaging(t *testing.T) {
	srv := newFake(t)
	const n = 2345
	insts := make([]Instance, n)
	want := make([]string, n)
	for i := range insts {
		id := fmt.Sprintf("i-%08x", (i*7919)%n) // loaded out of order
		insts[i] = Instance{ID: id, Tags: map[string]string{"n": fmt.Sprint(i)}}
		want[i] = id
	}
	srv.PutMany(region, insts)
	slices.Sort(want)

	c := newClient(t, srv, region)
	for _, tt := range []struct {
		maxResults *int32
		pages      int
	}{
		{nil, 1},
		{aws.Int32(1000), 3},
		{aws.Int32(5), (n + 4) / 5},
		{aws.Int32(500), 5},
	} {
		srv.ResetRequests()
		got, pages, err := describeAll(context.Background(), c, &ec2.DescribeInstancesInput{MaxResults: tt.maxResults})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("MaxResults %v: got %d IDs, want %d, in order, once each", tt.maxResults, len(got), len(want))
		}
		if pages != tt.pages || srv.Calls("DescribeInstances") != tt.pages {
			t.Errorf("MaxResults %v: %d pages, %d calls; want %d", tt.maxResults, pages, srv.Calls("DescribeInstances"), tt.pages)
		}
		reqs := srv.Requests()
		if len(reqs) != tt.pages || reqs[0].NextToken != "" || (tt.pages > 1 && reqs[1].NextToken == "") {
			t.Errorf("MaxResults %v: requests %+v", tt.maxResults, reqs)
		}
	}
}

func TestPagingStableAcrossChanges(t *testing.T) {
	srv := newFake(t)
	for i := 10; i < 30; i++ {
		srv.Put(region, Instance{ID: fmt.Sprintf("i-%02d", i)})
	}
	c := newClient(t, srv, region)
	ctx := context.Background()
	p := ec2.NewDescribeInstancesPaginator(c, &ec2.DescribeInstancesInput{MaxResults: aws.Int32(5)})
	var got []string
	page := 0
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range out.Reservations {
			got = append(got, aws.ToString(r.Instances[0].InstanceId))
		}
		page++
		if page == 1 {
			srv.Remove(region, "i-14") // the last one returned: the token must survive it
			srv.Remove(region, "i-15") // the first one of the next page
			srv.Put(region, Instance{ID: "i-05"})
			srv.Put(region, Instance{ID: "i-16a"})
		}
	}
	want := []string{"i-10", "i-11", "i-12", "i-13", "i-14", "i-16", "i-16a", "i-17", "i-18", "i-19", "i-20", "i-21", "i-22", "i-23", "i-24", "i-25", "i-26", "i-27", "i-28", "i-29"}
	if !slices.Equal(got, want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}
}

func TestFilters(t *testing.T) {
	srv := newFake(t)
	srv.PutMany(region, []Instance{
		{ID: "i-a1", PrivateDNS: "ip-10-0-0-1.ec2.internal", PrivateIP: "10.0.0.1", Tags: map[string]string{"dcv:session-id": "s1, s2", "env": "prod"}},
		{ID: "i-a2", State: "stopped", PrivateDNS: "ip-10-0-0-2.ec2.internal", Tags: map[string]string{"dcv:session-id": "*", "env": "dev"}},
		{ID: "i-b1", State: "pending", PublicDNS: "ec2-1.example", PublicIP: "1.1.1.1", Tags: map[string]string{"env": "prod", "x": `a\b?`}},
		{ID: "i-b2", State: "terminated", Tags: map[string]string{"Env": "PROD"}},
		{ID: "i-c1", State: "running"},
	})
	c := newClient(t, srv, region)
	tests := []struct {
		name    string
		filters []types.Filter
		ids     []string
		want    []string
	}{
		{"none", nil, nil, []string{"i-a1", "i-a2", "i-b1", "i-b2", "i-c1"}},
		{"tag-key", []types.Filter{filter("tag-key", "dcv:session-id")}, nil, []string{"i-a1", "i-a2"}},
		{"tag-key wildcard", []types.Filter{filter("tag-key", "?nv")}, nil, []string{"i-a1", "i-a2", "i-b1", "i-b2"}},
		{"tag-key case-sensitive", []types.Filter{filter("tag-key", "Env")}, nil, []string{"i-b2"}},
		{"tag value", []types.Filter{filter("tag:env", "prod")}, nil, []string{"i-a1", "i-b1"}},
		{"tag value OR", []types.Filter{filter("tag:env", "dev", "nope")}, nil, []string{"i-a2"}},
		{"tag value star", []types.Filter{filter("tag:dcv:session-id", "*s2*")}, nil, []string{"i-a1"}},
		{"tag value any", []types.Filter{filter("tag:dcv:session-id", "*")}, nil, []string{"i-a1", "i-a2"}},
		{"tag value escaped star", []types.Filter{filter("tag:dcv:session-id", `\*`)}, nil, []string{"i-a2"}},
		{"tag value escapes", []types.Filter{filter("tag:x", `a\\b\?`)}, nil, []string{"i-b1"}},
		{"tag value unescaped ?", []types.Filter{filter("tag:x", `a\\b?`)}, nil, []string{"i-b1"}},
		{"tag value escaped ? literal", []types.Filter{filter("tag:x", `a\\bX`)}, nil, nil},
		{"tag-value", []types.Filter{filter("tag-value", "PROD")}, nil, []string{"i-b2"}},
		{"tag-value wildcard", []types.Filter{filter("tag-value", "s?, *")}, nil, []string{"i-a1"}},
		{"state", []types.Filter{filter("instance-state-name", "running")}, nil, []string{"i-a1", "i-c1"}},
		{"state OR", []types.Filter{filter("instance-state-name", "pending", "stopped")}, nil, []string{"i-a2", "i-b1"}},
		{"state code", []types.Filter{filter("instance-state-code", "48")}, nil, []string{"i-b2"}},
		{"instance-id", []types.Filter{filter("instance-id", "i-b*")}, nil, []string{"i-b1", "i-b2"}},
		{"private-dns-name", []types.Filter{filter("private-dns-name", "ip-10-0-0-2.ec2.internal")}, nil, []string{"i-a2"}},
		{"private-dns-name wildcard", []types.Filter{filter("private-dns-name", "*.ec2.internal")}, nil, []string{"i-a1", "i-a2"}},
		{"private-dns-name any skips unset", []types.Filter{filter("private-dns-name", "*")}, nil, []string{"i-a1", "i-a2"}},
		{"dns-name", []types.Filter{filter("dns-name", "ec2-1.example")}, nil, []string{"i-b1"}},
		{"ip addresses", []types.Filter{filter("private-ip-address", "10.0.0.1", "1.1.1.1")}, nil, []string{"i-a1"}},
		{"AND", []types.Filter{filter("tag:env", "prod"), filter("instance-state-name", "running")}, nil, []string{"i-a1"}},
		{"AND none", []types.Filter{filter("tag:env", "dev"), filter("instance-state-name", "running")}, nil, nil},
		{"instance IDs", nil, []string{"i-c1", "i-a2"}, []string{"i-a2", "i-c1"}},
		{"instance IDs and filter", []types.Filter{filter("instance-state-name", "running")}, []string{"i-c1", "i-a2"}, []string{"i-c1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := describeAll(context.Background(), c, &ec2.DescribeInstancesInput{Filters: tt.filters, InstanceIds: tt.ids})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRequestsRecorded(t *testing.T) {
	srv := newFake(t)
	c := newClient(t, srv, "eu-west-1")
	_, err := c.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{
		Filters:    []types.Filter{filter("tag-key", "k"), filter("instance-state-name", "running", "pending")},
		MaxResults: aws.Int32(50),
	})
	if err != nil {
		t.Fatal(err)
	}
	reqs := srv.Requests()
	want := Request{
		Action:     "DescribeInstances",
		Region:     "eu-west-1",
		Filters:    []Filter{{"tag-key", []string{"k"}}, {"instance-state-name", []string{"running", "pending"}}},
		MaxResults: 50,
	}
	if len(reqs) != 1 || fmt.Sprint(reqs[0]) != fmt.Sprint(want) {
		t.Fatalf("Requests() = %+v, want [%+v]", reqs, want)
	}
	if v, ok := reqs[0].FilterValues("instance-state-name"); !ok || len(v) != 2 {
		t.Errorf("FilterValues = %v, %v", v, ok)
	}
	reqs[0].Filters[0].Values[0] = "mutated"
	if srv.Requests()[0].Filters[0].Values[0] != "k" {
		t.Error("Requests() returned shared slices")
	}
	srv.SetRecording(false)
	_, _ = c.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{})
	if len(srv.Requests()) != 1 || srv.Calls("DescribeInstances") != 2 {
		t.Errorf("with recording off: %d requests, %d calls", len(srv.Requests()), srv.Calls("DescribeInstances"))
	}
	srv.ResetRequests()
	if len(srv.Requests()) != 0 || srv.Calls("DescribeInstances") != 0 {
		t.Error("ResetRequests did not reset")
	}
}

func TestRegionsKeptApart(t *testing.T) {
	srv := newFake(t)
	srv.Put("us-east-1", Instance{ID: "i-east"})
	srv.Put("eu-west-1", Instance{ID: "i-west"})
	for _, tt := range []struct {
		region string
		want   []string
	}{
		{"us-east-1", []string{"i-east"}},
		{"eu-west-1", []string{"i-west"}},
		{"ap-south-1", nil},
	} {
		got, _, err := describeAll(context.Background(), newClient(t, srv, tt.region), &ec2.DescribeInstancesInput{})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.region, got, tt.want)
		}
	}
	reqs := srv.Requests()
	if len(reqs) != 3 || reqs[2].Region != "ap-south-1" {
		t.Errorf("requests %+v", reqs)
	}
}

func TestMutators(t *testing.T) {
	srv := newFake(t)
	srv.Put(region, Instance{ID: "i-1", Tags: map[string]string{"a": "1"}})
	srv.SetState(region, "i-1", "stopped")
	srv.SetTag(region, "i-1", "b", "2")
	srv.SetTag(region, "i-1", "a", "one")
	srv.DeleteTag(region, "i-1", "b")
	srv.SetTag(region, "i-missing", "a", "1") // no-op
	inst, ok := srv.Get(region, "i-1")
	if !ok || inst.State != "stopped" || fmt.Sprint(inst.Tags) != "map[a:one]" {
		t.Errorf("Get = %+v, %v", inst, ok)
	}
	got, _, err := describeAll(context.Background(), newClient(t, srv, region), &ec2.DescribeInstancesInput{
		Filters: []types.Filter{filter("instance-state-name", "stopped"), filter("tag:a", "one")},
	})
	if err != nil || !slices.Equal(got, []string{"i-1"}) {
		t.Errorf("got %v, %v", got, err)
	}
	srv.Remove(region, "i-1")
	if _, ok := srv.Get(region, "i-1"); ok || srv.Len(region) != 0 {
		t.Error("Remove did not remove")
	}
}

func TestErrors(t *testing.T) {
	srv := newFake(t)
	srv.Put(region, Instance{ID: "i-1"})
	c := newClient(t, srv, region)
	tests := []struct {
		name    string
		in      ec2.DescribeInstancesInput
		code    string
		status  int
		message string
	}{
		{"bad filter name", ec2.DescribeInstancesInput{Filters: []types.Filter{filter("tag-key", "a"), filter("instance-type", "t3.micro")}},
			"InvalidParameterValue", 400, "The filter 'instance-type' is invalid"},
		{"filter without values", ec2.DescribeInstancesInput{Filters: []types.Filter{{Name: aws.String("tag-key")}}},
			"InvalidParameterValue", 400, ""},
		{"MaxResults too small", ec2.DescribeInstancesInput{MaxResults: aws.Int32(4)}, "InvalidParameterValue", 400, ""},
		{"MaxResults too large", ec2.DescribeInstancesInput{MaxResults: aws.Int32(1001)}, "InvalidParameterValue", 400, ""},
		{"bad NextToken", ec2.DescribeInstancesInput{NextToken: aws.String("garbage!")}, "InvalidNextToken", 400, ""},
		{"foreign NextToken", ec2.DescribeInstancesInput{NextToken: aws.String("aGVsbG8")}, "InvalidNextToken", 400, ""},
		{"unknown instance", ec2.DescribeInstancesInput{InstanceIds: []string{"i-1", "i-404"}},
			"InvalidInstanceID.NotFound", 400, "The instance ID 'i-404' does not exist"},
		{"unknown instances", ec2.DescribeInstancesInput{InstanceIds: []string{"i-404", "i-405"}},
			"InvalidInstanceID.NotFound", 400, "The instance IDs 'i-404, i-405' do not exist"},
		{"IDs with MaxResults", ec2.DescribeInstancesInput{InstanceIds: []string{"i-1"}, MaxResults: aws.Int32(5)},
			"InvalidParameterCombination", 400, ""},
		{"DryRun", ec2.DescribeInstancesInput{DryRun: aws.Bool(true)},
			"DryRunOperation", 412, "Request would have succeeded, but DryRun flag is set."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.DescribeInstances(context.Background(), &tt.in)
			code, status := decodeErr(t, err)
			if code != tt.code || status != tt.status {
				t.Errorf("got %s/%d, want %s/%d (%v)", code, status, tt.code, tt.status, err)
			}
			var ae smithy.APIError
			errors.As(err, &ae)
			if tt.message != "" && ae.ErrorMessage() != tt.message {
				t.Errorf("message %q, want %q", ae.ErrorMessage(), tt.message)
			}
		})
	}
}

func TestInvalidAction(t *testing.T) {
	srv := newFake(t)
	_, err := newClient(t, srv, region).DescribeRegions(context.Background(), &ec2.DescribeRegionsInput{})
	if code, status := decodeErr(t, err); code != "InvalidAction" || status != 400 {
		t.Errorf("got %s/%d, want InvalidAction/400", code, status)
	}
	if srv.Calls("DescribeRegions") != 1 || srv.Calls("DescribeInstances") != 0 {
		t.Error("calls not counted by action")
	}
}

func TestUnsignedRequest(t *testing.T) {
	srv := newFake(t)
	resp, err := http.Post(srv.URL(), "application/x-www-form-urlencoded", strings.NewReader("Action=DescribeInstances&Version=2016-11-15"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	if resp.StatusCode != 401 {
		t.Errorf("status %d, want 401", resp.StatusCode)
	}
}

func TestFaults(t *testing.T) {
	tests := []struct {
		status  int
		code    string
		want    int
		message string
	}{
		{503, "RequestLimitExceeded", 503, "Request limit exceeded."},
		{0, "RequestLimitExceeded", 503, "Request limit exceeded."},
		{403, "UnauthorizedOperation", 403, "You are not authorized to perform this operation."},
		{401, "AuthFailure", 401, "AWS was not able to validate the provided access credentials"},
		{403, "AuthFailure", 403, "AWS was not able to validate the provided access credentials"},
		{500, "InternalError", 500, "An internal error has occurred."},
		{0, "SomethingElse", 400, "SomethingElse"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d", tt.code, tt.status), func(t *testing.T) {
			srv := newFake(t)
			srv.Put(region, Instance{ID: "i-1"})
			c := newClient(t, srv, region)

			srv.FailNext(1, tt.status, tt.code)
			_, err := c.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{})
			code, status := decodeErr(t, err)
			var ae smithy.APIError
			errors.As(err, &ae)
			if code != tt.code || status != tt.want || ae.ErrorMessage() != tt.message {
				t.Errorf("FailNext: got %s/%d %q, want %s/%d %q", code, status, ae.ErrorMessage(), tt.code, tt.want, tt.message)
			}
			if _, err := c.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{}); err != nil {
				t.Errorf("second request: %v", err)
			}

			srv.SetFault(func(r Request) *Fault {
				if r.Region != region || r.Action != "DescribeInstances" {
					t.Errorf("fault saw %+v", r)
				}
				return &Fault{Status: tt.status, Code: tt.code}
			})
			_, err = c.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{})
			if code, status := decodeErr(t, err); code != tt.code || status != tt.want {
				t.Errorf("SetFault: got %s/%d, want %s/%d", code, status, tt.code, tt.want)
			}
			srv.SetFault(nil)
			if _, err := c.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{}); err != nil {
				t.Errorf("after SetFault(nil): %v", err)
			}
			if n := srv.Calls("DescribeInstances"); n != 4 {
				t.Errorf("Calls = %d, want 4", n)
			}
		})
	}
}

func TestFaultBeatsDryRun(t *testing.T) {
	srv := newFake(t)
	srv.SetFault(func(r Request) *Fault {
		if r.DryRun {
			return &Fault{Code: "UnauthorizedOperation"}
		}
		return nil
	})
	_, err := newClient(t, srv, region).DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{DryRun: aws.Bool(true)})
	if code, status := decodeErr(t, err); code != "UnauthorizedOperation" || status != 403 {
		t.Errorf("got %s/%d, want UnauthorizedOperation/403", code, status)
	}
}

func TestRetries(t *testing.T) {
	srv := newFake(t)
	srv.Put(region, Instance{ID: "i-1"})
	c := newClient(t, srv, region, fastRetries)

	for _, code := range []string{"RequestLimitExceeded", "InternalError", "Unavailable"} {
		srv.ResetRequests()
		srv.FailNext(2, 0, code)
		out, err := c.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{})
		if err != nil || len(out.Reservations) != 1 {
			t.Fatalf("%s: %v", code, err)
		}
		if n := srv.Calls("DescribeInstances"); n != 3 {
			t.Errorf("%s: %d calls, want 3 (2 retried failures)", code, n)
		}
	}

	srv.ResetRequests()
	srv.FailNext(10, 0, "RequestLimitExceeded")
	_, err := c.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{})
	if code, _ := decodeErr(t, err); code != "RequestLimitExceeded" {
		t.Errorf("got %s", code)
	}
	if n := srv.Calls("DescribeInstances"); n != retry.DefaultMaxAttempts {
		t.Errorf("%d calls, want %d", n, retry.DefaultMaxAttempts)
	}
	srv.FailNext(0, 0, "")

	// Not retried: client errors.
	srv.ResetRequests()
	srv.FailNext(1, 0, "UnauthorizedOperation")
	if _, err := c.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{}); err == nil {
		t.Error("no error")
	}
	if n := srv.Calls("DescribeInstances"); n != 1 {
		t.Errorf("UnauthorizedOperation: %d calls, want 1", n)
	}

	// Retried: a dropped connection.
	srv.ResetRequests()
	var mu sync.Mutex
	aborts := 1
	srv.SetFault(func(Request) *Fault {
		mu.Lock()
		defer mu.Unlock()
		if aborts > 0 {
			aborts--
			return &Fault{Abort: true}
		}
		return nil
	})
	if _, err := c.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{}); err != nil {
		t.Errorf("after one abort: %v", err)
	}
	if n := srv.Calls("DescribeInstances"); n != 2 {
		t.Errorf("abort: %d calls, want 2", n)
	}
}

func TestDelay(t *testing.T) {
	srv := newFake(t)
	srv.Put(region, Instance{ID: "i-1"})
	c := newClient(t, srv, region)

	srv.SetFault(func(Request) *Fault { return &Fault{Delay: 20 * time.Millisecond} })
	start := time.Now()
	if _, err := c.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Errorf("answered after %v, want >= 20ms", d)
	}

	srv.SetFault(func(Request) *Fault { return &Fault{Delay: time.Minute, Code: "InternalError"} })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestHang(t *testing.T) {
	srv := newFake(t)
	c := newClient(t, srv, region)
	srv.SetFault(func(Request) *Fault { return &Fault{Hang: true} })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want deadline exceeded", err)
	}

	// Close releases a request that would otherwise hang forever.
	errc := make(chan error, 1)
	go func() {
		_, err := c.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{})
		errc <- err
	}()
	for srv.Calls("DescribeInstances") < 2 {
		time.Sleep(time.Millisecond)
	}
	closed := make(chan struct{})
	go func() {
		srv.Close()
		close(closed)
	}()
	select {
	case err := <-errc:
		if err == nil {
			t.Error("hung request succeeded after Close")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not release the hung request")
	}
	<-closed
}

func TestAbort(t *testing.T) {
	srv := newFake(t)
	for i := range 50 {
		srv.Put(region, Instance{ID: fmt.Sprintf("i-%03d", i), Tags: map[string]string{"k": "v"}})
	}
	c := newClient(t, srv, region)

	srv.SetFault(func(Request) *Fault { return &Fault{Abort: true} })
	_, err := c.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{})
	var sendErr *smithyhttp.RequestSendError
	if !errors.As(err, &sendErr) {
		t.Errorf("err = %v (%T), want a transport error", err, err)
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		t.Errorf("transport error decoded as API error %v", ae)
	}

	// Mid-page: the headers and part of the body arrive, then the connection drops.
	for _, after := range []int{1, 300, 10000} {
		srv.SetFault(func(Request) *Fault { return &Fault{Abort: true, AbortAfter: after} })
		_, err = c.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{})
		var de *smithy.DeserializationError
		if !errors.As(err, &de) {
			t.Errorf("AbortAfter %d: err = %v (%T), want a deserialization error", after, err, err)
		}
	}

	// With AbortAfter beyond the end of the body, the whole document arrives
	// and only the end of the chunked response is missing: the SDK's XML
	// decoder stops at the root end tag and does not notice.
	srv.SetFault(func(Request) *Fault { return &Fault{Abort: true, AbortAfter: 1 << 20} })
	if _, err = c.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{}); err != nil {
		t.Errorf("AbortAfter past the body: %v", err)
	}

	// Abort applies to error responses too.
	srv.SetFault(func(Request) *Fault { return &Fault{Abort: true, AbortAfter: 10, Code: "InternalError"} })
	if _, err = c.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{}); err == nil {
		t.Error("no error")
	}

	srv.SetFault(nil)
	if _, err := c.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{}); err != nil {
		t.Errorf("after faults: %v", err)
	}
}

func TestConcurrent(t *testing.T) {
	srv := newFake(t)
	for i := range 200 {
		srv.Put(region, Instance{ID: fmt.Sprintf("i-%04d", i), Tags: map[string]string{"k": "v"}})
	}
	c := newClient(t, srv, region)
	ctx := context.Background()
	var wg sync.WaitGroup
	errc := make(chan error, 16)
	for g := range 8 {
		wg.Go(func() {
			for i := range 20 {
				id := fmt.Sprintf("i-%04d", (g*37+i)%200)
				srv.SetTag(region, id, "k", fmt.Sprint(i))
				srv.SetState(region, id, "running")
				srv.Put(region, Instance{ID: fmt.Sprintf("i-x%d-%d", g, i)})
				srv.Remove(region, fmt.Sprintf("i-x%d-%d", g, i))
				_ = srv.Requests()
			}
		})
		wg.Go(func() {
			for range 5 {
				ids, _, err := describeAll(ctx, c, &ec2.DescribeInstancesInput{
					MaxResults: aws.Int32(25),
					Filters:    []types.Filter{filter("tag-key", "k")},
				})
				if err != nil {
					errc <- err
					return
				}
				if len(ids) != 200 {
					errc <- fmt.Errorf("got %d instances, want 200", len(ids))
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
}

func TestLarge(t *testing.T) {
	n := 20000 // BenchmarkDescribe100k does 100,000; SDK decoding dominates
	if testing.Short() {
		n = 5000
	}
	srv := newFake(t)
	loadFleet(srv, n)
	start := time.Now()
	ids, pages, err := describeAll(context.Background(), newClient(t, srv, region), &ec2.DescribeInstancesInput{
		MaxResults: aws.Int32(1000),
		Filters:    []types.Filter{filter("tag-key", "dcv:session-id"), filter("instance-state-name", "running")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != n || pages != n/1000 {
		t.Errorf("got %d instances in %d pages", len(ids), pages)
	}
	t.Logf("%d instances in %d pages: %v", len(ids), pages, time.Since(start))
}

func loadFleet(srv *Server, n int) {
	insts := make([]Instance, n)
	launch := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	for i := range insts {
		insts[i] = Instance{
			ID:         fmt.Sprintf("i-%017x", i),
			PrivateDNS: fmt.Sprintf("ip-10-%d-%d-%d.ec2.internal", i>>16, i>>8&255, i&255),
			PrivateIP:  fmt.Sprintf("10.%d.%d.%d", i>>16, i>>8&255, i&255),
			LaunchTime: launch,
			Tags:       map[string]string{"dcv:session-id": fmt.Sprintf("s-%d", i), "Name": "dcv host"},
		}
	}
	srv.PutMany(region, insts)
}

func BenchmarkDescribe100k(b *testing.B) {
	srv := newFake(b)
	loadFleet(srv, 100000)
	srv.SetRecording(false)
	c := newClient(b, srv, region)
	b.ResetTimer()
	for b.Loop() {
		ids, _, err := describeAll(context.Background(), c, &ec2.DescribeInstancesInput{
			MaxResults: aws.Int32(1000),
			Filters:    []types.Filter{filter("tag-key", "dcv:session-id")},
		})
		if err != nil || len(ids) != 100000 {
			b.Fatal(len(ids), err)
		}
	}
}

// TestDefaultSDKClient pages with the SDK's own HTTP client and standard
// retryer (with a short backoff), as production code would.
func TestDefaultSDKClient(t *testing.T) {
	srv := newFake(t)
	loadFleet(srv, 5000)
	c := ec2.New(ec2.Options{
		Region:       region,
		BaseEndpoint: aws.String(srv.URL()),
		Credentials:  credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
		Retryer: retry.NewStandard(func(so *retry.StandardOptions) {
			so.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return time.Millisecond, nil })
		}),
	})
	for range 3 {
		ids, pages, err := describeAll(context.Background(), c, &ec2.DescribeInstancesInput{MaxResults: aws.Int32(500)})
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) != 5000 || pages != 10 {
			t.Errorf("got %d instances in %d pages", len(ids), pages)
		}
	}
	if retried := srv.Calls("DescribeInstances") - 30; retried > 0 {
		t.Logf("%d requests retried (aws-sdk-go-v2#2737)", retried)
	}
}

// discardResponse is a minimal http.ResponseWriter for benchmarking the
// handler alone.
type discardResponse struct{ h http.Header }

func (d *discardResponse) Header() http.Header         { return d.h }
func (d *discardResponse) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardResponse) WriteHeader(int)             {}

// BenchmarkServePage measures the fake alone answering one filtered page of
// 1000 out of 100,000 instances.
func BenchmarkServePage(b *testing.B) {
	srv := New()
	defer srv.Close()
	srv.SetLatency(0)
	srv.SetRecording(false)
	loadFleet(srv, 100000)
	body := "Action=DescribeInstances&Version=2016-11-15&Filter.1.Name=tag-key&Filter.1.Value.1=dcv%3Asession-id" +
		"&Filter.2.Name=instance-state-name&Filter.2.Value.1=running&MaxResults=1000&NextToken=" + encodeToken(fmt.Sprintf("i-%017x", 50000))
	w := &discardResponse{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKID/20261124/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=x")
		srv.ServeHTTP(w, req)
	}
}
