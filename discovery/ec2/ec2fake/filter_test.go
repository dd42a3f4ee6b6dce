package ec2fake

import "testing"

func TestPatternMatch(t *testing.T) {
	tests := []struct {
		pat, s string
		want   bool
	}{
		{"", "", true},
		{"", "a", false},
		{"abc", "abc", true},
		{"abc", "abcd", false},
		{"abc", "ABC", false}, // case-sensitive
		{"*", "", true},
		{"*", "anything", true},
		{"a*", "a", true},
		{"a*", "abc", true},
		{"a*", "ba", false},
		{"*c", "abc", true},
		{"*c", "abcd", false},
		{"a*c", "ac", true},
		{"a*c", "abbbc", true},
		{"a*c", "abbbcd", false},
		{"*a*", "bab", true},
		{"*ab*ab", "xabyabab", true},
		{"*ab*ab", "xabyaba", false},
		{"a**b", "axyzb", true},
		{"?", "", false},
		{"?", "x", true},
		{"?", "é", true}, // one character, two bytes
		{"?", "xy", false},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"??*", "ab", true},
		{"??*", "a", false},
		{"*?", "", false},
		{"*?", "é", true},
		{`\*`, "*", true},
		{`\*`, "x", false},
		{`\?`, "?", true},
		{`\?`, "x", false},
		{`\\`, `\`, true},
		{`\\`, `\\`, false},
		{`\\*`, `\anything`, true},
		{`a\*b*`, "a*bc", true},
		{`a\*b*`, "axbc", false},
		{`\*amazon\?\\`, `*amazon?\`, true},
		{`x\`, `x\`, true}, // a trailing backslash is literal
		{`\a`, "a", true},  // an escaped ordinary character is itself
		{`\é?`, "éx", true},
		{"s-*-?", "s-123-4", true},
		{"s-*-?", "s-123-45", false},
	}
	for _, tt := range tests {
		p := compilePattern(tt.pat)
		if got := p.match(tt.s); got != tt.want {
			t.Errorf("pattern %q match %q = %v, want %v", tt.pat, tt.s, got, tt.want)
		}
	}
}
