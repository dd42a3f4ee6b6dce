// Command ec2fake serves a fake Amazon EC2 endpoint (package discovery/ec2/ec2fake) on a
// loopback address, for install tests and benchmarks that run the real dcv-ec2-resolver binary
// against "EC2" without AWS.
//
// It prints the endpoint's base URL ("http://127.0.0.1:PORT") as the first line on standard
// output, then serves until SIGTERM or SIGINT. Point the resolver at it with
//
//	[ec2]
//	endpoint = "http://127.0.0.1:PORT"
//	regions = ["us-east-1"]
//
// and any static credentials (AWS_ACCESS_KEY_ID=AKIDFAKE AWS_SECRET_ACCESS_KEY=fake), with
// AWS_EC2_METADATA_DISABLED=true so that the SDK never asks the instance metadata service.
//
// Usage:
//
//	ec2fake [-listen 127.0.0.1:0] [-region us-east-1] [-instances N]
//
// -instances N puts N running instances into the region, each tagged for the resolver:
// instance i-0000000000000000K (K counting from 1, in hex) carries dcv:session-id=session-K,
// dcv:http-port=8443 and private DNS name ip-10-X-Y-Z.ec2.internal. Only loopback listen
// addresses (127.0.0.0/8, ::1, localhost) are accepted: the fake is never reachable from
// another machine.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/dcv-ec2-resolver/dcv-ec2-resolver/discovery/ec2/ec2fake"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run parses args, serves until ctx ends and returns the exit status: 0 after a clean
// shutdown, 1 when serving failed, 2 for bad arguments.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ec2fake", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "loopback `host:port` to listen on (port 0: any free port)")
	region := fs.String("region", "us-east-1", "`region` the synthetic instances are put in")
	n := fs.Int("instances", 0, "how many synthetic tagged running instances to put in the region")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "ec2fake: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if err := checkLoopback(*listen); err != nil {
		fmt.Fprintf(stderr, "ec2fake: %v\n", err)
		return 2
	}
	if *n < 0 {
		fmt.Fprintln(stderr, "ec2fake: -instances must not be negative")
		return 2
	}

	fake := ec2fake.New()
	defer fake.Close()
	fake.SetRecording(false) // a long benchmark must not grow the request log
	if *n > 0 {
		fake.PutMany(*region, synthetic(*n))
	}

	l, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(stderr, "ec2fake: %v\n", err)
		return 1
	}
	srv := &http.Server{Handler: fake, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	fmt.Fprintf(stdout, "http://%s\n", l.Addr())
	if f, ok := stdout.(*os.File); ok {
		_ = f.Sync()
	}

	select {
	case err := <-served:
		fmt.Fprintf(stderr, "ec2fake: %v\n", err)
		return 1
	case <-ctx.Done():
	}
	fake.Close() // release requests held by injected faults before waiting for them
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		_ = srv.Close()
	}
	<-served
	return 0
}

// checkLoopback refuses listen addresses that another machine could reach: the host must be
// a loopback IP or "localhost"; an empty host (all interfaces) is refused.
func checkLoopback(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-listen %q: %v", addr, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("-listen %q: bad port %q", addr, port)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("-listen %q: only loopback addresses (127.0.0.1, ::1, localhost) are allowed", addr)
}

// synthetic returns n running instances tagged for the resolver: instance K (from 1) is
// i-0000000000000000K in hex, serves session-K on port 8443 and has a private address in
// 10.0.0.0/8. The launch times are fixed, so runs are reproducible.
func synthetic(n int) []ec2fake.Instance {
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	out := make([]ec2fake.Instance, n)
	for i := range out {
		k := i + 1
		a, b, c := byte(k>>16), byte(k>>8), byte(k)
		out[i] = ec2fake.Instance{
			ID:         fmt.Sprintf("i-%017x", k),
			PrivateIP:  fmt.Sprintf("10.%d.%d.%d", a, b, c),
			PrivateDNS: fmt.Sprintf("ip-10-%d-%d-%d.ec2.internal", a, b, c),
			LaunchTime: base.Add(time.Duration(k) * time.Second),
			Tags: map[string]string{
				"Name":           fmt.Sprintf("dcv-host-%d", k),
				"dcv:session-id": fmt.Sprintf("session-%d", k),
				"dcv:http-port":  "8443",
			},
		}
	}
	return out
}
