package ec2

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/dcv-ec2-resolver/dcv-ec2-resolver/discovery"
	"github.com/dcv-ec2-resolver/dcv-ec2-resolver/discovery/ec2/ec2fake"
)

// benchInstances returns n running instances tagged the way a fleet would be: every tenth
// serves three sessions (comma and space separated) and has its own ports, the others one
// session on the default ports; each also carries two tags the resolver ignores.
func benchInstances(n int) []ec2fake.Instance {
	launch := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	out := make([]ec2fake.Instance, n)
	for i := range out {
		a, b, c := byte(i>>16), byte(i>>8), byte(i)
		tags := map[string]string{
			"Name":                      "dcv-host-" + strconv.Itoa(i),
			"aws:autoscaling:groupName": "dcv-fleet",
			"dcv:session-id":            "sess-" + strconv.Itoa(i),
		}
		if i%10 == 0 {
			tags["dcv:session-id"] = fmt.Sprintf("sess-%d,sess-%d-b sess-%d-c", i, i, i)
			tags["dcv:http-port"], tags["dcv:quic-port"] = "9443", "9444"
		}
		out[i] = ec2fake.Instance{
			ID:         fmt.Sprintf("i-%017x", i),
			PrivateIP:  fmt.Sprintf("10.%d.%d.%d", a, b, c),
			PrivateDNS: fmt.Sprintf("ip-10-%d-%d-%d.ec2.internal", a, b, c),
			LaunchTime: launch.Add(time.Duration(i) * time.Second),
			Tags:       tags,
		}
	}
	return out
}

// BenchmarkPoll is one full poll of a region through the real SDK client against the fake EC2
// endpoint on loopback: paging, XML decoding and turning instances into targets. The fake's
// rendering shares the CPU, and every page waits for the fake's default latency
// (ec2fake.DefaultLatency), so this is an upper bound; bench/ separates the parts. It reports
// the DescribeInstances calls per poll, which must be ceil(n/1000).
func BenchmarkPoll(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			srv := ec2fake.NewServer()
			defer srv.Close()
			srv.SetRecording(false)
			srv.PutMany(region, benchInstances(n))

			tr := http.DefaultTransport.(*http.Transport).Clone()
			defer tr.CloseIdleConnections()
			cc := DefaultClientConfig()
			cc.Endpoint, cc.Regions = srv.URL(), []string{region}
			cfg := aws.Config{
				Region:      region,
				Credentials: aws.CredentialsProviderFunc(benchCreds),
				Retryer:     cc.NewRetryer,
				HTTPClient:  &http.Client{Transport: tr, Timeout: cc.CallTimeout},
			}
			src := NewSource(region, NewClients(cfg, cc, nil, nil)[0].Client, Options{
				Tags: discovery.DefaultTagKeys(), Defaults: discovery.DefaultDefaults(), NewRetryer: cc.NewRetryer,
			}, nil)

			b.ReportAllocs()
			b.ResetTimer()
			polls := 0
			for b.Loop() {
				targets, err := src.Poll(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				if len(targets) != n {
					b.Fatalf("%d targets, want %d", len(targets), n)
				}
				polls++
			}
			b.ReportMetric(float64(srv.Calls("DescribeInstances"))/float64(polls), "calls/poll")
		})
	}
}

func benchCreds(context.Context) (aws.Credentials, error) {
	return aws.Credentials{AccessKeyID: "AKIDFAKE", SecretAccessKey: "fake", Source: "bench"}, nil
}
