package api

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"

	"github.com/valyala/fasthttp"
)

// maxBearerLen bounds the token a request may present; real tokens are 43
// bytes and admin keys rarely exceed a few hundred.
const maxBearerLen = 1024

// bearer returns the credentials of "Authorization: Bearer <token>", or nil.
func bearer(ctx *fasthttp.RequestCtx) []byte {
	h := ctx.Request.Header.Peek(fasthttp.HeaderAuthorization)
	const scheme = "bearer "
	if len(h) <= len(scheme) || !bytes.EqualFold(h[:len(scheme)], []byte(scheme)) {
		return nil
	}
	tok := bytes.TrimSpace(h[len(scheme):])
	if len(tok) == 0 || len(tok) > maxBearerLen {
		return nil
	}
	return tok
}

// admin wraps a handler with the admin key check. Both sides are hashed
// first so the comparison is constant-time and length-independent.
func (s *Server) admin(h fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		tok := bearer(ctx)
		got := sha256.Sum256(tok)
		if subtle.ConstantTimeCompare(got[:], s.adminHash[:]) != 1 || tok == nil {
			s.writeError(ctx, errUnauthorized)
			return
		}
		h(ctx)
	}
}
