package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/valyala/fasthttp"

	"github.com/httvps/httvps/control/pool"
	"github.com/httvps/httvps/internal/nginxdecoy"
	"github.com/httvps/httvps/store"
)

// Error codes of the JSON error body. docs/02-control-plane-api.md has the
// table; clients switch on the code, never on the message.
const (
	codeBadRequest       = "bad_request"        // 400 malformed request or JSON
	codeInvalidArgument  = "invalid_argument"   // 400 a field has a bad value
	codeQuotaExceeded    = "quota_exceeded"     // 403 client token over its data quota
	codeNotFound         = "not_found"          // 404
	codeMethodNotAllowed = "method_not_allowed" // 405
	codeTooLarge         = "payload_too_large"  // 413
	codeUnsupportedMedia = "unsupported_media_type"
	codeInternal         = "internal"        // 500
	codeNotImplemented   = "not_implemented" // 501 the store cannot do it (GET /v1/backup on Redis)
	codeBackend          = "backend_error"   // 502 a pool member's backend failed
	codeNoMembers        = "no_members"      // 503 no member can take a key
	codeUnavailable      = "unavailable"     // 503 the store is down
)

// apiError is an error answer: Status is also the metric label.
type apiError struct {
	Status  int
	Code    string
	Message string
	Cause   error // logged, never sent
}

func (e *apiError) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%d %s: %s: %v", e.Status, e.Code, e.Message, e.Cause)
	}
	return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
}

func (e *apiError) Unwrap() error { return e.Cause }

func badRequest(format string, a ...any) *apiError {
	return &apiError{Status: fasthttp.StatusBadRequest, Code: codeBadRequest, Message: fmt.Sprintf(format, a...)}
}

func invalid(format string, a ...any) *apiError {
	return &apiError{Status: fasthttp.StatusBadRequest, Code: codeInvalidArgument, Message: fmt.Sprintf(format, a...)}
}

var (
	errNotFound = &apiError{Status: fasthttp.StatusNotFound, Code: codeNotFound, Message: "not found"}
)

// errorBody is the JSON shape of every error answer.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// fromStoreErr maps store and pool errors onto answers. what names the
// resource for not-found messages.
func fromStoreErr(err error, what string) *apiError {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, store.ErrNotFound):
		return &apiError{Status: fasthttp.StatusNotFound, Code: codeNotFound, Message: what + " not found", Cause: err}
	case errors.Is(err, pool.ErrNoMembers):
		return &apiError{Status: fasthttp.StatusServiceUnavailable, Code: codeNoMembers, Message: "no healthy pool member can take the key", Cause: err}
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return &apiError{Status: fasthttp.StatusServiceUnavailable, Code: codeUnavailable, Message: "shared state is unavailable; retry later", Cause: err}
	case errors.Is(err, store.ErrInvalid):
		return &apiError{Status: fasthttp.StatusBadRequest, Code: codeInvalidArgument, Message: "rejected by the store: " + what + " is invalid", Cause: err}
	case errors.Is(err, store.ErrExists):
		// IDs and token hashes are random; a clash is a bug, not the caller's.
		return &apiError{Status: fasthttp.StatusInternalServerError, Code: codeInternal, Message: "internal error", Cause: err}
	}
	return &apiError{Status: fasthttp.StatusInternalServerError, Code: codeInternal, Message: "internal error", Cause: err}
}

// writeError answers with the JSON error body. 5xx causes are logged once,
// here; their text never reaches the client.
func (s *Server) writeError(ctx *fasthttp.RequestCtx, e *apiError) {
	if e.Status >= 500 {
		s.log.Warn("request failed", "method", string(ctx.Method()), "route", routeOf(ctx),
			"status", e.Status, "code", e.Code, "err", e.Cause)
	}
	writeErrorBody(ctx, e)
}

func writeErrorBody(ctx *fasthttp.RequestCtx, e *apiError) {
	var b errorBody
	b.Error.Code = e.Code
	b.Error.Message = e.Message
	writeJSON(ctx, e.Status, b)
}

// notFound and methodNotAllowed tell the admin; anyone else gets the
// decoy (the Guard lets only the client routes through without the key).
func (s *Server) notFound(ctx *fasthttp.RequestCtx) {
	if !s.isAdmin(bearer(ctx)) {
		s.refuse(ctx, refuseRoute)
		return
	}
	writeErrorBody(ctx, errNotFound)
}

func (s *Server) methodNotAllowed(ctx *fasthttp.RequestCtx) {
	if !s.isAdmin(bearer(ctx)) {
		ctx.Response.Header.Del(fasthttp.HeaderAllow)
		s.refuse(ctx, refuseRoute)
		return
	}
	// The router has set Allow.
	writeErrorBody(ctx, &apiError{Status: fasthttp.StatusMethodNotAllowed, Code: codeMethodNotAllowed, Message: "method not allowed; see the Allow header"})
}

// parseError answers requests fasthttp could not read although the Guard
// let them through: an admin's too large body or malformed HTTP gets the
// JSON error, anyone else the decoy. The connection is closed afterwards.
func (s *Server) parseError(ctx *fasthttp.RequestCtx, err error) {
	if _, ok := ctx.Conn().(*nginxdecoy.Conn); ok && !s.isAdmin(bearer(ctx)) {
		s.met.observe("invalid", fasthttp.StatusNotFound, 0)
		s.refuse(ctx, nginxdecoy.ReasonMalformed)
		ctx.SetConnectionClose()
		return
	}
	status, e := fasthttp.StatusBadRequest, badRequest("malformed HTTP request")
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		status = fasthttp.StatusRequestEntityTooLarge
		e = &apiError{Status: status, Code: codeTooLarge, Message: fmt.Sprintf("request body larger than %d bytes", s.cfg.MaxBodyBytes)}
	case isTimeout(err):
		status = fasthttp.StatusRequestTimeout
		e = &apiError{Status: status, Code: codeBadRequest, Message: "request not received in time"}
	}
	s.met.observe("invalid", status, 0)
	writeErrorBody(ctx, e)
	ctx.SetConnectionClose()
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

func (s *Server) panicked(ctx *fasthttp.RequestCtx, v any) {
	s.log.Error("handler panic", "route", routeOf(ctx), "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
	ctx.Response.Reset()
	writeErrorBody(ctx, &apiError{Status: fasthttp.StatusInternalServerError, Code: codeInternal, Message: "internal error"})
}

// writeJSON answers with v as JSON; v is always one of this package's
// types, so encoding cannot fail short of a bug.
func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status = fasthttp.StatusInternalServerError
		body = []byte(`{"error":{"code":"internal","message":"internal error"}}`)
	}
	ctx.Response.Header.SetContentType("application/json")
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.SetStatusCode(status)
	ctx.SetBody(append(body, '\n'))
}
