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

	ConfigFile   string
	Listen       string
	AdminListen  string
	AdminKey     string
	AdminKeyFile string
	RedisURL     string
	DataDir      string
	PublicURL    string
	KeysURL      string // base of ssconf:// and httvps:// keys; "" means PublicURL
	TLSCert      string
	TLSKey       string
	LogLevel     string
	LogFormat    string
	ACME         wiring.ACME
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
var flagSpec = cliconf.Spec{Secrets: []string{"admin-key", "redis"}, Lists: wiring.ACMELists}

func newFlagSet(o *options) *flag.FlagSet {
	fs := flag.NewFlagSet("httvps-control", flag.ContinueOnError)
	o.Control = wiring.NewControl()
	fs.StringVar(&o.ConfigFile, "config", "", "YAML `file` whose keys are flag names; flags and environment override it")
	fs.StringVar(&o.Listen, "listen", ":9443", "`address` of the API (HTTPS when -tls-cert is given); the port `httvps up` and `httvps admin` use too")
	fs.StringVar(&o.AdminListen, "admin-listen", "127.0.0.1:9091", "`address` for /metrics, /healthz and /readyz without the admin key; empty disables")
	fs.StringVar(&o.AdminKey, "admin-key", "", "admin bearer `key` (at least 32 bytes); prefer -admin-key-file, which keeps it out of ps")
	fs.StringVar(&o.AdminKeyFile, "admin-key-file", "", "`file` holding the admin key (surrounding whitespace is ignored)")
	fs.StringVar(&o.RedisURL, "redis", "", "`URL` of the shared Redis: redis://[:password@]host:port/db, rediss:// for TLS, unix://, or redis+sentinel://[:password@]sentinel:26379,sentinel:26379/master[/db]; empty uses the embedded store in -data-dir")
	fs.StringVar(&o.DataDir, "data-dir", "httvps-data", "`directory` of the embedded store (control.db), used when -redis is empty")
	fs.StringVar(&o.PublicURL, "public-url", "", "`URL` clients reach the API at (https://host[:port][/prefix]), used in ssconf:// and httvps:// keys; empty: the request's Host")
	fs.StringVar(&o.KeysURL, "keys-url", "", "`URL` ssconf:// and httvps:// keys point at, where clients fetch the dynamic access keys and the client config: the gateways' https://host[:port] (every gateway on the store serves them on its own port, behind its decoy), so the API can stay private; empty: -public-url")
	fs.StringVar(&o.TLSCert, "tls-cert", "", "PEM certificate chain `file` (leaf first); with -tls-key the API serves HTTPS")
	fs.StringVar(&o.TLSKey, "tls-key", "", "PEM private key `file` for -tls-cert")
	o.Control.Register(fs, nil)
	o.RegisterDecoy(fs, "every request that is not the API's (a stranger's), as the gateways answer them")
	o.ACME.Register(fs, true, "-public-url")
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
	if _, err := flagSpec.Load(fs, src.args, src.lookupEnv, src.readFile, nil); err != nil {
		return nil, err
	}

	if o.AdminKeyFile != "" {
		if o.AdminKey != "" {
			return nil, errors.New("give -admin-key or -admin-key-file, not both")
		}
		data, err := src.readFile(o.AdminKeyFile)
		if err != nil {
			return nil, fmt.Errorf("-admin-key-file: %w", err)
		}
		o.AdminKey = strings.TrimSpace(string(data))
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
	switch {
	case o.AdminKey == "":
		bad("no admin key: give -admin-key-file, -admin-key or %s", cliconf.EnvName("admin-key"))
	case len(o.AdminKey) < api.MinAdminKeyLen:
		bad("admin key: %d bytes, fewer than %d (try: openssl rand -base64 33)", len(o.AdminKey), api.MinAdminKeyLen)
	}
	if o.RedisURL != "" {
		if err := redisstore.CheckURL(o.RedisURL); err != nil {
			bad("-redis: %v", err)
		}
	} else if o.DataDir == "" {
		bad("-data-dir: empty, and no -redis given")
	}
	for name, v := range map[string]string{"public-url": o.PublicURL, "keys-url": o.KeysURL} {
		if v == "" {
			continue
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			bad("-%s %q: want https://host[:port][/prefix]", name, v)
		}
	}
	errs = append(errs, o.Check()...)
	if err := o.CheckDecoy(); err != nil {
		errs = append(errs, err)
	}
	if (o.TLSCert == "") != (o.TLSKey == "") {
		bad("-tls-cert and -tls-key go together")
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
	keys := o.KeysURL
	if keys == "" {
		keys = o.PublicURL
	}
	cfg := o.APIConfig(o.AdminKey, keys)
	cfg.Decoy = o.DecoyConfig()
	return cfg
}
