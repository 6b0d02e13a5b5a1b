package api

import (
	"unicode"
	"unicode/utf8"
)

// checkText reports whether s may be stored as a free-text field (a token
// label, a member name): valid UTF-8 of at most max bytes without control
// characters. Such fields reach operators' terminals through `httvps admin`
// and the keys' #fragment, where a newline forges table rows and an escape
// sequence drives the terminal.
func checkText(s string, max int) bool {
	if len(s) > max || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		// C0 (0x00-0x1F), DEL (0x7F) and C1 (0x80-0x9F).
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}
