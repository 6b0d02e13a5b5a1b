package api

import (
	"github.com/valyala/fasthttp"
)

// maxBearerLen bounds the token a request may present; real tokens are 43
// bytes and admin keys rarely exceed a few hundred.
const maxBearerLen = 1024

// bearer returns the credentials of "Authorization: Bearer <token>", or nil.
func bearer(ctx *fasthttp.RequestCtx) []byte {
	return bearerOf(ctx.Request.Header.Peek(fasthttp.HeaderAuthorization))
}

// admin wraps a handler with the admin key check; a request without the
// key gets the decoy (decoy.go).
func (s *Server) admin(h fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		if !s.isAdmin(bearer(ctx)) {
			s.refuse(ctx, refuseAdminKey)
			return
		}
		h(ctx)
	}
}
