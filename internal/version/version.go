// Package version is what a binary says it is: its version, the commit it
// was built from, when, and with which Go.
//
// The version comes from the linker (make build passes
// -X github.com/httvps/httvps/internal/version.Version=$(git describe)),
// else the module version (a `go install …@v1.2.3`), else "devel". make
// build also sets the commit and the build time; without them the VCS stamp
// `go build` embeds in a git checkout (-buildvcs) gives the commit and its
// time.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set by the linker (-ldflags -X); empty means "read the build info".
var (
	Version string
	Commit  string
	Date    string
)

// Info is one binary's build.
type Info struct {
	Version string // "v0.4.0-12-gabcdef0", a module version, or "devel"
	Commit  string // full hash, "+dirty" appended for a modified tree; "" if unknown
	Date    string // build time from the linker, else the commit time of the VCS stamp; RFC 3339, "" if unknown
	Go      string // runtime.Version()
}

// Get returns this binary's Info.
func Get() Info {
	in := Info{Version: Version, Commit: Commit, Date: Date, Go: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if in.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			in.Version = bi.Main.Version
		}
		var rev, at string
		dirty := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				at = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if in.Commit == "" && rev != "" {
			in.Commit = rev
			if dirty {
				in.Commit += "+dirty"
			}
		}
		if in.Date == "" {
			in.Date = at
		}
	}
	if in.Version == "" {
		in.Version = "devel"
	}
	return in
}

// String is the one line `-version` prints: "NAME VERSION (commit C,
// built D, GO)".
func (in Info) String(name string) string {
	c, d := in.Commit, in.Date
	if c == "" {
		c = "unknown"
	}
	if d == "" {
		d = "unknown"
	}
	return fmt.Sprintf("%s %s (commit %s, built %s, %s)", name, in.Version, c, d, in.Go)
}

// Asked reports whether args ask only for the version: -version or
// --version as the one argument.
func Asked(args []string) bool {
	return len(args) == 1 && (args[0] == "-version" || args[0] == "--version")
}

// Series is the httvps_build_info series (name and labels) for /metrics;
// its value is always 1.
func (in Info) Series() string {
	return fmt.Sprintf("httvps_build_info{version=%q,commit=%q,go=%q}", in.Version, in.Commit, in.Go)
}
