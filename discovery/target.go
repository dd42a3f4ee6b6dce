// Package discovery defines what a session source reports: Targets, the DCV hosts that serve
// sessions, and the tag conventions that describe them. Concrete sources live in the ec2 and
// sessionfile subpackages.
package discovery

import (
	"errors"
	"time"
)

// Target is one DCV server host and the sessions it serves. Sources build Targets; the index
// shares them read-only between requests, so a Target must never be modified once published.
type Target struct {
	// SessionIDs are the client-facing session IDs this host serves.
	SessionIDs []string
	// ServerSessionID, when set, is the DCV server's own session ID returned to the gateway
	// instead of the requested one (e.g. "console").
	ServerSessionID string
	// Host is the address the gateway connects to: a DNS name or an IP address.
	Host string
	// HTTPPort is the DCV server's TCP port; QUICPort its UDP (QUIC) port.
	HTTPPort, QUICPort uint16
	// WebURLPath is the DCV server's web-url-path; it always starts with "/".
	WebURLPath string
	// InstanceID is the EC2 instance ID; empty for hosts that are not EC2 instances.
	InstanceID string
	// Region is the AWS region the instance was found in; empty for non-EC2 hosts.
	Region string
	// LaunchTime decides conflicts: when two targets claim a session, the later launch wins.
	LaunchTime time.Time
}

// Port returns the port the gateway should use for the given transport ("HTTP" or "QUIC").
func (t *Target) Port(transport string) uint16 {
	if transport == "QUIC" {
		return t.QUICPort
	}
	return t.HTTPPort
}

// Name identifies the target in logs: its instance ID, or its host when it has none.
func (t *Target) Name() string {
	if t.InstanceID != "" {
		return t.InstanceID
	}
	return t.Host
}

// Serves reports whether the target lists the session ID.
func (t *Target) Serves(sessionID string) bool {
	for _, id := range t.SessionIDs {
		if id == sessionID {
			return true
		}
	}
	return false
}

// ErrNotModified is returned by a source's refresh when nothing changed since the last one, so
// the index is left as it is.
var ErrNotModified = errors.New("not modified")
