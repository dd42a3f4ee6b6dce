package ec2

import (
	"io"
	"net/http"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
)

// httpDoer is the HTTP client interface the SDK calls.
type httpDoer interface {
	Do(*http.Request) (*http.Response, error)
}

// newHTTPClient returns the SDK's buildable client with a per-attempt timeout, wrapped so that
// request bodies reach net/http with only Read and Close. (LoadAWSConfig wraps after loading
// instead: the SDK insists on its own client type while it applies AWS_CA_BUNDLE.)
//
// The SDK closes a request body once response headers arrive; when net/http is still in the
// body's WriteTo at that moment, it drops the connection under the response being read, and
// the call fails with "use of closed network connection" (aws-sdk-go-v2 issue 2737). A fast
// endpoint — a VPC interface endpoint, or a test server on loopback — hits this often. Without
// WriteTo, net/http copies the body through Read and the race cannot happen.
func newHTTPClient(timeout time.Duration) httpDoer {
	return readOnlyBodies{awshttp.NewBuildableClient().WithTimeout(timeout)}
}

// guardBodies wraps a loaded configuration's HTTP client as newHTTPClient does.
func guardBodies(c httpDoer) httpDoer {
	if _, ok := c.(readOnlyBodies); ok {
		return c
	}
	return readOnlyBodies{c}
}

type readOnlyBodies struct{ next httpDoer }

type readOnlyBody struct{ io.ReadCloser }

func (c readOnlyBodies) Do(r *http.Request) (*http.Response, error) {
	if r.Body != nil && r.Body != http.NoBody {
		r = r.WithContext(r.Context()) // shallow copy: a client must not modify the caller's request
		r.Body = readOnlyBody{r.Body}
	}
	return c.next.Do(r)
}
