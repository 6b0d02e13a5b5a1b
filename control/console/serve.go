package console

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/valyala/fasthttp"
)

// maxSecretLen bounds a user page's secret (tokens are 43 bytes).
const maxSecretLen = 128

// maxIDLen bounds a token or member id taken from a path.
const maxIDLen = 64

// securityHeaders go on every console and user page answer: scripts and
// styles only from the binary, no framing, no referrer to other origins (paths carry
// secrets), nothing cached.
func securityHeaders(ctx *fasthttp.RequestCtx) {
	h := &ctx.Response.Header
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
}

// Serve answers a request whose path Handles and that Pass let through.
func (c *Console) Serve(ctx *fasthttp.RequestCtx) {
	path := string(ctx.Path())
	switch {
	case path == c.signInPath:
		securityHeaders(ctx)
		c.serveSignIn(ctx)
		return
	case strings.HasPrefix(path, c.signInPath+"/"):
		securityHeaders(ctx)
		if c.method(ctx, "GET") {
			serveAsset(ctx, path[len(c.signInPath)+1:])
		}
		return
	case strings.HasPrefix(path, UserPrefix):
		c.serveUser(ctx, path[len(UserPrefix):])
		return
	}
	cookie := cookieValue(ctx.Request.Header.Peek("Cookie"))
	sess, ok := c.sessions.get(cookie, c.now())
	if !ok || !strings.HasPrefix(path, Prefix) {
		// The Guard checked the cookie on the head; it may have expired
		// since, or the request came without a Guard.
		c.cfg.Refuse(ctx, RefuseSession)
		return
	}
	securityHeaders(ctx)
	rest := path[len(Prefix):]
	if strings.HasPrefix(rest, "assets/") {
		if !c.method(ctx, "GET") {
			return
		}
		serveAsset(ctx, rest[len("assets/"):])
		return
	}
	r := &req{c: c, ctx: ctx, sess: sess}
	if ctx.IsPost() {
		if msg := c.checkPost(ctx, sess); msg != "" {
			c.log.Info("console: change refused", "why", msg, "remote", ctx.RemoteAddr().String())
			r.fail(fasthttp.StatusForbidden, msg)
			return
		}
	}
	seg := strings.Split(rest, "/")
	switch {
	case rest == "":
		if c.method(ctx, "GET") {
			r.tokens()
		}
	case rest == "tokens":
		if c.method(ctx, "POST") {
			r.createToken()
		}
	case len(seg) == 2 && seg[0] == "tokens" && validID(seg[1]):
		if c.method(ctx, "GET") {
			r.token(seg[1])
		}
	case len(seg) == 3 && seg[0] == "tokens" && validID(seg[1]) && tokenActions[seg[2]]:
		if c.method(ctx, "POST") {
			r.tokenAction(seg[1], seg[2])
		}
	case rest == "pool":
		switch {
		case ctx.IsGet():
			r.pool("")
		case ctx.IsPost():
			r.addMember()
		default:
			c.notAllowed(ctx, "GET, POST")
		}
	case len(seg) == 3 && seg[0] == "pool" && validID(seg[1]) && memberActions[seg[2]]:
		if c.method(ctx, "POST") {
			r.memberAction(seg[1], seg[2])
		}
	case rest == "gateways":
		if c.method(ctx, "GET") {
			r.gateways()
		}
	case rest == "signout":
		if c.method(ctx, "POST") {
			c.sessions.end(cookie)
			ctx.Response.Header.Add("Set-Cookie", CookieName+"=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Strict")
			c.log.Info("console: signed out", "remote", ctx.RemoteAddr().String())
			seeOther(ctx, c.signInPath)
		}
	default:
		r.fail(fasthttp.StatusNotFound, "There is no such console page.")
	}
}

var tokenActions = map[string]bool{"edit": true, "revoke": true, "rotate": true, "reset": true}
var memberActions = map[string]bool{"drain": true, "undrain": true, "remove": true}

// validID accepts the ids the API issues (URL-safe, short).
func validID(s string) bool {
	if s == "" || len(s) > maxIDLen {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// method answers 405 unless the request's method is m.
func (c *Console) method(ctx *fasthttp.RequestCtx, m string) bool {
	if string(ctx.Method()) == m {
		return true
	}
	c.notAllowed(ctx, m)
	return false
}

func (c *Console) notAllowed(ctx *fasthttp.RequestCtx, allow string) {
	ctx.Response.Header.Set("Allow", allow)
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.SetStatusCode(fasthttp.StatusMethodNotAllowed)
	ctx.SetBodyString("method not allowed\n")
}

// checkPost is the CSRF defence of every change: the form's token must be
// the session's, and a browser's Origin and Sec-Fetch-Site (where sent)
// must say the same origin. It returns why a request is refused, or "".
func (c *Console) checkPost(ctx *fasthttp.RequestCtx, sess session) string {
	if site := ctx.Request.Header.Peek("Sec-Fetch-Site"); len(site) > 0 && string(site) != "same-origin" {
		return "The request did not come from a console page (Sec-Fetch-Site)."
	}
	if origin := ctx.Request.Header.Peek("Origin"); len(origin) > 0 {
		u, err := url.Parse(string(origin))
		if err != nil || u.Host != string(ctx.Host()) {
			return "The request did not come from a console page (Origin)."
		}
	}
	if !csrfOK(sess, ctx.PostArgs().Peek("csrf")) {
		return "The form's CSRF token is missing or stale: reload the page and try again."
	}
	return ""
}

// errAPI is an admin API error answer.
type errAPI struct {
	Status  int
	Code    string
	Message string
}

func (e *errAPI) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message) }

// call runs one admin API request and decodes a 2xx answer into out.
func (c *Console) call(ctx *fasthttp.RequestCtx, method, path string, body any, out any) error {
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return err
		}
	}
	status, resp := c.cfg.API(ctx.Host(), method, path, raw)
	if status < 200 || status > 299 {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		json.Unmarshal(resp, &e)
		if e.Error.Message == "" {
			e.Error.Message = string(bytes.TrimSpace(resp))
		}
		return &errAPI{Status: status, Code: e.Error.Code, Message: e.Error.Message}
	}
	if out == nil || len(resp) == 0 {
		return nil
	}
	return json.Unmarshal(resp, out)
}

// apiStatus is the status to answer for err from call.
func apiStatus(err error) int {
	var e *errAPI
	if errors.As(err, &e) && e.Status >= 400 {
		return e.Status
	}
	return fasthttp.StatusInternalServerError
}

func apiMessage(err error) string {
	var e *errAPI
	if errors.As(err, &e) {
		return e.Message
	}
	return err.Error()
}

// seeOther redirects to path on the same origin (fasthttp's Redirect
// writes an absolute URL whose scheme it guesses).
func seeOther(ctx *fasthttp.RequestCtx, path string) {
	ctx.Response.Header.Set("Location", path)
	ctx.SetStatusCode(fasthttp.StatusSeeOther)
}
