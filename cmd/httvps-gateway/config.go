package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/internal/certs"
	"github.com/httvps/httvps/internal/cliconf"
)

const (
	maxDecoySize = 1 << 20
	maxSecretLen = 512
)

// options is everything the gateway binary can be told, after merging
// flags, environment and the config file. Zero numbers mean the gateway's
// own default (documented on gateway.Config).
type options struct {
	ConfigFile  string
	Listen      string
	AdminListen string
	Routes      map[string]string // secret → upstream "ip:port"

	// Redis, when set, is the shared store's URL: tokens are looked up
	// there (after the static Routes). PublicURL is then required.
	Redis     string
	PublicURL string
	GatewayID string // "" means a random ID per start

	MaxSessions      int
	MaxHandshakes    int
	AddrHandshakes   int
	AddrRate         float64
	AddrBurst        int
	HandshakeTimeout time.Duration
	IdleTimeout      time.Duration
	UDPIdleTimeout   time.Duration
	DialTimeout      time.Duration
	DrainTimeout     time.Duration
	EOFGrace         time.Duration
	HandshakeCPU     int
	MaxFrameSize     byteSize
	MaxMessageSize   byteSize
	BufferCap        byteSize
	ReadChunk        byteSize
	MaxControlRate   int
	MaxControlBurst  int
	Loops            int

	DecoyFile   string
	DecoyStatus int
	DecoyBody   []byte

	Fallback     string // web server every non-session is relayed to; "" = the decoy
	MaxFallbacks int

	LogLevel  string
	LogFormat string

	TLSPairs      []certs.Pair // empty means plaintext
	TLSMinVersion tlsVersion
	TLSWatch      time.Duration // 0 disables polling the files

	routeArgs   routeList // -route values, before parsing
	tlsCertArgs fileList  // -tls-cert values, paired with tlsKeyArgs in order
	tlsKeyArgs  fileList
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
var flagSpec = cliconf.Spec{Lists: []string{"route", "tls-cert", "tls-key"}, QuietDefaults: []string{"0"}}

func newFlagSet(o *options) *flag.FlagSet {
	fs := flag.NewFlagSet("httvps-gateway", flag.ContinueOnError)
	fs.StringVar(&o.ConfigFile, "config", "", "YAML `file` whose keys are flag names (routes: {SECRET: IP:PORT}); flags and environment override it")
	fs.StringVar(&o.Listen, "listen", ":8080", "`address` for client connections (HTTP/1.1 + WebSocket; TLS-only when -tls-cert is given)")
	fs.StringVar(&o.AdminListen, "admin-listen", "127.0.0.1:9090", "`address` for /metrics, /healthz and /readyz; empty disables")
	fs.Var(&o.routeArgs, "route", "`SECRET=IP:PORT` route for /SECRET/tcp and /SECRET/udp (repeatable; HTTVPS_ROUTE takes a comma-separated list)")
	fs.Var((*redisURL)(&o.Redis), "redis", "Redis `URL` (redis://[:password@]host:port/db or rediss:// for TLS) of the shared store: tokens, usage, session limits and revocations come from it; -route entries are still checked first")
	fs.StringVar(&o.PublicURL, "public-url", "", "wss://host:port `URL` clients reach this gateway at, registered in the store (required with -redis)")
	fs.StringVar(&o.GatewayID, "gateway-id", "", "this gateway's `ID` in the store (default: a random ID per start; never share one between running gateways)")
	fs.Var(&o.tlsCertArgs, "tls-cert", "PEM certificate chain `file` (leaf first) served on -listen; repeatable, paired in order with -tls-key; the first pair is the default (HTTVPS_TLS_CERT takes a comma-separated list)")
	fs.Var(&o.tlsKeyArgs, "tls-key", "PEM private key `file` for the -tls-cert at the same position; repeatable (HTTVPS_TLS_KEY takes a comma-separated list)")
	fs.Var(&o.TLSMinVersion, "tls-min-version", "lowest TLS `version` accepted: 1.2 or 1.3")
	fs.DurationVar(&o.TLSWatch, "tls-watch", 10*time.Second, "poll the certificate and key files this often and reload on change (0 disables; SIGHUP always reloads)")
	fs.IntVar(&o.MaxSessions, "max-sessions", 0, "cap on sessions plus handshakes in progress (0 = 100000)")
	fs.IntVar(&o.MaxHandshakes, "max-handshakes", 0, "cap on handshakes in progress; at the cap the oldest idle one gives way (0 = 4096)")
	fs.IntVar(&o.AddrHandshakes, "addr-handshakes", 0, "cap on handshakes in progress from one client address, IPv6 by /64 (0 = 512, negative disables)")
	fs.Float64Var(&o.AddrRate, "addr-rate", 0, "new connections per second from one client address (0 = 100, negative disables)")
	fs.IntVar(&o.AddrBurst, "addr-burst", 0, "burst of new connections from one client address above -addr-rate (0 = 1000)")
	fs.DurationVar(&o.HandshakeTimeout, "handshake-timeout", 0, "time from accept to a complete upgrade request (0 = 10s)")
	fs.DurationVar(&o.IdleTimeout, "idle-timeout", 0, "close a TCP session idle this long (0 = 5m, negative disables)")
	fs.DurationVar(&o.UDPIdleTimeout, "udp-idle-timeout", 0, "close a UDP association idle this long (0 = 60s)")
	fs.DurationVar(&o.DialTimeout, "dial-timeout", 0, "upstream TCP connect timeout (0 = 5s)")
	fs.DurationVar(&o.DrainTimeout, "drain-timeout", 0, "on SIGTERM, wait this long for sessions to end after close 1001 (0 = 30s)")
	fs.Var(&o.MaxFrameSize, "max-frame-size", "largest client WebSocket frame payload, a `size` in bytes or with a KiB/MiB suffix (0 = 1MiB)")
	fs.Var(&o.MaxMessageSize, "max-message-size", "largest client WebSocket message `size` (0 = 1MiB; 65507 on udp)")
	fs.Var(&o.BufferCap, "buffer-cap", "`size` a session may hold per direction before reads pause (0 = 256KiB)")
	fs.Var(&o.ReadChunk, "read-chunk", "most bytes (`size`) read from a socket at once (0 = 256KiB; 64KiB toward a slow receiver)")
	fs.IntVar(&o.MaxControlRate, "max-control-rate", 0, "ping and pong frames per second a client may send on one session, sustained; past it close 1008 (0 = 10, negative disables)")
	fs.IntVar(&o.MaxControlBurst, "max-control-burst", 0, "ping and pong frames a client may send at once above -max-control-rate (0 = 100)")
	fs.IntVar(&o.Loops, "loops", 0, "relay event loops (0 = GOMAXPROCS)")
	fs.DurationVar(&o.EOFGrace, "eof-grace", 0, "after the upstream's FIN, wait this long for the client to close first before close 1000 (0 = 1s, negative = at once)")
	fs.IntVar(&o.HandshakeCPU, "handshake-cpu", 0, "TLS handshakes doing cryptography at once (0 = max(1, GOMAXPROCS/2))")
	fs.StringVar(&o.DecoyFile, "decoy-file", "", "HTML `file` served to every request that does not become a session (default: an nginx-like 404 page)")
	fs.IntVar(&o.DecoyStatus, "decoy-status", 0, "HTTP status of the decoy answer (0 = 404)")
	fs.StringVar(&o.Fallback, "fallback", "", "plain-HTTP web server `IP:PORT` (or HOST:PORT, resolved at start) that gets every connection that is not a session, with the bytes already read, relayed both ways (over TLS the gateway terminates TLS); the decoy answers when it is down or busy (default: the decoy for all)")
	fs.IntVar(&o.MaxFallbacks, "max-fallbacks", 0, "cap on connections relayed to -fallback at once; past it the decoy answers (0 = 1024)")
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
	var file fileConfig
	ld, err := flagSpec.Load(fs, src.args, src.lookupEnv, src.readFile, file.key)
	if err != nil {
		return nil, err
	}
	sort.Strings(file.routes)

	routes, routesFrom := []string(o.routeArgs), "-route"
	switch ld.ListSource("route") {
	case cliconf.Environment:
		routes, routesFrom = ld.EnvList("route"), cliconf.EnvName("route")
	case cliconf.ConfigFile:
		routes, routesFrom = file.routes, o.ConfigFile
	}
	if o.Routes, err = parseRoutes(routes, routesFrom); err != nil {
		return nil, err
	}

	if o.TLSPairs, err = tlsPairs(ld, o, file); err != nil {
		return nil, err
	}

	if err := o.validate(); err != nil {
		return nil, err
	}
	if o.DecoyFile != "" {
		if o.DecoyBody, err = src.readFile(o.DecoyFile); err != nil {
			return nil, fmt.Errorf("-decoy-file: %w", err)
		}
		if len(o.DecoyBody) > maxDecoySize {
			return nil, fmt.Errorf("-decoy-file %s: %d bytes, more than %d", o.DecoyFile, len(o.DecoyBody), maxDecoySize)
		}
	}
	return o, nil
}

// tlsPairs takes certificate and key files from one source, the first of
// command line, environment and config file that names either, so a
// certificate never pairs with a key from elsewhere. The files themselves
// are loaded by certs.New in run.
func tlsPairs(ld *cliconf.Loaded, o *options, file fileConfig) ([]certs.Pair, error) {
	crts, keys := []string(o.tlsCertArgs), []string(o.tlsKeyArgs)
	from := "-tls-cert/-tls-key"
	switch ld.ListSource("tls-cert", "tls-key") {
	case cliconf.Environment:
		crts, keys = ld.EnvList("tls-cert"), ld.EnvList("tls-key")
		from = cliconf.EnvName("tls-cert") + "/" + cliconf.EnvName("tls-key")
	case cliconf.ConfigFile:
		crts, keys = file.tlsCerts, file.tlsKeys
		from = o.ConfigFile + ": tls-cert/tls-key"
	}
	if len(crts) != len(keys) {
		return nil, fmt.Errorf("%s: %d certificate files but %d key files; they pair in order", from, len(crts), len(keys))
	}
	pairs := make([]certs.Pair, len(crts))
	for i := range crts {
		if crts[i] == "" || keys[i] == "" {
			return nil, fmt.Errorf("%s: pair #%d has an empty file name", from, i+1)
		}
		pairs[i] = certs.Pair{CertFile: crts[i], KeyFile: keys[i]}
	}
	return pairs, nil
}

// fileConfig is what a config file holds beyond flag values: its routes
// as SECRET=UPSTREAM strings and its TLS file lists.
type fileConfig struct {
	routes            []string
	tlsCerts, tlsKeys []string
}

// key takes the config file keys that are not single flag values.
func (fc *fileConfig) key(key string, node *yaml.Node) (bool, error) {
	switch key {
	case "routes":
		// routes: {SECRET: IP:PORT, ...}
		var m map[string]string
		if err := node.Decode(&m); err != nil {
			return true, fmt.Errorf("routes must map secret to ip:port: %w", err)
		}
		for s, up := range m {
			fc.routes = append(fc.routes, s+"="+up)
		}
	case "route":
		// route: [SECRET=IP:PORT, ...], the flag's own form.
		var l []string
		if err := node.Decode(&l); err != nil {
			return true, fmt.Errorf("route must be a list of SECRET=IP:PORT: %w", err)
		}
		fc.routes = append(fc.routes, l...)
	case "tls-cert", "tls-key":
		// A single file name or a list of them.
		var l []string
		if node.Kind == yaml.ScalarNode {
			l = []string{node.Value}
		} else if err := node.Decode(&l); err != nil {
			return true, fmt.Errorf("line %d: %s must be a file name or a list of them", node.Line, key)
		}
		if key == "tls-cert" {
			fc.tlsCerts = l
		} else {
			fc.tlsKeys = l
		}
	default:
		return false, nil
	}
	return true, nil
}

// parseRoutes turns SECRET=IP:PORT strings into a table. The last '='
// splits, since an upstream never holds one and a secret may.
func parseRoutes(list []string, from string) (map[string]string, error) {
	routes := make(map[string]string, len(list))
	var errs []error
	for i, r := range list {
		eq := strings.LastIndexByte(r, '=')
		if eq < 0 {
			// The value holds a secret, so it is never echoed back.
			errs = append(errs, fmt.Errorf("%s: route #%d is not SECRET=IP:PORT", from, i+1))
			continue
		}
		secret, up := r[:eq], strings.TrimSpace(r[eq+1:])
		if err := checkSecret(secret); err != nil {
			errs = append(errs, fmt.Errorf("%s: route #%d: %w", from, i+1, err))
			continue
		}
		if err := checkUpstream(up); err != nil {
			errs = append(errs, fmt.Errorf("%s: route #%d: %w", from, i+1, err))
			continue
		}
		if prev, dup := routes[secret]; dup && prev != up {
			errs = append(errs, fmt.Errorf("%s: route #%d: secret already routed to %s", from, i+1, prev))
			continue
		}
		routes[secret] = up
	}
	return routes, errors.Join(errs...)
}

// checkSecret keeps secrets to what survives a URL path segment unchanged,
// so the secret a client is given is the one the gateway compares.
func checkSecret(s string) error {
	if s == "" {
		return errors.New("empty secret")
	}
	if len(s) > maxSecretLen {
		return fmt.Errorf("secret longer than %d bytes", maxSecretLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`/?#%"<>\^`+"`{|}", c) >= 0 {
			return fmt.Errorf("secret has a character not allowed in a URL path segment at byte %d", i)
		}
	}
	return nil
}

// checkUpstream insists on an IP literal: the gateway does not resolve
// names, and a name resolved once at start-up would silently go stale.
func checkUpstream(up string) error {
	ap, err := netip.ParseAddrPort(up)
	if err != nil {
		return fmt.Errorf("upstream %q is not IP:PORT: %w", up, err)
	}
	if ap.Port() == 0 {
		return fmt.Errorf("upstream %q has port 0", up)
	}
	return nil
}

func (o *options) validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if err := cliconf.CheckListen(o.Listen); err != nil {
		bad("-listen: %v", err)
	}
	if o.AdminListen != "" {
		if err := cliconf.CheckListen(o.AdminListen); err != nil {
			bad("-admin-listen: %v", err)
		} else if o.AdminListen == o.Listen {
			bad("-admin-listen: same address as -listen")
		}
	}
	if len(o.Routes) == 0 && o.Redis == "" {
		bad("no routes: give -route SECRET=IP:PORT, %s or routes: in -config, or -redis", cliconf.EnvName("route"))
	}
	if o.Redis != "" {
		if err := checkRedisURL(o.Redis); err != nil {
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
	if len(o.GatewayID) > 128 {
		bad("-gateway-id: longer than 128 bytes")
	}
	for name, v := range map[string]int{"max-sessions": o.MaxSessions, "max-handshakes": o.MaxHandshakes, "loops": o.Loops, "handshake-cpu": o.HandshakeCPU, "addr-burst": o.AddrBurst, "max-control-burst": o.MaxControlBurst} {
		if v < 0 {
			bad("-%s: %d is negative", name, v)
		}
	}
	if o.MaxSessions > 0 && o.MaxHandshakes > o.MaxSessions {
		bad("-max-handshakes %d exceeds -max-sessions %d", o.MaxHandshakes, o.MaxSessions)
	}
	for name, d := range map[string]time.Duration{
		"handshake-timeout": o.HandshakeTimeout, "udp-idle-timeout": o.UDPIdleTimeout,
		"dial-timeout": o.DialTimeout, "drain-timeout": o.DrainTimeout,
	} {
		if d < 0 {
			bad("-%s: %v is negative", name, d)
		}
	}
	if o.MaxFrameSize > 0 && o.MaxMessageSize > 0 && o.MaxMessageSize < o.MaxFrameSize {
		bad("-max-message-size %d is smaller than -max-frame-size %d", o.MaxMessageSize, o.MaxFrameSize)
	}
	if o.BufferCap > 0 && o.ReadChunk > 0 && o.BufferCap < o.ReadChunk {
		bad("-buffer-cap %d is smaller than -read-chunk %d", o.BufferCap, o.ReadChunk)
	}
	if o.Fallback != "" {
		if err := cliconf.CheckFallback(o.Fallback, o.Listen); err != nil {
			bad("-fallback: %v", err)
		}
	}
	if o.MaxFallbacks < 0 {
		bad("-max-fallbacks: %d is negative", o.MaxFallbacks)
	}
	if o.DecoyStatus != 0 && (o.DecoyStatus < 200 || o.DecoyStatus > 599) {
		bad("-decoy-status: %d is not an HTTP status from 200 to 599", o.DecoyStatus)
	}
	errs = append(errs, cliconf.CheckLog(o.LogLevel, o.LogFormat)...)
	if len(o.TLSPairs) == 0 && o.TLSMinVersion.set {
		// Most likely the certificate flags were lost, and the gateway
		// would silently serve plaintext.
		bad("-tls-min-version given without -tls-cert and -tls-key")
	}
	if o.TLSWatch < 0 {
		bad("-tls-watch: %v is negative", o.TLSWatch)
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return errors.Join(errs...)
}

// checkRedisURL checks the scheme and host. Errors never quote the URL,
// which may hold a password.
func checkRedisURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a URL like redis://host:6379/0")
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return fmt.Errorf("scheme %q is not redis or rediss", u.Scheme)
	}
	if u.Host == "" {
		return errors.New("no host: want redis://host:6379/0")
	}
	return nil
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

// gatewayConfig maps the options onto gateway.Config; Auth, Metrics and
// Logger are the caller's to fill.
func (o *options) gatewayConfig() gateway.Config {
	return gateway.Config{
		MaxSessions:      o.MaxSessions,
		MaxHandshakes:    o.MaxHandshakes,
		AddrHandshakes:   o.AddrHandshakes,
		AddrRate:         o.AddrRate,
		AddrBurst:        o.AddrBurst,
		HandshakeTimeout: o.HandshakeTimeout,
		DialTimeout:      o.DialTimeout,
		IdleTimeout:      o.IdleTimeout,
		UDPIdleTimeout:   o.UDPIdleTimeout,
		MaxFrameSize:     int64(o.MaxFrameSize),
		MaxMessageSize:   int64(o.MaxMessageSize),
		BufferCap:        int(o.BufferCap),
		ReadChunk:        int(o.ReadChunk),
		MaxControlRate:   o.MaxControlRate,
		MaxControlBurst:  o.MaxControlBurst,
		Loops:            o.Loops,
		DrainTimeout:     o.DrainTimeout,
		EOFGrace:         o.EOFGrace,
		DecoyStatus:      o.DecoyStatus,
		DecoyBody:        o.DecoyBody,
		Fallback:         o.Fallback,
		MaxFallbacks:     o.MaxFallbacks,
	}
}

// redisURL is the -redis flag; it never prints its value, which may hold
// a password.
type redisURL string

func (r *redisURL) String() string { return "" }

func (r *redisURL) Set(v string) error {
	*r = redisURL(strings.TrimSpace(v))
	return nil
}

// routeList is the repeatable -route flag.
type routeList []string

func (r *routeList) String() string { return "" } // never print secrets

func (r *routeList) Set(v string) error {
	*r = append(*r, v)
	return nil
}

// fileList is a repeatable file-name flag.
type fileList []string

func (l *fileList) String() string { return strings.Join(*l, ",") }

func (l *fileList) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// tlsVersion is -tls-min-version; its zero value is TLS 1.2.
type tlsVersion struct {
	v   uint16
	set bool // given anywhere, even as the default value
}

func (t *tlsVersion) String() string {
	if t.v == tls.VersionTLS13 {
		return "1.3"
	}
	return "1.2"
}

func (t *tlsVersion) Set(s string) error {
	switch strings.TrimSpace(s) {
	case "1.2":
		t.v = tls.VersionTLS12
	case "1.3":
		t.v = tls.VersionTLS13
	default:
		return fmt.Errorf("%q is not 1.2 or 1.3", s)
	}
	t.set = true
	return nil
}

// version is the crypto/tls constant.
func (t tlsVersion) version() uint16 {
	if t.v == 0 {
		return tls.VersionTLS12
	}
	return t.v
}

// byteSize is a size flag (see cliconf.ParseSize).
type byteSize int64

func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }

func (b *byteSize) Set(s string) error {
	n, err := cliconf.ParseSize(s, 1<<40-1, "65536, 64KiB or 1MiB")
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}
