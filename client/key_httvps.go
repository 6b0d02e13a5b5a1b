package client

import (
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// parseHTTVPS reads the key of docs/03 ("The httvps:// key"):
//
//	httvps://<token>@<host>[:<port>]/?cipher=M&secret=S[&gw=H[:P]]…[&pin=HEX][&tls=0][&sni=N][&control=URL]#label
//
// A key with no cipher, secret, gw or control is the control-plane-only
// form (docs/02): <host>[:<port>][/<prefix>] is the control plane, https
// unless scheme=http.
func parseHTTVPS(text string) (*Key, error) {
	u, err := url.Parse(text)
	if err != nil {
		// url's error quotes the whole URL, token and secret included.
		return nil, fmt.Errorf("%w: httvps:// key is not a URL", ErrBadKey)
	}
	if u.User == nil || u.User.Username() == "" {
		return nil, fmt.Errorf("%w: httvps:// key has no token (httvps://TOKEN@HOST/…)", ErrBadKey)
	}
	if _, has := u.User.Password(); has {
		return nil, fmt.Errorf("%w: httvps:// key has a password in its user part", ErrBadKey)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("%w: httvps:// key has a malformed query", ErrBadKey)
	}
	k := &Key{Token: u.User.Username(), Label: u.Fragment}
	if err := checkToken(k.Token); err != nil {
		return nil, err
	}
	if q.Get("cipher") == "" && q.Get("secret") == "" && len(q["gw"]) == 0 && q.Get("control") == "" {
		return controlOnlyKey(k, u, q)
	}
	noTLS := false
	switch t := q.Get("tls"); t {
	case "", "1":
	case "0":
		noTLS = true
	default:
		return nil, fmt.Errorf("%w: tls=%q (want 0 or 1)", ErrBadKey, printableLabel(t))
	}
	if k.Cipher, err = checkCipher(q.Get("cipher")); err != nil {
		return nil, err
	}
	if k.Secret = q.Get("secret"); k.Secret == "" {
		return nil, fmt.Errorf("%w: httvps:// key has no secret", ErrBadKey)
	}
	if p := q.Get("pin"); p != "" {
		pin, err := hex.DecodeString(p)
		if err != nil || len(pin) != 32 {
			return nil, fmt.Errorf("%w: pin is not 64 hex digits (SHA-256 of the certificate)", ErrBadKey)
		}
		k.Pin = pin
	}
	def := "443"
	if noTLS {
		def = "80"
	}
	hosts := append([]string{u.Host}, q["gw"]...)
	for i, h := range hosts {
		addr, err := hostPort(h, def)
		if err != nil {
			return nil, fmt.Errorf("gateway %d: %w", i+1, err)
		}
		k.Gateways = append(k.Gateways, Gateway{Addr: addr, TLS: !noTLS, Pin: k.Pin})
	}
	if sni := q.Get("sni"); sni != "" {
		if strings.ContainsAny(sni, ":/ ") {
			return nil, fmt.Errorf("%w: bad sni %q", ErrBadKey, printableLabel(sni))
		}
		k.Gateways[0].SNI = sni
	}
	if c := q.Get("control"); c != "" {
		if k.Control, err = checkControlURL(c); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// controlOnlyKey is the docs/02 form: the host is the control plane.
func controlOnlyKey(k *Key, u *url.URL, q url.Values) (*Key, error) {
	scheme := "https"
	switch s := q.Get("scheme"); s {
	case "", "https":
	case "http":
		scheme = "http"
	default:
		return nil, fmt.Errorf("%w: scheme=%q (want http or https)", ErrBadKey, printableLabel(s))
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%w: httvps:// key has no host", ErrBadKey)
	}
	c := &url.URL{Scheme: scheme, Host: u.Host, Path: strings.TrimRight(u.Path, "/")}
	var err error
	if k.Control, err = checkControlURL(c.String()); err != nil {
		return nil, err
	}
	return k, nil
}

// checkControlURL accepts an absolute http(s) URL without query, fragment
// or user part and returns it without a trailing slash.
func checkControlURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		// Never the user part or the query: either may hold a password.
		return "", fmt.Errorf("%w: control URL %s: want https://host[:port][/prefix]", ErrBadKey, urlHostOnly(u, err))
	}
	u.Path = strings.TrimRight(u.Path, "/")
	return u.String(), nil
}

// parseControlURL is the key `httvps connect -token T https://ctl…` gives.
func parseControlURL(raw, token string) (*Key, error) {
	c, err := checkControlURL(raw)
	if err != nil {
		return nil, err
	}
	if err := checkToken(token); err != nil {
		return nil, err
	}
	return &Key{Token: token, Control: c}, nil
}

// HTTVPS is the self-contained httvps:// form of the key (docs/03): the
// token, every gateway, cipher, secret, pin and control plane. It needs a
// token and at least one gateway; a key that only names its control plane
// is written in that form.
func (k *Key) HTTVPS() (string, error) {
	if k.Token == "" {
		return "", fmt.Errorf("%w: no token: a plain Shadowsocks key has no httvps:// form", ErrBadKey)
	}
	if len(k.Gateways) == 0 || k.Cipher == "" {
		if k.Control == "" {
			return "", fmt.Errorf("%w: no gateway and no control plane", ErrBadKey)
		}
		c, _ := url.Parse(k.Control)
		u := url.URL{Scheme: "httvps", User: url.User(k.Token), Host: c.Host, Path: c.Path + "/", Fragment: k.Label}
		if c.Scheme == "http" {
			u.RawQuery = "scheme=http"
		}
		return u.String(), nil
	}
	return FormatHTTVPS(k.Token, k.Gateways, k.Cipher, k.Secret, k.Pin, k.Control, k.Label), nil
}

// FormatHTTVPS writes the docs/03 key. Gateways after the first become gw=
// parameters; tls=0 is written when the first gateway is plaintext; the
// port is left out when it is the default (443, or 80 with tls=0).
func FormatHTTVPS(token string, gws []Gateway, cipher, secret string, pin []byte, control, label string) string {
	noTLS := len(gws) > 0 && !gws[0].TLS
	def := "443"
	if noTLS {
		def = "80"
	}
	short := func(addr string) string {
		if h, p, err := net.SplitHostPort(addr); err == nil && p == def {
			if strings.Contains(h, ":") {
				return "[" + h + "]"
			}
			return h
		}
		return addr
	}
	// Ordered by hand: url.Values.Encode sorts keys, and people read
	// cipher and secret first.
	var q []string
	add := func(k, v string) { q = append(q, k+"="+url.QueryEscape(v)) }
	add("cipher", cipher)
	add("secret", secret)
	host := ""
	for i, g := range gws {
		if i == 0 {
			host = short(g.Addr)
			continue
		}
		add("gw", short(g.Addr))
	}
	if len(pin) > 0 {
		add("pin", hex.EncodeToString(pin))
	}
	if noTLS {
		add("tls", "0")
	}
	if len(gws) > 0 && gws[0].SNI != "" {
		add("sni", gws[0].SNI)
	}
	if control != "" {
		add("control", control)
	}
	u := url.URL{Scheme: "httvps", User: url.User(token), Host: host, Path: "/", RawQuery: strings.Join(q, "&"), Fragment: label}
	return u.String()
}

// MaxTokenLen is the longest client token the gateway takes (its bound on
// a bearer token and an Outline path secret); a longer one could never
// open a tunnel.
const MaxTokenLen = 256

func checkToken(tok string) error {
	if len(tok) > MaxTokenLen {
		return fmt.Errorf("%w: token is %d bytes, the gateway takes at most %d", ErrBadKey, len(tok), MaxTokenLen)
	}
	return nil
}

// urlHostOnly names a rejected URL in an error by its scheme and host
// only: its user part, path or query may hold a secret (ErrBadKey errors
// never quote one).
func urlHostOnly(u *url.URL, err error) string {
	if err != nil || u == nil {
		return "(not a URL)"
	}
	return fmt.Sprintf("%q", printableLabel(u.Scheme+"://"+u.Host))
}
