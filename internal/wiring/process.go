package wiring

import (
	"flag"
	"strings"
)

// ControlPrefix is how `httvps up`, which runs a gateway and a control
// plane in one process, names a control plane flag whose name the
// gateway's set also has with another meaning: control-NAME, read from
// HTTVPS_CONTROL_NAME and the config-file key control-NAME (cliconf
// derives both from the flag name). ControlCollisions are those names;
// every other flag keeps its name on up, and where both components have it
// (the store, the certificate files, the decoy, ACME, the admin listener,
// the logs) one value serves both.
const ControlPrefix = "control-"

// ControlCollisions are the control plane flags that carry ControlPrefix
// on `httvps up`: -listen and -public-url (the API's address, not the
// gateway's) and -idle-timeout (keep-alive connections, not sessions).
var ControlCollisions = []string{"listen", "idle-timeout", "public-url"}

// ControlName is the name the control plane's flag name has on a binary
// that registers the control set with prefix ("" on httvps-control,
// ControlPrefix on `httvps up`).
func ControlName(prefix, name string) string {
	for _, c := range ControlCollisions {
		if c == name {
			return prefix + name
		}
	}
	return name
}

// RegisterConfig defines -config; keys says what the file holds beyond
// flag names, for the help text ("" for nothing).
func RegisterConfig(fs *flag.FlagSet, p *string, keys string) {
	what := "YAML `file` whose keys are flag names"
	if keys != "" {
		what += " (" + keys + ")"
	}
	fs.StringVar(p, "config", "", what+"; flags and environment override it")
}

// RegisterAdminListen defines -admin-listen, the operations listener
// (internal/admin), with its default address.
func RegisterAdminListen(fs *flag.FlagSet, p *string, def string) {
	fs.StringVar(p, "admin-listen", def, "`address` for /metrics, /healthz and /readyz; empty disables")
}

// RegisterListen defines the client listener flag of the gateway
// (-listen) with its default address and help.
func RegisterListen(fs *flag.FlagSet, p *string, def, usage string) {
	fs.StringVar(p, "listen", def, usage)
}

// RedisURL is -redis: the shared store's URL. It never prints its value,
// which may hold a password.
type RedisURL string

func (r *RedisURL) String() string { return "" }

func (r *RedisURL) Set(v string) error {
	*r = RedisURL(strings.TrimSpace(v))
	return nil
}

// RegisterRedis defines -redis; without is what runs when it is empty,
// for the help text. The binary checks the URL (store/redisstore, which
// this package may not import).
func RegisterRedis(fs *flag.FlagSet, p *string, without string) {
	fs.Var((*RedisURL)(p), "redis", "`URL` of the shared Redis store: redis://[:password@]host:port/db, rediss:// for TLS, unix://, or redis+sentinel://[:password@]sentinel:26379,sentinel:26379/master[/db]; tokens, usage, pool, gateways and revocations live there; empty: "+without)
}
