package client

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"gopkg.in/yaml.v3"
)

// ErrKeyProvider is a key whose document says it no longer works (the
// Outline form's top-level error:); the wrapped text is its message.
var ErrKeyProvider = errors.New("client: the key's provider says")

// FetchSSConf fetches an Outline dynamic access key as the Outline apps do
// (ssconf:// read as https://, plain GET, 10 s, a status above 299 is an
// error) and reads it. When its path is the control plane's
// /v1/outline/<token>, the key also learns the control plane and token.
func (f *Fetcher) FetchSSConf(ctx context.Context, text string) (*Key, error) {
	u, err := url.Parse(text)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("%w: ssconf:// key is not a URL", ErrBadKey)
	}
	label := u.Fragment
	u.Scheme, u.Fragment = "https", ""
	status, body, err := f.get(ctx, u.String(), "", nil)
	if err != nil {
		return nil, fmt.Errorf("fetching the ssconf:// document: %w", err)
	}
	if status > 299 {
		return nil, fmt.Errorf("%w: fetching the ssconf:// document: answer %d", ErrControl, status)
	}
	k, err := ParseSSConf(body)
	if err != nil {
		return nil, err
	}
	k.Label = label
	if prefix, tok, ok := strings.Cut(u.Path, "/v1/outline/"); ok && tok != "" && !strings.Contains(tok, "/") {
		k.Control = (&url.URL{Scheme: "https", Host: u.Host, Path: prefix}).String()
		if k.Token == "" {
			k.Token = tok
		}
	}
	return k, nil
}

// ParseSSConf reads an Outline dynamic access key document: the YAML
// transport form ($type tcpudp / shadowsocks, endpoints websocket or dial),
// the error form, or the legacy JSON {server, server_port, password,
// method}.
func ParseSSConf(doc []byte) (*Key, error) {
	if len(doc) > maxDocument {
		return nil, fmt.Errorf("%w: ssconf document larger than %d bytes", ErrBadKey, maxDocument)
	}
	var d struct {
		Transport *ssTransport `yaml:"transport"`
		Error     *struct {
			Message string `yaml:"message"`
			Details string `yaml:"details"`
		} `yaml:"error"`
		Server     string `yaml:"server"`
		ServerPort any    `yaml:"server_port"`
		Password   string `yaml:"password"`
		Method     string `yaml:"method"`
		Prefix     string `yaml:"prefix"`
	}
	// JSON is YAML, so one decoder reads both forms.
	if err := yaml.Unmarshal(doc, &d); err != nil {
		return nil, fmt.Errorf("%w: ssconf document is neither YAML nor JSON", ErrBadKey)
	}
	switch {
	case d.Error != nil:
		msg := strings.TrimSpace(d.Error.Message + " " + d.Error.Details)
		return nil, fmt.Errorf("%w: %s", ErrKeyProvider, printableLabel(msg))
	case d.Transport != nil:
		return d.Transport.key()
	case d.Server != "":
		if d.Prefix != "" {
			return nil, fmt.Errorf("%w: ssconf prefix is not supported", ErrBadKey)
		}
		k := &Key{Secret: d.Password}
		var err error
		if k.Cipher, err = checkCipher(d.Method); err != nil {
			return nil, err
		}
		port := fmt.Sprint(d.ServerPort)
		if k.Server, err = hostPort(joinHostPort(d.Server, port), ""); err != nil {
			return nil, err
		}
		if k.Secret == "" {
			return nil, fmt.Errorf("%w: ssconf document has no password", ErrBadKey)
		}
		return k, nil
	}
	return nil, fmt.Errorf("%w: ssconf document has no transport, error or server", ErrBadKey)
}

func joinHostPort(h, p string) string {
	if strings.Contains(h, ":") && !strings.HasPrefix(h, "[") {
		return "[" + h + "]:" + p
	}
	return h + ":" + p
}

// ssTransport is the transport: object; $type tcpudp has tcp and udp
// dialers, $type shadowsocks is one dialer for both.
type ssTransport struct {
	Type string    `yaml:"$type"`
	TCP  *ssDialer `yaml:"tcp"`
	UDP  *ssDialer `yaml:"udp"`
	// A $type shadowsocks transport is one dialer for both.
	Endpoint any    `yaml:"endpoint"`
	Cipher   string `yaml:"cipher"`
	Secret   string `yaml:"secret"`
	Prefix   string `yaml:"prefix"`
}

type ssDialer struct {
	Type     string `yaml:"$type"`
	Endpoint any    `yaml:"endpoint"`
	Cipher   string `yaml:"cipher"`
	Secret   string `yaml:"secret"`
	Prefix   string `yaml:"prefix"`
}

// endpoint is a dialer's endpoint: a websocket URL or a dial address.
type endpoint struct {
	ws   *url.URL
	dial string
}

func (t *ssTransport) key() (*Key, error) {
	tcp, udp := t.TCP, t.UDP
	switch t.Type {
	case "tcpudp":
		if tcp == nil {
			return nil, fmt.Errorf("%w: ssconf tcpudp transport has no tcp", ErrBadKey)
		}
	case "shadowsocks", "":
		d := ssDialer{Type: "shadowsocks", Endpoint: t.Endpoint, Cipher: t.Cipher, Secret: t.Secret, Prefix: t.Prefix}
		tcp, udp = &d, &d
	default:
		return nil, fmt.Errorf("%w: ssconf transport $type %q is not supported (want tcpudp or shadowsocks)", ErrBadKey, printableLabel(t.Type))
	}
	k := &Key{}
	te, err := tcp.check(k, "tcp")
	if err != nil {
		return nil, err
	}
	var ue *endpoint
	if udp != nil {
		probe := &Key{}
		if ue, err = udp.check(probe, "udp"); err != nil {
			return nil, err
		}
		if probe.Cipher != k.Cipher || probe.Secret != k.Secret {
			return nil, fmt.Errorf("%w: ssconf tcp and udp use different Shadowsocks keys, which is not supported", ErrBadKey)
		}
	}
	switch {
	case te.dial != "":
		k.Server = te.dial
		if ue != nil && ue.dial != te.dial {
			return nil, fmt.Errorf("%w: ssconf tcp and udp dial different servers, which is not supported", ErrBadKey)
		}
	default:
		g, err := gatewayFromURL(te.ws.String())
		if err != nil {
			return nil, err
		}
		k.Gateways = []Gateway{g}
		k.TCPPath = te.ws.RequestURI()
		k.UDPPath = "-"
		if ue != nil {
			if ue.ws == nil {
				return nil, fmt.Errorf("%w: ssconf tcp over websocket with udp dialled directly is not supported", ErrBadKey)
			}
			ug, err := gatewayFromURL(ue.ws.String())
			if err != nil {
				return nil, err
			}
			if ug.Addr != g.Addr || ug.TLS != g.TLS {
				return nil, fmt.Errorf("%w: ssconf tcp and udp on different websocket servers is not supported", ErrBadKey)
			}
			k.UDPPath = ue.ws.RequestURI()
		}
		// The gateway's paths are /<token>/tcp and /<token>/udp.
		if tok, ok := strings.CutSuffix(strings.TrimPrefix(te.ws.Path, "/"), "/tcp"); ok && tok != "" && !strings.Contains(tok, "/") {
			k.Token = tok
		}
	}
	return k, nil
}

// check validates one dialer, sets k's cipher and secret from it, and
// returns its endpoint.
func (d *ssDialer) check(k *Key, which string) (*endpoint, error) {
	if d.Type != "shadowsocks" {
		return nil, fmt.Errorf("%w: ssconf %s dialer $type %q is not supported (want shadowsocks)", ErrBadKey, which, printableLabel(d.Type))
	}
	if d.Prefix != "" {
		return nil, fmt.Errorf("%w: ssconf prefix is not supported", ErrBadKey)
	}
	var err error
	if k.Cipher, err = checkCipher(d.Cipher); err != nil {
		return nil, err
	}
	if k.Secret = d.Secret; k.Secret == "" {
		return nil, fmt.Errorf("%w: ssconf %s dialer has no secret", ErrBadKey, which)
	}
	switch e := d.Endpoint.(type) {
	case string:
		addr, err := hostPort(e, "")
		if err != nil {
			return nil, err
		}
		return &endpoint{dial: addr}, nil
	case map[string]any:
		typ, _ := e["$type"].(string)
		switch typ {
		case "websocket":
			raw, _ := e["url"].(string)
			u, err := url.Parse(raw)
			if err != nil || (u.Scheme != "wss" && u.Scheme != "ws") || u.Host == "" {
				// Scheme and host only: the path is the Outline secret.
				return nil, fmt.Errorf("%w: ssconf %s websocket url %s: want wss://host/path", ErrBadKey, which, urlHostOnly(u, err))
			}
			return &endpoint{ws: u}, nil
		case "dial":
			raw, _ := e["address"].(string)
			addr, err := hostPort(raw, "")
			if err != nil {
				return nil, err
			}
			return &endpoint{dial: addr}, nil
		}
		return nil, fmt.Errorf("%w: ssconf %s endpoint $type %q is not supported (want websocket or dial)", ErrBadKey, which, printableLabel(typ))
	}
	return nil, fmt.Errorf("%w: ssconf %s dialer has no endpoint", ErrBadKey, which)
}
