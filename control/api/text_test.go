package api

import (
	"strings"
	"testing"
)

func TestCheckText(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		ok   bool
	}{
		{"empty", "", true},
		{"plain", "alice", true},
		{"spaces and punctuation", "Alice's phone (2026) #1", true},
		{"non-ASCII", "Ålesund — ключ 鍵 🔑", true},
		{"just past C1", "\u00a0nbsp", true},
		{"at the length bound", strings.Repeat("x", 40), true},
		{"past the length bound", strings.Repeat("x", 41), false},
		{"multi-byte past the bound", strings.Repeat("é", 21), false},
		{"newline", "alice\nbob", false},
		{"carriage return", "alice\r", false},
		{"tab", "a\tb", false},
		{"NUL", "a\x00", false},
		{"ANSI colour", "\x1b[31mred", false},
		{"unit separator", "a\x1f", false},
		{"DEL", "a\x7f", false},
		{"C1 NEL", "a\u0085", false},
		{"C1 CSI", "a\u009b31m", false},
		{"C1 first", "\u0080", false},
		{"C1 last", "\u009f", false},
		{"invalid UTF-8", "a\xffb", false},
		{"raw C1 byte", "a\x9bb", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := checkText(tc.in, 40); got != tc.ok {
				t.Errorf("checkText(%q, 40) = %v, want %v", tc.in, got, tc.ok)
			}
		})
	}
}
