// Package ec2fake is a fake Amazon EC2 endpoint that speaks the real EC2 Query
// API (protocol "ec2query", API version 2016-11-15) over HTTP, for tests and
// benchmarks.
//
// Point the real aws-sdk-go-v2 EC2 client at it with BaseEndpoint and any
// static credentials:
//
//	srv := ec2fake.NewServer()
//	defer srv.Close()
//	srv.Put("us-east-1", ec2fake.Instance{ID: "i-1", Tags: map[string]string{"Name": "a"}})
//	client := ec2.New(ec2.Options{
//		Region:       "us-east-1",
//		BaseEndpoint: aws.String(srv.URL()),
//		Credentials:  credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
//	})
//
// Only DescribeInstances is implemented; every other action is answered with
// the EC2 error InvalidAction. Requests are not signature-checked, but the
// region is taken from the SigV4 credential scope, and instances are held per
// region. Errors, paging, filters (with EC2 wildcards) and DryRun behave as
// EC2 documents them, and faults (throttling, delays, hangs, dropped
// connections) can be injected per request.
//
// The filters honoured are instance-id, instance-state-name,
// instance-state-code, private-dns-name, dns-name, private-ip-address,
// ip-address, tag-key, tag-value and tag:<key>; any other name is refused
// with InvalidParameterValue, as EC2 refuses names it does not know. Filter
// values are case-sensitive EC2 patterns: "*" matches any run of characters,
// "?" one character, and a backslash makes the next character literal.
//
// Every response is held back by a small latency (DefaultLatency, see
// SetLatency), which also keeps a known aws-sdk-go-v2 race from firing on
// almost every large page over loopback; DefaultLatency explains it.
//
// The package does not import "testing", so benchmark and harness binaries
// can use it too. NewServer listens on 127.0.0.1 only.
package ec2fake

import (
	"fmt"
	"hash/fnv"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// OwnerID is the AWS account ID reported as the ownerId of every reservation.
const OwnerID = "123456789012"

// Instance states understood by the fake, as EC2 names them.
const (
	StatePending      = "pending"
	StateRunning      = "running"
	StateShuttingDown = "shutting-down"
	StateTerminated   = "terminated"
	StateStopping     = "stopping"
	StateStopped      = "stopped"
)

// stateCodes maps each EC2 instance state name to its numeric code.
var stateCodes = map[string]int{
	StatePending:      0,
	StateRunning:      16,
	StateShuttingDown: 32,
	StateTerminated:   48,
	StateStopping:     64,
	StateStopped:      80,
}

// Instance is one EC2 instance held by the fake.
type Instance struct {
	// ID is the instance ID ("i-..."); required.
	ID string
	// State is the instance state name; "" means "running". The others are
	// "pending", "stopping", "stopped", "shutting-down" and "terminated".
	State string
	// PrivateDNS is the private DNS name (privateDnsName).
	PrivateDNS string
	// PrivateIP is the primary private IPv4 address (privateIpAddress).
	PrivateIP string
	// PublicDNS is the public DNS name (dnsName).
	PublicDNS string
	// PublicIP is the public IPv4 address (ipAddress).
	PublicIP string
	// IPv6 is the primary IPv6 address (ipv6Address).
	IPv6 string
	// LaunchTime is reported with millisecond precision in UTC; the zero time
	// omits launchTime from the response.
	LaunchTime time.Time
	// Tags are the instance tags. Put copies the map.
	Tags map[string]string
}

// record is the immutable stored form of an Instance. Records are replaced,
// never modified, so a page of them can be rendered without holding the lock.
type record struct {
	Instance
	stateCode     int
	reservationID string
	launchTime    string   // formatted, "" if zero
	tagKeys       []string // sorted keys of Tags
}

func newRecord(inst Instance) *record {
	if inst.ID == "" {
		panic("ec2fake: Instance.ID is required")
	}
	if inst.State == "" {
		inst.State = StateRunning
	}
	code, ok := stateCodes[inst.State]
	if !ok {
		panic(fmt.Sprintf("ec2fake: unknown instance state %q for %s", inst.State, inst.ID))
	}
	inst.Tags = maps.Clone(inst.Tags)
	r := &record{Instance: inst, stateCode: code}
	h := fnv.New64a()
	h.Write([]byte(inst.ID))
	r.reservationID = fmt.Sprintf("r-0%016x", h.Sum64())
	if !inst.LaunchTime.IsZero() {
		r.launchTime = inst.LaunchTime.UTC().Format("2006-01-02T15:04:05.000Z")
	}
	r.tagKeys = slices.Sorted(maps.Keys(inst.Tags))
	return r
}

// public returns a copy of the stored instance that the caller may modify.
func (r *record) public() Instance {
	inst := r.Instance
	inst.Tags = maps.Clone(r.Tags)
	return inst
}

// regionStore holds one region's instances, both by ID and sorted by ID.
type regionStore struct {
	byID   map[string]*record
	sorted []*record
}

func cmpRecord(a *record, id string) int { return strings.Compare(a.ID, id) }

// index returns the position of id in sorted, or where it would be inserted.
func (rs *regionStore) index(id string) (int, bool) {
	return slices.BinarySearchFunc(rs.sorted, id, cmpRecord)
}

func (rs *regionStore) put(r *record) {
	i, found := rs.index(r.ID)
	if found {
		rs.sorted[i] = r
	} else {
		rs.sorted = slices.Insert(rs.sorted, i, r)
	}
	rs.byID[r.ID] = r
}

func (rs *regionStore) putMany(recs []*record) {
	if len(recs) < 64 {
		for _, r := range recs {
			rs.put(r)
		}
		return
	}
	added := false
	for _, r := range recs {
		if _, ok := rs.byID[r.ID]; !ok {
			added = true
		}
		rs.byID[r.ID] = r
	}
	if !added {
		for _, r := range recs {
			i, _ := rs.index(r.ID)
			rs.sorted[i] = rs.byID[r.ID]
		}
		return
	}
	rs.sorted = slices.AppendSeq(rs.sorted[:0], maps.Values(rs.byID))
	slices.SortFunc(rs.sorted, func(a, b *record) int { return strings.Compare(a.ID, b.ID) })
}

func (rs *regionStore) remove(id string) {
	if _, ok := rs.byID[id]; !ok {
		return
	}
	delete(rs.byID, id)
	if i, found := rs.index(id); found {
		rs.sorted = slices.Delete(rs.sorted, i, i+1)
	}
}

// Server is a fake EC2 endpoint. It is an http.Handler, so it can be mounted
// on any listener; NewServer also starts it on a loopback port. All methods
// are safe for concurrent use.
type Server struct {
	mu       sync.Mutex
	regions  map[string]*regionStore
	calls    map[string]int
	requests []Request
	noRecord bool
	fault    func(Request) *Fault
	failN    int
	failWith Fault

	reqSeq    atomic.Uint64
	latency   atomic.Int64 // time.Duration
	done      chan struct{}
	closeOnce sync.Once
	ts        *httptest.Server
}

var _ http.Handler = (*Server)(nil)

// New returns a fake that is not listening anywhere: serve it with any
// http.Server (it implements http.Handler). Close releases requests that are
// hanging or delayed by a Fault.
func New() *Server {
	s := &Server{
		regions: make(map[string]*regionStore),
		calls:   make(map[string]int),
		done:    make(chan struct{}),
	}
	s.latency.Store(int64(DefaultLatency))
	return s
}

// DefaultLatency is how long the fake holds back every response unless
// SetLatency says otherwise.
//
// Besides standing in for the network, it works around a race in
// aws-sdk-go-v2 (smithy-go v1.28.9 and earlier; see
// https://github.com/aws/aws-sdk-go-v2/issues/2737): the SDK closes the
// request body as soon as the response headers arrive, and if net/http has not
// yet finished its end-of-body check the SDK's body wrapper makes it fail
// with io.EOF, so net/http closes the connection while the SDK is still
// reading the response. The SDK then reports "use of closed network
// connection" (which its default retryer retries). Against AWS the round
// trip hides this; over loopback, with an instant answer, it hits about
// every other page larger than a few kilobytes. A millisecond or two makes
// it very rare, but not impossible under heavy load; clients that must never
// see it can hide the io.WriterTo method of the request body in their
// http.Client (see the package tests).
const DefaultLatency = 2 * time.Millisecond

// SetLatency sets how long every response is held back (DefaultLatency
// unless changed; 0 answers at once). The wait ends early, dropping the
// connection, if the client gives up or the server is closed. Fault.Delay
// comes on top of it.
func (s *Server) SetLatency(d time.Duration) {
	s.latency.Store(int64(max(d, 0)))
}

// NewServer returns a fake already serving HTTP on 127.0.0.1 at a free port;
// see URL. Call Close when done.
func NewServer() *Server {
	s := New()
	ts := httptest.NewUnstartedServer(s)
	// httptest may pick another address (-httptest.serve, or [::1] as a
	// fallback); insist on IPv4 loopback.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		ts.Close()
		panic(fmt.Sprintf("ec2fake: listen on 127.0.0.1: %v", err))
	}
	ts.Listener.Close()
	ts.Listener = l
	ts.Start()
	s.ts = ts
	return s
}

// URL returns the base URL ("http://127.0.0.1:port") to use as the client's
// BaseEndpoint, or "" if the server was made with New.
func (s *Server) URL() string {
	if s.ts == nil {
		return ""
	}
	return s.ts.URL
}

// Close releases any request held by a Hang or Delay fault (their
// connections are dropped) and, for a server made with NewServer, stops
// listening and waits for outstanding requests. It is safe to call more than
// once.
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.done) })
	if s.ts != nil {
		s.ts.Close()
	}
}

// region returns the store for name, creating it if needed. s.mu must be held.
func (s *Server) region(name string) *regionStore {
	rs := s.regions[name]
	if rs == nil {
		rs = &regionStore{byID: make(map[string]*record)}
		s.regions[name] = rs
	}
	return rs
}

// Put adds inst to region, replacing any instance with the same ID. The Tags
// map is copied. It panics if inst.ID is empty or inst.State is unknown.
func (s *Server) Put(region string, inst Instance) {
	r := newRecord(inst)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.region(region).put(r)
}

// PutMany adds or replaces many instances in region at once; use it for bulk
// loads (it sorts once rather than inserting one by one). Like Put, it
// copies every Tags map and panics on an empty ID or an unknown state.
func (s *Server) PutMany(region string, insts []Instance) {
	recs := make([]*record, len(insts))
	for i, inst := range insts {
		recs[i] = newRecord(inst)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.region(region).putMany(recs)
}

// Get returns a copy of the instance id in region, and whether it exists.
func (s *Server) Get(region, id string) (Instance, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rs := s.regions[region]; rs != nil {
		if r := rs.byID[id]; r != nil {
			return r.public(), true
		}
	}
	return Instance{}, false
}

// Len returns how many instances region holds.
func (s *Server) Len(region string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rs := s.regions[region]; rs != nil {
		return len(rs.sorted)
	}
	return 0
}

// Remove deletes instance id from region; it is a no-op if it is absent.
// Later requests for it by ID fail with InvalidInstanceID.NotFound.
func (s *Server) Remove(region, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rs := s.regions[region]; rs != nil {
		rs.remove(id)
	}
}

// update replaces instance id in region with fn applied to a copy of it; a
// no-op if the instance does not exist.
func (s *Server) update(region, id string, fn func(*Instance)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rs := s.regions[region]
	if rs == nil {
		return
	}
	old := rs.byID[id]
	if old == nil {
		return
	}
	inst := old.public()
	fn(&inst)
	rs.put(newRecord(inst))
}

// SetState sets the state of instance id in region ("" means "running"); a
// no-op if the instance does not exist. It panics on an unknown state.
func (s *Server) SetState(region, id, state string) {
	if state != "" {
		if _, ok := stateCodes[state]; !ok {
			panic(fmt.Sprintf("ec2fake: unknown instance state %q", state))
		}
	}
	s.update(region, id, func(inst *Instance) { inst.State = state })
}

// SetTag sets tag key to value on instance id in region; a no-op if the
// instance does not exist.
func (s *Server) SetTag(region, id, key, value string) {
	s.update(region, id, func(inst *Instance) {
		if inst.Tags == nil {
			inst.Tags = make(map[string]string)
		}
		inst.Tags[key] = value
	})
}

// DeleteTag removes tag key from instance id in region; a no-op if the
// instance or the tag does not exist.
func (s *Server) DeleteTag(region, id, key string) {
	s.update(region, id, func(inst *Instance) { delete(inst.Tags, key) })
}

// Calls returns how many requests with that Action were received since the
// last ResetRequests, including those answered with an error or a fault.
func (s *Server) Calls(action string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[action]
}

// Requests returns copies of every request received since the last
// ResetRequests, in arrival order (unless recording was turned off with
// SetRecording).
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.requests))
	for i, r := range s.requests {
		out[i] = r.clone()
	}
	return out
}

// ResetRequests forgets the recorded requests and zeroes the Calls counters.
func (s *Server) ResetRequests() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = nil
	clear(s.calls)
}

// SetRecording turns the recording of requests for Requests on (the default)
// or off. Long benchmarks can turn it off to keep memory flat; Calls keeps
// counting either way.
func (s *Server) SetRecording(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noRecord = !on
}

// SetFault installs f, which is called (without any lock held, possibly from
// many goroutines at once) for every request before it is answered; a
// non-nil *Fault it returns is applied to that request. nil removes it.
// Requests consumed by FailNext do not reach f.
func (s *Server) SetFault(f func(Request) *Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = f
}

// FailNext makes the next n requests (of any action) fail with the EC2 error
// code and HTTP status (0 picks the status EC2 uses for that code, see
// Fault). It replaces any earlier FailNext that has not run out; n <= 0
// cancels it. It takes precedence over SetFault.
func (s *Server) FailNext(n int, status int, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failN = max(n, 0)
	s.failWith = Fault{Status: status, Code: code}
}

// Filter is one DescribeInstances filter as received: Filter.N.Name and its
// Filter.N.Value.M values, in request order.
type Filter struct {
	// Name is the filter name, such as "tag-key" or "tag:Name".
	Name string
	// Values are the patterns of which any may match.
	Values []string
}

// Request is what the fake received in one request.
type Request struct {
	// Action is the Action parameter, such as "DescribeInstances".
	Action string
	// Region is the region of the SigV4 credential scope ("" if unsigned).
	Region string
	// Filters are the Filter.N parameters, in order of N.
	Filters []Filter
	// InstanceIDs are the InstanceId.N parameters, in order of N.
	InstanceIDs []string
	// MaxResults is the MaxResults parameter; 0 if absent.
	MaxResults int
	// NextToken is the NextToken parameter; "" if absent.
	NextToken string
	// DryRun is the DryRun parameter.
	DryRun bool
}

// FilterValues returns the values of the first filter called name, and
// whether there is one.
func (r Request) FilterValues(name string) ([]string, bool) {
	for _, f := range r.Filters {
		if f.Name == name {
			return f.Values, true
		}
	}
	return nil, false
}

func (r Request) clone() Request {
	r.InstanceIDs = slices.Clone(r.InstanceIDs)
	if r.Filters != nil {
		fs := make([]Filter, len(r.Filters))
		for i, f := range r.Filters {
			fs[i] = Filter{Name: f.Name, Values: slices.Clone(f.Values)}
		}
		r.Filters = fs
	}
	return r
}

// Fault describes how to misbehave for one request. The steps apply in this
// order: wait Delay; then hang if Hang; then, if Code is set, answer with
// that EC2 error instead of the real response; Abort cuts whatever response
// is being sent. A Fault with only a Delay answers normally, just late.
type Fault struct {
	// Status is the HTTP status of the error response. 0 picks the one EC2
	// uses for Code: 503 for RequestLimitExceeded and Unavailable, 500 for
	// InternalError, 403 for UnauthorizedOperation, 401 for AuthFailure, 412
	// for DryRunOperation, 400 otherwise.
	Status int
	// Code is the EC2 error code, such as "RequestLimitExceeded"; "" means
	// no error response.
	Code string
	// Message is the error message; "" uses EC2's usual text for Code.
	Message string
	// Delay holds the answer back this long. If the client goes away or the
	// server is closed meanwhile, the connection is dropped without an answer.
	Delay time.Duration
	// Hang never answers: the connection is dropped once the client gives up
	// (its context ends) or the server is closed.
	Hang bool
	// Abort drops the connection mid-response: after the status line, the
	// headers and the first AbortAfter bytes of the body. With AbortAfter 0
	// nothing at all is sent, which the client sees as a transport error
	// (the SDK retries it as a connection error); with AbortAfter > 0 the
	// client sees a truncated body (the SDK reports a deserialization error).
	Abort bool
	// AbortAfter is how many body bytes Abort lets through; if the body is
	// shorter, all of it is sent but the response is never terminated (the
	// SDK usually succeeds then: its XML decoder stops at the root end tag).
	AbortAfter int
}

// errorDefaults are EC2's HTTP status and message for common error codes.
var errorDefaults = map[string]struct {
	status  int
	message string
}{
	"RequestLimitExceeded":  {503, "Request limit exceeded."},
	"Unavailable":           {503, "The service is unavailable. Please try again shortly."},
	"InternalError":         {500, "An internal error has occurred."},
	"UnauthorizedOperation": {403, "You are not authorized to perform this operation."},
	"AuthFailure":           {401, "AWS was not able to validate the provided access credentials"},
	"DryRunOperation":       {412, "Request would have succeeded, but DryRun flag is set."},
}

// apiError is an EC2 error response.
type apiError struct {
	status        int
	code, message string
}

func newAPIError(status int, code, message string) *apiError {
	d, ok := errorDefaults[code]
	if status == 0 {
		status = http.StatusBadRequest
		if ok {
			status = d.status
		}
	}
	if message == "" {
		message = code
		if ok {
			message = d.message
		}
	}
	return &apiError{status: status, code: code, message: message}
}

func errInvalidParameterValue(format string, args ...any) *apiError {
	return newAPIError(http.StatusBadRequest, "InvalidParameterValue", fmt.Sprintf(format, args...))
}

// Env returns the environment for an AWS SDK client that must talk to the fake and nothing
// else: static fake credentials, shared config and credentials files that do not exist (under
// dir), no profile or region from the machine, and the instance metadata service disabled, so
// that no call ever leaves loopback. Tests set it with t.Setenv; harnesses pass it to a child.
func Env(dir string) map[string]string {
	return map[string]string{
		"AWS_CONFIG_FILE":             filepath.Join(dir, "aws-config"),
		"AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "aws-credentials"),
		"AWS_ACCESS_KEY_ID":           "AKIDFAKE",
		"AWS_SECRET_ACCESS_KEY":       "fake",
		"AWS_SESSION_TOKEN":           "",
		"AWS_REGION":                  "",
		"AWS_DEFAULT_REGION":          "",
		"AWS_PROFILE":                 "",
		"AWS_EC2_METADATA_DISABLED":   "true",
	}
}
