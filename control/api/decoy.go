package api

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"net"

	"github.com/valyala/fasthttp"

	"github.com/httvps/httvps/control/console"
	"github.com/httvps/httvps/internal/nginxdecoy"
)

// The API's listener is public (keys may point at it), so strangers get
// what they get from the gateways: the nginx decoy, byte for byte
// (internal/nginxdecoy). A Guard in front of fasthttp reads every request
// head first and lets through only the requests that may be served: any
// request with the admin key, and the client routes (GET, no body). A
// client route whose token or secret is unknown is then refused by its
// handler with the same answer. Only callers with the admin key, or with a
// client token that exists, ever see the API's JSON. Operators learn why a
// request was refused from httvps_control_refused_total{reason} and a
// debug log line.

// Refusal reasons, beside nginxdecoy's Reason* (the metric's labels).
const (
	refuseRoute       = "unknown_route"     // no route a stranger may use
	refuseAdminKey    = "admin_key"         // an admin route without the admin key
	refuseClientToken = "client_token"      // the client config of a token that is unknown, revoked or expired
	refuseSecret      = "outline_secret"    // an Outline key whose secret no token has
	refuseStoreDown   = "store_unavailable" // the store did not answer for a client route
)

var refuseReasons = []string{console.RefuseSession, console.RefuseUser, refuseRoute, refuseAdminKey, refuseClientToken, refuseSecret, refuseStoreDown,
	nginxdecoy.ReasonMalformed, nginxdecoy.ReasonTooLarge, nginxdecoy.ReasonHTTP09, nginxdecoy.ReasonPlainHTTP}

// adminPrefixes are the path prefixes of the admin API (a request there
// without the admin key is counted as admin_key, not unknown_route).
var adminPrefixes = [][]byte{[]byte("/v1/tokens"), []byte("/v1/pool/"), []byte("/v1/gateways"), []byte("/v1/backup"), []byte("/metrics"), []byte("/healthz"), []byte("/readyz")}

var (
	pathClientConfig = []byte("/v1/client/config")
	pathOutline      = []byte("/v1/outline/")
)

// pass is the Guard's filter (see above).
func (s *Server) pass(r *nginxdecoy.Request) (bool, string) {
	path := r.Path()
	if console.Handles(path) {
		cookie, n := r.Header("Cookie")
		_, ok, reason := s.console.Pass(r.MethodBytes(), path, cookie, n, r.HasBody())
		return ok, reason
	}
	if auth, n := r.Header("Authorization"); n == 1 && s.isAdmin(bearerOf(auth)) {
		return true, ""
	}
	if bytes.Equal(r.MethodBytes(), []byte("GET")) && !r.HasBody() {
		switch {
		case bytes.Equal(path, pathClientConfig),
			bytes.HasPrefix(path, pathOutline) && len(path) > len(pathOutline),
			s.cfg.OpenMetrics && bytes.Equal(path, []byte("/metrics")):
			return true, ""
		}
	}
	for _, p := range adminPrefixes {
		if bytes.HasPrefix(path, p) {
			return false, refuseAdminKey
		}
	}
	return false, refuseRoute
}

// bearerOf returns the credentials of an "Authorization: Bearer <token>"
// value, or nil.
func bearerOf(h []byte) []byte { return nginxdecoy.Bearer(h, maxBearerLen) }

// isAdmin compares tok with the admin key. Both sides are hashed first so
// the comparison is constant-time and length-independent.
func (s *Server) isAdmin(tok []byte) bool {
	got := sha256.Sum256(tok)
	return subtle.ConstantTimeCompare(got[:], s.adminHash[:]) == 1 && tok != nil
}

// refused counts and logs one refusal; the log never holds the path or a
// header (either may carry a secret).
func (s *Server) refused(reason string, remote net.Addr) {
	s.met.refused(reason)
	if remote != nil {
		s.log.Debug("request refused with the decoy", "reason", reason, "remote", remote.String())
	}
}

// refuse has the decoy answer ctx's request: through the Guard's Conn,
// which replaces whatever is written here, or, for a request that did not
// come through a Guard (Handler used on its own), nginx's default answer
// as fasthttp writes it.
func (s *Server) refuse(ctx *fasthttp.RequestCtx, reason string) {
	ctx.Response.Reset()
	if c, ok := ctx.Conn().(*nginxdecoy.Conn); ok {
		c.Refuse(reason)
		ctx.SetStatusCode(fasthttp.StatusNotFound) // for the route's metric
		return
	}
	s.refused(reason, ctx.RemoteAddr())
	a := nginxdecoy.Answer{Head: ctx.IsHead()}
	code, msg, server, ctype := s.decoy.Head(a)
	ctx.SetStatusCode(code)
	ctx.Response.Header.SetStatusMessage([]byte(msg))
	ctx.Response.Header.SetServer(server)
	ctx.Response.Header.SetContentType(ctype)
	ctx.SetBody(s.decoy.AppendBody(nil, a))
}
