package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"time"
)

// hopHeaders are the hop-by-hop headers (RFC 9110 §7.6.1) a proxy drops,
// with those the Connection header names.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

func removeHopHeaders(h http.Header) {
	for _, v := range h.Values("Connection") {
		for _, name := range strings.Split(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopHeaders {
		h.Del(name)
	}
}

// httpProxy serves HTTP proxy requests on c: CONNECT becomes a relayed
// stream; an absolute-URI request (http:// only) is sent to the origin
// through its own stream and the answer passed back, hop-by-hop headers
// removed both ways. Keep-alive is kept with the client while answers are
// framed; every request head is bounded in size and time.
func (p *Proxy) httpProxy(c net.Conn, br *bufio.Reader, lim *limitReader) {
	for first := true; ; first = false {
		if !first {
			c.SetDeadline(time.Now().Add(DefaultHTTPIdle))
		}
		lim.n = maxHandshake
		req, err := http.ReadRequest(br)
		if err != nil {
			if !errors.Is(err, io.EOF) && !isTimeout(err) {
				httpError(c, http.StatusBadRequest, "malformed request")
				p.log.Debug("proxy: http", "client", c.RemoteAddr().String(), "err", err)
			}
			return
		}
		lim.n = -1
		c.SetDeadline(time.Time{})
		if !p.httpAuthorized(req) {
			io.WriteString(c, "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"httvps\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			return
		}
		if req.Method == http.MethodConnect {
			p.httpConnect(c, br, req)
			return
		}
		if !p.httpForward(c, req) {
			return
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (p *Proxy) httpAuthorized(req *http.Request) bool {
	if p.cfg.Username == "" {
		return true
	}
	scheme, cred, ok := strings.Cut(req.Header.Get("Proxy-Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Basic") {
		return false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return false
	}
	user, pass, _ := strings.Cut(string(raw), ":")
	okUser := subtle.ConstantTimeCompare([]byte(user), []byte(p.cfg.Username))
	okPass := subtle.ConstantTimeCompare([]byte(pass), []byte(p.cfg.Password))
	return okUser&okPass == 1
}

func (p *Proxy) dial(addr string) (StreamConn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.DialTimeout)
	defer cancel()
	return p.cfg.Dialer.DialStream(ctx, addr)
}

func (p *Proxy) httpConnect(c net.Conn, br *bufio.Reader, req *http.Request) {
	addr, err := hostPort(req.RequestURI, "")
	if err != nil {
		httpError(c, http.StatusBadRequest, "CONNECT needs host:port")
		return
	}
	up, err := p.dial(addr)
	if err != nil {
		p.log.Debug("proxy: http connect", "err", err)
		httpError(c, http.StatusBadGateway, "cannot open a stream: "+dialReason(err))
		return
	}
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		up.Close()
		return
	}
	relay(c, br, up)
}

// httpForward sends one absolute-URI request through its own stream and
// copies the answer back; it reports whether the client connection may
// carry another request.
func (p *Proxy) httpForward(c net.Conn, req *http.Request) bool {
	if req.URL.Scheme != "http" || req.URL.Host == "" {
		httpError(c, http.StatusBadRequest, "want an absolute http:// URI (use CONNECT for https)")
		return false
	}
	addr, err := hostPort(req.URL.Host, "80")
	if err != nil {
		httpError(c, http.StatusBadRequest, "bad host")
		return false
	}
	keep := !req.Close && req.ProtoAtLeast(1, 1)
	removeHopHeaders(req.Header)
	if strings.EqualFold(req.Header.Get("Expect"), "100-continue") {
		// Answered here: the body then comes at once, and the origin sees
		// a plain request (no interim answer to pass through).
		req.Header.Del("Expect")
		if _, err := io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n"); err != nil {
			return false
		}
	}
	req.RequestURI = ""
	req.Close = true // one stream per request: the origin may close after it
	up, err := p.dial(addr)
	if err != nil {
		p.log.Debug("proxy: http forward", "err", err)
		httpError(c, http.StatusBadGateway, "cannot open a stream: "+dialReason(err))
		return false
	}
	defer up.Close()
	sent := make(chan error, 1)
	go func() { sent <- req.Write(up) }()
	resp, err := readResponse(up, req)
	if err != nil {
		httpError(c, http.StatusBadGateway, "no answer from the origin")
		return false
	}
	defer resp.Body.Close()
	removeHopHeaders(resp.Header)
	framed := resp.ContentLength >= 0 || len(resp.TransferEncoding) > 0 || req.Method == http.MethodHead ||
		resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified
	keep = keep && framed
	resp.Close = !keep
	if !keep {
		resp.Header.Set("Connection", "close")
	}
	if err := resp.Write(c); err != nil {
		return false
	}
	select {
	case err := <-sent:
		return keep && err == nil
	default:
		// The origin answered before it took the whole body: the rest of
		// the body cannot be told from the next request.
		up.Close()
		<-sent
		return false
	}
}

// readResponse reads the origin's answer to req, skipping interim (1xx)
// answers, with heads of at most maxHandshake bytes. The Connection
// header is read here first: net/http drops all of it when it says
// "close", and with it the names of other hop-by-hop headers.
func readResponse(up io.Reader, req *http.Request) (*http.Response, error) {
	lim := &limitReader{r: up, n: maxHandshake}
	br := bufio.NewReaderSize(lim, 16<<10)
	for {
		tp := textproto.NewReader(br)
		line, err := tp.ReadLine()
		if err != nil {
			return nil, err
		}
		h, err := tp.ReadMIMEHeader()
		if err != nil {
			return nil, err
		}
		if _, rest, ok := strings.Cut(line, " "); ok && len(rest) >= 3 && rest[0] == '1' && rest[:3] != "101" {
			lim.n = maxHandshake // an interim answer: the real one follows
			continue
		}
		var head bytes.Buffer
		head.WriteString(line + "\r\n")
		hopNames := h.Values("Connection")
		http.Header(h).Write(&head)
		head.WriteString("\r\n")
		lim.n = -1
		resp, err := http.ReadResponse(bufio.NewReader(io.MultiReader(&head, br)), req)
		if err != nil {
			return nil, err
		}
		resp.Header["Connection"] = hopNames // for removeHopHeaders
		return resp, nil
	}
}

// dialReason is a short cause for a 502 body (never a secret: dial errors
// name addresses only).
func dialReason(err error) string {
	switch {
	case errors.Is(err, ErrRefused):
		return "the gateway refused the connection"
	case isTimeout(err) || errors.Is(err, context.DeadlineExceeded):
		return "timed out"
	}
	return "transport failure"
}

func httpError(c net.Conn, status int, msg string) {
	body := msg + "\n"
	fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		status, http.StatusText(status), len(body), body)
}
