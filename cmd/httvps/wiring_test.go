package main

import (
	"bytes"
	"crypto/tls"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/httvps/httvps/internal/certs"
	"github.com/httvps/httvps/internal/cliconf"
	"github.com/httvps/httvps/internal/testpeer"
	"github.com/httvps/httvps/internal/wiring"
)

// upName is the name a flag of httvps-gateway or httvps-control has on
// `httvps up`: its own, except the control plane's ControlCollisions,
// which carry wiring.ControlPrefix (README's `httvps up` section and
// docs/06-httvps-cli.md list them). There is no other exception: every
// flag of both binaries exists on up.
func upName(bin, flagName string) string {
	if bin == "httvps-control" {
		return wiring.ControlName(wiring.ControlPrefix, flagName)
	}
	return flagName
}

// usageLine matches "  -name type\t[HTTVPS_NAME]" in the usage text, as
// deploy/deploytest reads it.
var usageLine = regexp.MustCompile(`(?m)^  -([a-z0-9-]+)(?: ([a-zA-Z]+))?\s*\t\[(HTTVPS_[A-Z0-9_]+)\]`)

type usageFlag struct{ typ, env string }

func parseUsage(t *testing.T, text string) map[string]usageFlag {
	t.Helper()
	flags := map[string]usageFlag{}
	for _, m := range usageLine.FindAllStringSubmatch(text, -1) {
		flags[m[1]] = usageFlag{typ: m[2], env: m[3]}
	}
	if len(flags) < 10 {
		t.Fatalf("only %d flags in the usage text:\n%s", len(flags), text)
	}
	return flags
}

// TestUpHasEveryFlag: every flag of httvps-gateway and httvps-control (read
// from their -h, so a flag added there cannot be forgotten here) exists on
// `httvps up` under the same name (or the one upFlagMap gives), with the
// same value type, its HTTVPS_* variable, and as a config-file key.
func TestUpHasEveryFlag(t *testing.T) {
	var help bytes.Buffer
	fs := newUpFlagSet(&upOptions{}, env{lookupEnv: noEnv})
	fs.SetOutput(&help)
	fs.Usage()
	up := parseUsage(t, help.String())

	bin := t.TempDir()
	seen := map[string]bool{}
	for _, name := range []string{"httvps-gateway", "httvps-control"} {
		out := filepath.Join(bin, name)
		if b, err := exec.Command("go", "build", "-o", out, "../"+name).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", name, err, b)
		}
		var h bytes.Buffer
		cmd := exec.Command(out, "-h")
		cmd.Stderr, cmd.Stdout = &h, &h
		cmd.Run()
		for flagName, f := range parseUsage(t, h.String()) {
			upName := upName(name, flagName)
			renamed := upName != flagName
			if renamed {
				seen[flagName] = true
			}
			u, ok := up[upName]
			switch {
			case !ok:
				t.Errorf("%s -%s: httvps up has no -%s", name, flagName, upName)
				continue
			case u.typ != f.typ:
				t.Errorf("%s -%s takes a %q, httvps up -%s a %q", name, flagName, f.typ, upName, u.typ)
			case u.env != cliconf.EnvName(upName):
				t.Errorf("httvps up -%s reads %s", upName, u.env)
			case !renamed && u.env != f.env:
				t.Errorf("%s -%s reads %s, httvps up %s", name, flagName, f.env, u.env)
			}
			if upName != cliconf.ConfigFlag {
				checkFileKey(t, upName, u.typ)
			}
		}
	}
	// A prefix is only for a real collision: the gateway has the name too,
	// and the docs list it.
	docs, err := os.ReadFile("../../docs/06-httvps-cli.md")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range wiring.ControlCollisions {
		if !seen[c] {
			t.Errorf("wiring.ControlCollisions has %q, which httvps-control does not have", c)
		}
		if _, ok := up[c]; !ok {
			t.Errorf("-%s%s: up has no gateway -%s, so the prefix is not needed", wiring.ControlPrefix, c, c)
		}
		for file, text := range map[string][]byte{"docs/06-httvps-cli.md": docs, "README.md": readme} {
			if !bytes.Contains(text, []byte("-"+wiring.ControlPrefix+c)) {
				t.Errorf("%s does not list -%s%s", file, wiring.ControlPrefix, c)
			}
		}
	}
}

// checkFileKey: up's config file takes the flag's name as a key (the value
// may still be refused, but not the key).
func checkFileKey(t *testing.T, key, typ string) {
	t.Helper()
	value := map[string]string{"": "true", "size": "64KiB", "duration": "1s", "int": "1", "float": "1", "version": "1.3"}[typ]
	if value == "" {
		value = "x"
	}
	file := filepath.Join(t.TempDir(), "up.yaml")
	os.WriteFile(file, []byte(key+": "+strconv.Quote(value)+"\n"), 0o600)
	_, err := loadUpOptions([]string{"-config", file}, env{stdout: io.Discard, stderr: io.Discard, lookupEnv: noEnv})
	if err != nil && strings.Contains(err.Error(), "unknown key") {
		t.Errorf("config file key %s: %v", key, err)
	}
}

// TestUpGatewaySettings: the settings `httvps up` used to drop (it passed
// five) reach gateway.Config, gateway.TLSConfig, api.Config and pool.Config,
// from flags, environment and config file alike.
func TestUpGatewaySettings(t *testing.T) {
	file := filepath.Join(t.TempDir(), "up.yaml")
	os.WriteFile(file, []byte("tls-cert: [a.pem, b.pem]\ntls-key: [a.key, b.key]\nmax-handshakes: 64\nroutes: {s3cret: 127.0.0.1:8388}\n"), 0o600)
	vars := map[string]string{"HTTVPS_HANDSHAKE_CPU": "3", "HTTVPS_CONTROL_IDLE_TIMEOUT": "7s"}
	o, err := loadUpOptions([]string{"-config", file, "-tls-min-version", "1.3", "-max-sessions", "100", "-addr-rate", "5.5",
		"-read-chunk", "64KiB", "-buffer-cap", "1MiB", "-idle-timeout", "3m", "-decoy-status", "403", "-max-fallbacks", "9",
		"-gateway-id", "edge-1", "-max-body", "2KiB", "-replicas", "3", "-health-every", "5s", "-open-metrics"},
		env{stdout: io.Discard, stderr: io.Discard, lookupEnv: func(k string) (string, bool) { v, ok := vars[k]; return v, ok }})
	if err != nil {
		t.Fatal(err)
	}
	if want := []certs.Pair{{CertFile: "a.pem", KeyFile: "a.key"}, {CertFile: "b.pem", KeyFile: "b.key"}}; len(o.TLSPairs) != 2 || o.TLSPairs[0] != want[0] || o.TLSPairs[1] != want[1] {
		t.Errorf("TLS pairs %v, want %v", o.TLSPairs, want)
	}
	c := o.GatewayConfig()
	if c.MaxSessions != 100 || c.MaxHandshakes != 64 || c.AddrRate != 5.5 || c.ReadChunk != 64<<10 || c.BufferCap != 1<<20 ||
		c.IdleTimeout != 3*time.Minute || c.DecoyStatus != 403 || c.MaxFallbacks != 9 {
		t.Errorf("gateway.Config: %+v", c)
	}
	if o.GatewayID != "edge-1" || o.Routes["s3cret"] != "127.0.0.1:8388" {
		t.Errorf("gateway ID %q, routes %v", o.GatewayID, o.Routes)
	}
	if tc := o.TLSConfig(&certs.Store{}); tc.MinVersion != tls.VersionTLS13 || tc.HandshakeCPU != 3 {
		t.Errorf("gateway.TLSConfig: MinVersion %#x HandshakeCPU %d; want TLS 1.3, 3", tc.MinVersion, tc.HandshakeCPU)
	}
	if a := o.APIConfig("k", "u"); a.IdleTimeout != 7*time.Second || a.MaxBodyBytes != 2048 || !a.OpenMetrics {
		t.Errorf("api.Config: %+v", a)
	}
	if p := o.PoolConfig(true); p.Replicas != 3 || p.HealthEvery != 5*time.Second {
		t.Errorf("pool.Config: %+v", p)
	}
	// up's own defaults stay: one replica, the control API's idle timeout
	// apart from the gateway's, and the control API (the admin API) on
	// loopback: clients need only the gateway's port.
	if o, err := loadUpOptions(nil, env{stdout: io.Discard, stderr: io.Discard, lookupEnv: noEnv}); err != nil || o.Replicas != 1 || o.Control.IdleTimeout != 0 || o.Control.Listen != "127.0.0.1:9443" {
		t.Errorf("defaults: replicas %d, control idle %v, control listen %q, %v", o.Replicas, o.Control.IdleTimeout, o.Control.Listen, err)
	}
	for _, bad := range [][]string{{"-handshake-cpu", "-1"}, {"-tls-min-version", "1.1"}, {"-tls-cert", "a", "-tls-key", "b", "-tls-cert", "c"}, {"-max-body", "10"}} {
		if _, err := loadUpOptions(bad, env{stdout: io.Discard, stderr: io.Discard, lookupEnv: noEnv}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestUpTLSSettings: a running `httvps up -tls-min-version 1.3` with two
// -tls-cert/-tls-key pairs refuses TLS 1.2 on the gateway and serves each
// pair by SNI on both listeners (the API keeps TLS 1.2 as httvps-control
// does).
func TestUpTLSSettings(t *testing.T) {
	now := time.Now()
	var files []string
	for _, host := range []string{"a.example", "b.example"} {
		ca, err := ensureLocalCerts(filepath.Join(t.TempDir(), host), host, now, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, "-tls-cert", ca.pair().CertFile, "-tls-key", ca.pair().KeyFile)
	}
	gw := "127.0.0.1:" + strconv.Itoa(testpeer.FreePort(t))
	ctl := "127.0.0.1:" + strconv.Itoa(testpeer.FreePort(t))
	startUp(t, append([]string{"-data-dir", filepath.Join(t.TempDir(), "data"), "-listen", gw, "-control-listen", ctl,
		"-tls-min-version", "1.3", "-handshake-cpu", "1", "-drain-timeout", "1s"}, files...)...)

	dial := func(addr, sni string, max uint16) (string, error) {
		c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: sni, InsecureSkipVerify: true, MaxVersion: max})
		if err != nil {
			return "", err
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Subject.CommonName, nil
	}
	if _, err := dial(gw, "a.example", tls.VersionTLS12); err == nil {
		t.Error("gateway: TLS 1.2 handshake accepted under -tls-min-version 1.3")
	}
	for _, addr := range []string{gw, ctl} {
		for _, sni := range []string{"a.example", "b.example"} {
			if cn, err := dial(addr, sni, 0); err != nil || cn != sni {
				t.Errorf("%s SNI %s: certificate %q, %v", addr, sni, cn, err)
			}
		}
	}
	if _, err := dial(ctl, "a.example", tls.VersionTLS12); err != nil {
		t.Errorf("control API: TLS 1.2: %v", err)
	}
}
