package discovery

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode"
)

func TestParseSessionIDs(t *testing.T) {
	long := strings.Repeat("a", MaxSessionIDLength)
	tests := []struct {
		name    string
		in      string
		want    []string
		wantErr string // substring of the error; "" means success
	}{
		{"single", "s1", []string{"s1"}, ""},
		{"commas", "s1,s2,s3", []string{"s1", "s2", "s3"}, ""},
		{"spaces", "s1 s2  s3", []string{"s1", "s2", "s3"}, ""},
		{"mixed separators", " s1, s2 ,,s3\t\ns4 ", []string{"s1", "s2", "s3", "s4"}, ""},
		{"unicode space separates", "s1\u00a0s2\u2003s3", []string{"s1", "s2", "s3"}, ""},
		{"duplicates dropped, order kept", "b,a,b, a ,c,b", []string{"b", "a", "c"}, ""},
		{"non-ASCII ID", "sessión-ü,日本", []string{"sessión-ü", "日本"}, ""},
		{"max length", long, []string{long}, ""},
		{"empty", "", nil, "no session ID"},
		{"only separators", " , ,\t,", nil, "no session ID"},
		{"too long", long + "b", nil, "longer than 256 bytes"},
		{"too long among valid", "ok," + long + "b", nil, "longer than 256 bytes"},
		{"control char", "s1,bad\x01id", nil, "control character U+0001"},
		{"DEL", "bad\x7f", nil, "control character U+007F"},
		{"NEL separates", "a\u0085b", []string{"a", "b"}, ""},
		{"C1 control", "bad\u0080id", nil, "control character U+0080"},
		{"invalid UTF-8", "s1,bad\xffid", nil, "not valid UTF-8"},
		{"truncated UTF-8", "s1 \xe6\x97", nil, "not valid UTF-8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSessionIDs(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseSessionIDs(%q) = %q, %v; want error containing %q", tc.in, got, err, tc.wantErr)
				}
				if got != nil {
					t.Errorf("ParseSessionIDs(%q) returned IDs %q with an error", tc.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSessionIDs(%q): %v", tc.in, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseSessionIDs(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestValidateSessionID(t *testing.T) {
	tests := []struct {
		id      string
		wantErr string
	}{
		{"session-123", ""},
		{"console", ""},
		{"a b", ""}, // spaces inside are not refused here; only the tag parser splits on them
		{"<&>\"'\\/", ""},
		{"日本語", ""},
		{"\u2028", ""},
		{strings.Repeat("x", MaxSessionIDLength), ""},
		{strings.Repeat("é", MaxSessionIDLength/2), ""}, // 256 bytes, 128 runes
		{"", "empty"},
		{strings.Repeat("x", MaxSessionIDLength+1), "longer than"},
		{strings.Repeat("é", MaxSessionIDLength/2) + "x", "longer than"}, // 257 bytes
		{"a\x00b", "control character U+0000"},
		{"a\nb", "control character U+000A"},
		{"a\tb", "control character U+0009"},
		{"\x1b[31m", "control character U+001B"},
		{"\xff", "not valid UTF-8"},
		{"\xc0\x80", "not valid UTF-8"},     // overlong encoding of NUL
		{"\xed\xa0\x80", "not valid UTF-8"}, // surrogate
		{"ok\xe2\x80", "not valid UTF-8"},
	}
	for _, tc := range tests {
		err := ValidateSessionID(tc.id)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("ValidateSessionID(%q) = %v, want nil", tc.id, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("ValidateSessionID(%q) = %v, want error containing %q", tc.id, err, tc.wantErr)
		}
	}
}

func TestParsePort(t *testing.T) {
	tests := []struct {
		in   string
		want int
		ok   bool
	}{
		{"1", 1, true},
		{"8443", 8443, true},
		{"65535", 65535, true},
		{" 9000\t", 9000, true},
		{"0", 0, false},
		{"-1", 0, false},
		{"65536", 0, false},
		{"99999999999999999999", 0, false},
		{"", 0, false},
		{"  ", 0, false},
		{"84 43", 0, false},
		{"8443/tcp", 0, false},
		{"0x20fb", 0, false},
		{"port", 0, false},
	}
	for _, tc := range tests {
		got, err := ParsePort(tc.in)
		if tc.ok {
			if err != nil || got != tc.want {
				t.Errorf("ParsePort(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
			}
			continue
		}
		if err == nil {
			t.Errorf("ParsePort(%q) = %d, want an error", tc.in, got)
		} else if got != 0 {
			t.Errorf("ParsePort(%q) returned %d with an error", tc.in, got)
		}
	}
}

func TestValidateWebURLPath(t *testing.T) {
	good := []string{"/", "/dcv", "/a/b/c/", "/dcv?x=1", "/ünï"}
	bad := []string{"", "dcv", " /", "/d cv", "/dcv\n", "/a\tb", "/\x00", "/\x7f", "/a\u00a0b", "/\u0085", "/\xff", "/ok\xe2\x80"}
	for _, p := range good {
		if err := ValidateWebURLPath(p); err != nil {
			t.Errorf("ValidateWebURLPath(%q) = %v, want nil", p, err)
		}
	}
	for _, p := range bad {
		if err := ValidateWebURLPath(p); err == nil {
			t.Errorf("ValidateWebURLPath(%q) = nil, want an error", p)
		}
	}
}

func TestTagKeysValidate(t *testing.T) {
	if err := DefaultTagKeys().Validate(); err != nil {
		t.Fatalf("DefaultTagKeys().Validate() = %v", err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*TagKeys)
	}{
		{"session-id", func(k *TagKeys) { k.SessionID = "" }},
		{"server-session-id", func(k *TagKeys) { k.ServerSessionID = " " }},
		{"http-port", func(k *TagKeys) { k.HTTPPort = "" }},
		{"quic-port", func(k *TagKeys) { k.QUICPort = "\t" }},
		{"web-url-path", func(k *TagKeys) { k.WebURLPath = "" }},
	} {
		k := DefaultTagKeys()
		tc.mod(&k)
		err := k.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tc.name+":") {
			t.Errorf("empty %s: Validate() = %v, want an error naming %s", tc.name, err, tc.name)
		}
	}
	if err := (TagKeys{}).Validate(); err == nil || !strings.HasPrefix(err.Error(), "session-id:") {
		t.Errorf("zero TagKeys: Validate() = %v, want the first key named", err)
	}
}

func TestDefaultsValidate(t *testing.T) {
	d := DefaultDefaults()
	if d.HTTPPort != 8443 || d.QUICPort != 0 || d.WebURLPath != "/" {
		t.Fatalf("DefaultDefaults() = %+v", d)
	}
	if err := d.Validate(); err != nil {
		t.Fatalf("DefaultDefaults().Validate() = %v", err)
	}
	ok := []Defaults{
		{HTTPPort: 1, WebURLPath: "/"},
		{HTTPPort: 65535, QUICPort: 65535, WebURLPath: "/dcv"},
		{HTTPPort: 8443, QUICPort: 0, WebURLPath: "/"},
	}
	for _, d := range ok {
		if err := d.Validate(); err != nil {
			t.Errorf("%+v.Validate() = %v", d, err)
		}
	}
	bad := []struct {
		d   Defaults
		key string
	}{
		{Defaults{HTTPPort: 0, WebURLPath: "/"}, "http-port"},
		{Defaults{HTTPPort: 65536, WebURLPath: "/"}, "http-port"},
		{Defaults{HTTPPort: -1, WebURLPath: "/"}, "http-port"},
		{Defaults{HTTPPort: 8443, QUICPort: -1, WebURLPath: "/"}, "quic-port"},
		{Defaults{HTTPPort: 8443, QUICPort: 65536, WebURLPath: "/"}, "quic-port"},
		{Defaults{HTTPPort: 8443, WebURLPath: ""}, "web-url-path"},
		{Defaults{HTTPPort: 8443, WebURLPath: "dcv"}, "web-url-path"},
		{Defaults{HTTPPort: 8443, WebURLPath: "/a b"}, "web-url-path"},
	}
	for _, tc := range bad {
		err := tc.d.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tc.key+":") {
			t.Errorf("%+v.Validate() = %v, want an error naming %s", tc.d, err, tc.key)
		}
	}
}

func TestApplyTags(t *testing.T) {
	keys := DefaultTagKeys()
	defs := DefaultDefaults()
	tests := []struct {
		name string
		tags map[string]string
		d    Defaults
		want Target
	}{
		{
			name: "defaults applied",
			tags: map[string]string{"dcv:session-id": "s1", "Name": "ignored"},
			d:    defs,
			want: Target{SessionIDs: []string{"s1"}, HTTPPort: 8443, QUICPort: 8443, WebURLPath: "/"},
		},
		{
			name: "quic defaults to the tagged http port",
			tags: map[string]string{"dcv:session-id": "s1, s2", "dcv:http-port": "9443"},
			d:    defs,
			want: Target{SessionIDs: []string{"s1", "s2"}, HTTPPort: 9443, QUICPort: 9443, WebURLPath: "/"},
		},
		{
			name: "configured quic default kept when http is tagged",
			tags: map[string]string{"dcv:session-id": "s1", "dcv:http-port": "9443"},
			d:    Defaults{HTTPPort: 8443, QUICPort: 7443, WebURLPath: "/"},
			want: Target{SessionIDs: []string{"s1"}, HTTPPort: 9443, QUICPort: 7443, WebURLPath: "/"},
		},
		{
			name: "every tag set",
			tags: map[string]string{
				"dcv:session-id":        "a,b a",
				"dcv:server-session-id": " console ",
				"dcv:http-port":         " 8000 ",
				"dcv:quic-port":         "8001",
				"dcv:web-url-path":      " /dcv ",
			},
			d:    defs,
			want: Target{SessionIDs: []string{"a", "b"}, ServerSessionID: "console", HTTPPort: 8000, QUICPort: 8001, WebURLPath: "/dcv"},
		},
		{
			name: "blank server-session-id means none",
			tags: map[string]string{"dcv:session-id": "s1", "dcv:server-session-id": "  "},
			d:    defs,
			want: Target{SessionIDs: []string{"s1"}, HTTPPort: 8443, QUICPort: 8443, WebURLPath: "/"},
		},
		{
			name: "default path from Defaults",
			tags: map[string]string{"dcv:session-id": "s1"},
			d:    Defaults{HTTPPort: 443, WebURLPath: "/custom"},
			want: Target{SessionIDs: []string{"s1"}, HTTPPort: 443, QUICPort: 443, WebURLPath: "/custom"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Target{Host: "10.0.0.1", InstanceID: "i-1"}
			if err := ApplyTags(&got, tc.tags, keys, tc.d); err != nil {
				t.Fatalf("ApplyTags: %v", err)
			}
			tc.want.Host, tc.want.InstanceID = "10.0.0.1", "i-1" // untouched
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ApplyTags = %+v\nwant          %+v", got, tc.want)
			}
		})
	}
}

func TestApplyTagsCustomKeys(t *testing.T) {
	keys := TagKeys{SessionID: "sid", ServerSessionID: "ssid", HTTPPort: "hp", QUICPort: "qp", WebURLPath: "path"}
	var got Target
	tags := map[string]string{"sid": "x", "ssid": "y", "hp": "1", "qp": "2", "path": "/p",
		"dcv:session-id": "ignored", "dcv:http-port": "bad"}
	if err := ApplyTags(&got, tags, keys, DefaultDefaults()); err != nil {
		t.Fatal(err)
	}
	want := Target{SessionIDs: []string{"x"}, ServerSessionID: "y", HTTPPort: 1, QUICPort: 2, WebURLPath: "/p"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestApplyTagsErrors(t *testing.T) {
	tests := []struct {
		name      string
		tags      map[string]string
		tag, val  string
		errSubstr string
	}{
		{"missing session tag", map[string]string{"dcv:http-port": "8443"}, "dcv:session-id", "", "missing"},
		{"empty session tag", map[string]string{"dcv:session-id": " , "}, "dcv:session-id", " , ", "no session ID"},
		{"bad session ID", map[string]string{"dcv:session-id": "ok,b\x01d"}, "dcv:session-id", "ok,b\x01d", "control character"},
		{"bad server session ID", map[string]string{"dcv:session-id": "s", "dcv:server-session-id": "con\x00sole"}, "dcv:server-session-id", "con\x00sole", "control character"},
		{"long server session ID", map[string]string{"dcv:session-id": "s", "dcv:server-session-id": strings.Repeat("c", 257)}, "dcv:server-session-id", strings.Repeat("c", 257), "longer than"},
		{"bad http port", map[string]string{"dcv:session-id": "s", "dcv:http-port": "https"}, "dcv:http-port", "https", "not a port"},
		{"zero http port", map[string]string{"dcv:session-id": "s", "dcv:http-port": "0"}, "dcv:http-port", "0", "not a port"},
		{"empty http port", map[string]string{"dcv:session-id": "s", "dcv:http-port": ""}, "dcv:http-port", "", "not a port"},
		{"bad quic port", map[string]string{"dcv:session-id": "s", "dcv:quic-port": "70000"}, "dcv:quic-port", "70000", "not a port"},
		{"relative path", map[string]string{"dcv:session-id": "s", "dcv:web-url-path": "dcv"}, "dcv:web-url-path", "dcv", "does not start with /"},
		{"blank path", map[string]string{"dcv:session-id": "s", "dcv:web-url-path": "  "}, "dcv:web-url-path", "", "does not start with /"},
		{"path with space", map[string]string{"dcv:session-id": "s", "dcv:web-url-path": "/a b"}, "dcv:web-url-path", "/a b", "white space"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var tg Target
			err := ApplyTags(&tg, tc.tags, DefaultTagKeys(), DefaultDefaults())
			var te *TagError
			if !errors.As(err, &te) {
				t.Fatalf("ApplyTags = %v (%T), want a *TagError", err, err)
			}
			if te.Tag != tc.tag || te.Value != tc.val {
				t.Errorf("TagError{Tag: %q, Value: %q}, want {%q, %q}", te.Tag, te.Value, tc.tag, tc.val)
			}
			if te.Err == nil || errors.Unwrap(err) != te.Err {
				t.Errorf("TagError does not unwrap to its cause: %v", te.Err)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.tag) || !strings.Contains(msg, tc.errSubstr) {
				t.Errorf("error %q does not name tag %q and cause %q", msg, tc.tag, tc.errSubstr)
			}
		})
	}
}

func TestTargetHelpers(t *testing.T) {
	tg := Target{SessionIDs: []string{"a", "b"}, Host: "h.example", HTTPPort: 1, QUICPort: 2}
	if tg.Port("HTTP") != 1 || tg.Port("QUIC") != 2 {
		t.Errorf("Port: HTTP %d, QUIC %d", tg.Port("HTTP"), tg.Port("QUIC"))
	}
	if tg.Name() != "h.example" {
		t.Errorf("Name() = %q without an instance ID", tg.Name())
	}
	tg.InstanceID = "i-1"
	if tg.Name() != "i-1" {
		t.Errorf("Name() = %q with an instance ID", tg.Name())
	}
	if !tg.Serves("b") || tg.Serves("c") || tg.Serves("") {
		t.Error("Serves is wrong")
	}
}

func FuzzParseSessionIDs(f *testing.F) {
	for _, s := range []string{
		"", "s1", "s1,s2", " a , b ,a", "a\tb\nc", "x\x00y", "\xff", "日本,語",
		strings.Repeat("a", MaxSessionIDLength+1), "a\u00a0b\u2028c", ",,,",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		ids, err := ParseSessionIDs(in)
		if err != nil {
			if ids != nil {
				t.Fatalf("IDs %q returned with error %v", ids, err)
			}
			return
		}
		if len(ids) == 0 {
			t.Fatal("no IDs and no error")
		}
		seen := make(map[string]bool, len(ids))
		for _, id := range ids {
			if id == "" {
				t.Fatal("empty ID")
			}
			if err := ValidateSessionID(id); err != nil {
				t.Fatalf("returned invalid ID %q: %v", id, err)
			}
			if strings.ContainsRune(id, ',') || strings.ContainsFunc(id, unicode.IsSpace) {
				t.Fatalf("ID %q contains a separator", id)
			}
			if !strings.Contains(in, id) {
				t.Fatalf("ID %q is not in the input", id)
			}
			if seen[id] {
				t.Fatalf("duplicate ID %q in %q", id, ids)
			}
			seen[id] = true
		}
	})
}
