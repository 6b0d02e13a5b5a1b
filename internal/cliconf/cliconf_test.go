package cliconf

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

type vals struct {
	config, name, secret string
	n                    int
	list                 []string
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

var testSpec = Spec{Lists: []string{"item"}, Secrets: []string{"secret"}}

func newTestFlagSet(v *vals) *flag.FlagSet {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(new(bytes.Buffer))
	fs.StringVar(&v.config, "config", "", "YAML `file`")
	fs.StringVar(&v.name, "some-name", "dflt", "a `name`")
	fs.StringVar(&v.secret, "secret", "hush", "a secret")
	fs.IntVar(&v.n, "n", 0, "a number")
	fs.Var((*listFlag)(&v.list), "item", "repeatable")
	return fs
}

func mapEnv(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func mapFiles(m map[string]string) func(string) ([]byte, error) {
	return func(p string) ([]byte, error) {
		if v, ok := m[p]; ok {
			return []byte(v), nil
		}
		return nil, fmt.Errorf("open %s: %w", p, fs.ErrNotExist)
	}
}

func TestEnvName(t *testing.T) {
	if got := EnvName("admin-listen"); got != "HTTVPS_ADMIN_LISTEN" {
		t.Fatalf("EnvName = %q", got)
	}
}

func TestSplitList(t *testing.T) {
	if got := SplitList(" a, ,b ,, c"); !reflect.DeepEqual(got, []string{"a", "b", "c"}) {
		t.Fatalf("SplitList = %q", got)
	}
	if got := SplitList(" , "); got != nil {
		t.Fatalf("SplitList of blanks = %q", got)
	}
}

func TestPrecedence(t *testing.T) {
	files := mapFiles(map[string]string{
		"env.yaml": "some-name: fromfile\nn: 3\n",
		"cmd.yaml": "n: 4\n",
	})
	for _, tc := range []struct {
		args     []string
		env      map[string]string
		wantName string
		wantN    int
		wantFile string
	}{
		{nil, nil, "dflt", 0, ""},
		{nil, map[string]string{"HTTVPS_CONFIG": "env.yaml"}, "fromfile", 3, "env.yaml"},
		{nil, map[string]string{"HTTVPS_CONFIG": "env.yaml", "HTTVPS_SOME_NAME": "fromenv"}, "fromenv", 3, "env.yaml"},
		{[]string{"-some-name", "fromflag", "-config", "cmd.yaml"}, map[string]string{"HTTVPS_CONFIG": "env.yaml", "HTTVPS_SOME_NAME": "fromenv"}, "fromflag", 4, "cmd.yaml"},
	} {
		var v vals
		l, err := testSpec.Load(newTestFlagSet(&v), tc.args, mapEnv(tc.env), files, nil)
		if err != nil {
			t.Fatalf("%v %v: %v", tc.args, tc.env, err)
		}
		if v.name != tc.wantName || v.n != tc.wantN || l.ConfigFile != tc.wantFile || v.config != tc.wantFile {
			t.Errorf("%v %v: name %q n %d file %q, want %q %d %q", tc.args, tc.env, v.name, v.n, l.ConfigFile, tc.wantName, tc.wantN, tc.wantFile)
		}
	}
}

func TestErrors(t *testing.T) {
	files := mapFiles(map[string]string{
		"unknown.yaml": "n: 1\nbogus: 2\n",
		"config.yaml":  "config: other.yaml\n",
		"list.yaml":    "n: [1, 2]\n",
		"bad.yaml":     "n: x\nsecret: y\n",
		"yaml.yaml":    "n: [\n",
	})
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"extra"}, nil, `unexpected argument "extra" (flags only)`},
		{[]string{"-config", "missing.yaml"}, nil, "config file: open missing.yaml: file does not exist"},
		{[]string{"-config", "unknown.yaml"}, nil, `config file unknown.yaml: line 2: unknown key "bogus"`},
		{[]string{"-config", "config.yaml"}, nil, `config file config.yaml: line 1: unknown key "config"`},
		{[]string{"-config", "list.yaml"}, nil, "config file list.yaml: line 1: n must be a single value"},
		{[]string{"-config", "yaml.yaml"}, nil, "config file yaml.yaml: yaml:"},
		{nil, map[string]string{"HTTVPS_N": "x"}, `HTTVPS_N="x": parse error`},
		{[]string{"-config", "bad.yaml"}, nil, `bad.yaml: n: "x": parse error`},
	} {
		var v vals
		_, err := testSpec.Load(newTestFlagSet(&v), tc.args, mapEnv(tc.env), files, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: error %v, want it to contain %q", tc.args, tc.env, err, tc.want)
		}
	}
	var v vals
	_, err := testSpec.Load(newTestFlagSet(&v), []string{"-h"}, mapEnv(nil), files, nil)
	if !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v, want flag.ErrHelp", err)
	}
}

// secretValue fails to parse, so its value would be quoted in the error.
type secretValue struct{}

func (secretValue) String() string     { return "" }
func (secretValue) Set(v string) error { return errors.New("bad") }

func TestSecretNeverEchoed(t *testing.T) {
	const pw = "s3cr3t-password"
	for _, src := range []struct {
		env   map[string]string
		files map[string]string
	}{
		{env: map[string]string{"HTTVPS_SECRET": pw}},
		{env: map[string]string{"HTTVPS_CONFIG": "c.yaml"}, files: map[string]string{"c.yaml": "secret: " + pw + "\n"}},
	} {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		var cfg string
		fs.StringVar(&cfg, "config", "", "")
		fs.Var(secretValue{}, "secret", "")
		_, err := testSpec.Load(fs, nil, mapEnv(src.env), mapFiles(src.files), nil)
		if err == nil || strings.Contains(err.Error(), pw) || !strings.Contains(err.Error(), "(hidden)") {
			t.Errorf("error %v: want it to hide the value", err)
		}
	}
}

func TestListSource(t *testing.T) {
	files := mapFiles(map[string]string{"c.yaml": "item: [f1, f2]\nn: 1\n"})
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want Source
	}{
		{[]string{"-item", "a"}, map[string]string{"HTTVPS_ITEM": "b"}, CommandLine},
		{nil, map[string]string{"HTTVPS_ITEM": "b, c"}, Environment},
		{nil, map[string]string{"HTTVPS_ITEM": " "}, ConfigFile},
		{nil, nil, ConfigFile},
	} {
		var v vals
		env := map[string]string{"HTTVPS_CONFIG": "c.yaml"}
		for k, x := range tc.env {
			env[k] = x
		}
		var fileItems []string
		l, err := testSpec.Load(newTestFlagSet(&v), tc.args, mapEnv(env), files, func(key string, node *yaml.Node) (bool, error) {
			if key != "item" {
				return false, nil
			}
			return true, node.Decode(&fileItems)
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := l.ListSource("other", "item"); got != tc.want {
			t.Errorf("%v %v: source %d, want %d", tc.args, tc.env, got, tc.want)
		}
		if !reflect.DeepEqual(fileItems, []string{"f1", "f2"}) || v.n != 1 {
			t.Errorf("file items %q n %d", fileItems, v.n)
		}
		if tc.want == Environment && !reflect.DeepEqual(l.EnvList("item"), []string{"b", "c"}) {
			t.Errorf("EnvList = %q", l.EnvList("item"))
		}
		if tc.want != CommandLine && v.list != nil {
			t.Errorf("list flag set by Load: %q", v.list)
		}
	}
}

func TestFileKeyError(t *testing.T) {
	var v vals
	_, err := testSpec.Load(newTestFlagSet(&v), []string{"-config", "c.yaml"}, mapEnv(nil), mapFiles(map[string]string{"c.yaml": "item: 1\n"}),
		func(key string, node *yaml.Node) (bool, error) {
			return true, fmt.Errorf("line %d: %s is wrong", node.Line, key)
		})
	if err == nil || err.Error() != "config file c.yaml: line 1: item is wrong" {
		t.Fatalf("error %v", err)
	}
}

func TestUsage(t *testing.T) {
	var v vals
	fs := newTestFlagSet(&v)
	var out bytes.Buffer
	fs.SetOutput(&out)
	testSpec.SetUsage(fs, "Usage: test\n\n")
	fs.Usage()
	want := "Usage: test\n\n" +
		"  -config file\t[HTTVPS_CONFIG]\n    \tYAML file\n" +
		"  -item value\t[HTTVPS_ITEM]\n    \trepeatable\n" +
		"  -n int\t[HTTVPS_N]\n    \ta number\n" +
		"  -secret string\t[HTTVPS_SECRET]\n    \ta secret\n" +
		"  -some-name name\t[HTTVPS_SOME_NAME]\n    \ta name (default \"dflt\")\n"
	if out.String() != want {
		t.Fatalf("usage:\n%s\nwant:\n%s", out.String(), want)
	}
}

func TestCheckLogAndListen(t *testing.T) {
	if errs := CheckLog("warn", "json"); len(errs) != 0 {
		t.Fatalf("valid values refused: %v", errs)
	}
	errs := CheckLog("loud", "xml")
	if len(errs) != 2 || !strings.HasPrefix(errs[0].Error(), "-log-level: ") || errs[1].Error() != `-log-format: "xml" is not text or json` {
		t.Fatalf("CheckLog: %v", errs)
	}
	for addr, ok := range map[string]bool{"127.0.0.1:443": true, ":0": true, "[::1]:8443": true, "localhost": false, "h:http": false, "h:70000": false} {
		if err := CheckListen(addr); (err == nil) != ok {
			t.Errorf("CheckListen(%q) = %v", addr, err)
		}
	}
}
