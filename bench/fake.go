package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/dcv-ec2-resolver/dcv-ec2-resolver/discovery/ec2/ec2fake"
)

// The fake EC2 endpoint runs in a child process of its own, so that the CPU it spends
// rendering XML is never counted as the resolver's (or the harness's) and it does not share a
// runtime with the load generator. Besides the EC2 Query API on "/", it serves a few control
// endpoints under /_bench/ for the harness.

// serveFake is the "fake" role: args are the fleet size. It prints its base URL, then serves
// until its parent goes away.
func serveFake(args []string) int {
	exitWithParent()
	n, err := strconv.Atoi(args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake: fleet size:", err)
		return 2
	}
	fake := ec2fake.New()
	fake.SetRecording(false) // Calls still counts; the request log would only grow
	fake.PutMany(benchRegion, fleet(n))

	mux := http.NewServeMux()
	mux.Handle("/", fake)
	mux.HandleFunc("GET /_bench/calls", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, fake.Calls("DescribeInstances"))
	})
	mux.HandleFunc("POST /_bench/tag", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		fake.SetTag(benchRegion, q.Get("id"), q.Get("key"), q.Get("value"))
	})
	mux.HandleFunc("POST /_bench/state", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		fake.SetState(benchRegion, q.Get("id"), q.Get("state"))
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake:", err)
		return 1
	}
	fmt.Printf("http://%s\n", l.Addr())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	err = srv.Serve(l)
	fmt.Fprintln(os.Stderr, "fake:", err)
	return 1
}

// fakeEC2 is the harness's handle on the fake EC2 child.
type fakeEC2 struct {
	*child
	url    string
	client *http.Client
}

func startFake(n int, p placement) (*fakeEC2, error) {
	c, err := startRole("fake", []string{strconv.Itoa(n)}, p)
	if err != nil {
		return nil, err
	}
	// Loading 100,000 instances takes a second or two.
	u, err := c.readLine(2 * time.Minute)
	if err != nil {
		c.stop()
		return nil, err
	}
	return &fakeEC2{child: c, url: u, client: &http.Client{Timeout: 10 * time.Second}}, nil
}

func (f *fakeEC2) control(ctx context.Context, method, path string, q url.Values) (string, error) {
	req, err := http.NewRequestWithContext(ctx, method, f.url+"/_bench/"+path+"?"+q.Encode(), nil)
	if err != nil {
		return "", err
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("fake %s: %s", path, resp.Status)
	}
	return strings.TrimSpace(string(b)), err
}

// calls is how many DescribeInstances requests the fake has answered.
func (f *fakeEC2) calls() (int, error) {
	s, err := f.control(context.Background(), http.MethodGet, "calls", nil)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(s)
}

func (f *fakeEC2) setTag(id, key, value string) error {
	_, err := f.control(context.Background(), http.MethodPost, "tag", url.Values{"id": {id}, "key": {key}, "value": {value}})
	return err
}

func (f *fakeEC2) setState(id, state string) error {
	_, err := f.control(context.Background(), http.MethodPost, "state", url.Values{"id": {id}, "state": {state}})
	return err
}
