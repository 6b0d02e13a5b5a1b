package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/httvps/httvps/control/api"
	"github.com/httvps/httvps/control/pool"
	"github.com/httvps/httvps/internal/cliconf"
	"github.com/httvps/httvps/internal/wiring"
	"github.com/httvps/httvps/store/redisstore"
)

// options is everything the control plane binary can be told, after
// merging flags, environment and the config file: the control set shared
// with `httvps up` (internal/wiring) and the flags only this binary has.
type options struct {
	wiring.Control
	wiring.Decoy // strangers' answer: give the gateways' -decoy-* so all answer alike

	ConfigFile  string
	AdminListen string
	RedisURL    string
	DataDir     string
	TLS         wiring.TLSFiles
	LogLevel    string
	LogFormat   string
	ACME        wiring.ACME
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

// flagSpec: admin-key and redis never have their values printed
// (defaults, errors).
var flagSpec = cliconf.Spec{Secrets: append([]string{"redis"}, wiring.ControlSecrets...), Lists: append(append([]string(nil), wiring.TLSLists...), wiring.ACMELists...)}

func newFlagSet(o *options) *flag.FlagSet {
	fs := flag.NewFlagSet("httvps-control", flag.ContinueOnError)
	o.Control = wiring.NewControl()
	wiring.RegisterConfig(fs, &o.ConfigFile, "")
	wiring.RegisterAdminListen(fs, &o.AdminListen, "127.0.0.1:9091")
	wiring.RegisterRedis(fs, &o.RedisURL, "the embedded store in -data-dir")
	fs.StringVar(&o.DataDir, "data-dir", "httvps-data", "`directory` of the embedded store (control.db), used when -redis is empty")
	o.TLS.Register(fs, "-listen (HTTPS; without: plain HTTP)")
	o.Control.Register(fs, "")
	o.RegisterDecoy(fs, "every request that is not the API's (a stranger's), as the gateways answer them")
	o.ACME.Register(fs, "-public-url")
	cliconf.LogFlags(fs, &o.LogLevel, &o.LogFormat)
	flagSpec.SetUsage(fs, "Usage: httvps-control [flags]\n\n"+
		"Serves the HTTVPS control plane API (tokens, Outline pool, gateways, client\n"+
		"configuration, Outline dynamic access keys) and runs the pool manager.\n"+
		"Every flag is also read from the environment variable shown, then from\n"+
		"-config; a flag wins over both.\n\n")
	return fs
}

// loadOptions merges the sources with precedence flag > environment >
// config file > default, then validates. A returned error is meant for the
// operator as is (it never quotes the admin key or the Redis URL);
// flag.ErrHelp means -h was asked for.
func loadOptions(src sources) (*options, error) {
	o := &options{}
	fs := newFlagSet(o)
	fs.SetOutput(src.usage)
	ld, err := flagSpec.Load(fs, src.args, src.lookupEnv, src.readFile, o.TLS.FileKey)
	if err != nil {
		return nil, err
	}
	if err := o.TLS.Resolve(ld); err != nil {
		return nil, err
	}
	o.ACME.Decide(len(o.TLS.Pairs) > 0, wiring.HostOf(o.PublicURL))
	if err := o.ReadAdminKey(src.readFile); err != nil {
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
	if o.ACME.On {
		errs = append(errs, o.ACME.Check()...)
		if len(o.ACME.NamesForURL(o.PublicURL)) == 0 {
			bad("-acme needs a name: give -acme-domain, or -public-url with a DNS name")
		}
	}

	cliconf.CheckListeners(o.Listen, o.AdminListen, bad)
	if o.AdminKey == "" {
		bad("no admin key: give -admin-key-file, -admin-key or %s", cliconf.EnvName("admin-key"))
	}
	if o.RedisURL != "" {
		if err := redisstore.CheckURL(o.RedisURL); err != nil {
			bad("-redis: %v", err)
		}
	} else if o.DataDir == "" {
		bad("-data-dir: empty, and no -redis given")
	}
	errs = append(errs, o.Check()...)
	if err := o.CheckDecoy(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, cliconf.CheckLog(o.LogLevel, o.LogFormat)...)
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return errors.Join(errs...)
}

// poolConfig: only the embedded store guarantees one control-plane
// process; with Redis the sweep runs only with an explicit -stray-grace.
func (o *options) poolConfig() pool.Config { return o.PoolConfig(o.RedisURL == "") }

// apiConfig maps the options onto api.Config; Store, Pool and Logger are
// the caller's to fill.
func (o *options) apiConfig() api.Config {
	cfg := o.APIConfig(o.AdminKey, o.KeysBase())
	cfg.Decoy = o.DecoyConfig()
	return cfg
}
