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

	ConfigFile    string
	DataDir       string
	Listen        string // gateway
	ControlListen string // control plane API
	PublicHost    string
	Members       []memberFlags
	AdminKeyFile  string // "" means DataDir/admin.key
	AdminListen   string // /metrics, /healthz, /readyz; "" disables
	LogLevel      string
	LogFormat     string
	ACMEMode      string // -acme: auto, on or off
	ACME          wiring.ACME

	memberArgs memberList
}

// acmeOn says whether up obtains its certificate by ACME: -acme on, or
// auto (the default) with a -public-host a public CA issues for and no
// -tls-cert of the operator's.
func (o *upOptions) acmeOn() bool {
	switch o.ACMEMode {
	case "on":
		return true
	case "auto":
		return !o.ownCert() && (len(o.ACME.Domains) > 0 || wiring.PublicName(o.PublicHost))
	}
	return false
}

// upRenames are the control set's flags that `httvps up` names otherwise,
// because the gateway set has a flag of that name.
var upRenames = map[string]string{"idle-timeout": "control-idle-timeout"}

// upFlagSpec: member and the gateway set's lists are taken whole from one
// source.
var upFlagSpec = cliconf.Spec{Lists: append(append([]string{"member"}, wiring.GatewayLists...), wiring.ACMELists...)}

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
	fs.StringVar(&o.ConfigFile, "config", "", "YAML `file` whose keys are flag names (member: a list); flags and environment override it")
	fs.StringVar(&o.DataDir, "data-dir", defaultDataDir(e), "`directory` for the store, the admin key and the generated certificate")
	fs.StringVar(&o.Listen, "listen", ":8443", "gateway `address` (TLS + WebSocket) clients connect to")
	fs.StringVar(&o.ControlListen, "control-listen", "127.0.0.1:9443", "control plane API `address` (HTTPS): the admin API, private by default; clients fetch ssconf:// keys and their config from the gateway's -listen port")
	fs.StringVar(&o.PublicHost, "public-host", "127.0.0.1", "`host` name or IP clients reach this node at; used in keys and in the generated certificate")
	fs.Var(&o.memberArgs, "member", "add a pool member at start unless it exists: static:HOST:PORT:CIPHER:PASSWORD, ss-manager:HOST:PORT:MIN-MAX or outline-api:CERTSHA256:APIURL (repeatable; "+cliconf.EnvName("member")+" takes a comma-separated list)")
	fs.StringVar(&o.AdminKeyFile, "admin-key-file", "", "`file` holding the admin key; created (0600) with a random key when absent (default DATA-DIR/admin.key)")
	fs.StringVar(&o.AdminListen, "admin-listen", "", "`address` for /metrics, /healthz and /readyz without the admin key (e.g. 127.0.0.1:9090); empty disables")
	o.Gateway.Register(fs)
	fs.Lookup("tls-cert").Usage = "PEM certificate chain `file` (leaf first) served on -listen and -control-listen; repeatable, paired in order with -tls-key; the first pair is the default (default: a leaf certificate in DATA-DIR/leaf.pem issued and renewed by a local CA kept in DATA-DIR/ca.pem, which clients trust; HTTVPS_TLS_CERT takes a comma-separated list)"
	o.ACMEMode = "auto"
	fs.Var((*acmeMode)(&o.ACMEMode), "acme", "obtain and renew the certificate by ACME (Let's Encrypt by default), validated by TLS-ALPN-01 on -listen: auto (the default: when -public-host is a public DNS name and no -tls-cert is given), true or false; the CA connects to port 443 of the name, which must reach -listen")
	o.ACME.Register(fs, false, "-public-host")
	o.Control = wiring.NewControl()
	o.Replicas = 1
	o.Control.Register(fs, upRenames)
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
	addrs := map[string]string{"listen": o.Listen, "control-listen": o.ControlListen}
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
	if o.ACMEMode == "on" {
		if len(o.ACME.Domains) == 0 && !wiring.PublicName(o.PublicHost) {
			bad("-acme: -public-host %q is not a DNS name a public CA issues for; give one, or -acme-domain", o.PublicHost)
		}
	}
	if o.acmeOn() {
		errs = append(errs, o.ACME.Check()...)
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

// acmeMode is up's -acme: a boolean flag (-acme, -acme=false) that also
// takes auto, its default.
type acmeMode string

func (m *acmeMode) String() string { return string(*m) }

func (m *acmeMode) Set(s string) error {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "auto":
		*m = "auto"
	case "true", "on", "1", "yes":
		*m = "on"
	case "false", "off", "0", "no":
		*m = "off"
	default:
		return fmt.Errorf("%q is not auto, true or false", s)
	}
	return nil
}

func (m *acmeMode) IsBoolFlag() bool { return true }
