package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/httvps/httvps/store"
)

// ErrBadKey reports a key that cannot be used; the wrapped detail says why
// in one line and never quotes the token or the Shadowsocks secret.
var ErrBadKey = errors.New("client: bad key")

// Key is what a client needs to connect, from any of the key forms
// (httvps://, ss://, ssconf://, a control-plane URL with a token).
type Key struct {
	// Token is the client token: the bearer of /v1/tunnel and the path
	// secret of the Outline paths. Empty for a plain ss:// key.
	Token string
	// Gateways are tried in order; empty for a plain ss:// key.
	Gateways []Gateway
	// Server is a plain Shadowsocks server (host:port) reached directly,
	// with no gateway: ss:// keys and ssconf documents that dial.
	Server string
	// Cipher and Secret are the Shadowsocks method and password.
	Cipher, Secret string
	// TCPPath and UDPPath are the Outline WebSocket paths; empty means
	// "/<token>/tcp" and "/<token>/udp". UDPPath "-" means the key
	// carries no UDP (a v2ray-plugin ss:// key for another server).
	TCPPath, UDPPath string
	// Control is the control plane's base URL ("https://ctl.example.com");
	// empty when the key names none.
	Control string
	// Pin is the gateways' leaf certificate SHA-256 (also accepted from
	// the control plane); it applies to gateways learned from the control
	// plane as well.
	Pin []byte
	// Label names the key for people.
	Label string
}

// NeedsConfig reports whether the key only says where the control plane is:
// gateways, cipher and secret must come from GET /v1/client/config.
func (k *Key) NeedsConfig() bool {
	return k.Cipher == "" || k.Secret == "" || (len(k.Gateways) == 0 && k.Server == "")
}

// Direct reports whether the key is a plain Shadowsocks server.
func (k *Key) Direct() bool { return k.Server != "" && len(k.Gateways) == 0 }

// tcpPath and udpPath are the Outline paths of the key.
func (k *Key) tcpPath() string {
	if k.TCPPath != "" {
		return k.TCPPath
	}
	return "/" + k.Token + "/tcp"
}

func (k *Key) udpPath() string {
	if k.UDPPath != "" {
		return k.UDPPath
	}
	return "/" + k.Token + "/udp"
}

// Clone is a deep copy.
func (k *Key) Clone() *Key {
	c := *k
	c.Gateways = append([]Gateway(nil), k.Gateways...)
	c.Pin = append([]byte(nil), k.Pin...)
	return &c
}

// String describes the key for logs: where it goes, never its secrets.
func (k *Key) String() string {
	var where []string
	for _, g := range k.Gateways {
		where = append(where, g.Addr)
	}
	if k.Server != "" {
		where = append(where, "ss "+k.Server)
	}
	s := strings.Join(where, ",")
	if k.Control != "" {
		s += " control " + k.Control
	}
	if k.Label != "" {
		s += " (" + printableLabel(k.Label) + ")"
	}
	return strings.TrimSpace(s)
}

// ResolveOptions are what ResolveKey needs beyond the key text.
type ResolveOptions struct {
	// Token is the client token for a control-plane URL key
	// ("https://ctl.example.com"); other forms carry their own.
	Token string
	// Fetch fetches ssconf:// documents and client configs; nil uses an
	// HTTP client with a 10 s timeout and the system roots (and the key's
	// pin, where it has one).
	Fetch *Fetcher
}

// ResolveKey turns any key form into a Key: httvps:// and ss:// are parsed,
// ssconf:// is fetched (as https://, the way the Outline apps do), and an
// http(s):// control-plane URL with a token, or an httvps:// key that only
// names the control plane, is completed from GET /v1/client/config.
func ResolveKey(ctx context.Context, text string, o ResolveOptions) (*Key, error) {
	text = strings.TrimSpace(text)
	f := o.Fetch
	if f == nil {
		f = &Fetcher{}
	}
	var (
		k   *Key
		err error
	)
	switch scheme, _, _ := strings.Cut(text, ":"); strings.ToLower(scheme) {
	case "ssconf":
		k, err = f.FetchSSConf(ctx, text)
	case "http", "https":
		if o.Token == "" {
			return nil, fmt.Errorf("%w: a control-plane URL needs a token (-token or HTTVPS_TOKEN)", ErrBadKey)
		}
		k, err = parseControlURL(text, o.Token)
	default:
		k, err = ParseKey(text)
	}
	if err != nil {
		return nil, err
	}
	if k.NeedsConfig() {
		if k.Control == "" || k.Token == "" {
			return nil, fmt.Errorf("%w: no gateway, cipher or secret, and no control plane to ask", ErrBadKey)
		}
		cfg, err := f.ClientConfig(ctx, k)
		if err != nil {
			return nil, err
		}
		if k, err = k.WithConfig(cfg); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// ParseKey parses the forms that need no network: httvps:// and ss://.
func ParseKey(text string) (*Key, error) {
	text = strings.TrimSpace(text)
	scheme, _, ok := strings.Cut(text, "://")
	if !ok {
		return nil, fmt.Errorf("%w: want httvps://, ss://, ssconf:// or https://", ErrBadKey)
	}
	switch strings.ToLower(scheme) {
	case "httvps":
		return parseHTTVPS(text)
	case "ss":
		return parseSS(text)
	case "ssconf", "http", "https":
		return nil, fmt.Errorf("%w: a %s:// key must be fetched (ResolveKey)", ErrBadKey, strings.ToLower(scheme))
	}
	return nil, fmt.Errorf("%w: unknown scheme %q (want httvps, ss, ssconf or https)", ErrBadKey, printableLabel(scheme))
}

// checkCipher accepts the methods of store.Ciphers, which outline-sdk
// speaks, case-insensitively, and returns the canonical name.
func checkCipher(m string) (string, error) {
	lm := strings.ToLower(m)
	for _, c := range store.Ciphers {
		if lm == c {
			return c, nil
		}
	}
	if m == "" {
		return "", fmt.Errorf("%w: no cipher", ErrBadKey)
	}
	return "", fmt.Errorf("%w: cipher %q is not supported (want %s)", ErrBadKey, printableLabel(m), strings.Join(store.Ciphers, ", "))
}

// hostPort checks "host[:port]" and adds def when the port is missing.
func hostPort(hp, def string) (string, error) {
	if hp == "" {
		return "", fmt.Errorf("%w: no host", ErrBadKey)
	}
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		// No port: a name, an IPv4 address or a bracketed IPv6 address.
		host, port = strings.TrimSuffix(strings.TrimPrefix(hp, "["), "]"), def
		if strings.ContainsAny(host, "[]/ ") {
			return "", fmt.Errorf("%w: bad host %q", ErrBadKey, printableLabel(hp))
		}
	}
	if host == "" || strings.ContainsAny(host, "/ @") {
		return "", fmt.Errorf("%w: bad host %q", ErrBadKey, printableLabel(hp))
	}
	if n, err := parsePort(port); err != nil || n == 0 {
		return "", fmt.Errorf("%w: bad port %q", ErrBadKey, printableLabel(port))
	}
	return net.JoinHostPort(host, port), nil
}

func parsePort(s string) (int, error) {
	if s == "" || len(s) > 5 {
		return 0, errors.New("bad port")
	}
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, errors.New("bad port")
		}
		n = n*10 + int(c-'0')
	}
	if n > 65535 {
		return 0, errors.New("bad port")
	}
	return n, nil
}

// printableLabel escapes control characters and bounds the length of text
// that came from a key or a server before it reaches a terminal or a log.
func printableLabel(s string) string {
	const max = 200
	var b strings.Builder
	for i, r := range s {
		if i >= max {
			b.WriteString("…")
			break
		}
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) {
			fmt.Fprintf(&b, "\\x%02x", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
