package main

import (
	"strings"
	"testing"
)

func TestLoggerBuffersInfoAndFlushesWarnings(t *testing.T) {
	var out syncBuffer
	log, _, closeLog, err := newLogger(LogConfig{Level: "info", Format: "json"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("request line")
	if out.String() != "" {
		t.Fatal("an info line was written at once; it should wait in the buffer")
	}
	log.Warn("something is wrong")
	if s := out.String(); !strings.Contains(s, "request line") || !strings.Contains(s, "something is wrong") {
		t.Fatalf("a warning must flush the buffer at once, got %q", s)
	}
	log.Named("request").Info("last line")
	closeLog()
	if !strings.Contains(out.String(), "last line") {
		t.Fatal("closing the logger lost buffered lines")
	}
}
