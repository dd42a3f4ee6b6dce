package discovery

import (
	"strings"
	"testing"
)

// FuzzApplyTags checks that any tag values either give a usable target or a *TagError, never
// a panic or a target the gateway could not use.
func FuzzApplyTags(f *testing.F) {
	f.Add("s1, s2 s3", "console", "8443", "8444", "/")
	f.Add("", "", "0", "65536", "dcv")
	f.Add("a\x00b", "x y", " 443 ", "-1", "/p q")
	f.Add(strings.Repeat("x", 300), "\xff", "8443", "", "/\u2028")
	keys, d := DefaultTagKeys(), DefaultDefaults()
	f.Fuzz(func(t *testing.T, sessions, server, httpPort, quicPort, path string) {
		tags := map[string]string{keys.SessionID: sessions, keys.ServerSessionID: server,
			keys.HTTPPort: httpPort, keys.QUICPort: quicPort, keys.WebURLPath: path}
		var tg Target
		if err := ApplyTags(&tg, tags, keys, d); err != nil {
			if _, ok := err.(*TagError); !ok {
				t.Fatalf("error %v is not a *TagError", err)
			}
			return
		}
		if len(tg.SessionIDs) == 0 || tg.HTTPPort == 0 || tg.QUICPort == 0 || !strings.HasPrefix(tg.WebURLPath, "/") {
			t.Fatalf("unusable target %+v", tg)
		}
		for _, id := range tg.SessionIDs {
			if ValidateSessionID(id) != nil || strings.ContainsAny(id, ", \t\n") {
				t.Fatalf("bad session ID %q accepted", id)
			}
		}
		if tg.ServerSessionID != "" && ValidateSessionID(tg.ServerSessionID) != nil {
			t.Fatalf("bad server session ID %q accepted", tg.ServerSessionID)
		}
	})
}
