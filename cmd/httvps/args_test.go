package main

import (
	"flag"
	"io"
	"slices"
	"testing"
)

// IDs are URL-safe base64 and one in 64 starts with "-": such an ID is a
// positional argument, not an unknown flag (regression: TestUp failed on
// "tokens revoke -VBnG0XswbIs-7l5NbWDWQ").
func TestParseInterspersedDashIDs(t *testing.T) {
	for _, c := range []struct {
		args     []string
		wantPos  []string
		wantJSON bool
		wantCtl  string
		wantErr  bool
	}{
		{args: []string{"-VBnG0XswbIs-7l5NbWDWQ"}, wantPos: []string{"-VBnG0XswbIs-7l5NbWDWQ"}},
		{args: []string{"-VBnG0XswbIs-7l5NbWDWQ", "--json"}, wantPos: []string{"-VBnG0XswbIs-7l5NbWDWQ"}, wantJSON: true},
		{args: []string{"--json", "-VBnG0XswbIs-7l5NbWDWQ"}, wantPos: []string{"-VBnG0XswbIs-7l5NbWDWQ"}, wantJSON: true},
		{args: []string{"-json=true", "abc"}, wantPos: []string{"abc"}, wantJSON: true},
		{args: []string{"--", "-json"}, wantPos: []string{"-json"}},
		{args: []string{"-VBnG0XswbIs-7l5NbWDWQ", "-control", "https://c", "--json"}, wantPos: []string{"-VBnG0XswbIs-7l5NbWDWQ"}, wantJSON: true, wantCtl: "https://c"},
		{args: []string{"-control=https://c", "-", "x"}, wantPos: []string{"-", "x"}, wantCtl: "https://c"},
		{args: []string{"abc", "-h"}, wantErr: true}, // help still works
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		js := fs.Bool("json", false, "")
		ctl := fs.String("control", "", "")
		pos, err := parseInterspersed(fs, c.args)
		if (err != nil) != c.wantErr {
			t.Errorf("%q: err %v", c.args, err)
			continue
		}
		if c.wantErr {
			continue
		}
		if !slices.Equal(pos, c.wantPos) || *js != c.wantJSON || *ctl != c.wantCtl {
			t.Errorf("%q: positional %q json %v control %q, want %q %v %q", c.args, pos, *js, *ctl, c.wantPos, c.wantJSON, c.wantCtl)
		}
	}
}
