package client

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// parseSS reads SIP002 keys (ss://BASE64URL(method:password)@host:port/?plugin=…#tag,
// the userinfo also percent-encoded "method:password") and the legacy form
// ss://BASE64(method:password@host:port)#tag. Without a plugin the key is
// a plain Shadowsocks server, reached directly. The one plugin understood
// is the one the control plane writes: v2ray-plugin in WebSocket mode
// without mux, which is the gateway's Outline path (the key then goes
// through the gateway, TCP on its path and UDP on the sibling /udp path).
func parseSS(text string) (*Key, error) {
	rest := text[len("ss://"):]
	label := ""
	if i := strings.IndexByte(rest, '#'); i >= 0 {
		l, err := url.PathUnescape(rest[i+1:])
		if err != nil {
			l = rest[i+1:]
		}
		rest, label = rest[:i], l
	}
	if !strings.Contains(rest, "@") {
		// Legacy: the whole thing is base64.
		dec, err := decodeBase64(strings.TrimRight(rest, "/"))
		if err != nil {
			return nil, fmt.Errorf("%w: ss:// key is neither SIP002 (userinfo@host:port) nor base64", ErrBadKey)
		}
		rest = string(dec)
		at := strings.LastIndexByte(rest, '@')
		if at < 0 {
			return nil, fmt.Errorf("%w: legacy ss:// key has no @host:port", ErrBadKey)
		}
		k := &Key{Label: label}
		if err := k.setMethodPassword(rest[:at]); err != nil {
			return nil, err
		}
		if k.Server, err = hostPort(rest[at+1:], ""); err != nil {
			return nil, err
		}
		return k, nil
	}
	u, err := url.Parse("ss://" + rest)
	if err != nil || u.User == nil {
		return nil, fmt.Errorf("%w: ss:// key is not a URL", ErrBadKey)
	}
	k := &Key{Label: label}
	userinfo := u.User.String() // still escaped
	if dec, err := decodeBase64(userinfo); err == nil && strings.Contains(string(dec), ":") {
		err = k.setMethodPassword(string(dec))
		if err != nil {
			return nil, err
		}
	} else {
		m := u.User.Username()
		p, ok := u.User.Password()
		if !ok {
			return nil, fmt.Errorf("%w: ss:// userinfo is neither base64(method:password) nor method:password", ErrBadKey)
		}
		if err := k.setMethodPassword(m + ":" + p); err != nil {
			return nil, err
		}
	}
	addr, err := hostPort(u.Host, "")
	if err != nil {
		return nil, err
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("%w: ss:// key has a malformed query", ErrBadKey)
	}
	if p := q.Get("plugin"); p != "" {
		if err := k.setPlugin(addr, p); err != nil {
			return nil, err
		}
		return k, nil
	}
	k.Server = addr
	return k, nil
}

func (k *Key) setMethodPassword(mp string) error {
	m, p, ok := strings.Cut(mp, ":")
	if !ok || p == "" {
		return fmt.Errorf("%w: ss:// key has no method:password", ErrBadKey)
	}
	var err error
	if k.Cipher, err = checkCipher(m); err != nil {
		return err
	}
	k.Secret = p
	return nil
}

// setPlugin maps "v2ray-plugin;mode=websocket;mux=0[;tls];host=H;path=P"
// onto a gateway; any other plugin or option is refused, since ignoring it
// (as the Outline apps ignore plugin=) would send traffic somewhere the key
// did not mean.
func (k *Key) setPlugin(addr, spec string) error {
	parts := strings.Split(spec, ";")
	if parts[0] != "v2ray-plugin" && parts[0] != "ss-v2ray-plugin" {
		return fmt.Errorf("%w: ss:// plugin %q is not supported (only v2ray-plugin;mode=websocket;mux=0)", ErrBadKey, printableLabel(parts[0]))
	}
	g := Gateway{Addr: addr}
	mode, mux, path := "websocket", "1", "/"
	for _, o := range parts[1:] {
		name, val, _ := strings.Cut(o, "=")
		switch name {
		case "":
		case "mode":
			mode = val
		case "mux":
			mux = val
		case "tls":
			g.TLS = true
		case "host":
			if strings.ContainsAny(val, ":/ ") {
				return fmt.Errorf("%w: v2ray-plugin host=%q", ErrBadKey, printableLabel(val))
			}
			h, _, _ := net.SplitHostPort(addr)
			if val != h {
				g.SNI = val
			}
		case "path":
			path = val
		case "loglevel", "fast-open":
		default:
			return fmt.Errorf("%w: v2ray-plugin option %q is not supported", ErrBadKey, printableLabel(name))
		}
	}
	if mode != "websocket" {
		return fmt.Errorf("%w: v2ray-plugin mode=%q is not supported (only websocket)", ErrBadKey, printableLabel(mode))
	}
	if mux != "0" {
		return fmt.Errorf("%w: v2ray-plugin without mux=0 speaks Mux.Cool, which is not supported", ErrBadKey)
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	k.Gateways = []Gateway{g}
	k.TCPPath = path
	k.UDPPath = "-"
	// The gateway's Outline path is /<token>/tcp: the token opens the
	// native tunnel too, and the sibling /udp path carries UDP.
	if tok, ok := strings.CutSuffix(path[1:], "/tcp"); ok && tok != "" {
		k.Token = tok
		k.UDPPath = "/" + tok + "/udp"
	}
	return nil
}

// decodeBase64 accepts standard and URL-safe base64, padded or not.
func decodeBase64(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if b, err := base64.RawURLEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// SS is the key as SIP002: a plain ss:// key for a Shadowsocks server, or
// the control plane's v2ray-plugin form for the first gateway.
func (k *Key) SS() (string, error) {
	if k.Cipher == "" || k.Secret == "" {
		return "", fmt.Errorf("%w: no cipher or secret", ErrBadKey)
	}
	userinfo := base64.RawURLEncoding.EncodeToString([]byte(k.Cipher + ":" + k.Secret))
	if k.Server != "" {
		u := url.URL{Scheme: "ss", User: url.User(userinfo), Host: k.Server, Path: "/", Fragment: k.Label}
		return u.String(), nil
	}
	if len(k.Gateways) == 0 {
		return "", fmt.Errorf("%w: no gateway", ErrBadKey)
	}
	g := k.Gateways[0]
	host, _, _ := net.SplitHostPort(g.Addr)
	if g.SNI != "" {
		host = g.SNI
	}
	opts := []string{"v2ray-plugin", "mode=websocket", "mux=0"}
	if g.TLS {
		opts = append(opts, "tls")
	}
	opts = append(opts, "host="+host, "path="+k.tcpPath())
	q := url.Values{"plugin": {strings.Join(opts, ";")}}
	u := url.URL{Scheme: "ss", User: url.User(userinfo), Host: g.Addr, Path: "/", RawQuery: q.Encode(), Fragment: k.Label}
	return u.String(), nil
}

// SSConf is the Outline dynamic access key of a key with a control plane.
func (k *Key) SSConf() (string, error) {
	if k.Control == "" || k.Token == "" {
		return "", fmt.Errorf("%w: no control plane: an ssconf:// key is served by one", ErrBadKey)
	}
	c, _ := url.Parse(k.Control)
	u := url.URL{Scheme: "ssconf", Host: c.Host, Path: c.Path + "/v1/outline/" + k.Token, Fragment: k.Label}
	return u.String(), nil
}
