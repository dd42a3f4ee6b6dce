package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestEmptyConfigIsValid(t *testing.T) {
	c, err := ParseConfig(nil, "/etc/x")
	if err != nil {
		t.Fatal(err)
	}
	if c.EC2.Enabled || c.Server.Listen != "127.0.0.1:9000" || c.Tags.SessionID != "dcv:session-id" {
		t.Fatalf("defaults wrong: %+v", c)
	}
}

func TestEC2TableTurnsDiscoveryOn(t *testing.T) {
	c, err := ParseConfig([]byte("[ec2]\n"), ".")
	if err != nil {
		t.Fatal(err)
	}
	if !c.EC2.Enabled || c.EC2.PollInterval != 30*time.Second || c.EC2.Address != "private-dns" {
		t.Fatalf("ec2 defaults wrong: %+v", c.EC2)
	}
	c, err = ParseConfig([]byte("[ec2]\nenabled = false\n"), ".")
	if err != nil || c.EC2.Enabled {
		t.Fatalf("enabled = false ignored: %v %+v", err, c.EC2)
	}
}

func TestFullConfig(t *testing.T) {
	c, err := ParseConfig([]byte(`
[server]
listen = "[::1]:9100"
[ec2]
regions = ["eu-west-1", "us-gov-west-1"]
endpoint = "http://127.0.0.1:4566"
poll-interval = "1m"
address = "private-ip"
assume-role-arn = "arn:aws:iam::123456789012:role/dcv"
filters = [{ name = "tag:dcv:fleet", values = ["prod"] }]
on-miss-rate = 0.5
[tags]
session-id = "fleet:session"
[defaults]
http-port = 9443
quic-port = 9444
web-url-path = "/dcv"
[file]
path = "sessions.toml"
[log]
level = "debug"
format = "console"
request-level = "off"
`), "/etc/dcv-ec2-resolver")
	if err != nil {
		t.Fatal(err)
	}
	if c.EC2.PollInterval != time.Minute || len(c.EC2.Regions) != 2 || c.EC2.Filters[0].Values[0] != "prod" ||
		c.Tags.SessionID != "fleet:session" || c.Tags.HTTPPort != "dcv:http-port" || c.Defaults.QUICPort != 9444 {
		t.Fatalf("not decoded as written: %+v", c)
	}
	if c.File.Path != "/etc/dcv-ec2-resolver/sessions.toml" {
		t.Fatalf("relative sessions path not anchored at the config's folder: %q", c.File.Path)
	}
	if _, on, _ := c.requestLevel(); on {
		t.Fatal("request-level = off did not turn request lines off")
	}
}

func TestBadConfigNamesTheKey(t *testing.T) {
	for _, tc := range []struct{ toml, key string }{
		{"[server]\nlisten = \"nope\"", "server.listen"},
		{"[server]\nlisten = 9000", "server.listen"},
		{"[server]\nread-timeout = \"0s\"", "server.read-timeout"},
		{"[server]\nmax-header-bytes = 10", "server.max-header-bytes"},
		{"[ec2]\npoll-interval = \"soon\"", "ec2.poll-interval"},
		{"[ec2]\npoll-interval = \"-1s\"", "ec2.poll-interval"},
		{"[ec2]\nregions = [\"mars-1\"]", "ec2.regions[0]"},
		{"[ec2]\nendpoint = \"ftp://x\"", "ec2.endpoint"},
		{"[ec2]\naddress = \"elastic\"", "ec2.address"},
		{"[ec2]\nassume-role-arn = \"role/x\"", "ec2.assume-role-arn"},
		{"[ec2]\nfilters = [{ name = \"tag:x\" }]", "ec2.filters[0]"},
		{"[ec2]\nmax-attempts = 0", "ec2.max-attempts"},
		{"[ec2]\non-miss-rate = 0", "ec2.on-miss-rate"},
		{"[ec2]\non-miss-burst = 0", "ec2.on-miss-burst"},
		{"[ec2]\nnegative-cache-size = 0", "ec2.negative-cache-size"},
		{"[ec2]\npol-interval = \"30s\"", "ec2.pol-interval"},
		{"[tags]\nsession-id = \"\"", "session-id"},
		{"[defaults]\nhttp-port = 70000", "http-port"},
		{"[defaults]\nweb-url-path = \"dcv\"", "web-url-path"},
		{"[file]\npath = \"s.toml\"\ncheck-interval = \"0s\"", "file.check-interval"},
		{"[log]\nlevel = \"loud\"", "log.level"},
		{"[log]\nformat = \"xml\"", "log.format"},
		{"[log]\nrequest-level = \"sometimes\"", "log.request-level"},
		{"[resolver]\nurl = \"x\"", "resolver"},
		{"listen = \"127.0.0.1:9000\"", "listen"},
	} {
		_, err := ParseConfig([]byte(tc.toml), ".")
		if err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%q: error %v does not name %s", tc.toml, err, tc.key)
		}
	}
}

func TestLoadConfigNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resolver.toml")
	if err := os.WriteFile(path, []byte("[log]\nlevel = 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "log.level") {
		t.Fatalf("error %v should name the file and the key", err)
	}
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "missing.toml")); err == nil {
		t.Fatal("a missing config file must be an error")
	}
}

func TestExampleConfigIsValid(t *testing.T) {
	c, err := LoadConfig("../../examples/resolver.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.EC2.Enabled || c.File.Path == "" {
		t.Fatalf("the example must serve only its sessions file: %+v", c)
	}
}
