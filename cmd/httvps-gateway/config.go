package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"sort"
	"strings"

	"github.com/httvps/httvps/internal/cliconf"
	"github.com/httvps/httvps/internal/wiring"
	"github.com/httvps/httvps/store/redisstore"
)

// options is everything the gateway binary can be told, after merging
// flags, environment and the config file: the gateway set shared with
// `httvps up` (internal/wiring) and the flags only this binary has.
type options struct {
	wiring.Gateway

	ConfigFile  string
	Listen      string
	AdminListen string

	// Redis, when set, is the shared store's URL: tokens are looked up
	// there (after the static Routes). PublicURL is then required.
	Redis     string
	PublicURL string

	LogLevel  string
	LogFormat string

	ACME    wiring.ACME
	ACMEDir string // the ACME state without -redis
}

// sources are the outside inputs, injected so tests need no process state.
type sources struct {
	args      []string
	lookupEnv func(string) (string, bool)
	readFile  func(string) ([]byte, error)
	usage     io.Writer // -h output and flag errors
}

func osSources(args []string) sources {
	return sources{args: args, lookupEnv: os.LookupEnv, readFile: os.ReadFile, usage: os.Stderr}
}

// flagSpec: the repeatable flags take their whole list from one source
// instead of a value per flag; duration defaults ("0s") are shown.
var flagSpec = cliconf.Spec{Lists: append(append([]string(nil), wiring.GatewayLists...), wiring.ACMELists...)}

func newFlagSet(o *options) *flag.FlagSet {
	fs := flag.NewFlagSet("httvps-gateway", flag.ContinueOnError)
	fs.StringVar(&o.ConfigFile, "config", "", "YAML `file` whose keys are flag names (routes: {SECRET: IP:PORT}); flags and environment override it")
	fs.StringVar(&o.Listen, "listen", ":8080", "`address` for client connections (HTTP/1.1 + WebSocket; TLS-only when -tls-cert is given)")
	fs.StringVar(&o.AdminListen, "admin-listen", "127.0.0.1:9090", "`address` for /metrics, /healthz and /readyz; empty disables")
	fs.Var((*redisURL)(&o.Redis), "redis", "Redis `URL` of the shared store (redis://[:password@]host:port/db, rediss:// for TLS, or redis+sentinel://[:password@]sentinel:26379,sentinel:26379/master[/db]): tokens, usage, session limits and revocations come from it; -route entries are still checked first")
	fs.StringVar(&o.PublicURL, "public-url", "", "wss://host:port `URL` clients reach this gateway at, registered in the store (required with -redis)")
	o.Gateway.Register(fs)
	o.ACME.Register(fs, true, "-public-url")
	fs.StringVar(&o.ACMEDir, "acme-dir", "httvps-acme", "`directory` of the ACME account and certificates without -redis (with -redis they live in Redis, shared by the fleet)")
	cliconf.LogFlags(fs, &o.LogLevel, &o.LogFormat)
	flagSpec.SetUsage(fs, "Usage: httvps-gateway [flags]\n\n"+
		"Accepts WebSocket sessions on /SECRET/tcp and /SECRET/udp and relays them to\n"+
		"the route's Outline (Shadowsocks) server. Every flag is also read from the\n"+
		"environment variable shown, then from -config; a flag wins over both.\n\n")
	return fs
}

// loadOptions merges the sources with precedence flag > environment >
// config file > default, then validates. A returned error is meant for the
// operator as is; flag.ErrHelp means -h was asked for.
func loadOptions(src sources) (*options, error) {
	o := &options{}
	fs := newFlagSet(o)
	fs.SetOutput(src.usage)
	ld, err := flagSpec.Load(fs, src.args, src.lookupEnv, src.readFile, o.FileKey)
	if err != nil {
		return nil, err
	}
	if err := o.Resolve(ld); err != nil {
		return nil, err
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	if err := o.ReadDecoy(src.readFile); err != nil {
		return nil, err
	}
	return o, nil
}

func (o *options) validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	cliconf.CheckListeners(o.Listen, o.AdminListen, bad)
	if len(o.Routes) == 0 && o.Redis == "" {
		bad("no routes: give -route SECRET=IP:PORT, %s or routes: in -config, or -redis", cliconf.EnvName("route"))
	}
	if o.Redis != "" {
		if err := redisstore.CheckURL(o.Redis); err != nil {
			bad("-redis: %v", err)
		}
		if o.PublicURL == "" {
			bad("-public-url is required with -redis (the URL clients are given for this gateway)")
		} else if err := checkPublicURL(o.PublicURL); err != nil {
			bad("-public-url: %v", err)
		}
	} else if o.PublicURL != "" || o.GatewayID != "" {
		// Most likely -redis was lost, and the gateway would silently
		// run on static routes alone.
		bad("-public-url and -gateway-id need -redis")
	}
	errs = append(errs, o.Check(o.Listen)...)
	errs = append(errs, cliconf.CheckLog(o.LogLevel, o.LogFormat)...)
	if o.ACME.On {
		errs = append(errs, o.ACME.Check()...)
		if len(o.ACME.NamesForURL(o.PublicURL)) == 0 {
			bad("-acme needs a name: give -acme-domain, or -public-url with a DNS name")
		}
	}
	if len(o.TLSPairs) == 0 && !o.ACME.On && o.TLSMinVersion.Given() {
		// Most likely the certificate flags were lost, and the gateway
		// would silently serve plaintext.
		bad("-tls-min-version given without -tls-cert and -tls-key")
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return errors.Join(errs...)
}

func checkPublicURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URL", s)
	}
	if (u.Scheme != "wss" && u.Scheme != "ws") || u.Host == "" {
		return fmt.Errorf("%q is not a wss://host:port URL", s)
	}
	return nil
}

// redisURL is the -redis flag; it never prints its value, which may hold
// a password.
type redisURL string

func (r *redisURL) String() string { return "" }

func (r *redisURL) Set(v string) error {
	*r = redisURL(strings.TrimSpace(v))
	return nil
}
