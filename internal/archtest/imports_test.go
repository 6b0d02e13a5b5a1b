// Package archtest checks the module's import graph (STYLE.md practice 12).
package archtest

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/httvps/httvps"

type pkg struct {
	ImportPath string
	Deps       []string
}

// packages lists every package of the module with its transitive deps.
func packages(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps=false", "-json", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var ps []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	if len(ps) < 5 {
		t.Fatalf("go list found only %d packages", len(ps))
	}
	return ps
}

func under(path, prefix string) bool {
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

func TestImportGraph(t *testing.T) {
	rules := []struct {
		pkg       string   // applies to this package and those under it
		forbidden []string // may not depend on these (transitively)
		ownOK     []string // the only packages of ours it may depend on (nil: any)
	}{
		{pkg: module + "/codec", ownOK: []string{module + "/codec"}},
		{pkg: module + "/bufpool", ownOK: []string{}},
		{pkg: module + "/gateway", forbidden: []string{
			module + "/control/api", module + "/control/pool", module + "/client",
			"github.com/valyala/fasthttp",
		}},
		{pkg: module + "/control", forbidden: []string{module + "/gateway"}},
		{pkg: module + "/internal/cliconf", ownOK: []string{}},
	}
	for _, p := range packages(t) {
		for _, r := range rules {
			if !under(p.ImportPath, r.pkg) {
				continue
			}
			for _, d := range p.Deps {
				for _, f := range r.forbidden {
					if under(d, f) {
						t.Errorf("%s depends on %s", p.ImportPath, d)
					}
				}
				if r.ownOK != nil && under(d, module) {
					ok := false
					for _, o := range r.ownOK {
						ok = ok || under(d, o)
					}
					if !ok {
						t.Errorf("%s depends on %s; it may import nothing of ours", p.ImportPath, d)
					}
				}
			}
		}
	}
}

// Only cmd/* reads flags and the environment.
func TestOnlyCmdReadsFlagsAndEnv(t *testing.T) {
	for _, p := range packages(t) {
		if under(p.ImportPath, module+"/cmd") || strings.HasSuffix(p.ImportPath, "_test") {
			continue
		}
		// internal/cliconf is the flag > environment > config file merge
		// that cmd/* shares; it works on the binaries' *flag.FlagSet, so
		// it must import flag. It reads no process state itself (the
		// environment and files come in as functions) and only cmd/* may
		// use it (TestCliconfOnlyForCmd).
		if p.ImportPath == module+"/internal/cliconf" {
			continue
		}
		out, err := exec.Command("go", "list", "-f", `{{join .Imports " "}}`, p.ImportPath).Output()
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range strings.Fields(string(out)) {
			if imp == "flag" {
				t.Errorf("%s imports flag; only cmd/* may", p.ImportPath)
			}
		}
	}
}

// internal/cliconf carries flag handling, so only cmd/* may use it.
func TestCliconfOnlyForCmd(t *testing.T) {
	const cliconf = module + "/internal/cliconf"
	for _, p := range packages(t) {
		if under(p.ImportPath, module+"/cmd") || p.ImportPath == cliconf {
			continue
		}
		for _, d := range p.Deps {
			if d == cliconf {
				t.Errorf("%s depends on %s; only cmd/* may", p.ImportPath, d)
			}
		}
	}
}
