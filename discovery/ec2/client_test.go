package ec2

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/dcv-ec2-resolver/dcv-ec2-resolver/discovery/ec2/ec2fake"
)

// isolateAWSEnv keeps the SDK's credential and region chains away from the machine's own AWS
// set-up and from the real instance metadata service.
func isolateAWSEnv(t *testing.T) {
	for k, v := range ec2fake.Env(t.TempDir()) {
		t.Setenv(k, v)
	}
}

// fakeIMDS is an IMDSv2 endpoint on loopback: a token from PUT /latest/api/token is required
// for every metadata read, as on an instance with IMDSv2 enforced.
func fakeIMDS(t *testing.T, region string) (*httptest.Server, *atomic.Int32) {
	var reads atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPut && r.URL.Path == "/latest/api/token":
			if r.Header.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds") == "" {
				http.Error(w, "missing TTL", http.StatusBadRequest)
				return
			}
			w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", "21600")
			_, _ = w.Write([]byte("token-123"))
		case r.Header.Get("X-Aws-Ec2-Metadata-Token") != "token-123":
			http.Error(w, "unauthorized", http.StatusUnauthorized)
		case r.URL.Path == "/latest/dynamic/instance-identity/document":
			reads.Add(1)
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"accountId":"123456789012","instanceId":"i-0123456789abcdef0","region":"` + region +
				`","availabilityZone":"` + region + `a","instanceType":"m7i.large","privateIp":"10.0.0.1"}`))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &reads
}

func TestRegionFromIMDSv2(t *testing.T) {
	isolateAWSEnv(t)
	imds, reads := fakeIMDS(t, "eu-central-1")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "false")
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.URL)

	cfg, err := LoadAWSConfig(context.Background(), DefaultClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Region != "eu-central-1" || reads.Load() == 0 {
		t.Fatalf("region %q after %d IMDS reads, want eu-central-1 from IMDS", cfg.Region, reads.Load())
	}
	clients := NewClients(cfg, DefaultClientConfig(), nil, nil)
	if len(clients) != 1 || clients[0].Region != "eu-central-1" {
		t.Fatalf("clients %+v, want one for the instance's region", clients)
	}
}

func TestConfiguredRegionsWinOverIMDS(t *testing.T) {
	isolateAWSEnv(t)
	imds, reads := fakeIMDS(t, "eu-central-1")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "false")
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.URL)
	cc := DefaultClientConfig()
	cc.Regions = []string{"us-west-2", "ap-southeast-2"}
	cfg, err := LoadAWSConfig(context.Background(), cc)
	if err != nil {
		t.Fatal(err)
	}
	clients := NewClients(cfg, cc, nil, nil)
	if len(clients) != 2 || clients[0].Region != "us-west-2" || clients[1].Region != "ap-southeast-2" {
		t.Fatalf("clients %+v", clients)
	}
	if reads.Load() != 0 {
		t.Fatalf("IMDS asked for the region %d times although regions are configured", reads.Load())
	}
}

func TestNoRegionIsAClearError(t *testing.T) {
	isolateAWSEnv(t)
	_, err := LoadAWSConfig(context.Background(), DefaultClientConfig())
	if err == nil || !strings.Contains(err.Error(), "no AWS region") {
		t.Fatalf("got %v, want a no-region error", err)
	}
}

func TestEnvironmentRegion(t *testing.T) {
	isolateAWSEnv(t)
	t.Setenv("AWS_REGION", "sa-east-1")
	cfg, err := LoadAWSConfig(context.Background(), DefaultClientConfig())
	if err != nil || cfg.Region != "sa-east-1" {
		t.Fatalf("region %q, %v; want sa-east-1 from AWS_REGION", cfg.Region, err)
	}
	if _, ok := cfg.HTTPClient.(readOnlyBodies); !ok {
		t.Fatalf("HTTP client %T does not guard request bodies", cfg.HTTPClient)
	}
}
