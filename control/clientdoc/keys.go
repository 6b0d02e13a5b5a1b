package clientdoc

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/url"
	"strings"

	"github.com/httvps/httvps/control/api/wire"
	"github.com/httvps/httvps/store"
)

// Keys builds the access keys of t, whose client token is secret: ssconf://
// and httvps:// on base (where the documents are served), ss:// for the
// best of gws (none: no ss:// key). pin is written as pin= into the
// httvps:// key when it is 32 bytes.
func Keys(base *url.URL, t store.Token, secret string, gws []Gateway, pin []byte) wire.AccessKeys {
	k := wire.AccessKeys{
		SSConf: ssconfURL(base, secret, t.Label),
		HTTVPS: httvpsURL(base, secret, t, gws, pin),
	}
	if len(gws) > 0 {
		k.SS = ssURL(gws[0], t, secret)
	}
	return k
}

// ssconfURL is "ssconf://HOST[:PORT]/PATH/v1/outline/<secret>#label". The
// Outline apps fetch it as https:// (a plain http control plane cannot
// serve them).
func ssconfURL(base *url.URL, secret, label string) string {
	u := url.URL{Scheme: "ssconf", Host: base.Host, Path: base.Path + "/v1/outline/" + secret, Fragment: label}
	return u.String()
}

// httvpsURL is the reference client's key (docs/03, "The httvps:// key"),
// self-contained so the client needs nobody to connect:
//
//	httvps://<token>@GW1[:PORT]/?cipher=M&secret=S[&gw=GW2[:PORT]]…[&pin=HEX][&tls=0]&control=BASE#label
//
// The gateways are the client-config order; those whose scheme differs
// from the first's (wss or ws) are left out, since tls= is one setting for
// all. The port is left out when it is the default (443, or 80 with tls=0).
// control is the control plane's base URL, from which the client refreshes
// the gateways and learns why they refuse it. With no gateway registered
// the key names only the control plane (docs/02):
//
//	httvps://<token>@HOST[:PORT][/PATH][?scheme=http]#label
func httvpsURL(base *url.URL, secret string, t store.Token, gws []Gateway, pin []byte) string {
	if len(gws) == 0 {
		u := url.URL{Scheme: "httvps", User: url.User(secret), Host: base.Host, Path: base.Path, Fragment: t.Label}
		if u.Path == "" {
			u.Path = "/"
		}
		if base.Scheme == "http" {
			u.RawQuery = "scheme=http"
		}
		return u.String()
	}
	first := gws[0]
	def := "443"
	if !first.TLS {
		def = "80"
	}
	short := func(g Gateway) string {
		if g.Port == def {
			if strings.Contains(g.Hostname, ":") {
				return "[" + g.Hostname + "]"
			}
			return g.Hostname
		}
		return g.Host
	}
	// Written in this order by hand (url.Values.Encode sorts): cipher and
	// secret first, as people read them.
	var q []string
	add := func(k, v string) { q = append(q, k+"="+url.QueryEscape(v)) }
	add("cipher", t.Cipher)
	add("secret", t.SSPassword)
	for _, g := range gws[1:] {
		if g.TLS == first.TLS {
			add("gw", short(g))
		}
	}
	if len(pin) == sha256.Size {
		add("pin", hex.EncodeToString(pin))
	}
	if !first.TLS {
		add("tls", "0")
	}
	add("control", strings.TrimRight(base.String(), "/"))
	u := url.URL{Scheme: "httvps", User: url.User(secret), Host: short(first), Path: "/", RawQuery: strings.Join(q, "&"), Fragment: t.Label}
	return u.String()
}

// ssURL is a SIP002 key for ss-local with v2ray-plugin in WebSocket mode
// without mux, reaching the Outline path /<secret>/tcp on gateway g:
//
//	ss://BASE64URL(cipher:password)@HOST:PORT/?plugin=v2ray-plugin;mode=websocket;mux=0;tls;host=H;path=/<secret>/tcp#label
func ssURL(g Gateway, t store.Token, secret string) string {
	userinfo := base64.RawURLEncoding.EncodeToString([]byte(t.Cipher + ":" + t.SSPassword))
	opts := []string{"v2ray-plugin", "mode=websocket", "mux=0"}
	if g.TLS {
		opts = append(opts, "tls")
	}
	opts = append(opts, "host="+g.Hostname, "path=/"+secret+"/tcp")
	q := url.Values{"plugin": {strings.Join(opts, ";")}}
	u := url.URL{Scheme: "ss", User: url.User(userinfo), Host: g.Host, Path: "/", RawQuery: q.Encode(), Fragment: t.Label}
	return u.String()
}
