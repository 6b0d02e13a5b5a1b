package api

import (
	"encoding/base64"
	"net/url"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/httvps/httvps/store"
)

// controlBase is the control plane's base URL as clients reach it.
func (s *Server) controlBase(ctx *fasthttp.RequestCtx) *url.URL {
	if s.public != nil {
		u := *s.public
		return &u
	}
	return &url.URL{Scheme: "https", Host: string(ctx.Host())}
}

// accessKeys builds the keys of t, whose client token is secret.
func (s *Server) accessKeys(ctx *fasthttp.RequestCtx, t store.Token, secret string, gws []gatewayAddr) accessKeys {
	base := s.controlBase(ctx)
	k := accessKeys{
		SSConf: ssconfURL(base, secret, t.Label),
		HTTVPS: httvpsURL(base, secret, t.Label),
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

// httvpsURL is the reference client's key:
//
//	httvps://<token>@HOST[:PORT][/PATH][?scheme=http]#label
//
// The client GETs <scheme>://HOST[:PORT][/PATH]/v1/client/config with
// "Authorization: Bearer <token>" (scheme https unless the key says http)
// and connects as that answer says.
func httvpsURL(base *url.URL, secret, label string) string {
	u := url.URL{Scheme: "httvps", User: url.User(secret), Host: base.Host, Path: base.Path, Fragment: label}
	if u.Path == "" {
		u.Path = "/"
	}
	if base.Scheme == "http" {
		u.RawQuery = "scheme=http"
	}
	return u.String()
}

// ssURL is a SIP002 key for ss-local with v2ray-plugin in WebSocket mode
// without mux, reaching the Outline path /<secret>/tcp on gateway g:
//
//	ss://BASE64URL(cipher:password)@HOST:PORT/?plugin=v2ray-plugin;mode=websocket;mux=0;tls;host=H;path=/<secret>/tcp#label
func ssURL(g gatewayAddr, t store.Token, secret string) string {
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
