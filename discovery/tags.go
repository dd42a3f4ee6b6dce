package discovery

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxSessionIDLength is the longest session ID the resolver accepts. Longer IDs cannot be
// tagged on an instance (EC2 tag values are at most 256 characters) and are refused early.
const MaxSessionIDLength = 256

// TagKeys names the instance tags that describe a target. The zero value is not useful; start
// from DefaultTagKeys.
type TagKeys struct {
	// SessionID lists the client-facing session IDs, separated by commas and/or spaces.
	SessionID string `toml:"session-id"`
	// ServerSessionID optionally holds the DCV server's own session ID.
	ServerSessionID string `toml:"server-session-id"`
	// HTTPPort, QUICPort and WebURLPath override the defaults for one host.
	HTTPPort   string `toml:"http-port"`
	QUICPort   string `toml:"quic-port"`
	WebURLPath string `toml:"web-url-path"`
}

// DefaultTagKeys returns the documented tag names, all under the "dcv:" prefix.
func DefaultTagKeys() TagKeys {
	return TagKeys{
		SessionID:       "dcv:session-id",
		ServerSessionID: "dcv:server-session-id",
		HTTPPort:        "dcv:http-port",
		QUICPort:        "dcv:quic-port",
		WebURLPath:      "dcv:web-url-path",
	}
}

// Validate reports the first empty tag key, naming its config key.
func (k TagKeys) Validate() error {
	for _, f := range []struct{ name, v string }{
		{"session-id", k.SessionID},
		{"server-session-id", k.ServerSessionID},
		{"http-port", k.HTTPPort},
		{"quic-port", k.QUICPort},
		{"web-url-path", k.WebURLPath},
	} {
		if strings.TrimSpace(f.v) == "" {
			return fmt.Errorf("%s: tag key must not be empty", f.name)
		}
	}
	return nil
}

// Defaults are the values a target gets for what its tags (or file entry) leave out.
type Defaults struct {
	// HTTPPort is the DCV server TCP port; 8443 unless configured.
	HTTPPort int `toml:"http-port"`
	// QUICPort is the DCV server UDP port; 0 means "the same as the HTTP port".
	QUICPort int `toml:"quic-port"`
	// WebURLPath is the DCV server's web-url-path; "/" unless configured.
	WebURLPath string `toml:"web-url-path"`
}

// DefaultDefaults returns DCV's own defaults: port 8443 for both transports and path "/".
func DefaultDefaults() Defaults {
	return Defaults{HTTPPort: 8443, WebURLPath: "/"}
}

// Validate checks the defaults, naming the offending key.
func (d Defaults) Validate() error {
	if d.HTTPPort < 1 || d.HTTPPort > 65535 {
		return fmt.Errorf("http-port: %d is not a port (1-65535)", d.HTTPPort)
	}
	if d.QUICPort < 0 || d.QUICPort > 65535 {
		return fmt.Errorf("quic-port: %d is not a port (1-65535, or 0 for the HTTP port)", d.QUICPort)
	}
	if err := ValidateWebURLPath(d.WebURLPath); err != nil {
		return fmt.Errorf("web-url-path: %w", err)
	}
	return nil
}

// TagError says which tag of an instance had an unusable value.
type TagError struct {
	Tag, Value string
	Err        error
}

func (e *TagError) Error() string {
	return fmt.Sprintf("tag %s=%q: %v", e.Tag, e.Value, e.Err)
}

func (e *TagError) Unwrap() error { return e.Err }

// ApplyTags fills t's session IDs, server session ID, ports and path from an instance's tags,
// using d for what is absent. It returns a *TagError for the first bad value; the caller drops
// that instance and keeps the rest of the poll.
func ApplyTags(t *Target, tags map[string]string, keys TagKeys, d Defaults) error {
	raw, ok := tags[keys.SessionID]
	if !ok {
		return &TagError{Tag: keys.SessionID, Err: fmt.Errorf("missing")}
	}
	ids, err := ParseSessionIDs(raw)
	if err != nil {
		return &TagError{Tag: keys.SessionID, Value: raw, Err: err}
	}
	t.SessionIDs = ids

	if v, ok := tags[keys.ServerSessionID]; ok {
		v = strings.TrimSpace(v)
		if v != "" {
			if err := ValidateSessionID(v); err != nil {
				return &TagError{Tag: keys.ServerSessionID, Value: v, Err: err}
			}
		}
		t.ServerSessionID = v
	}

	httpPort := d.HTTPPort
	if v, ok := tags[keys.HTTPPort]; ok {
		if httpPort, err = ParsePort(v); err != nil {
			return &TagError{Tag: keys.HTTPPort, Value: v, Err: err}
		}
	}
	quicPort := d.QUICPort
	if v, ok := tags[keys.QUICPort]; ok {
		if quicPort, err = ParsePort(v); err != nil {
			return &TagError{Tag: keys.QUICPort, Value: v, Err: err}
		}
	}
	if quicPort == 0 {
		quicPort = httpPort
	}
	t.HTTPPort, t.QUICPort = uint16(httpPort), uint16(quicPort)

	t.WebURLPath = d.WebURLPath
	if v, ok := tags[keys.WebURLPath]; ok {
		v = strings.TrimSpace(v)
		if err := ValidateWebURLPath(v); err != nil {
			return &TagError{Tag: keys.WebURLPath, Value: v, Err: err}
		}
		t.WebURLPath = v
	}
	return nil
}

// ParseSessionIDs splits a session tag value on commas and white space, dropping empty fields
// and duplicates. It fails when no ID remains or one cannot be a session ID.
func ParseSessionIDs(v string) ([]string, error) {
	fields := strings.FieldsFunc(v, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
	ids := make([]string, 0, len(fields))
	for _, f := range fields {
		if err := ValidateSessionID(f); err != nil {
			return nil, fmt.Errorf("session ID %q: %w", f, err)
		}
		if !contains(ids, f) {
			ids = append(ids, f)
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("no session ID")
	}
	return ids, nil
}

func contains(ids []string, id string) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// ValidateSessionID reports why id can never be a session ID: empty, longer than
// MaxSessionIDLength bytes, invalid UTF-8, or containing control characters.
func ValidateSessionID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("empty")
	case len(id) > MaxSessionIDLength:
		return fmt.Errorf("longer than %d bytes", MaxSessionIDLength)
	}
	for i := 0; i < len(id); {
		r, size := utf8.DecodeRuneInString(id[i:])
		if r == utf8.RuneError && size <= 1 {
			return fmt.Errorf("not valid UTF-8")
		}
		if unicode.IsControl(r) {
			return fmt.Errorf("contains control character %U", r)
		}
		i += size
	}
	return nil
}

// ParsePort parses a TCP/UDP port number, 1 to 65535.
func ParsePort(v string) (int, error) {
	p, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("not a port (1-65535)")
	}
	return p, nil
}

// ValidateWebURLPath checks a DCV web-url-path: it must start with "/", be valid UTF-8 and hold
// no white space or control characters, since the gateway puts it into URLs.
func ValidateWebURLPath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("%q does not start with /", p)
	}
	if !utf8.ValidString(p) {
		return fmt.Errorf("%q is not valid UTF-8", p)
	}
	for _, r := range p {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("%q contains white space or control characters", p)
		}
	}
	return nil
}
