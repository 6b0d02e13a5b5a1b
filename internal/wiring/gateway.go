// Package wiring is the one definition of the gateway's and the control
// plane's settings that httvps-gateway, httvps-control and `httvps up`
// share: their flags (name, help, default; internal/cliconf gives each its
// HTTVPS_* variable and config-file key), their validation and their
// mapping onto gateway.Config, gateway.TLSConfig, api.Config and
// pool.Config. A binary registers the sets it runs on its own FlagSet,
// with the flags every server binary has (-config, -listen,
// -admin-listen, -redis, -tls-cert/-tls-key: process.go, tlsfiles.go),
// beside the few only it has (the data directory, up's -member). Where
// one process runs both sets (`httvps up`), the control set's colliding
// names take ControlPrefix.
//
// Like cliconf it reads no process state, and only cmd/* may use it
// (internal/archtest).
package wiring

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"net/url"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/gateway/storeauth"
	"github.com/httvps/httvps/internal/certs"
	"github.com/httvps/httvps/internal/cliconf"
)

const (
	maxSecretLen = 512
	maxIDLen     = 128
)

// GatewayLists are the gateway set's repeatable flags; a binary's
// cliconf.Spec lists them.
var GatewayLists = append([]string{"route"}, TLSLists...)

// Gateway is the gateway's option set: everything gateway.Config and
// gateway.TLSConfig take from an operator, plus the static routes, the
// certificate files and the gateway's store ID. Zero numbers mean the
// gateway's own default (documented on gateway.Config).
type Gateway struct {
	Routes    map[string]string // secret → upstream "ip:port"
	GatewayID string            // "" means a random ID per start
	// PublicURL is the wss://host:port clients reach this gateway at,
	// registered in the store; "" means none (httvps up derives one).
	PublicURL string

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
	MaxFrameSize     Size
	MaxMessageSize   Size
	BufferCap        Size
	ReadChunk        Size
	MaxControlRate   int
	MaxControlBurst  int
	TunnelMaxStreams int
	Loops            int

	Decoy

	Fallback     string // web server every non-session is relayed to; "" = the decoy
	MaxFallbacks int

	ProxyProtocolFrom Prefixes      // peers that send a PROXY header; empty = off
	ForwardedFrom     Prefixes      // HTTP fronts whose X-Forwarded-For/Forwarded is believed; empty = off
	MetricsPerToken   int           // per-token traffic series for at most this many tokens; 0 = off
	DeviceGrace       time.Duration // a token's device keeps counting this long after its last session

	TLSPairs      []certs.Pair // from Resolve; empty means plaintext (or, for up, a generated pair)
	TLSMinVersion TLSVersion
	TLSWatch      time.Duration // 0 disables polling the files

	routeArgs secretList // -route values, before parsing
	tlsFiles  TLSFiles

	// From the config file (FileKey): routes as SECRET=UPSTREAM.
	fileRoutes []string
}

// Register defines the gateway set's flags on fs.
func (g *Gateway) Register(fs *flag.FlagSet) {
	fs.Var(&g.routeArgs, "route", "`SECRET=IP:PORT` route for /SECRET/tcp and /SECRET/udp (repeatable; HTTVPS_ROUTE takes a comma-separated list)")
	fs.StringVar(&g.GatewayID, "gateway-id", "", "this gateway's `ID` in the store (default: a random ID per start; never share one between running gateways)")
	fs.StringVar(&g.PublicURL, "public-url", g.PublicURL, "wss://host:port `URL` clients reach this gateway at, registered in the store (required with -redis)")
	g.tlsFiles.Register(fs, "-listen")
	fs.Var(&g.TLSMinVersion, "tls-min-version", "lowest TLS `version` accepted: 1.2 or 1.3")
	fs.DurationVar(&g.TLSWatch, "tls-watch", 10*time.Second, "poll the certificate and key files this often and reload on change (0 disables; SIGHUP always reloads)")
	fs.IntVar(&g.MaxSessions, "max-sessions", 0, "cap on sessions plus handshakes in progress (0 = 100000)")
	fs.IntVar(&g.MaxHandshakes, "max-handshakes", 0, "cap on handshakes in progress; at the cap the oldest idle one gives way (0 = 4096)")
	fs.IntVar(&g.AddrHandshakes, "addr-handshakes", 0, "cap on handshakes in progress from one client address, IPv6 by /64 (0 = 512, negative disables)")
	fs.Float64Var(&g.AddrRate, "addr-rate", 0, "new connections per second from one client address (0 = 100, negative disables)")
	fs.IntVar(&g.AddrBurst, "addr-burst", 0, "burst of new connections from one client address above -addr-rate (0 = 1000)")
	fs.DurationVar(&g.HandshakeTimeout, "handshake-timeout", 0, "time from accept to a complete upgrade request (0 = 10s)")
	fs.DurationVar(&g.IdleTimeout, "idle-timeout", 0, "close a TCP session idle this long (0 = 5m, negative disables)")
	fs.DurationVar(&g.UDPIdleTimeout, "udp-idle-timeout", 0, "close a UDP association idle this long (0 = 60s)")
	fs.DurationVar(&g.DialTimeout, "dial-timeout", 0, "upstream TCP connect timeout (0 = 5s)")
	fs.DurationVar(&g.DrainTimeout, "drain-timeout", 0, "on SIGTERM, wait this long for sessions to end after close 1001 (0 = 30s)")
	fs.Var(&g.MaxFrameSize, "max-frame-size", "largest client WebSocket frame payload, a `size` in bytes or with a KiB/MiB suffix (0 = 1MiB)")
	fs.Var(&g.MaxMessageSize, "max-message-size", "largest client WebSocket message `size` (0 = 1MiB; 65507 on udp)")
	fs.Var(&g.BufferCap, "buffer-cap", "`size` a session may hold per direction before reads pause (0 = 256KiB)")
	fs.Var(&g.ReadChunk, "read-chunk", "most bytes (`size`) read from a socket at once (0 = 256KiB; 64KiB toward a slow receiver)")
	fs.IntVar(&g.MaxControlRate, "max-control-rate", 0, "ping and pong frames per second a client may send on one session, sustained; past it close 1008 (0 = 10, negative disables)")
	fs.IntVar(&g.MaxControlBurst, "max-control-burst", 0, "ping and pong frames a client may send at once above -max-control-rate (0 = 100)")
	fs.IntVar(&g.TunnelMaxStreams, "tunnel-max-streams", 0, "streams open at once on one native tunnel (/v1/tunnel); past it RESET REFUSED (0 = 256)")
	fs.IntVar(&g.Loops, "loops", 0, "relay event loops (0 = GOMAXPROCS)")
	fs.DurationVar(&g.EOFGrace, "eof-grace", 0, "after the upstream's FIN, wait this long for the client to close first before close 1000 (0 = 1s, negative = at once)")
	fs.IntVar(&g.HandshakeCPU, "handshake-cpu", 0, "TLS handshakes doing cryptography at once (0 = half the cores: max(1, min(GOMAXPROCS, NumCPU)/2))")
	g.RegisterDecoy(fs, "every request that does not become a session")
	fs.StringVar(&g.Fallback, "fallback", "", "plain-HTTP web server `IP:PORT` (or HOST:PORT, resolved at start) that gets every connection that is not a session, with the bytes already read, relayed both ways (over TLS the gateway terminates TLS); the decoy answers when it is down or busy (default: the decoy for all)")
	fs.Var(&g.ProxyProtocolFrom, "proxy-protocol-from", "comma-separated `CIDR`s (or addresses) of load balancers whose connections start with a PROXY protocol header (v1 or v2) naming the real client, for the per-address limits and the logs; a connection from them without one is closed, a header from anyone else gets the decoy (default: off)")
	fs.IntVar(&g.MetricsPerToken, "metrics-per-token", 0, "export httvps_gateway_store_token_bytes_total{token,direction} for at most this many tokens (the rest as token=\"other\"), for charting users in Grafana; needs the shared store (-redis, or httvps up) (0 = off)")
	fs.DurationVar(&g.DeviceGrace, "device-grace", 2*time.Minute, "a device of a token with max_devices keeps counting this long after its last session ended, on every gateway (needs the shared store: -redis, or httvps up)")
	fs.Var(&g.ForwardedFrom, "forwarded-from", "comma-separated `CIDR`s (or addresses) of HTTP reverse proxies in front of the gateway whose X-Forwarded-For or Forwarded header names the real client (the rightmost address in it that is not one of them), for the per-address limits and the logs; from anyone else the headers are ignored (default: off)")
	fs.IntVar(&g.MaxFallbacks, "max-fallbacks", 0, "cap on connections relayed to -fallback at once; past it the decoy answers (0 = 1024)")
}

// FileKey takes the config file keys of the gateway set that are not
// single flag values: routes: {SECRET: IP:PORT}, route: [SECRET=IP:PORT],
// and tls-cert/tls-key as a file name or a list. It is a
// cliconf.FileKeyFunc.
func (g *Gateway) FileKey(key string, node *yaml.Node) (bool, error) {
	switch key {
	case "routes":
		var m map[string]string
		if err := node.Decode(&m); err != nil {
			return true, fmt.Errorf("routes must map secret to ip:port: %w", err)
		}
		for s, up := range m {
			g.fileRoutes = append(g.fileRoutes, s+"="+up)
		}
	case "route":
		var l []string
		if err := node.Decode(&l); err != nil {
			return true, fmt.Errorf("route must be a list of SECRET=IP:PORT: %w", err)
		}
		g.fileRoutes = append(g.fileRoutes, l...)
	default:
		return g.tlsFiles.FileKey(key, node)
	}
	return true, nil
}

// Resolve takes the list flags (routes, certificate pairs) from their one
// source after cliconf.Load, and parses the routes.
func (g *Gateway) Resolve(ld *cliconf.Loaded) error {
	sort.Strings(g.fileRoutes)
	routes, from := []string(g.routeArgs), "-route"
	switch ld.ListSource("route") {
	case cliconf.Environment:
		routes, from = ld.EnvList("route"), cliconf.EnvName("route")
	case cliconf.ConfigFile:
		routes, from = g.fileRoutes, ld.ConfigFile
	}
	var err error
	if g.Routes, err = ParseRoutes(routes, from); err != nil {
		return err
	}
	err = g.tlsFiles.Resolve(ld)
	g.TLSPairs = g.tlsFiles.Pairs
	return err
}

// Check returns the operator-facing errors of the set; listen is the
// gateway's listen address (for -fallback).
func (g *Gateway) Check(listen string) []error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if len(g.GatewayID) > maxIDLen {
		bad("-gateway-id: longer than %d bytes", maxIDLen)
	}
	for name, v := range map[string]int{"max-sessions": g.MaxSessions, "max-handshakes": g.MaxHandshakes, "loops": g.Loops, "handshake-cpu": g.HandshakeCPU, "addr-burst": g.AddrBurst, "max-control-burst": g.MaxControlBurst, "tunnel-max-streams": g.TunnelMaxStreams, "metrics-per-token": g.MetricsPerToken} {
		if v < 0 {
			bad("-%s: %d is negative", name, v)
		}
	}
	if g.MaxSessions > 0 && g.MaxHandshakes > g.MaxSessions {
		bad("-max-handshakes %d exceeds -max-sessions %d", g.MaxHandshakes, g.MaxSessions)
	}
	for name, d := range map[string]time.Duration{
		"handshake-timeout": g.HandshakeTimeout, "udp-idle-timeout": g.UDPIdleTimeout,
		"dial-timeout": g.DialTimeout, "drain-timeout": g.DrainTimeout,
		"device-grace": g.DeviceGrace,
	} {
		if d < 0 {
			bad("-%s: %v is negative", name, d)
		}
	}
	if g.MaxFrameSize > 0 && g.MaxMessageSize > 0 && g.MaxMessageSize < g.MaxFrameSize {
		bad("-max-message-size %d is smaller than -max-frame-size %d", g.MaxMessageSize, g.MaxFrameSize)
	}
	if g.BufferCap > 0 && g.ReadChunk > 0 && g.BufferCap < g.ReadChunk {
		bad("-buffer-cap %d is smaller than -read-chunk %d", g.BufferCap, g.ReadChunk)
	}
	if g.Fallback != "" {
		if err := cliconf.CheckFallback(g.Fallback, listen); err != nil {
			bad("-fallback: %v", err)
		}
	}
	if g.MaxFallbacks < 0 {
		bad("-max-fallbacks: %d is negative", g.MaxFallbacks)
	}
	if err := g.CheckDecoy(); err != nil {
		errs = append(errs, err)
	}
	if g.TLSWatch < 0 {
		bad("-tls-watch: %v is negative", g.TLSWatch)
	}
	return errs
}

// GatewayConfig maps the set onto gateway.Config; Auth, Metrics, Logger
// and TLS are the caller's to fill (TLS with TLSConfig).
func (g *Gateway) GatewayConfig() gateway.Config {
	return gateway.Config{
		MaxSessions:      g.MaxSessions,
		MaxHandshakes:    g.MaxHandshakes,
		AddrHandshakes:   g.AddrHandshakes,
		AddrRate:         g.AddrRate,
		AddrBurst:        g.AddrBurst,
		HandshakeTimeout: g.HandshakeTimeout,
		DialTimeout:      g.DialTimeout,
		IdleTimeout:      g.IdleTimeout,
		UDPIdleTimeout:   g.UDPIdleTimeout,
		MaxFrameSize:     int64(g.MaxFrameSize),
		MaxMessageSize:   int64(g.MaxMessageSize),
		BufferCap:        int(g.BufferCap),
		ReadChunk:        int(g.ReadChunk),
		MaxControlRate:   g.MaxControlRate,
		MaxControlBurst:  g.MaxControlBurst,
		TunnelMaxStreams: g.TunnelMaxStreams,
		Loops:            g.Loops,
		DrainTimeout:     g.DrainTimeout,
		EOFGrace:         g.EOFGrace,
		DecoyStatus:      g.DecoyStatus,
		DecoyBody:        g.DecoyBody,
		Fallback:         g.Fallback,
		MaxFallbacks:     g.MaxFallbacks,

		ProxyProtocolFrom: g.ProxyProtocolFrom.List(),
		ForwardedFrom:     g.ForwardedFrom.List(),
	}
}

// TLSConfig is the gateway's TLS over the certificate store.
func (g *Gateway) TLSConfig(store *certs.Store) *gateway.TLSConfig {
	return g.TLSConfigFor(store.GetCertificate)
}

// TLSConfigFor is the gateway's TLS serving getCert's certificates.
func (g *Gateway) TLSConfigFor(getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *gateway.TLSConfig {
	return &gateway.TLSConfig{GetCertificate: getCert, MinVersion: g.TLSMinVersion.Version(), HandshakeCPU: g.HandshakeCPU}
}

// Auth is the gateway's Authenticator: the static routes first, then the
// store's tokens (st nil: routes only). It is nil with neither.
func (g *Gateway) Auth(st *storeauth.Auth) (gateway.Authenticator, error) {
	var static *gateway.StaticAuth
	if len(g.Routes) > 0 || st == nil {
		var err error
		if static, err = gateway.NewStaticAuth(g.Routes); err != nil {
			return nil, err
		}
	}
	switch {
	case st == nil:
		return static, nil
	case static == nil:
		return st, nil
	}
	return chainAuth{static: static, store: st}, nil
}

// chainAuth tries the static routes first, then the store.
type chainAuth struct {
	static *gateway.StaticAuth
	store  *storeauth.Auth
}

func (c chainAuth) Authenticate(secret []byte, kind gateway.PathKind, cl gateway.Client) (gateway.Route, gateway.Reject, bool) {
	if r, why, ok := c.static.Authenticate(secret, kind, cl); ok {
		return r, why, true
	}
	return c.store.Authenticate(secret, kind, cl)
}

// ParseRoutes turns SECRET=IP:PORT strings into a table; from names the
// source in errors. The last '=' splits, since an upstream never holds
// one and a secret may.
func ParseRoutes(list []string, from string) (map[string]string, error) {
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

// CheckGatewayURL checks a -public-url of the gateway: wss://host[:port]
// (ws:// for a plaintext one).
func CheckGatewayURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URL", s)
	}
	if (u.Scheme != "wss" && u.Scheme != "ws") || u.Host == "" {
		return fmt.Errorf("%q is not a wss://host:port URL", s)
	}
	return nil
}
