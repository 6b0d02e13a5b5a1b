// Package archtest checks the module's import graph (STYLE.md practice 12).
package archtest

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
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
		// The wire formats and the buffer pool stand alone.
		{pkg: module + "/codec", ownOK: []string{module + "/codec"}},
		{pkg: module + "/bufpool", ownOK: []string{}},
		// The shared state is below both the gateway and the control
		// plane: it knows neither.
		{pkg: module + "/store", ownOK: []string{module + "/store"}},
		// The gateway: its own packages, the codecs, the pool, the store
		// (storeauth) — never the control plane or its HTTP stack.
		{pkg: module + "/gateway", ownOK: []string{
			module + "/gateway", module + "/codec", module + "/bufpool", module + "/store",
			module + "/internal/rawio", module + "/internal/nginxdecoy",
		}, forbidden: []string{"github.com/valyala/fasthttp"}},
		// The nginx emulation, shared by the gateway's decoy and the
		// control API's answers to strangers, stands alone.
		{pkg: module + "/internal/nginxdecoy", ownOK: []string{module + "/internal/nginxdecoy"}},
		// Raw socket system calls, shared by the gateway and the client.
		{pkg: module + "/internal/rawio", ownOK: []string{}},
		// The client documents have no HTTP: the gateway's wiring serves
		// them too (docs/04, "Documents behind the decoy").
		{pkg: module + "/control/clientdoc", ownOK: []string{module + "/store", module + "/control/api/wire", module + "/control/clientdoc"},
			forbidden: []string{"github.com/valyala/fasthttp", "net/http"}},
		// The console renders over the admin API (called in-process) and
		// reads the store only for the user's page: it never reaches the
		// pool, the API's internals or a store implementation.
		{pkg: module + "/control/console", ownOK: []string{module + "/store", module + "/control/api/wire", module + "/control/clientdoc", module + "/control/console"}},
		// The control plane never imports the gateway.
		{pkg: module + "/control", forbidden: []string{module + "/gateway"}},
		{pkg: module + "/internal/cliconf", ownOK: []string{}},
		// The shared flag sets map onto the gateway's and the control
		// plane's Config types; they start nothing and pick no store.
		{pkg: module + "/internal/wiring", forbidden: []string{module + "/store/redisstore", module + "/store/embedded"}},
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
		// that cmd/* shares, and internal/wiring the gateway's and
		// control plane's flag sets the binaries register; both work on
		// the binaries' *flag.FlagSet, so they must import flag. They
		// read no process state themselves (the environment and files
		// come in as functions) and only cmd/* may use them
		// (TestCliconfOnlyForCmd).
		if flagPackages[p.ImportPath] {
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

// flagPackages carry flag handling for cmd/*: the merge (cliconf) and the
// shared flag sets (wiring).
var flagPackages = map[string]bool{
	module + "/internal/cliconf": true,
	module + "/internal/wiring":  true,
}

// internal/cliconf and internal/wiring carry flag handling, so only cmd/*
// may use them (wiring itself uses cliconf).
func TestCliconfOnlyForCmd(t *testing.T) {
	for _, p := range packages(t) {
		if under(p.ImportPath, module+"/cmd") || flagPackages[p.ImportPath] {
			continue
		}
		for _, d := range p.Deps {
			if flagPackages[d] {
				t.Errorf("%s depends on %s; only cmd/* may", p.ImportPath, d)
			}
		}
	}
}

// Only cmd/* reads the environment: no other non-test source calls
// os.Getenv, os.LookupEnv, os.Environ or syscall.Getenv (packages get a
// Config, practice 9). bench/process.go passes the harness's environment
// on to the peers it starts (minus SS_*), which is not reading it.
func TestOnlyCmdReadsEnvironment(t *testing.T) {
	allowed := map[string]bool{"bench/process.go": true}
	calls := []string{"os.Getenv(", "os.LookupEnv(", "os.Environ(", "syscall.Getenv("}
	root := moduleRoot(t)
	checked := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if rel == "cmd" || strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil && rel != "." {
				return filepath.SkipDir // another module (the bench's peer tools): its mains are programs
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") || allowed[filepath.ToSlash(rel)] {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		checked++
		for _, c := range calls {
			if bytes.Contains(b, []byte(c)) {
				t.Errorf("%s calls %s…); only cmd/* reads the environment", rel, c)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 50 {
		t.Fatalf("only %d source files checked", checked)
	}
}

// moduleRoot is the directory holding go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}
