package main

import (
	"errors"
	"flag"
	"io"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/httvps/httvps/internal/wiring"
)

// fakeSources builds sources from a flag list, an environment and files.
func fakeSources(args []string, env map[string]string, files map[string]string) sources {
	return sources{
		args: args,
		lookupEnv: func(k string) (string, bool) {
			v, ok := env[k]
			return v, ok
		},
		readFile: func(name string) ([]byte, error) {
			if s, ok := files[name]; ok {
				return []byte(s), nil
			}
			return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
		},
		usage: io.Discard,
	}
}

const oneRoute = "s3cret=127.0.0.1:8388"

func TestDefaults(t *testing.T) {
	o, err := loadOptions(fakeSources([]string{"-route", oneRoute}, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	if o.Listen != ":8080" || o.AdminListen != "127.0.0.1:9090" || o.LogLevel != "info" || o.LogFormat != "text" {
		t.Errorf("defaults: %+v", o)
	}
	if got := o.Routes["s3cret"]; got != "127.0.0.1:8388" || len(o.Routes) != 1 {
		t.Errorf("routes = %v", o.Routes)
	}
	cfg := o.GatewayConfig()
	if cfg.MaxSessions != 0 || cfg.IdleTimeout != 0 || cfg.MaxFrameSize != 0 || cfg.DecoyBody != nil {
		t.Errorf("zero options must map to a zero gateway.Config, got %+v", cfg)
	}
}

func TestPrecedence(t *testing.T) {
	file := `
listen: 127.0.0.1:7001
admin-listen: 127.0.0.1:7101
idle-timeout: 1m
max-sessions: 11
loops: 3
routes:
  fromfile: 10.0.0.1:1
`
	files := map[string]string{"/etc/gw.yaml": file}
	env := map[string]string{
		"HTTVPS_CONFIG":       "/etc/gw.yaml",
		"HTTVPS_LISTEN":       "127.0.0.1:7002",
		"HTTVPS_MAX_SESSIONS": "22",
	}

	for _, tc := range []struct {
		name        string
		args        []string
		env         map[string]string
		listen      string
		maxSessions int
		routes      string // the only secret expected
	}{
		{"file only", []string{"-config", "/etc/gw.yaml"}, nil, "127.0.0.1:7001", 11, "fromfile"},
		{"env over file", nil, env, "127.0.0.1:7002", 22, "fromfile"},
		{"flag over env", []string{"-listen", "127.0.0.1:7003", "-route", "fromflag=10.0.0.3:3"}, env, "127.0.0.1:7003", 22, "fromflag"},
		{"env routes over file", nil, map[string]string{"HTTVPS_CONFIG": "/etc/gw.yaml", "HTTVPS_ROUTE": "fromenv=10.0.0.2:2"}, "127.0.0.1:7001", 11, "fromenv"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := loadOptions(fakeSources(tc.args, tc.env, files))
			if err != nil {
				t.Fatal(err)
			}
			if o.Listen != tc.listen || o.MaxSessions != tc.maxSessions {
				t.Errorf("listen %q max-sessions %d, want %q %d", o.Listen, o.MaxSessions, tc.listen, tc.maxSessions)
			}
			if o.IdleTimeout != time.Minute || o.Loops != 3 || o.AdminListen != "127.0.0.1:7101" {
				t.Errorf("file values lost: idle %v loops %d admin %q", o.IdleTimeout, o.Loops, o.AdminListen)
			}
			if _, ok := o.Routes[tc.routes]; !ok || len(o.Routes) != 1 {
				t.Errorf("routes %v, want only %s", o.Routes, tc.routes)
			}
		})
	}
}

func TestRouteSources(t *testing.T) {
	o, err := loadOptions(fakeSources(
		[]string{"-route", "a=127.0.0.1:1", "-route", "b==x=[::1]:2", "-route", "a=127.0.0.1:1"}, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Routes) != 2 || o.Routes["a"] != "127.0.0.1:1" || o.Routes["b==x"] != "[::1]:2" {
		t.Errorf("flag routes = %v", o.Routes)
	}

	o, err = loadOptions(fakeSources(nil, map[string]string{"HTTVPS_ROUTE": " a=127.0.0.1:1 ,b=127.0.0.2:2,"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Routes) != 2 || o.Routes["b"] != "127.0.0.2:2" {
		t.Errorf("env routes = %v", o.Routes)
	}

	files := map[string]string{"f.yaml": "route: [c=127.0.0.3:3]\nroutes: {d: '127.0.0.4:4'}\n"}
	o, err = loadOptions(fakeSources([]string{"-config", "f.yaml"}, nil, files))
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Routes) != 2 || o.Routes["c"] != "127.0.0.3:3" || o.Routes["d"] != "127.0.0.4:4" {
		t.Errorf("file routes = %v", o.Routes)
	}
}

func TestEmptyEnvDisablesAdmin(t *testing.T) {
	o, err := loadOptions(fakeSources([]string{"-route", oneRoute}, map[string]string{"HTTVPS_ADMIN_LISTEN": ""}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if o.AdminListen != "" {
		t.Errorf("admin-listen = %q, want disabled", o.AdminListen)
	}
}

func TestValuesMapOntoGatewayConfig(t *testing.T) {
	files := map[string]string{"decoy.html": "<h1>hi</h1>"}
	o, err := loadOptions(fakeSources([]string{
		"-route", oneRoute,
		"-max-sessions", "1000", "-max-handshakes", "100",
		"-handshake-timeout", "3s", "-idle-timeout", "-1s", "-udp-idle-timeout", "30s",
		"-dial-timeout", "2s", "-drain-timeout", "9s",
		"-max-frame-size", "64KiB", "-max-message-size", "1MiB",
		"-buffer-cap", "128k", "-read-chunk", "16384",
		"-loops", "2", "-decoy-file", "decoy.html", "-decoy-status", "200",
		"-log-level", "debug", "-log-format", "json",
	}, nil, files))
	if err != nil {
		t.Fatal(err)
	}
	c := o.GatewayConfig()
	if c.MaxSessions != 1000 || c.MaxHandshakes != 100 || c.HandshakeTimeout != 3*time.Second ||
		c.IdleTimeout != -time.Second || c.UDPIdleTimeout != 30*time.Second || c.DialTimeout != 2*time.Second ||
		c.DrainTimeout != 9*time.Second || c.MaxFrameSize != 64<<10 || c.MaxMessageSize != 1<<20 ||
		c.BufferCap != 128<<10 || c.ReadChunk != 16384 || c.Loops != 2 || c.DecoyStatus != 200 ||
		string(c.DecoyBody) != "<h1>hi</h1>" {
		t.Errorf("gateway config = %+v", c)
	}
}

func TestValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string // substring of the error
	}{
		{"no routes", nil, nil, "no routes"},
		{"route without =", []string{"-route", "127.0.0.1:1"}, nil, "not SECRET=IP:PORT"},
		{"empty secret", []string{"-route", "=127.0.0.1:1"}, nil, "empty secret"},
		{"slash in secret", []string{"-route", "a/b=127.0.0.1:1"}, nil, "URL path segment"},
		{"hostname upstream", []string{"-route", "a=example.com:1"}, nil, "not IP:PORT"},
		{"port zero", []string{"-route", "a=127.0.0.1:0"}, nil, "port 0"},
		{"conflicting secret", []string{"-route", "a=127.0.0.1:1", "-route", "a=127.0.0.1:2"}, nil, "already routed"},
		{"bad listen", []string{"-route", oneRoute, "-listen", "8080"}, nil, "-listen"},
		{"same admin", []string{"-route", oneRoute, "-listen", "127.0.0.1:1", "-admin-listen", "127.0.0.1:1"}, nil, "same address"},
		{"negative sessions", []string{"-route", oneRoute, "-max-sessions", "-1"}, nil, "negative"},
		{"handshakes over sessions", []string{"-route", oneRoute, "-max-sessions", "10", "-max-handshakes", "20"}, nil, "exceeds"},
		{"negative dial timeout", []string{"-route", oneRoute, "-dial-timeout", "-1s"}, nil, "negative"},
		{"message under frame", []string{"-route", oneRoute, "-max-frame-size", "2M", "-max-message-size", "1M"}, nil, "smaller than -max-frame-size"},
		{"bad size", []string{"-route", oneRoute, "-buffer-cap", "lots"}, nil, "not a size"},
		{"bad status", []string{"-route", oneRoute, "-decoy-status", "99"}, nil, "decoy-status"},
		{"bad level", []string{"-route", oneRoute, "-log-level", "loud"}, nil, "log-level"},
		{"bad format", []string{"-route", oneRoute, "-log-format", "xml"}, nil, "log-format"},
		{"missing decoy", []string{"-route", oneRoute, "-decoy-file", "nope.html"}, nil, "decoy-file"},
		{"bad env value", []string{"-route", oneRoute}, map[string]string{"HTTVPS_IDLE_TIMEOUT": "soon"}, "HTTVPS_IDLE_TIMEOUT"},
		{"missing config", nil, map[string]string{"HTTVPS_CONFIG": "nope.yaml"}, "config file"},
		{"stray argument", []string{"-route", oneRoute, "extra"}, nil, "unexpected argument"},
		{"unknown flag", []string{"-nope"}, nil, "not defined"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadOptions(fakeSources(tc.args, tc.env, nil))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestConfigFileErrors(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown key", "listen: ':1'\nlisten-addr: x\n", `unknown key "listen-addr"`},
		{"nested config", "config: other.yaml\n", `unknown key "config"`},
		{"list value", "listen: [a, b]\n", "single value"},
		{"routes not a map", "routes: [a]\n", "routes must map"},
		{"bad yaml", "listen: [\n", "config file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadOptions(fakeSources([]string{"-config", "c.yaml", "-route", oneRoute}, nil, map[string]string{"c.yaml": tc.yaml}))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// Secrets must not leak through configuration errors either.
func TestErrorsDoNotEchoSecrets(t *testing.T) {
	for _, args := range [][]string{
		{"-route", "topsecretvalue"},
		{"-route", "topsecretvalue=nowhere:1"},
		{"-route", "topsecretvalue=127.0.0.1:1", "-route", "topsecretvalue=127.0.0.1:2"},
		{"-route", "top/secretvalue=127.0.0.1:1"},
	} {
		_, err := loadOptions(fakeSources(args, nil, nil))
		if err == nil {
			t.Fatalf("%v: no error", args)
		}
		if strings.Contains(err.Error(), "secretvalue") {
			t.Errorf("%v: error shows the secret: %v", args, err)
		}
	}
}

func TestHelp(t *testing.T) {
	var out strings.Builder
	src := fakeSources([]string{"-h"}, nil, nil)
	src.usage = &out
	if _, err := loadOptions(src); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{"-admin-listen", "HTTVPS_ADMIN_LISTEN", "-route", "HTTVPS_ROUTE", "-decoy-file"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("usage lacks %q", want)
		}
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "4096": 4096, "64KiB": 64 << 10, "64k": 64 << 10, "1MiB": 1 << 20, "2 M": 2 << 20, "1GiB": 1 << 30, "10B": 10} {
		var b wiring.Size
		if err := b.Set(in); err != nil || int64(b) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, b, err, want)
		}
	}
	for _, in := range []string{"", "-1", "KiB", "1.5M", "1TiB", "99999999G"} {
		var b wiring.Size
		if err := b.Set(in); err == nil {
			t.Errorf("Set(%q) accepted", in)
		}
	}
}

// TestACMEFlags: -acme needs a name a public CA issues for, from
// -acme-domain or -public-url, and turns TLS on by itself.
func TestACMEFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // "" = valid
	}{
		{[]string{"-acme"}, "-acme needs a name"},
		{[]string{"-acme", "-acme-domain", "localhost"}, `-acme-domain "localhost": not a DNS name a public CA issues for`},
		{[]string{"-acme", "-acme-domain", "10.0.0.1"}, `-acme-domain "10.0.0.1"`},
		{[]string{"-acme", "-acme-domain", "vpn.example.com", "-acme-ca", "http://ca.example/dir"}, "not an https:// URL"},
		{[]string{"-acme", "-acme-domain", "vpn.example.com", "-tls-min-version", "1.3"}, ""},
		{[]string{"-acme", "-acme-domain", "vpn.example.com", "-acme-domain", "b.example.com", "-acme-http", ":80"}, ""},
	} {
		o, err := loadOptions(fakeSources(append([]string{"-route", oneRoute}, tc.args...), nil, nil))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v", tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: error %v, want one containing %q", tc.args, err, tc.want)
		case tc.want == "" && len(o.ACME.NamesForURL(o.PublicURL)) == 0:
			t.Errorf("%v: no ACME names", tc.args)
		}
	}
	o, err := loadOptions(fakeSources(nil, map[string]string{"HTTVPS_REDIS": "redis://127.0.0.1:6379/0", "HTTVPS_PUBLIC_URL": "wss://gw.example.net/", "HTTVPS_ACME": "true"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := o.ACME.NamesForURL(o.PublicURL); len(got) != 1 || got[0] != "gw.example.net" {
		t.Errorf("names from -public-url: %v", got)
	}
}
