package sessionfile

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dcv-ec2-resolver/dcv-ec2-resolver/discovery"
)

const fullFile = `
# comment
[sessions.session-123]
host = "dcv123.mycompany.com"
http-port = 8443
quic-port = 9443
web-url-path = "/dcv"
server-session-id = "console"

[sessions.console-demo]
host = "10.0.0.7"

[sessions."with space"]
host = "2001:db8::1"
http-port = 443
`

func TestParseFull(t *testing.T) {
	got, err := Parse([]byte(fullFile), discovery.DefaultDefaults())
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	// Sorted by session ID; optional keys take the defaults, QUIC follows HTTP.
	want := []discovery.Target{
		{SessionIDs: []string{"console-demo"}, Host: "10.0.0.7", HTTPPort: 8443, QUICPort: 8443, WebURLPath: "/"},
		{SessionIDs: []string{"session-123"}, ServerSessionID: "console", Host: "dcv123.mycompany.com", HTTPPort: 8443, QUICPort: 9443, WebURLPath: "/dcv"},
		{SessionIDs: []string{"with space"}, Host: "2001:db8::1", HTTPPort: 443, QUICPort: 443, WebURLPath: "/"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse =\n%+v\nwant\n%+v", got, want)
	}
}

func TestParseOptionalDefaults(t *testing.T) {
	data := []byte("[sessions.a]\nhost = \"h\"\n[sessions.b]\nhost = \"h\"\nhttp-port = 9000\n[sessions.c]\nhost = \"h\"\nquic-port = 7000\n")
	tests := []struct {
		name string
		d    discovery.Defaults
		want [3][2]uint16 // HTTP and QUIC port of a, b, c
		path string
	}{
		{"DCV defaults", discovery.DefaultDefaults(), [3][2]uint16{{8443, 8443}, {9000, 9000}, {8443, 7000}}, "/"},
		{"configured quic default", discovery.Defaults{HTTPPort: 1000, QUICPort: 2000, WebURLPath: "/x"}, [3][2]uint16{{1000, 2000}, {9000, 2000}, {1000, 7000}}, "/x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(data, tc.d)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 3 {
				t.Fatalf("got %d targets", len(got))
			}
			for i, tg := range got {
				if tg.HTTPPort != tc.want[i][0] || tg.QUICPort != tc.want[i][1] || tg.WebURLPath != tc.path || tg.ServerSessionID != "" {
					t.Errorf("%s: %+v, want ports %v path %q", tg.SessionIDs[0], tg, tc.want[i], tc.path)
				}
			}
		})
	}
}

func TestParseEmpty(t *testing.T) {
	for _, data := range []string{"", "\n# nothing here\n", "[sessions]\n"} {
		got, err := Parse([]byte(data), discovery.DefaultDefaults())
		if err != nil || len(got) != 0 {
			t.Errorf("Parse(%q) = %v, %v; want no targets and no error", data, got, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, data string
		want       []string // substrings of the error
	}{
		{"unknown session key", "[sessions.s1]\nhost = \"h\"\nport = 1\n", []string{"unknown key", "sessions.s1.port"}},
		{"unknown top-level key", "listen = \"x\"\n[sessions.s1]\nhost = \"h\"\n", []string{"unknown key", "listen"}},
		{"missing host", "[sessions.s1]\nhttp-port = 1\n", []string{"sessions.s1.host:"}},
		{"blank host", "[sessions.s1]\nhost = \"  \"\n", []string{"sessions.s1.host:"}},
		{"host with space", "[sessions.s1]\nhost = \"a b\"\n", []string{"sessions.s1.host:"}},
		{"host with slash", "[sessions.s1]\nhost = \"https://h/\"\n", []string{"sessions.s1.host:"}},
		{"host with newline", "[sessions.s1]\nhost = \"h\\n\"\n", []string{"sessions.s1.host:"}},
		{"host with NUL", "[sessions.s1]\nhost = \"h\\u0000x\"\n", []string{"sessions.s1.host:"}},
		{"host with control char", "[sessions.s1]\nhost = \"h\\u0007x\"\n", []string{"sessions.s1.host:"}},
		{"host with unicode space", "[sessions.s1]\nhost = \"h\u00a0x\"\n", []string{"sessions.s1.host:"}},
		{"http port zero", "[sessions.s1]\nhost = \"h\"\nhttp-port = 0\n", []string{"sessions.s1.http-port:", "0"}},
		{"http port too big", "[sessions.s1]\nhost = \"h\"\nhttp-port = 65536\n", []string{"sessions.s1.http-port:"}},
		{"quic port negative", "[sessions.s1]\nhost = \"h\"\nquic-port = -1\n", []string{"sessions.s1.quic-port:"}},
		{"quic port zero", "[sessions.s1]\nhost = \"h\"\nquic-port = 0\n", []string{"sessions.s1.quic-port:"}},
		{"relative path", "[sessions.s1]\nhost = \"h\"\nweb-url-path = \"dcv\"\n", []string{"sessions.s1.web-url-path:"}},
		{"empty path", "[sessions.s1]\nhost = \"h\"\nweb-url-path = \"\"\n", []string{"sessions.s1.web-url-path:"}},
		{"path with space", "[sessions.s1]\nhost = \"h\"\nweb-url-path = \"/a b\"\n", []string{"sessions.s1.web-url-path:"}},
		{"server session ID control", "[sessions.s1]\nhost = \"h\"\nserver-session-id = \"a\\tb\"\n", []string{"sessions.s1.server-session-id:"}},
		{"server session ID too long", "[sessions.s1]\nhost = \"h\"\nserver-session-id = \"" + strings.Repeat("x", 257) + "\"\n", []string{"sessions.s1.server-session-id:", "longer than"}},
		{"session ID too long", "[sessions." + strings.Repeat("x", 257) + "]\nhost = \"h\"\n", []string{"sessions." + strings.Repeat("x", 257) + ": not a session ID"}},
		{"session ID control", "[sessions.\"a\\u0001b\"]\nhost = \"h\"\n", []string{`sessions."a\u0001b": not a session ID`}},
		{"quoted ID named quoted", "[sessions.\"a.b\"]\nhost = \"h\"\nhttp-port = 0\n", []string{`sessions."a.b".http-port:`}},
		{"error in second session", "[sessions.a]\nhost = \"h\"\n[sessions.b]\nhost = \"h\"\nhttp-port = 99999\n", []string{"sessions.b.http-port:"}},
		{"wrong type", "[sessions.s1]\nhost = \"h\"\nhttp-port = \"8443\"\n", []string{"http-port"}},
		{"not TOML", "[sessions.s1\nhost = ", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse([]byte(tc.data), discovery.DefaultDefaults())
			if err == nil {
				t.Fatalf("Parse = %+v, want an error", got)
			}
			if got != nil {
				t.Errorf("targets %+v returned with error", got)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sessions.toml")
	writeFile(t, path, "[sessions.s1]\nhost = \"h\"\nhttp-port = 0\n", time.Time{})
	_, err := Load(path, discovery.DefaultDefaults())
	if err == nil || !strings.HasPrefix(err.Error(), path+": ") || !strings.Contains(err.Error(), "sessions.s1.http-port") {
		t.Errorf("Load error = %v, want it to name the file and the key", err)
	}
	if _, err := Load(filepath.Join(dir, "nope.toml"), discovery.DefaultDefaults()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want ErrNotExist", err)
	}
}

// writeFile writes data to path and sets its modification time to mtime (unless zero), so a
// test can make the file look old enough for the unchanged check.
func writeFile(t *testing.T, path, data string, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if !mtime.IsZero() {
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
}

func hosts(ts []discovery.Target) []string {
	var hs []string
	for _, t := range ts {
		hs = append(hs, t.SessionIDs[0]+"="+t.Host)
	}
	return hs
}

func TestSourceRefresh(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sessions.toml")
	past := time.Now().Add(-time.Hour)
	writeFile(t, path, "[sessions.s1]\nhost = \"h1\"\n", past)

	src := NewSource(path, discovery.DefaultDefaults())
	if src.Path() != path {
		t.Errorf("Path() = %q", src.Path())
	}
	refresh := func(step string, want ...string) {
		t.Helper()
		got, err := src.Refresh(ctx)
		if err != nil {
			t.Fatalf("%s: Refresh: %v", step, err)
		}
		if !reflect.DeepEqual(hosts(got), want) {
			t.Fatalf("%s: Refresh = %v, want %v", step, hosts(got), want)
		}
	}
	notModified := func(step string) {
		t.Helper()
		got, err := src.Refresh(ctx)
		if !errors.Is(err, discovery.ErrNotModified) || got != nil {
			t.Fatalf("%s: Refresh = %v, %v; want ErrNotModified", step, hosts(got), err)
		}
	}

	refresh("first", "s1=h1")
	notModified("unchanged")
	notModified("unchanged again")

	// Rewritten in place, same size: the new modification time gives it away.
	writeFile(t, path, "[sessions.s1]\nhost = \"h2\"\n", past.Add(time.Minute))
	refresh("rewritten", "s1=h2")
	notModified("rewritten, unchanged")

	// Replaced by rename, same size and modification time: the new inode gives it away.
	tmp := path + ".tmp"
	writeFile(t, tmp, "[sessions.s1]\nhost = \"h3\"\n", past.Add(time.Minute))
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	refresh("renamed", "s1=h3")
	notModified("renamed, unchanged")

	// A broken file fails every call until it is fixed, then its new contents come back.
	writeFile(t, path, "[sessions.s1]\nhost = \"h4\"\nbogus = 1\n", past.Add(2*time.Minute))
	for i := 0; i < 2; i++ {
		got, err := src.Refresh(ctx)
		if err == nil || errors.Is(err, discovery.ErrNotModified) || got != nil {
			t.Fatalf("broken #%d: Refresh = %v, %v; want the parse error", i, hosts(got), err)
		}
		if !strings.Contains(err.Error(), "sessions.s1.bogus") {
			t.Errorf("broken: error %q does not name the key", err)
		}
	}
	writeFile(t, path, "[sessions.s1]\nhost = \"h5\"\n[sessions.s2]\nhost = \"h6\"\n", past.Add(3*time.Minute))
	refresh("fixed", "s1=h5", "s2=h6")
	notModified("fixed, unchanged")

	// Emptied: a valid file with no sessions.
	writeFile(t, path, "", past.Add(4*time.Minute))
	refresh("emptied")

	// Removed: an error, not "not modified"; it comes back when the file does.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Refresh(ctx); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("removed: Refresh = %v, want ErrNotExist", err)
	}
	writeFile(t, path, "[sessions.s7]\nhost = \"h7\"\n", past.Add(5*time.Minute))
	refresh("restored", "s7=h7")
}

func TestSourceRefreshFreshFileReread(t *testing.T) {
	// A file modified within the last two seconds could be rewritten again within the clock's
	// resolution, so it is read on every call until it ages.
	path := filepath.Join(t.TempDir(), "sessions.toml")
	writeFile(t, path, "[sessions.s1]\nhost = \"h1\"\n", time.Time{})
	src := NewSource(path, discovery.DefaultDefaults())
	for i := 0; i < 3; i++ {
		got, err := src.Refresh(context.Background())
		if err != nil || len(got) != 1 {
			t.Fatalf("call %d: Refresh = %v, %v; want the targets", i, hosts(got), err)
		}
	}
}

func TestSourceRefreshMissing(t *testing.T) {
	src := NewSource(filepath.Join(t.TempDir(), "missing.toml"), discovery.DefaultDefaults())
	for i := 0; i < 2; i++ {
		if got, err := src.Refresh(context.Background()); !errors.Is(err, fs.ErrNotExist) || got != nil {
			t.Fatalf("call %d: Refresh = %v, %v; want ErrNotExist", i, got, err)
		}
	}
}
