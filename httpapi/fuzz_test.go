package httpapi

import (
	"net/netip"
	"net/url"
	"testing"
)

// FuzzParseRequest checks that any query string either yields a well-formed request or a
// short reason, never a panic, and that accepted requests are what url.ParseQuery would read.
func FuzzParseRequest(f *testing.F) {
	for _, q := range []string{
		"sessionId=s1&transport=HTTP&clientIpAddress=10.0.0.1",
		"sessionId=s1&transport=QUIC&clientIpAddress=%3A%3A1",
		"transport=HTTP",
		"sessionId=a%2Fb+c&transport=QUIC",
		"sessionId=%ZZ&transport=HTTP",
		"sessionId=x&sessionId=y&transport=HTTP&transport=QUIC",
		"sessionId=&transport=HTTP",
		"sessionId=s&transport=http&clientIpAddress=nope",
	} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		req, bad := parseRequest(q)
		if bad != "" {
			if len(bad) > 64 {
				t.Fatalf("reason too long for a 400 body: %q", bad)
			}
			return
		}
		if req.sessionID == "" {
			t.Fatal("accepted an empty session ID")
		}
		if req.transport != "HTTP" && req.transport != "QUIC" {
			t.Fatalf("accepted transport %q", req.transport)
		}
		if req.clientIP != "" {
			if _, err := netip.ParseAddr(req.clientIP); err != nil {
				t.Fatalf("accepted client IP %q", req.clientIP)
			}
		}
		// Where the standard library can read the query, it must agree with us.
		if vals, err := url.ParseQuery(q); err == nil {
			if vals.Get("sessionId") != req.sessionID || vals.Get("transport") != req.transport {
				t.Fatalf("parsed %+v, url.ParseQuery says %v", req, vals)
			}
		}
	})
}
