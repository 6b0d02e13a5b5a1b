package wiring

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"flag"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/httvps/httvps/control/api"
	"github.com/httvps/httvps/control/pool"
	"github.com/httvps/httvps/internal/acmecert"
)

// maxBodyCeiling keeps -max-body to what a JSON API could need.
const maxBodyCeiling = 16 << 20

// Control is the control plane's option set: what api.Config and
// pool.Config take from an operator. Zero durations and counts mean the
// package default (documented on api.Config and pool.Config).
type Control struct {
	Replicas     int
	HealthEvery  time.Duration
	StrayGrace   time.Duration
	MaxBody      Size
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	IdleTimeout  time.Duration
	OpenMetrics  bool
	// KeyPin is the hex SHA-256 of the gateways' leaf certificate or
	// private CA, written as pin= into httvps:// keys (api.Config.KeyPin);
	// empty: none.
	KeyPin string

	// Listen is the API's address.
	Listen string
	// PublicURL is where clients reach the API
	// (https://host[:port][/prefix]); KeysURL is where ssconf:// and
	// httvps:// keys send them ("" means PublicURL; "" for both: the
	// request's Host).
	PublicURL, KeysURL string
	// AdminKey is the admin bearer key; AdminKeyFile a file holding it
	// (ReadAdminKey; `httvps up` creates it when absent).
	AdminKey, AdminKeyFile string

	prefix string // ControlPrefix on a binary that also runs a gateway
}

// NewControl is the set with the control plane's defaults.
func NewControl() Control { return Control{MaxBody: api.DefaultMaxBodyBytes, Listen: ":9443"} }

// ControlSecrets are the set's flags whose values are never printed; a
// binary's cliconf.Spec lists them.
var ControlSecrets = []string{"admin-key"}

// Register defines the set's flags on fs with the values already in c as
// defaults. prefix is "" on httvps-control and ControlPrefix on a binary
// that registers the gateway set too (`httvps up`): it goes before the
// ControlCollisions names.
func (c *Control) Register(fs *flag.FlagSet, prefix string) {
	c.prefix = prefix
	fs.StringVar(&c.Listen, c.name("listen"), c.Listen, "`address` of the API (HTTPS when -tls-cert is given); the port `httvps up` and `httvps admin` use too")
	fs.StringVar(&c.PublicURL, c.name("public-url"), c.PublicURL, "`URL` clients reach the API at (https://host[:port][/prefix]), used in ssconf:// and httvps:// keys; empty: the request's Host")
	fs.StringVar(&c.KeysURL, c.name("keys-url"), c.KeysURL, "`URL` ssconf:// and httvps:// keys point at, where clients fetch the dynamic access keys and the client config: the gateways' https://host[:port] (every gateway on the store serves them on its own port, behind its decoy), so the API can stay private; empty: -"+c.name("public-url"))
	fs.StringVar(&c.AdminKey, c.name("admin-key"), c.AdminKey, "admin bearer `key` (at least 32 bytes); prefer -admin-key-file, which keeps it out of ps")
	fs.StringVar(&c.AdminKeyFile, c.name("admin-key-file"), c.AdminKeyFile, "`file` holding the admin key (surrounding whitespace is ignored)")
	fs.IntVar(&c.Replicas, c.name("replicas"), c.Replicas, "pool members each key is placed on (0 = 2)")
	fs.DurationVar(&c.HealthEvery, c.name("health-every"), c.HealthEvery, "pool member health check period (0 = 10s)")
	fs.DurationVar(&c.StrayGrace, c.name("stray-grace"), c.StrayGrace, "delete a pool key this installation created once health checks have seen it this long with no token assigned (0 = 2m with the embedded store, off with -redis; negative: never)")
	fs.Var(&c.MaxBody, c.name("max-body"), "largest request body, a `size` in bytes or with a KiB/MiB suffix")
	fs.DurationVar(&c.ReadTimeout, c.name("read-timeout"), c.ReadTimeout, "time to read one request (0 = 10s)")
	fs.DurationVar(&c.WriteTimeout, c.name("write-timeout"), c.WriteTimeout, "time to write one response (0 = 10s)")
	fs.DurationVar(&c.IdleTimeout, c.name("idle-timeout"), c.IdleTimeout, "close keep-alive connections idle this long (0 = 60s)")
	fs.BoolVar(&c.OpenMetrics, c.name("open-metrics"), c.OpenMetrics, "serve /metrics on the API's listener without the admin key")
	fs.StringVar(&c.KeyPin, c.name("key-pin"), c.KeyPin, "`hex` SHA-256 of the gateways' certificate (DER), written as pin= into httvps:// keys so the reference client accepts a self-signed or private-CA gateway (httvps up: its local CA's when it generated one)")
}

func (c *Control) name(n string) string { return ControlName(c.prefix, n) }

// Name is the binary's name of the set's flag n.
func (c *Control) Name(n string) string { return c.name(n) }

// ReadAdminKey reads -admin-key-file into AdminKey; giving both is an
// error. It does nothing without -admin-key-file.
func (c *Control) ReadAdminKey(readFile func(string) ([]byte, error)) error {
	if c.AdminKeyFile == "" {
		return nil
	}
	if c.AdminKey != "" {
		return fmt.Errorf("give -%s or -%s, not both", c.name("admin-key"), c.name("admin-key-file"))
	}
	data, err := readFile(c.AdminKeyFile)
	if err != nil {
		return fmt.Errorf("-%s: %w", c.name("admin-key-file"), err)
	}
	c.AdminKey = strings.TrimSpace(string(data))
	return nil
}

// CheckAdminKey reports an admin key too short to be one.
func (c *Control) CheckAdminKey() error {
	if c.AdminKey != "" && len(c.AdminKey) < api.MinAdminKeyLen {
		return fmt.Errorf("admin key: %d bytes, fewer than %d (try: openssl rand -base64 33)", len(c.AdminKey), api.MinAdminKeyLen)
	}
	return nil
}

// KeysBase is where keys send clients: -keys-url, else -public-url.
func (c *Control) KeysBase() string {
	if c.KeysURL != "" {
		return c.KeysURL
	}
	return c.PublicURL
}

// Check returns the operator-facing errors of the set.
func (c *Control) Check() []error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.Replicas < 0 {
		bad("-%s: %d is negative", c.name("replicas"), c.Replicas)
	}
	for name, d := range map[string]time.Duration{
		"health-every": c.HealthEvery, "read-timeout": c.ReadTimeout,
		"write-timeout": c.WriteTimeout, "idle-timeout": c.IdleTimeout,
	} {
		if d < 0 {
			bad("-%s: %v is negative", c.name(name), d)
		}
	}
	if c.KeyPin != "" {
		if b, err := hex.DecodeString(c.KeyPin); err != nil || len(b) != sha256.Size {
			bad("-%s: want 64 hex digits (the SHA-256 of the certificate's DER)", c.name("key-pin"))
		}
	}
	for _, name := range []string{"public-url", "keys-url"} {
		v := c.PublicURL
		if name == "keys-url" {
			v = c.KeysURL
		}
		if v == "" {
			continue
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			bad("-%s %q: want https://host[:port][/prefix]", c.name(name), v)
		}
	}
	if err := c.CheckAdminKey(); err != nil {
		errs = append(errs, err)
	}
	if c.MaxBody < 1024 || c.MaxBody > maxBodyCeiling {
		bad("-%s: %d is not between 1KiB and 16MiB", c.name("max-body"), c.MaxBody)
	}
	return errs
}

// PoolConfig maps the set onto pool.Config; Logger is the caller's to
// fill. singleProcess says no other control plane shares the store (the
// embedded one): only then does the stray-key sweep run by default.
func (c *Control) PoolConfig(singleProcess bool) pool.Config {
	return pool.Config{Replicas: c.Replicas, HealthEvery: c.HealthEvery, StrayGrace: c.StrayGrace, SingleProcess: singleProcess}
}

// APIConfig maps the set onto api.Config; Store, Pool and Logger are the
// caller's to fill.
func (c *Control) APIConfig(adminKey, publicURL string) api.Config {
	return api.Config{
		AdminKey:     adminKey,
		PublicURL:    publicURL,
		MaxBodyBytes: int(c.MaxBody),
		ReadTimeout:  c.ReadTimeout,
		WriteTimeout: c.WriteTimeout,
		IdleTimeout:  c.IdleTimeout,
		OpenMetrics:  c.OpenMetrics,
		KeyPin:       c.keyPin(),
	}
}

// keyPin is -key-pin decoded; nil when empty or invalid (Check reports it).
func (c *Control) keyPin() []byte {
	b, err := hex.DecodeString(c.KeyPin)
	if err != nil || len(b) != sha256.Size {
		return nil
	}
	return b
}

// APITLS is the API's TLS (for api.Server.ServeTLS): TLS 1.2 or later,
// HTTP/1.1 only. acme, when not nil, answers ACME TLS-ALPN-01 validation
// handshakes (acmecert.Manager.Challenge): such a hello gets the
// validation certificate and acme-tls/1, and the API then reads nothing
// from the connection.
func APITLS(getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error),
	acme func(*tls.ClientHelloInfo) (*tls.Certificate, bool)) *tls.Config {
	base := &tls.Config{
		GetCertificate: getCert,
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"http/1.1"},
	}
	if acme != nil {
		base.GetConfigForClient = func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
			cert, ok := acme(hi)
			if !ok {
				return nil, nil
			}
			return &tls.Config{
				Certificates: []tls.Certificate{*cert},
				MinVersion:   tls.VersionTLS12,
				NextProtos:   []string{acmecert.ALPNProto},
			}, nil
		}
	}
	return base
}
