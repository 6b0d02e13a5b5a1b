package api

import (
	"errors"

	"github.com/valyala/fasthttp"
	"gopkg.in/yaml.v3"

	"github.com/httvps/httvps/store"
)

// lookupSecret finds the token a client presents. Unknown, revoked and
// expired tokens are reported as the state; store failures as an error.
func (s *Server) lookupSecret(secret string) (store.Token, bool, error) {
	rctx, cancel := s.reqCtx()
	defer cancel()
	t, err := s.st.GetTokenByHash(rctx, store.HashToken(secret))
	if errors.Is(err, store.ErrNotFound) {
		return t, false, nil
	}
	return t, err == nil, err
}

func (s *Server) clientConfig(ctx *fasthttp.RequestCtx) {
	tok := bearer(ctx)
	if tok == nil {
		s.writeError(ctx, errUnauthorized)
		return
	}
	secret := string(tok)
	t, found, err := s.lookupSecret(secret)
	if err != nil {
		s.writeError(ctx, fromStoreErr(err, "token"))
		return
	}
	if !found || s.stateOf(t) != tokenOK {
		s.writeError(ctx, errUnauthorized)
		return
	}
	rctx, cancel := s.reqCtx()
	defer cancel()
	u, err := s.st.GetUsage(rctx, t.ID)
	if err != nil {
		s.writeError(ctx, fromStoreErr(err, "token"))
		return
	}
	if overQuota(t, u) {
		// The caller proved it holds the token; it may learn why.
		s.writeError(ctx, &apiError{Status: fasthttp.StatusForbidden, Code: codeQuotaExceeded, Message: "the token has used its data quota"})
		return
	}
	gws, err := s.st.ListGateways(rctx)
	if err != nil {
		s.writeError(ctx, fromStoreErr(err, "gateway"))
		return
	}
	ordered := orderGateways(gws)
	out := clientConfig{
		TokenID:     t.ID,
		Gateways:    make([]string, 0, len(ordered)),
		Cipher:      t.Cipher,
		Secret:      t.SSPassword,
		QuotaBytes:  t.QuotaBytes,
		MaxSessions: t.MaxSessions,
		Usage:       viewUsage(u),
		AccessKeys:  s.accessKeys(ctx, t, secret, ordered),
	}
	if !t.ExpiresAt.IsZero() {
		e := t.ExpiresAt.UTC()
		out.ExpiresAt = &e
	}
	for _, g := range ordered {
		out.Gateways = append(out.Gateways, g.PublicURL)
	}
	writeJSON(ctx, fasthttp.StatusOK, out)
}

// Outline dynamic access key documents (the YAML the Outline apps fetch
// through ssconf://).
type outlineDoc struct {
	Transport *outlineTransport `yaml:"transport,omitempty"`
	Error     *outlineError     `yaml:"error,omitempty"`
}

type outlineTransport struct {
	Type string        `yaml:"$type"`
	TCP  outlineDialer `yaml:"tcp"`
	UDP  outlineDialer `yaml:"udp"`
}

type outlineDialer struct {
	Type     string          `yaml:"$type"`
	Endpoint outlineEndpoint `yaml:"endpoint"`
	Cipher   string          `yaml:"cipher"`
	Secret   string          `yaml:"secret"`
}

type outlineEndpoint struct {
	Type string `yaml:"$type"`
	URL  string `yaml:"url"`
}

type outlineError struct {
	Message string `yaml:"message"`
	Details string `yaml:"details,omitempty"`
}

// Messages the Outline app shows for keys that no longer work.
var (
	outlineRevoked   = outlineError{Message: "This access key has been revoked.", Details: "Ask your provider for a new key."}
	outlineExpired   = outlineError{Message: "This access key has expired.", Details: "Ask your provider to renew it."}
	outlineQuota     = outlineError{Message: "This access key has used its data limit.", Details: "Ask your provider for more data."}
	outlineNoGateway = outlineError{Message: "The service is temporarily unavailable.", Details: "No gateway is online; try again in a few minutes."}
)

// outlineKey serves the Outline dynamic access key of the token in the
// path. Unknown secrets get the same 404 as any unknown path. Keys that
// stopped working get 200 with the YAML error form: the Outline apps treat
// any status above 299 as a fetch failure and show a generic message, while
// an `error:` document is shown to the user as written.
func (s *Server) outlineKey(ctx *fasthttp.RequestCtx) {
	secret := pathParam(ctx, "secret")
	if len(secret) == 0 || len(secret) > maxBearerLen {
		notFound(ctx)
		return
	}
	t, found, err := s.lookupSecret(secret)
	if err != nil {
		s.writeError(ctx, fromStoreErr(err, "token"))
		return
	}
	if !found {
		notFound(ctx)
		return
	}
	switch s.stateOf(t) {
	case tokenRevoked:
		writeYAML(ctx, outlineDoc{Error: &outlineRevoked})
		return
	case tokenExpired:
		writeYAML(ctx, outlineDoc{Error: &outlineExpired})
		return
	}
	rctx, cancel := s.reqCtx()
	defer cancel()
	u, err := s.st.GetUsage(rctx, t.ID)
	if err != nil {
		s.writeError(ctx, fromStoreErr(err, "token"))
		return
	}
	if overQuota(t, u) {
		writeYAML(ctx, outlineDoc{Error: &outlineQuota})
		return
	}
	gws, err := s.st.ListGateways(rctx)
	if err != nil {
		s.writeError(ctx, fromStoreErr(err, "gateway"))
		return
	}
	ordered := orderGateways(gws)
	if len(ordered) == 0 {
		writeYAML(ctx, outlineDoc{Error: &outlineNoGateway})
		return
	}
	g := ordered[0]
	dialer := func(kind string) outlineDialer {
		return outlineDialer{
			Type:     "shadowsocks",
			Endpoint: outlineEndpoint{Type: "websocket", URL: g.WSURL("/" + secret + "/" + kind)},
			Cipher:   t.Cipher,
			Secret:   t.SSPassword,
		}
	}
	writeYAML(ctx, outlineDoc{Transport: &outlineTransport{Type: "tcpudp", TCP: dialer("tcp"), UDP: dialer("udp")}})
}

func writeYAML(ctx *fasthttp.RequestCtx, doc outlineDoc) {
	body, err := yaml.Marshal(doc)
	if err != nil {
		writeErrorBody(ctx, &apiError{Status: fasthttp.StatusInternalServerError, Code: codeInternal, Message: "internal error"})
		return
	}
	ctx.Response.Header.SetContentType("application/yaml; charset=utf-8")
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetBody(body)
}
