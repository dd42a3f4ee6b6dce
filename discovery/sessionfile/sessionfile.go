// Package sessionfile reads the sessions file: a TOML list of sessions pinned to hosts, for
// hosts outside EC2, for tests and demos, and for overriding what EC2 tags say.
//
//	[sessions.session-123]
//	host = "dcv123.mycompany.com"
//	http-port = 8443
//	quic-port = 8443
//	web-url-path = "/"
//	server-session-id = "console"
package sessionfile

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/BurntSushi/toml"

	"github.com/dcv-ec2-resolver/dcv-ec2-resolver/discovery"
)

type entry struct {
	Host            string  `toml:"host"`
	HTTPPort        *int    `toml:"http-port"`
	QUICPort        *int    `toml:"quic-port"`
	WebURLPath      *string `toml:"web-url-path"`
	ServerSessionID string  `toml:"server-session-id"`
}

type file struct {
	Sessions map[string]entry `toml:"sessions"`
}

// Parse reads a sessions file's contents into targets, one per session, applying d for the
// optional keys. Any unknown key or bad value fails the whole file, naming the key.
func Parse(data []byte, d discovery.Defaults) ([]discovery.Target, error) {
	var f file
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&f)
	if err != nil {
		return nil, err
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return nil, fmt.Errorf("unknown key %s", strings.Join(keys, ", "))
	}
	ids := make([]string, 0, len(f.Sessions))
	for id := range f.Sessions {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	targets := make([]discovery.Target, 0, len(ids))
	for _, id := range ids {
		if err := discovery.ValidateSessionID(id); err != nil {
			return nil, fmt.Errorf("sessions.%s: not a session ID: %w", toml.Key{id}.String(), err)
		}
		t, err := target(id, f.Sessions[id], d)
		if err != nil {
			return nil, fmt.Errorf("sessions.%s.%w", toml.Key{id}.String(), err)
		}
		targets = append(targets, t)
	}
	return targets, nil
}

// target validates one entry; its errors start with the key at fault, for Parse to prefix
// with the session's table.
func target(id string, e entry, d discovery.Defaults) (discovery.Target, error) {
	if strings.TrimSpace(e.Host) == "" || strings.ContainsFunc(e.Host, badHostRune) {
		return discovery.Target{}, fmt.Errorf("host: %q is not a host name or address", e.Host)
	}
	t := discovery.Target{SessionIDs: []string{id}, Host: e.Host, WebURLPath: d.WebURLPath}
	http, quic := d.HTTPPort, d.QUICPort
	if e.HTTPPort != nil {
		http = *e.HTTPPort
		if http < 1 || http > 65535 {
			return t, fmt.Errorf("http-port: %d is not a port (1-65535)", http)
		}
	}
	if e.QUICPort != nil {
		quic = *e.QUICPort
		if quic < 1 || quic > 65535 {
			return t, fmt.Errorf("quic-port: %d is not a port (1-65535)", quic)
		}
	}
	if quic == 0 {
		quic = http
	}
	t.HTTPPort, t.QUICPort = uint16(http), uint16(quic)
	if e.WebURLPath != nil {
		if err := discovery.ValidateWebURLPath(*e.WebURLPath); err != nil {
			return t, fmt.Errorf("web-url-path: %w", err)
		}
		t.WebURLPath = *e.WebURLPath
	}
	if e.ServerSessionID != "" {
		if err := discovery.ValidateSessionID(e.ServerSessionID); err != nil {
			return t, fmt.Errorf("server-session-id: %w", err)
		}
		t.ServerSessionID = e.ServerSessionID
	}
	return t, nil
}

// badHostRune reports characters no host name or address holds: "/", white space and
// control characters (TOML escapes such as \u0000 can put any of them in a string).
func badHostRune(r rune) bool { return r == '/' || unicode.IsSpace(r) || unicode.IsControl(r) }

// Load reads and parses the sessions file at path.
func Load(path string, d discovery.Defaults) ([]discovery.Target, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	targets, err := Parse(data, d)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return targets, nil
}

// Source watches one sessions file: Refresh re-reads it only when its size, modification time
// or inode changed, so it can be called every second or two.
type Source struct {
	path     string
	defaults discovery.Defaults

	mu   sync.Mutex
	last os.FileInfo
}

// NewSource returns a Source for the file at path.
func NewSource(path string, d discovery.Defaults) *Source {
	return &Source{path: path, defaults: d}
}

// Path is the watched file.
func (s *Source) Path() string { return s.path }

// Refresh returns the file's targets when it changed since the last successful call, and
// discovery.ErrNotModified otherwise. A broken file returns its error and is read again on
// the next call; the caller keeps serving the last good contents.
func (s *Source) Refresh(context.Context) ([]discovery.Target, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fi, err := os.Stat(s.path)
	if err != nil {
		return nil, err
	}
	if s.last != nil && sameFile(s.last, fi) {
		return nil, discovery.ErrNotModified
	}
	targets, err := Load(s.path, s.defaults)
	if err != nil {
		return nil, err
	}
	s.last = fi
	return targets, nil
}

func sameFile(a, b os.FileInfo) bool {
	return a.Size() == b.Size() && a.ModTime().Equal(b.ModTime()) && os.SameFile(a, b) &&
		// A file rewritten within the clock's resolution looks unchanged; read it once more
		// while its modification time is this fresh.
		time.Since(b.ModTime()) > 2*time.Second
}
