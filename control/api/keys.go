package api

import (
	"net/url"

	"github.com/valyala/fasthttp"

	"github.com/httvps/httvps/control/clientdoc"
	"github.com/httvps/httvps/store"
)

// controlBase is the base URL access keys name (Config.PublicURL, else
// https:// plus the request's Host).
func (s *Server) controlBase(ctx *fasthttp.RequestCtx) *url.URL {
	if s.public != nil {
		u := *s.public
		return &u
	}
	return &url.URL{Scheme: "https", Host: string(ctx.Host())}
}

// accessKeys builds the keys of t, whose client token is secret.
func (s *Server) accessKeys(ctx *fasthttp.RequestCtx, t store.Token, secret string, gws []clientdoc.Gateway) accessKeys {
	return clientdoc.Keys(s.controlBase(ctx), t, secret, gws, s.cfg.KeyPin)
}
