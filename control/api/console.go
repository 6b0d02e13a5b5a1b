package api

import (
	"net"
	"net/url"

	"github.com/valyala/fasthttp"

	"github.com/httvps/httvps/control/console"
)

// The operator console (/console/) and the user's page (/u/<token>) are
// mounted on the API's listener (control/console). The console calls the
// admin API in-process through callAdmin, so every change it makes goes
// through the same checks as one made with curl.

// consoleRoute is the metric label of every console request (its paths
// carry ids and secrets).
const consoleRoute = "console"

// consoleAddr is the remote address of the console's in-process calls.
var consoleAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}

func (s *Server) newConsole() (*console.Console, error) {
	return console.New(console.Config{
		API:      s.callAdmin,
		Store:    s.st,
		AdminKey: s.cfg.AdminKey,
		Base: func(host []byte) *url.URL {
			if s.public != nil {
				u := *s.public
				return &u
			}
			return &url.URL{Scheme: "https", Host: string(host)}
		},
		Pin:    pinOf(s.cfg.KeyPin),
		Refuse: s.refuse,
		Now:    s.now,
		Logger: s.log,
	})
}

// pinOf is KeyPin as the keys use it (only a 32-byte pin counts).
func pinOf(p []byte) []byte {
	if len(p) == 32 {
		return p
	}
	return nil
}

// callAdmin runs one admin API request in-process, with the admin key.
func (s *Server) callAdmin(host []byte, method, path string, body []byte) (int, []byte) {
	var rc fasthttp.RequestCtx
	var req fasthttp.Request
	req.Header.SetMethod(method)
	req.SetRequestURI(path)
	req.Header.SetHostBytes(host)
	req.Header.Set(fasthttp.HeaderAuthorization, "Bearer "+s.cfg.AdminKey)
	if body != nil {
		req.Header.SetContentType("application/json")
		req.SetBody(body)
	}
	rc.Init(&req, consoleAddr, nil)
	s.router.Handler(&rc)
	return rc.Response.StatusCode(), append([]byte(nil), rc.Response.Body()...)
}

// serve is the listener's handler: the console's paths, else the API.
func (s *Server) serve(ctx *fasthttp.RequestCtx) {
	if console.Handles(ctx.Path()) {
		s.consoleHandler(ctx)
		return
	}
	s.router.Handler(ctx)
}
