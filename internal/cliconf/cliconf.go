// Package cliconf is the configuration mechanism the binaries in cmd/*
// share: every flag may also come from an HTTVPS_* environment variable
// or from a YAML config file whose keys are flag names, with precedence
// flag > environment > config file > default.
//
// It reads nothing by itself: the environment and the file system come in
// as functions, so only cmd/* touches process state (STYLE.md practice 9)
// and tests need none. Each binary keeps its own flags, validation and
// special cases; this package only merges.
package cliconf

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// EnvPrefix starts every environment variable name.
const EnvPrefix = "HTTVPS_"

// ConfigFlag is the flag naming the config file; a Spec's flag set must
// define it.
const ConfigFlag = "config"

// EnvName maps a flag name to its environment variable: admin-listen →
// HTTVPS_ADMIN_LISTEN.
func EnvName(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// SplitList splits a comma-separated list, trimming the items and
// dropping the empty ones.
func SplitList(v string) []string {
	var l []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			l = append(l, s)
		}
	}
	return l
}

// Spec describes a binary's flags that need more than a value each.
type Spec struct {
	// Lists are the repeatable flags, which take their whole list from
	// one source (see Loaded.ListSource); Load leaves them alone.
	Lists []string
	// Secrets are flags whose values are never printed: not as a default
	// in the usage text, not in an error.
	Secrets []string
}

// zeroDefaults are never shown as a flag's default: a zero value's meaning
// is in the flag's help ("0 = 5s"), and `(0 = 5s) (default "0s")` would say
// it twice, contradicting itself.
var zeroDefaults = []string{"0", "0s", "false"}

// FileKeyFunc takes a config file key before the generic handling. It
// returns false to leave the key to it: a flag name with a single value.
// An error is reported prefixed with "config file PATH: ".
type FileKeyFunc func(key string, node *yaml.Node) (handled bool, err error)

// SetUsage makes fs's usage text: header as is, then every flag with its
// environment variable and, unless quiet or secret, its default.
func (s Spec) SetUsage(fs *flag.FlagSet, header string) {
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprint(w, header)
		s.printFlags(w, fs)
	}
}

func (s Spec) printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		name, help := flag.UnquoteUsage(f)
		fmt.Fprintf(w, "  -%s %s\t[%s]\n    \t%s", f.Name, name, EnvName(f.Name), help)
		if f.DefValue != "" && !slices.Contains(zeroDefaults, f.DefValue) && !slices.Contains(s.Secrets, f.Name) {
			fmt.Fprintf(w, " (default %q)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}

// Loaded is the outcome of Load.
type Loaded struct {
	// Given are the flags set on the command line.
	Given map[string]bool
	// ConfigFile is the config file's path, "" for none.
	ConfigFile string

	lookupEnv func(string) (string, bool)
}

// Source is where a list flag takes its values from.
type Source int

const (
	CommandLine Source = iota
	Environment
	ConfigFile
)

// ListSource picks the one source the list flags names take their values
// from together: the command line if it gives any of them, else the
// environment if any of their variables is not blank, else the config
// file. One source for all keeps related lists (certificates and keys)
// from pairing across sources.
func (l *Loaded) ListSource(names ...string) Source {
	for _, n := range names {
		if l.Given[n] {
			return CommandLine
		}
	}
	for _, n := range names {
		if strings.TrimSpace(l.Getenv(n)) != "" {
			return Environment
		}
	}
	return ConfigFile
}

// Getenv is the value of the flag name's environment variable.
func (l *Loaded) Getenv(name string) string {
	v, _ := l.lookupEnv(EnvName(name))
	return v
}

// EnvList is the flag name's environment variable as a comma-separated
// list.
func (l *Loaded) EnvList(name string) []string { return SplitList(l.Getenv(name)) }

// Load parses args into fs, which must define ConfigFlag, then sets every
// flag that is neither given there nor a list from its environment
// variable (looked up with lookupEnv) or else from the config file (read
// with readFile). fileKey, if not nil, sees each config file key first.
// The errors are meant for the operator as they are; flag.ErrHelp means
// -h was asked for.
func (s Spec) Load(fs *flag.FlagSet, args []string, lookupEnv func(string) (string, bool), readFile func(string) ([]byte, error), fileKey FileKeyFunc) (*Loaded, error) {
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (flags only)", fs.Arg(0))
	}
	l := &Loaded{Given: map[string]bool{}, lookupEnv: lookupEnv}
	fs.Visit(func(f *flag.Flag) { l.Given[f.Name] = true })

	cf := fs.Lookup(ConfigFlag)
	if !l.Given[ConfigFlag] {
		if v, ok := lookupEnv(EnvName(ConfigFlag)); ok {
			if err := cf.Value.Set(v); err != nil {
				return nil, fmt.Errorf("%s=%q: %w", EnvName(ConfigFlag), v, err)
			}
		}
	}
	l.ConfigFile = cf.Value.String()
	values, err := readConfigFile(l.ConfigFile, readFile, fs, fileKey)
	if err != nil {
		return nil, err
	}

	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if l.Given[f.Name] || f.Name == ConfigFlag || slices.Contains(s.Lists, f.Name) {
			return
		}
		shown := func(v string) string {
			if slices.Contains(s.Secrets, f.Name) {
				return "(hidden)"
			}
			return strconv.Quote(v)
		}
		if v, ok := lookupEnv(EnvName(f.Name)); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%s: %w", EnvName(f.Name), shown(v), err))
			}
			return
		}
		if v, ok := values[f.Name]; ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %s: %s: %w", l.ConfigFile, f.Name, shown(v), err))
			}
		}
	})
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return l, nil
}

// readConfigFile flattens a YAML file of flag-name keys to flag values;
// fileKey takes the keys it knows first. Keys are visited in order.
func readConfigFile(path string, readFile func(string) ([]byte, error), fs *flag.FlagSet, fileKey FileKeyFunc) (map[string]string, error) {
	values := map[string]string{}
	if path == "" {
		return values, nil
	}
	data, err := readFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	var raw map[string]yaml.Node
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		node := raw[key]
		if fileKey != nil {
			handled, err := fileKey(key, &node)
			if err != nil {
				return nil, fmt.Errorf("config file %s: %w", path, err)
			}
			if handled {
				continue
			}
		}
		switch {
		case key == ConfigFlag || fs.Lookup(key) == nil:
			return nil, fmt.Errorf("config file %s: line %d: unknown key %q", path, node.Line, key)
		case node.Kind != yaml.ScalarNode:
			return nil, fmt.Errorf("config file %s: line %d: %s must be a single value", path, node.Line, key)
		default:
			values[key] = node.Value
		}
	}
	return values, nil
}

// sizeUnits are the suffixes ParseSize accepts: K/KiB … T/TiB are powers
// of 1024, KB … TB (SI) powers of 1000; longer suffixes first so "KiB" and
// "KB" are not read as "B".
var sizeUnits = []struct {
	suffix string
	mult   int64
}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40}, {"B", 1}}

// ParseSize reads a size flag: a plain byte count or a number with a K/KiB,
// M/MiB, G/GiB or T/TiB suffix (powers of 1024) or KB, MB, GB, TB (powers
// of 1000), at most max bytes. The error shows example ("65536, 64KiB or
// 1MiB") as what a size looks like.
func ParseSize(s string, max int64, example string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range sizeUnits {
		if len(t) > len(u.suffix) && strings.EqualFold(t[len(t)-len(u.suffix):], u.suffix) {
			t, mult = strings.TrimSpace(t[:len(t)-len(u.suffix)]), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > max/mult {
		return 0, fmt.Errorf("%q is not a size like %s", s, example)
	}
	return n * mult, nil
}

// ParseLevel reads a -log-level value.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%q is not debug, info, warn or error", s)
}

// NewLogger is the binaries' log/slog logger for validated -log-level and
// -log-format ("text" or "json") values.
func NewLogger(level, format string, w io.Writer) *slog.Logger {
	l, _ := ParseLevel(level)
	hopts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, hopts))
	}
	return slog.New(slog.NewTextHandler(w, hopts))
}

// LogFlags registers -log-level and -log-format, which every binary has.
func LogFlags(fs *flag.FlagSet, level, format *string) {
	fs.StringVar(level, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(format, "log-format", "text", "log format: text or json")
}

// CheckLog returns the operator-facing errors of -log-level and -log-format
// values (none when both are valid).
func CheckLog(level, format string) []error {
	var errs []error
	if _, err := ParseLevel(level); err != nil {
		errs = append(errs, fmt.Errorf("-log-level: %v", err))
	}
	if format != "text" && format != "json" {
		errs = append(errs, fmt.Errorf("-log-format: %q is not text or json", format))
	}
	return errs
}

// CheckListen checks a listen address: host:port with a numeric port.
func CheckListen(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	return nil
}

// CheckListeners checks -listen and an optional -admin-listen ("" is
// off), each a host:port, and that they differ (unless both ask for a free
// port, :0), calling bad once per problem.
func CheckListeners(listen, admin string, bad func(format string, a ...any)) {
	if err := CheckListen(listen); err != nil {
		bad("-listen: %v", err)
	}
	if admin == "" {
		return
	}
	if err := CheckListen(admin); err != nil {
		bad("-admin-listen: %v", err)
	} else if admin == listen && !strings.HasSuffix(listen, ":0") {
		bad("-admin-listen: same address as -listen")
	}
}

// CheckFallback checks a -fallback address: host:port with a numeric,
// non-zero port, and not the gateway's own listen address, which would
// hand every probe back to the gateway until its fallback cap.
func CheckFallback(addr, listen string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	if host == "" {
		return errors.New("no host: want IP:PORT or HOST:PORT of a web server")
	}
	lhost, lport, err := net.SplitHostPort(listen)
	if err != nil || lport != port {
		return nil
	}
	local := func(h string) bool {
		if h == "" || h == "localhost" {
			return true
		}
		ip := net.ParseIP(h)
		return ip != nil && (ip.IsLoopback() || ip.IsUnspecified())
	}
	if host == lhost || local(host) && local(lhost) {
		return fmt.Errorf("%s is this gateway's own -listen address %s", addr, listen)
	}
	return nil
}
