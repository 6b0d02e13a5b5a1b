package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/httvps/httvps/internal/cliconf"
	"github.com/httvps/httvps/internal/wiring"
	"github.com/httvps/httvps/store/redisstore"
)

const (
	adminKeyName = "admin.key"
	storeName    = "httvps.db"
	// firstTokenName holds the first token's keys when stdout is not a
	// terminal.
	firstTokenName = "first-token.txt"
)

// upOptions is everything `httvps up` can be told, after merging flags,
// environment and the config file: the gateway and control sets of
// httvps-gateway and httvps-control (internal/wiring), and up's own flags.
// Without -tls-cert a certificate generated in DataDir serves both
// listeners.
type upOptions struct {
	wiring.Gateway
	wiring.Control

	ConfigFile  string
	DataDir     string
	Listen      string // gateway; the control API's is Control.Listen (-control-listen)
	PublicHost  string
	Members     []memberFlags
	AdminListen string // /metrics, /healthz, /readyz; "" disables
	RedisURL    string // "" means the embedded store in DataDir
	LogLevel    string
	LogFormat   string
	ACME        wiring.ACME // Mode auto by default; Dir "" means the store

	memberArgs memberList
}

// acmeOn says whether up obtains its certificate by ACME: -acme on, or
// auto (the default) with a -public-host a public CA issues for and no
// -tls-cert of the operator's (wiring.ACME.Decide).
func (o *upOptions) acmeOn() bool { return o.ACME.On }

// upFlagSpec: member and the gateway set's lists are taken whole from one
// source; the Redis URL and the admin key are never printed.
var upFlagSpec = cliconf.Spec{
	Lists:   append(append([]string{"member"}, wiring.GatewayLists...), wiring.ACMELists...),
	Secrets: append([]string{"redis"}, wiring.ControlSecrets...),
}

// ownCert says -tls-cert/-tls-key name the certificates; otherwise up
// generates one.
func (o *upOptions) ownCert() bool { return len(o.TLSPairs) > 0 }

// defaultDataDir is $XDG_STATE_HOME/httvps when XDG_STATE_HOME is set,
// else ./httvps-data.
func defaultDataDir(e env) string {
	if x := e.getenv("XDG_STATE_HOME"); x != "" {
		return filepath.Join(x, "httvps")
	}
	return "httvps-data"
}

func newUpFlagSet(o *upOptions, e env) *flag.FlagSet {
	fs := flag.NewFlagSet("httvps up", flag.ContinueOnError)
	wiring.RegisterConfig(fs, &o.ConfigFile, "member: a list")
	fs.StringVar(&o.DataDir, "data-dir", defaultDataDir(e), "`directory` for the store (without -redis), the admin key and the generated certificate")
	wiring.RegisterListen(fs, &o.Listen, ":8443", "gateway `address` (TLS + WebSocket) clients connect to")
	fs.StringVar(&o.PublicHost, "public-host", "127.0.0.1", "`host` name or IP clients reach this node at; used in keys and in the generated certificate")
	fs.Var(&o.memberArgs, "member", "add a pool member at start unless it exists: static:HOST:PORT:CIPHER:PASSWORD, ss-manager:HOST:PORT:MIN-MAX or outline-api:CERTSHA256:APIURL (repeatable; "+cliconf.EnvName("member")+" takes a comma-separated list)")
	wiring.RegisterAdminListen(fs, &o.AdminListen, "")
	wiring.RegisterRedis(fs, &o.RedisURL, "the embedded store in -data-dir (a Redis store is shared: other gateways and control planes may use it too)")
	o.Gateway.Register(fs)
	fs.Lookup("tls-cert").Usage = "PEM certificate chain `file` (leaf first) served on -listen and -control-listen; repeatable, paired in order with -tls-key; the first pair is the default (default: a leaf certificate in DATA-DIR/leaf.pem issued and renewed by a local CA kept in DATA-DIR/ca.pem, which clients trust; HTTVPS_TLS_CERT takes a comma-separated list)"
	fs.Lookup("public-url").Usage = "wss://host:port `URL` clients reach this gateway at, registered in the store and named in keys (default: wss://-public-host:-listen's port)"
	o.ACME.Mode = wiring.ACMEAuto
	o.ACME.Register(fs, "-public-host")
	o.ACME.RegisterDir(fs, "the store")
	o.Control = wiring.NewControl()
	o.Replicas = 1
	o.Control.Listen = "127.0.0.1:9443"
	o.Control.Register(fs, wiring.ControlPrefix)
	fs.Lookup("control-listen").Usage = "control plane API `address` (HTTPS): the admin API, private by default; clients fetch ssconf:// keys and their config from the gateway's -listen port"
	fs.Lookup("control-public-url").Usage = "`URL` the control API (the admin API) is reached at, as the banner shows it (https://host[:port]; default: https://-public-host:-control-listen's port); keys do not name it"
	fs.Lookup("keys-url").Usage = "`URL` ssconf:// and httvps:// keys point at, where clients fetch the dynamic access keys and the client config (https://host[:port][/prefix]; default: the gateway, https://host:port of -public-url)"
	fs.Lookup("admin-key").Usage = "admin bearer `key` (at least 32 bytes) instead of -admin-key-file; nothing is written to DATA-DIR/admin.key"
	fs.Lookup("admin-key-file").Usage = "`file` holding the admin key; created (0600) with a random key when absent (default DATA-DIR/admin.key)"
	cliconf.LogFlags(fs, &o.LogLevel, &o.LogFormat)
	upFlagSpec.SetUsage(fs, "Usage: httvps up [flags]\n\n"+
		"Runs a single-node HTTVPS installation in one process on the embedded store:\n"+
		"control plane API, gateway and pool manager. On first start it creates the admin\n"+
		"key and, with a pool member, a first client token, and prints how to connect.\n"+
		"Every flag is also read from the environment variable shown, then from -config.\n\n")
	return fs
}

// loadUpOptions merges flag > environment > config file > default and
// validates. flag.ErrHelp means -h was asked for.
func loadUpOptions(args []string, e env) (*upOptions, error) {
	o := &upOptions{}
	fs := newUpFlagSet(o, e)
	fs.SetOutput(e.stderr)
	var fileMembers []string
	ld, err := upFlagSpec.Load(fs, args, e.lookupEnv, os.ReadFile, func(k string, node *yaml.Node) (bool, error) {
		if k != "member" && k != "members" {
			return o.FileKey(k, node)
		}
		if node.Kind == yaml.ScalarNode {
			fileMembers = append(fileMembers, node.Value)
		} else if err := node.Decode(&fileMembers); err != nil {
			return true, fmt.Errorf("line %d: %s must be a spec or a list of them", node.Line, k)
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	if err := o.Resolve(ld); err != nil {
		return nil, err
	}
	o.ACME.Decide(o.ownCert(), o.PublicHost)
	specs, from := []string(o.memberArgs), "-member"
	switch ld.ListSource("member") {
	case cliconf.Environment:
		specs, from = ld.EnvList("member"), cliconf.EnvName("member")
	case cliconf.ConfigFile:
		specs, from = fileMembers, o.ConfigFile+": member"
	}
	var errs []error
	for i, s := range specs {
		m, err := parseMemberSpec(strings.TrimSpace(s))
		if err != nil {
			// The spec may hold a password; it is not echoed.
			errs = append(errs, fmt.Errorf("%s #%d: %w", from, i+1, err))
			continue
		}
		o.Members = append(o.Members, m)
	}
	if err := o.validate(); err != nil {
		errs = append(errs, err)
	} else if err := o.ReadDecoy(os.ReadFile); err != nil {
		errs = append(errs, err)
	}
	return o, errors.Join(errs...)
}

func (o *upOptions) validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	addrs := map[string]string{"listen": o.Listen, "control-listen": o.Control.Listen}
	if o.AdminListen != "" {
		addrs["admin-listen"] = o.AdminListen
	}
	for name, addr := range addrs {
		if _, port, err := net.SplitHostPort(addr); err != nil {
			bad("-%s: %v", name, err)
		} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			bad("-%s: port %q is not a number from 0 to 65535", name, port)
		}
	}
	for _, p := range [][2]string{{"listen", "control-listen"}, {"listen", "admin-listen"}, {"control-listen", "admin-listen"}} {
		if a := addrs[p[0]]; a != "" && a == addrs[p[1]] && !strings.HasSuffix(a, ":0") {
			bad("-%s and -%s are the same address", p[0], p[1])
		}
	}
	if o.DataDir == "" {
		bad("-data-dir is empty")
	}
	if h := o.PublicHost; h == "" || strings.ContainsAny(h, "/:@?#[] ") && net.ParseIP(h) == nil {
		bad("-public-host %q is not a host name or IP address", h)
	}
	if o.ACME.Mode == wiring.ACMEOn {
		if len(o.ACME.Domains) == 0 && !wiring.PublicName(o.PublicHost) {
			bad("-acme: -public-host %q is not a DNS name a public CA issues for; give one, or -acme-domain", o.PublicHost)
		}
	}
	if o.acmeOn() {
		errs = append(errs, o.ACME.Check()...)
	}
	if o.RedisURL != "" {
		if err := redisstore.CheckURL(o.RedisURL); err != nil {
			bad("-redis: %v", err)
		}
	}
	if o.Gateway.PublicURL != "" {
		if err := wiring.CheckGatewayURL(o.Gateway.PublicURL); err != nil {
			bad("-public-url: %v", err)
		}
	}
	if o.AdminKey != "" && o.AdminKeyFile != "" {
		bad("give -admin-key or -admin-key-file, not both")
	}
	errs = append(errs, o.Gateway.Check(o.Listen)...)
	errs = append(errs, o.Control.Check()...)
	errs = append(errs, cliconf.CheckLog(o.LogLevel, o.LogFormat)...)
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return errors.Join(errs...)
}

// byteSize is a size flag (see cliconf.ParseSize).
type byteSize int64

func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }

func (b *byteSize) Set(s string) error {
	n, err := cliconf.ParseSize(s, 1<<62, "1048576, 500MiB or 10GiB")
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}
