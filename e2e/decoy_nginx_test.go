package e2e

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/internal/testpeer"
)

// TestDecoyMatchesNginx: every probe shape gets from the built-in decoy,
// plaintext and over TLS, the bytes a real nginx 1.22 (server_tokens off,
// 404 for everything) answers, Date apart, and the connection is closed or
// kept alive as nginx does. Broke before the emulation: no Date, a close
// after every answer, HEAD with a body, one answer for pipelined requests,
// 404 where nginx says 400/414/505, silence for bare LF and for plain HTTP
// on the TLS port.
func TestDecoyMatchesNginx(t *testing.T) {
	cert := testpeer.SelfSignedCert(t)
	ngx := startNginx(t, cert)
	sink := testpeer.ListenTCP(t, func(c *net.TCPConn) { io.Copy(io.Discard, c) })
	routes := map[string]string{nginxProbeSecret: sink}
	// MaxRequestSize above nginx's 8 KiB line limit, so that the limit that
	// decides the long-line shapes is nginx's own; at the default (8 KiB)
	// a request over 8 KiB in all gets 400 where nginx, with 32 KiB for
	// the headers, may answer 404 (docs/04-gateway-design.md).
	_, plain := startGateway(t, gateway.Config{MaxRequestSize: 16 << 10}, routes)
	cfg := gateway.Config{MaxRequestSize: 16 << 10, TLS: &gateway.TLSConfig{GetCertificate: cert.GetCertificate}}
	_, tlsGW := startGateway(t, cfg, routes)

	match, total := compareWithNginx(t, ngx, cert, plain, tlsGW, tlsGW)
	t.Logf("%d of %d probes (%d shapes) answered as nginx does", match, total, len(probeShapes))
}

// TestDecoyKeepAliveNextRequest: a kept-alive connection (plaintext and
// TLS) answers a second request sent after the first answer, as nginx does;
// the gateway waits for it in netpoll, not on a goroutine.
func TestDecoyKeepAliveNextRequest(t *testing.T) {
	cert := testpeer.SelfSignedCert(t)
	ngx := startNginx(t, cert)
	_, plain := startGateway(t, gateway.Config{}, nil)
	_, tlsGW := startGateway(t, gateway.Config{TLS: &gateway.TLSConfig{GetCertificate: cert.GetCertificate}}, nil)
	first := []byte("GET /a HTTP/1.1\r\nHost: localhost\r\n\r\n")
	second := []byte("HEAD /b HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
	exchange := func(addr string, tc *tls.Config) (probeAnswer, probeAnswer, error) {
		raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return probeAnswer{}, probeAnswer{}, err
		}
		defer raw.Close()
		var c net.Conn = raw
		if tc != nil {
			tconn := tls.Client(raw, tc)
			if err := tconn.Handshake(); err != nil {
				return probeAnswer{}, probeAnswer{}, err
			}
			c = tconn
		}
		a, err := exchangeOn(c, first)
		if err != nil {
			return a, probeAnswer{}, err
		}
		b, err := exchangeOn(c, second)
		return a, b, err
	}
	for _, tr := range []struct {
		name    string
		ngx, gw string
		tc      *tls.Config
	}{{"Plain", ngx.Plain, plain, nil}, {"TLS", ngx.TLS, tlsGW, cert.ClientConfig(0)}} {
		wa, wb, err := exchange(tr.ngx, tr.tc)
		if err != nil {
			t.Fatalf("%s: nginx: %v", tr.name, err)
		}
		ga, gb, err := exchange(tr.gw, tr.tc)
		if err != nil {
			t.Fatalf("%s: gateway: %v", tr.name, err)
		}
		if wa.closed || !wb.closed {
			t.Fatalf("%s: nginx closed after first %v, second %v", tr.name, wa.closed, wb.closed)
		}
		if d := sameAnswer(wa, ga); d != "" {
			t.Errorf("%s: first request: %s", tr.name, d)
		}
		if d := sameAnswer(wb, gb); d != "" {
			t.Errorf("%s: second request: %s", tr.name, d)
		}
	}
}

// exchangeOn writes req on c and reads until close or probeQuiet.
func exchangeOn(c net.Conn, req []byte) (probeAnswer, error) {
	var a probeAnswer
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(req); err != nil {
		return a, err
	}
	buf := make([]byte, 4096)
	for {
		c.SetReadDeadline(time.Now().Add(probeQuiet))
		n, err := c.Read(buf)
		a.b = append(a.b, buf[:n]...)
		var ne net.Error
		switch {
		case err == nil:
		case errors.As(err, &ne) && ne.Timeout():
			return a, nil
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
			a.closed = true
			return a, nil
		default:
			return a, err
		}
	}
}

// TestDecoyStatusMatchesNginx: with -decoy-status 500 (nginx closes the
// connection after it) and 503 (kept alive) the decoy answers every probe
// shape as nginx with "return STATUS;" does, and its status line is
// nginx's. Broke: "HTTP/1.1 500 Status", a phrase no web server sends, and
// a kept-alive 500.
func TestDecoyStatusMatchesNginx(t *testing.T) {
	cert := testpeer.SelfSignedCert(t)
	sink := testpeer.ListenTCP(t, func(c *net.TCPConn) { io.Copy(io.Discard, c) })
	routes := map[string]string{nginxProbeSecret: sink}
	for _, tc := range []struct {
		status int
		line   string
	}{
		{500, "HTTP/1.1 500 Internal Server Error\r\n"},
		{503, "HTTP/1.1 503 Service Temporarily Unavailable\r\n"},
	} {
		t.Run(strconv.Itoa(tc.status), func(t *testing.T) {
			ngx := startNginxStatus(t, cert, tc.status)
			_, plain := startGateway(t, gateway.Config{MaxRequestSize: 16 << 10, DecoyStatus: tc.status}, routes)
			cfg := gateway.Config{MaxRequestSize: 16 << 10, DecoyStatus: tc.status, TLS: &gateway.TLSConfig{GetCertificate: cert.GetCertificate}}
			_, tlsGW := startGateway(t, cfg, routes)

			a, err := sendShape(plain, nil, []byte("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(a.b, []byte(tc.line)) {
				t.Fatalf("answer %q, want it to start with %q", clip(a.b), tc.line)
			}
			match, total := compareWithNginx(t, ngx, cert, plain, tlsGW, tlsGW)
			t.Logf("%d of %d probes answered as nginx's return %d does", match, total, tc.status)
		})
	}
}
