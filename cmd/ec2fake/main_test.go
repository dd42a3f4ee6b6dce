package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCheckLoopback(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "127.0.0.2:9000", "[::1]:0", "localhost:8080"} {
		if err := checkLoopback(addr); err != nil {
			t.Errorf("checkLoopback(%q) = %v, want nil", addr, err)
		}
	}
	for _, addr := range []string{":0", "0.0.0.0:0", "[::]:0", "10.0.0.1:80", "example.com:80", "127.0.0.1", "127.0.0.1:x", "127.0.0.1:70000"} {
		if err := checkLoopback(addr); err == nil {
			t.Errorf("checkLoopback(%q) = nil, want an error", addr)
		}
	}
}

func TestRefusesBadArguments(t *testing.T) {
	for _, args := range [][]string{{"-listen", "0.0.0.0:0"}, {"-instances", "-1"}, {"extra"}, {"-nope"}} {
		var stderr bytes.Buffer
		if got := run(context.Background(), args, io.Discard, &stderr); got != 2 {
			t.Errorf("run(%q) = %d, want 2 (stderr %q)", args, got, stderr.String())
		}
	}
}

func TestSynthetic(t *testing.T) {
	insts := synthetic(300)
	seen := map[string]bool{}
	for _, inst := range insts {
		if seen[inst.ID] || seen[inst.PrivateIP] {
			t.Fatalf("duplicate %s / %s", inst.ID, inst.PrivateIP)
		}
		seen[inst.ID], seen[inst.PrivateIP] = true, true
	}
	last := insts[299]
	if last.ID != "i-0000000000000012c" || last.Tags["dcv:session-id"] != "session-300" || last.PrivateDNS != "ip-10-0-1-44.ec2.internal" {
		t.Errorf("instance 300 = %+v", last)
	}
}

// TestServes runs the command as the install test does: it prints its URL first, answers the
// real SDK client with the synthetic instances, and exits 0 when told to stop.
func TestServes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"-instances", "3", "-region", "eu-west-1"}, pw, io.Discard)
		pw.Close()
	}()
	url, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	url = strings.TrimSpace(url)
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("first line %q, want http://127.0.0.1:PORT", url)
	}

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := ec2.New(ec2.Options{
		HTTPClient:       &http.Client{Transport: tr},
		Region:           "eu-west-1",
		BaseEndpoint:     aws.String(url),
		Credentials:      credentials.NewStaticCredentialsProvider("AKIDFAKE", "fake", ""),
		RetryMaxAttempts: 1,
	})
	out, err := client.DescribeInstances(ctx, &ec2.DescribeInstancesInput{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range out.Reservations {
		n += len(r.Instances)
	}
	if n != 3 {
		t.Errorf("DescribeInstances found %d instances, want 3", n)
	}
	tr.CloseIdleConnections()

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit status %d, want 0", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("did not stop after cancel")
	}
}
