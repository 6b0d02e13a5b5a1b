package api

import (
	"errors"

	"github.com/valyala/fasthttp"

	"github.com/httvps/httvps/control/clientdoc"
)

// clientRouteFailed answers a client route whose store call failed: the
// caller has not proven it holds a token, so it gets the decoy (as from a
// gateway); the operator gets the cause in the log.
func (s *Server) clientRouteFailed(ctx *fasthttp.RequestCtx, err error) {
	e := docError(err)
	s.log.Warn("request failed", "method", string(ctx.Method()), "route", routeOf(ctx),
		"status", e.Status, "code", e.Code, "err", e.Cause)
	s.refuse(ctx, refuseStoreDown)
}

// docError maps a clientdoc failure (a store call) to the API's answer.
func docError(err error) *apiError {
	var se *clientdoc.StoreError
	if errors.As(err, &se) {
		return fromStoreErr(se.Err, se.What)
	}
	return &apiError{Status: fasthttp.StatusInternalServerError, Code: codeInternal, Message: "internal error", Cause: err}
}

// clientConfig serves the reference client's config (control/clientdoc).
// Unknown, revoked and expired tokens get the decoy, as any stranger; a
// holder over its quota learns why.
func (s *Server) clientConfig(ctx *fasthttp.RequestCtx) {
	tok := bearer(ctx)
	if tok == nil {
		s.refuse(ctx, refuseClientToken)
		return
	}
	rctx, cancel := s.reqCtx()
	defer cancel()
	out, state, err := s.docs.Config(rctx, string(tok), s.controlBase(ctx), s.cfg.KeyPin)
	switch {
	case err != nil:
		s.clientRouteFailed(ctx, err)
	case state == clientdoc.OverQuota:
		// The caller proved it holds the token; it may learn why.
		s.writeError(ctx, &apiError{Status: fasthttp.StatusForbidden, Code: codeQuotaExceeded, Message: "the token has used its data quota"})
	case state != clientdoc.Active:
		s.refuse(ctx, refuseClientToken)
	default:
		writeJSON(ctx, fasthttp.StatusOK, out)
	}
}

// outlineKey serves the Outline dynamic access key of the token in the
// path (control/clientdoc). Unknown secrets get the decoy, as any unknown
// path; keys that stopped working get 200 with the YAML error form.
func (s *Server) outlineKey(ctx *fasthttp.RequestCtx) {
	secret := pathParam(ctx, "secret")
	if len(secret) == 0 || len(secret) > maxBearerLen {
		s.refuse(ctx, refuseSecret)
		return
	}
	rctx, cancel := s.reqCtx()
	defer cancel()
	body, found, err := s.docs.Outline(rctx, secret)
	switch {
	case err != nil:
		s.clientRouteFailed(ctx, err)
	case !found:
		s.refuse(ctx, refuseSecret)
	default:
		ctx.Response.Header.SetContentType(clientdoc.OutlineContentType)
		ctx.Response.Header.Set("Cache-Control", "no-store")
		ctx.SetStatusCode(fasthttp.StatusOK)
		ctx.SetBody(body)
	}
}
