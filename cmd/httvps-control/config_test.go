package main

import (
	"errors"
	"flag"
	"io"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/httvps/httvps/control/api"
)

const testKey = "0123456789abcdef0123456789abcdef-admin"

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

func TestDefaults(t *testing.T) {
	o, err := loadOptions(fakeSources([]string{"-admin-key", testKey}, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	if o.Listen != ":9443" || o.AdminListen != "127.0.0.1:9091" || o.DataDir != "httvps-data" || o.RedisURL != "" ||
		o.MaxBody != api.DefaultMaxBodyBytes || o.LogLevel != "info" || o.LogFormat != "text" || o.OpenMetrics {
		t.Errorf("defaults: %+v", o)
	}
	cfg := o.apiConfig()
	if cfg.ReadTimeout != 0 || cfg.WriteTimeout != 0 || cfg.IdleTimeout != 0 || cfg.AdminKey != testKey || cfg.MaxBodyBytes != 64<<10 {
		t.Errorf("zero options must leave api defaults: %+v", cfg)
	}
}

// -decoy-status and -decoy-file give the API the gateways' decoy, so that
// a fleet answers strangers alike on every public port.
func TestDecoyFlags(t *testing.T) {
	o, err := loadOptions(fakeSources([]string{"-admin-key", testKey, "-decoy-file", "/d.html"},
		map[string]string{"HTTVPS_DECOY_STATUS": "403"}, map[string]string{"/d.html": "<h1>hi</h1>"}))
	if err != nil {
		t.Fatal(err)
	}
	if d := o.apiConfig().Decoy; d.Status != 403 || string(d.Body) != "<h1>hi</h1>" {
		t.Errorf("decoy %+v", d)
	}
}

// -keys-url is the base of the keys (the gateways serve the documents);
// without it the keys name -public-url as before.
func TestKeysURL(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-public-url", "https://ctl.example.com"}, "https://ctl.example.com"},
		{[]string{"-public-url", "https://ctl.example.com", "-keys-url", "https://vpn.example.com"}, "https://vpn.example.com"},
		{[]string{"-keys-url", "https://vpn.example.com:8443"}, "https://vpn.example.com:8443"},
		{nil, ""},
	} {
		o, err := loadOptions(fakeSources(append([]string{"-admin-key", testKey}, c.args...), nil, nil))
		if err != nil {
			t.Fatal(err)
		}
		if got := o.apiConfig().PublicURL; got != c.want {
			t.Errorf("%v: keys on %q, want %q", c.args, got, c.want)
		}
	}
}

func TestPrecedence(t *testing.T) {
	file := `
listen: 127.0.0.1:7001
replicas: 3
health-every: 30s
stray-grace: 10m
max-body: 128KiB
public-url: https://file.example.com
`
	files := map[string]string{"/etc/ctl.yaml": file, "/run/key": "\n  " + testKey + "\n"}
	env := map[string]string{
		"HTTVPS_CONFIG":         "/etc/ctl.yaml",
		"HTTVPS_REPLICAS":       "4",
		"HTTVPS_ADMIN_KEY_FILE": "/run/key",
		"HTTVPS_REDIS":          "redis://:pw@127.0.0.1:6379/0",
	}
	o, err := loadOptions(fakeSources([]string{"-replicas", "5", "-open-metrics"}, env, files))
	if err != nil {
		t.Fatal(err)
	}
	if o.Listen != "127.0.0.1:7001" || o.HealthEvery != 30*time.Second || o.MaxBody != 128<<10 ||
		o.PublicURL != "https://file.example.com" || !o.OpenMetrics {
		t.Errorf("file values: %+v", o)
	}
	if o.Replicas != 5 {
		t.Errorf("replicas %d: flag must beat environment and file", o.Replicas)
	}
	if pc := o.poolConfig(); o.StrayGrace != 10*time.Minute || pc.StrayGrace != o.StrayGrace || pc.Replicas != 5 || pc.HealthEvery != 30*time.Second {
		t.Errorf("stray-grace %v from the file, pool config %+v", o.StrayGrace, pc)
	}
	if pc := o.poolConfig(); pc.SingleProcess {
		t.Errorf("with -redis the pool config says one process: %+v", pc)
	}
	if o, err := loadOptions(fakeSources(nil, map[string]string{"HTTVPS_ADMIN_KEY": testKey}, nil)); err != nil || !o.poolConfig().SingleProcess {
		t.Errorf("embedded store: the pool config must say one process (sweep on by default): %v %v", o.poolConfig(), err)
	}
	env["HTTVPS_STRAY_GRACE"] = "-1s" // negative: the sweep is off
	if o, err := loadOptions(fakeSources(nil, env, files)); err != nil || o.StrayGrace != -time.Second {
		t.Errorf("stray-grace from the environment over the file: %v %v", o.StrayGrace, err)
	}
	if o, err := loadOptions(fakeSources([]string{"-stray-grace", "3m"}, env, files)); err != nil || o.StrayGrace != 3*time.Minute {
		t.Errorf("stray-grace flag over environment and file: %v %v", o.StrayGrace, err)
	}
	if o.AdminKey != testKey {
		t.Errorf("admin key from file not trimmed: %q", o.AdminKey)
	}
	if o.RedisURL != "redis://:pw@127.0.0.1:6379/0" {
		t.Errorf("redis %q", o.RedisURL)
	}
}

func TestRejects(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		env   map[string]string
		files map[string]string
		want  string
	}{
		{"no admin key", nil, nil, nil, "no admin key"},
		{"short key", []string{"-admin-key", "short-key"}, nil, nil, "fewer than 32"},
		{"both keys", []string{"-admin-key", testKey, "-admin-key-file", "/k"}, nil, map[string]string{"/k": testKey}, "not both"},
		{"missing key file", []string{"-admin-key-file", "/nope"}, nil, nil, "-admin-key-file"},
		{"bad redis", []string{"-admin-key", testKey, "-redis", "http://x"}, nil, nil, "-redis"},
		{"bad public url", []string{"-admin-key", testKey, "-public-url", "ctl.example.com"}, nil, nil, "-public-url"},
		{"bad keys url", []string{"-admin-key", testKey, "-keys-url", "wss://gw.example.com"}, nil, nil, "-keys-url"},
		{"negative replicas", []string{"-admin-key", testKey, "-replicas", "-1"}, nil, nil, "-replicas"},
		{"tls half", []string{"-admin-key", testKey, "-tls-cert", "c.pem"}, nil, nil, "go together"},
		{"tiny body", []string{"-admin-key", testKey, "-max-body", "10"}, nil, nil, "-max-body"},
		{"same listen", []string{"-admin-key", testKey, "-listen", ":1", "-admin-listen", ":1"}, nil, nil, "same address"},
		{"bad level", []string{"-admin-key", testKey, "-log-level", "loud"}, nil, nil, "-log-level"},
		{"unknown file key", []string{"-admin-key", testKey, "-config", "/c"}, nil, map[string]string{"/c": "colour: red\n"}, "unknown key"},
		{"bad env", []string{"-admin-key", testKey}, map[string]string{"HTTVPS_HEALTH_EVERY": "often"}, nil, "HTTVPS_HEALTH_EVERY"},
		{"argument", []string{"-admin-key", testKey, "extra"}, nil, nil, "unexpected argument"},
		{"decoy status", []string{"-admin-key", testKey, "-decoy-status", "302"}, nil, nil, "-decoy-status"},
		{"decoy file", []string{"-admin-key", testKey, "-decoy-file", "/nope.html"}, nil, nil, "-decoy-file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadOptions(fakeSources(tc.args, tc.env, tc.files))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

// TestSecretsNotEchoed: a bad value of a secret flag is reported without
// the value.
func TestSecretsNotEchoed(t *testing.T) {
	_, err := loadOptions(fakeSources(nil, map[string]string{
		"HTTVPS_ADMIN_KEY": "tiny-secret",
		"HTTVPS_REDIS":     "http://user:hunter2@redis",
	}, nil))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, s := range []string{"tiny-secret", "hunter2"} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error quotes a secret: %v", err)
		}
	}
}

func TestHelp(t *testing.T) {
	var out strings.Builder
	src := fakeSources([]string{"-h"}, nil, nil)
	src.usage = &out
	if _, err := loadOptions(src); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	for _, want := range []string{"-admin-key-file", "HTTVPS_REDIS", "-public-url", "-replicas", "-health-every", "-stray-grace", "HTTVPS_STRAY_GRACE", "-tls-cert", "-data-dir"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("usage lacks %s", want)
		}
	}
}
