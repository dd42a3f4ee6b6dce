package main

import (
	"fmt"
	"strconv"
	"time"

	"github.com/dcv-ec2-resolver/dcv-ec2-resolver/discovery/ec2/ec2fake"
)

// benchRegion is the one region the harness's fake EC2 holds.
const benchRegion = "us-east-1"

// multiEvery: every multiEvery-th instance serves three session IDs instead of one, so a
// fleet of n instances serves sessionsOf(n) sessions.
const multiEvery = 10

// instanceID is the ID of the fleet's k-th instance.
func instanceID(k int) string { return fmt.Sprintf("i-%017x", k) }

// sessionTag is the dcv:session-id tag value of instance k: "sess-k", or for every tenth
// instance three IDs separated by a comma and a space, as operators write them.
func sessionTag(k int) string {
	if k%multiEvery == 0 {
		return fmt.Sprintf("sess-%d,sess-%d-b sess-%d-c", k, k, k)
	}
	return "sess-" + strconv.Itoa(k)
}

// sessionsOf is how many session IDs a fleet of n instances serves.
func sessionsOf(n int) int { return n + 2*((n+multiEvery-1)/multiEvery) }

// fleetSessions lists every session ID of a fleet of n instances.
func fleetSessions(n int) []string {
	out := make([]string, 0, sessionsOf(n))
	for k := range n {
		id := "sess-" + strconv.Itoa(k)
		out = append(out, id)
		if k%multiEvery == 0 {
			out = append(out, id+"-b", id+"-c")
		}
	}
	return out
}

// unknownSessions are IDs no instance carries, for the negative-cache runs.
func unknownSessions(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "unknown-" + strconv.Itoa(i)
	}
	return out
}

// fleet returns n running instances tagged for the resolver. Every tenth serves three
// sessions and sets its own ports and a server session ID; each instance also carries the two
// tags an auto-scaled host usually has and the resolver ignores. Launch times are fixed, so
// runs are reproducible.
func fleet(n int) []ec2fake.Instance {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	out := make([]ec2fake.Instance, n)
	for k := range out {
		a, b, c := byte(k>>16), byte(k>>8), byte(k)
		tags := map[string]string{
			"Name":                      "dcv-host-" + strconv.Itoa(k),
			"aws:autoscaling:groupName": "dcv-fleet",
			"dcv:session-id":            sessionTag(k),
		}
		if k%multiEvery == 0 {
			tags["dcv:http-port"] = "9443"
			tags["dcv:quic-port"] = "9444"
			tags["dcv:server-session-id"] = "console"
		}
		out[k] = ec2fake.Instance{
			ID:         instanceID(k),
			PrivateIP:  fmt.Sprintf("10.%d.%d.%d", a, b, c),
			PrivateDNS: fmt.Sprintf("ip-10-%d-%d-%d.ec2.internal", a, b, c),
			LaunchTime: base.Add(time.Duration(k) * time.Second),
			Tags:       tags,
		}
	}
	return out
}
