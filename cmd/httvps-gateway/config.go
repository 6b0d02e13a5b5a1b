package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"

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
	Redis string

	LogLevel  string
	LogFormat string

	ACME wiring.ACME // ACME.Dir: the ACME state without -redis
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
var flagSpec = cliconf.Spec{Secrets: []string{"redis"}, Lists: append(append([]string(nil), wiring.GatewayLists...), wiring.ACMELists...)}

func newFlagSet(o *options) *flag.FlagSet {
	fs := flag.NewFlagSet("httvps-gateway", flag.ContinueOnError)
	wiring.RegisterConfig(fs, &o.ConfigFile, "routes: {SECRET: IP:PORT}")
	wiring.RegisterListen(fs, &o.Listen, ":8080", "`address` for client connections (HTTP/1.1 + WebSocket; TLS-only when -tls-cert is given)")
	wiring.RegisterAdminListen(fs, &o.AdminListen, "127.0.0.1:9090")
	wiring.RegisterRedis(fs, &o.Redis, "static -route entries only (they are checked first with -redis too)")
	o.Gateway.Register(fs)
	o.ACME.Register(fs, "-public-url")
	o.ACME.Dir = "httvps-acme"
	o.ACME.RegisterDir(fs, "")
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
	o.ACME.Decide(len(o.TLSPairs) > 0, wiring.HostOf(o.PublicURL))
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
		} else if err := wiring.CheckGatewayURL(o.PublicURL); err != nil {
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
