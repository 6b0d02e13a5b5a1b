package version

import (
	"runtime"
	"strings"
	"testing"
)

func TestAsked(t *testing.T) {
	for args, want := range map[string]bool{"-version": true, "--version": true, "version": false, "-version -x": false, "": false} {
		if got := Asked(strings.Fields(args)); got != want {
			t.Errorf("Asked(%q) = %v", args, got)
		}
	}
}

// What the linker sets wins; the Go version is the runtime's; the line and
// the metric carry all of it.
func TestGetStringMetric(t *testing.T) {
	defer func(v, c, d string) { Version, Commit, Date = v, c, d }(Version, Commit, Date)
	Version, Commit, Date = "v1.2.3-4-gabc", "abcdef", "2026-12-03T06:40:57Z"
	in := Get()
	if in.Version != "v1.2.3-4-gabc" || in.Commit != "abcdef" || in.Date != "2026-12-03T06:40:57Z" || in.Go != runtime.Version() {
		t.Fatalf("Get = %+v", in)
	}
	if s := in.String("httvps-gateway"); s != "httvps-gateway v1.2.3-4-gabc (commit abcdef, built 2026-12-03T06:40:57Z, "+runtime.Version()+")" {
		t.Errorf("String = %q", s)
	}
	if m := in.Series(); m != `httvps_build_info{version="v1.2.3-4-gabc",commit="abcdef",go="`+runtime.Version()+`"}` {
		t.Errorf("Series = %q", m)
	}
	Version, Commit, Date = "", "", ""
	if in := Get(); in.Version == "" || !strings.Contains(in.String("x"), "(commit ") {
		t.Errorf("unset: %+v", in)
	}
}
