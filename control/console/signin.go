package console

import (
	"net"

	"github.com/valyala/fasthttp"
)

// serveSignIn shows the sign-in form (GET) or exchanges the admin key for
// a session cookie (POST), within the rate limits.
func (c *Console) serveSignIn(ctx *fasthttp.RequestCtx) {
	switch {
	case ctx.IsGet():
		c.render(ctx, fasthttp.StatusOK, "signin", pageData{Title: "Sign in", AssetBase: c.signInPath + "/", Action: c.signInPath})
	case ctx.IsPost():
		addr := "?"
		if ta, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
			addr = ta.IP.String()
		}
		if !c.limit.allow(addr, c.now()) {
			c.log.Warn("console: sign-in rate limited", "remote", addr)
			ctx.Response.Header.Set("Retry-After", "60")
			c.render(ctx, fasthttp.StatusTooManyRequests, "signin", pageData{Title: "Sign in", AssetBase: c.signInPath + "/", Action: c.signInPath,
				Error: "Too many sign-in attempts: wait a minute and try again."})
			return
		}
		if site := ctx.Request.Header.Peek("Sec-Fetch-Site"); len(site) > 0 && string(site) != "same-origin" {
			c.render(ctx, fasthttp.StatusForbidden, "signin", pageData{Title: "Sign in", AssetBase: c.signInPath + "/", Action: c.signInPath,
				Error: "Sign in from this page."})
			return
		}
		if !c.isAdmin(ctx.PostArgs().Peek("key")) {
			c.log.Info("console: sign-in with a wrong key", "remote", addr)
			c.render(ctx, fasthttp.StatusUnauthorized, "signin", pageData{Title: "Sign in", AssetBase: c.signInPath + "/", Action: c.signInPath,
				Error: "That is not the admin key."})
			return
		}
		cookie, _ := c.sessions.create(c.now())
		ctx.Response.Header.Add("Set-Cookie", CookieName+"="+cookie+"; Path=/; Max-Age="+itoa(int64(c.cfg.SessionTTL.Seconds()))+"; Secure; HttpOnly; SameSite=Strict")
		c.log.Info("console: signed in", "remote", addr)
		seeOther(ctx, Prefix)
	default:
		c.notAllowed(ctx, "GET, POST")
	}
}
