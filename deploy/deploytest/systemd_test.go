package deploytest_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

var (
	upOnce  sync.Once
	upBin   *binary
	upBuild error
)

// httvpsUp builds cmd/httvps once and reads the flags of `httvps up -h`.
func httvpsUp(t *testing.T) *binary {
	t.Helper()
	upOnce.Do(func() {
		dir, err := os.MkdirTemp("", "httvps-deploytest-up-")
		if err != nil {
			upBuild = err
			return
		}
		out := filepath.Join(dir, "httvps")
		cmd := exec.Command("go", "build", "-o", out, "./cmd/httvps")
		cmd.Dir = root(t)
		if b, err := cmd.CombinedOutput(); err != nil {
			upBuild = fmt.Errorf("go build ./cmd/httvps: %v\n%s", err, b)
			return
		}
		var help bytes.Buffer
		h := exec.Command(out, "up", "-h")
		h.Stdout, h.Stderr = &help, &help
		h.Run()
		b := &binary{name: "httvps up", path: out, flags: map[string]flagDef{}, envs: map[string]string{}}
		for _, m := range helpLine.FindAllStringSubmatch(help.String(), -1) {
			b.flags[m[1]] = flagDef{name: m[1], typ: m[2], env: m[3]}
			b.envs[m[3]] = m[1]
		}
		if len(b.flags) < 10 {
			upBuild = fmt.Errorf("httvps up -h: only %d flags parsed from:\n%s", len(b.flags), help.String())
			return
		}
		upBin = b
	})
	if upBuild != nil {
		t.Fatal(upBuild)
	}
	return upBin
}

// unit is a parsed systemd unit file: section → key → values in order.
type unit map[string]map[string][]string

func (u unit) get(section, key string) []string { return u[section][key] }

func (u unit) one(section, key string) string {
	v := u[section][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := unit{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" || strings.HasSuffix(line, `\`) {
				t.Fatalf("%s:%d: not KEY=VALUE in a section: %q", path, n, line)
			}
			u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return u
}

// systemdUnits are the units in deploy/systemd: which binary and
// subcommand each runs, and its env file in deploy/systemd and /etc.
var systemdUnits = []struct {
	file, bin, args, env, state, dirVar string
}{
	{"httvps.service", "httvps", "up", "httvps.env", "httvps", "HTTVPS_DATA_DIR"},
	{"httvps-gateway.service", "httvps-gateway", "", "gateway.env", "httvps-gateway", "HTTVPS_ACME_DIR"},
	{"httvps-control.service", "httvps-control", "", "control.env", "httvps-control", "HTTVPS_DATA_DIR"},
}

// hardening is what every unit must set, as systemd spells the value.
var hardening = map[string]string{
	"DynamicUser":             "yes",
	"NoNewPrivileges":         "yes",
	"ProtectSystem":           "strict",
	"ProtectHome":             "yes",
	"PrivateTmp":              "yes",
	"PrivateDevices":          "yes",
	"AmbientCapabilities":     "CAP_NET_BIND_SERVICE",
	"CapabilityBoundingSet":   "CAP_NET_BIND_SERVICE",
	"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
	"SystemCallArchitectures": "native",
	"Restart":                 "on-failure",
	"StateDirectoryMode":      "0700",
	"UMask":                   "0077",
	"KillSignal":              "SIGTERM",
}

// helpEnvs is every HTTVPS_* variable b's -h names, whatever its flag's
// value type.
func helpEnvs(t *testing.T, b *binary) map[string]bool {
	t.Helper()
	args := []string{"-h"}
	if b.name == "httvps up" {
		args = []string{"up", "-h"}
	}
	var help bytes.Buffer
	h := exec.Command(b.path, args...)
	h.Stdout, h.Stderr = &help, &help
	h.Run()
	out := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  -[a-z0-9-]+.*\t\[(HTTVPS_[A-Z0-9_]+)\]`).FindAllStringSubmatch(help.String(), -1) {
		out[m[1]] = true
	}
	if len(out) < len(b.envs) {
		t.Fatalf("%s -h: %d variables, fewer than the %d flags parsed", b.name, len(out), len(b.envs))
	}
	return out
}

// unitBinary is the binary a unit runs, with its flags.
func unitBinary(t *testing.T, bin string) *binary {
	if bin == "httvps" {
		return httvpsUp(t)
	}
	return binaries(t)[bin]
}

// envVars reads a deploy/systemd env file: the set variables and the
// commented-out examples (#HTTVPS_X=...), each checked as a variable.
func envVars(t *testing.T, path string) (set map[string]string, examples map[string][]string) {
	t.Helper()
	set, text := envFile(t, path)
	examples = map[string][]string{}
	for _, m := range regexp.MustCompile(`(?m)^#(HTTVPS_[A-Z0-9_]+)=(.*)$`).FindAllStringSubmatch(text, -1) {
		examples[m[1]] = append(examples[m[1]], m[2])
	}
	return set, examples
}

// TestSystemdUnits checks the units' directives (hardening, restart, the
// state directory the binary is told to use, the env file) and that every
// HTTVPS_* variable in a unit or its env file, set or as an example, is one
// its binary reads, with a value of the flag's type.
func TestSystemdUnits(t *testing.T) {
	dir := filepath.Join(root(t), "deploy", "systemd")
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	var known []string
	for _, su := range systemdUnits {
		known = append(known, su.file, su.env)
	}
	for _, f := range files {
		if !slices.Contains(known, filepath.Base(f)) {
			t.Errorf("deploy/systemd/%s is not checked by TestSystemdUnits", filepath.Base(f))
		}
	}
	for _, su := range systemdUnits {
		t.Run(su.file, func(t *testing.T) {
			u := parseUnit(t, filepath.Join(dir, su.file))
			b := unitBinary(t, su.bin)
			svc := "Service"
			for k, want := range hardening {
				if got := u.one(svc, k); got != want {
					t.Errorf("%s=%q, want %q", k, got, want)
				}
			}
			if sf := strings.Join(u.get(svc, "SystemCallFilter"), " "); !strings.Contains(sf, "@system-service") {
				t.Errorf("SystemCallFilter %q lacks @system-service", sf)
			}
			if n, err := strconv.Atoi(u.one(svc, "LimitNOFILE")); err != nil || n < 65536 {
				t.Errorf("LimitNOFILE=%q: want a number of at least 65536 (a session holds two descriptors)", u.one(svc, "LimitNOFILE"))
			}
			if want := strings.TrimSpace("/usr/local/bin/" + su.bin + " " + su.args); u.one(svc, "ExecStart") != want {
				t.Errorf("ExecStart=%q, want %q", u.one(svc, "ExecStart"), want)
			}
			if got := u.one(svc, "EnvironmentFile"); got != "/etc/httvps/"+su.env {
				t.Errorf("EnvironmentFile=%q, want /etc/httvps/%s", got, su.env)
			}
			if u.one(svc, "StateDirectory") != su.state {
				t.Errorf("StateDirectory=%q, want %q", u.one(svc, "StateDirectory"), su.state)
			}
			if u.one("Install", "WantedBy") != "multi-user.target" || !strings.Contains(u.one("Unit", "After"), "network-online.target") {
				t.Errorf("want WantedBy=multi-user.target and After=network-online.target")
			}
			env := map[string]string{}
			for _, e := range u.get(svc, "Environment") {
				for _, kv := range strings.Fields(e) {
					k, v, _ := strings.Cut(kv, "=")
					env[k] = v
				}
			}
			// The binary keeps its data where systemd made the state
			// directory (%S is /var/lib for system units).
			if got := env[su.dirVar]; got != "%S/"+su.state {
				t.Errorf("Environment %s=%q, want %%S/%s (the StateDirectory)", su.dirVar, got, su.state)
			}
			all := helpEnvs(t, b)
			checkVar := func(where, k, v string) {
				if !all[k] {
					t.Errorf("%s: %s -h has no environment variable %s", where, b.name, k)
					return
				}
				f, ok := b.envs[k]
				// helpLine knows one-word types only (not IP:PORT); an
				// -acme-email "address" is a mail address.
				if !ok || strings.Contains(v, "%") || strings.Contains(v, "CHANGE-ME") || strings.HasSuffix(f, "-email") {
					return
				}
				if err := checkValue(b.flags[f].typ, v); err != nil {
					t.Errorf("%s: %s=%s: %v", where, k, v, err)
				}
			}
			for k, v := range env {
				checkVar(su.file, k, v)
			}
			set, examples := envVars(t, filepath.Join(dir, su.env))
			if len(set) == 0 {
				t.Errorf("%s sets nothing", su.env)
			}
			for k, v := range set {
				checkVar(su.env, k, v)
			}
			for k, vs := range examples {
				for _, v := range vs {
					checkVar(su.env+" (example)", k, v)
				}
			}
			if l := set["HTTVPS_LISTEN"]; su.bin != "httvps-control" && l != ":443" {
				t.Errorf("%s: HTTVPS_LISTEN=%q, want :443 (the unit grants CAP_NET_BIND_SERVICE for it)", su.env, l)
			}
		})
	}
}

// TestSystemdAnalyze runs `systemd-analyze verify` on each unit, its
// ExecStart pointed at the freshly built binary, and holds the units'
// exposure (`systemd-analyze security --offline`) at "OK" or better.
func TestSystemdAnalyze(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed (apt-get install systemd)")
	}
	dir := filepath.Join(root(t), "deploy", "systemd")
	tmp := t.TempDir()
	for _, su := range systemdUnits {
		b, err := os.ReadFile(filepath.Join(dir, su.file))
		if err != nil {
			t.Fatal(err)
		}
		bin := unitBinary(t, su.bin).path
		text := strings.Replace(string(b), "ExecStart=/usr/local/bin/"+su.bin, "ExecStart="+bin, 1)
		f := filepath.Join(tmp, su.file)
		if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(sa, "verify", f).CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", su.file, err, out)
		}
		out, err = exec.Command(sa, "security", "--offline=yes", f).CombinedOutput()
		if err != nil {
			t.Logf("systemd-analyze security --offline not available here (%v): %s", err, bytes.TrimSpace(out))
			continue
		}
		m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindSubmatch(out)
		if m == nil {
			t.Errorf("systemd-analyze security %s: no exposure level in:\n%s", su.file, out)
			continue
		}
		if lvl, _ := strconv.ParseFloat(string(m[1]), 64); lvl > 2.5 {
			t.Errorf("%s: exposure level %s, want at most 2.5:\n%s", su.file, m[1], out)
		} else {
			t.Logf("%s: exposure level %s", su.file, m[1])
		}
	}
}
