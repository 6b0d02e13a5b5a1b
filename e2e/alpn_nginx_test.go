package e2e

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/internal/testpeer"
)

// alpnOutcome is what a TLS server did with a ClientHello's ALPN list: the
// protocol it selected ("" for none), or the alert it sent.
func alpnOutcome(addr string, protos []string) string {
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(&d, "tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: protos, MinVersion: tls.VersionTLS12})
	if err != nil {
		var ae tls.AlertError
		if errors.As(err, &ae) {
			return fmt.Sprintf("alert %d", uint8(ae))
		}
		if errors.Is(err, io.EOF) {
			return "closed"
		}
		return "error"
	}
	defer c.Close()
	return "selected " + fmt.Sprintf("%q", c.ConnectionState().NegotiatedProtocol)
}

// TestALPNMatchesNginx: whatever ALPN list a prober offers, the gateway's TLS
// listener selects what nginx 1.22 (no http2) selects, or refuses with the
// same alert. Broke before: a client offering only http/1.0 or http/0.9
// got alert 120 from the gateway and "http/1.0"/"http/0.9" from nginx,
// whose list is http/1.1, http/1.0, http/0.9.
func TestALPNMatchesNginx(t *testing.T) {
	cert := testpeer.SelfSignedCert(t)
	ngx := startNginx(t, cert)
	sink := testpeer.ListenTCP(t, func(c *net.TCPConn) { io.Copy(io.Discard, c) })
	cfg := gateway.Config{TLS: &gateway.TLSConfig{GetCertificate: cert.GetCertificate}}
	_, gw := startGateway(t, cfg, map[string]string{nginxProbeSecret: sink})
	lists := [][]string{
		nil,
		{"h2"},
		{"http/1.1"},
		{"h2", "http/1.1"},
		{"http/1.0"},
		{"http/0.9"},
		{"http/1.0", "http/1.1"},
		{"spdy/3.1", "http/1.0"},
		{"acme-tls/1"},
		{"h3"},
	}
	for _, protos := range lists {
		want := alpnOutcome(ngx.TLS, protos)
		got := alpnOutcome(gw, protos)
		if got != want {
			t.Errorf("ALPN %q: gateway %s, nginx %s", protos, got, want)
		}
	}
}

// groupOutcome is the key-exchange group a TLS server picked for a client
// offering groups (in that preference order, with a key share for each of
// the first two), or the alert it sent.
func groupOutcome(addr string, groups []tls.CurveID, maxVersion uint16) string {
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(&d, "tcp", addr, &tls.Config{InsecureSkipVerify: true, CurvePreferences: groups, MaxVersion: maxVersion})
	if err != nil {
		var ae tls.AlertError
		if errors.As(err, &ae) {
			return fmt.Sprintf("alert %d", uint8(ae))
		}
		return "error: " + err.Error()
	}
	defer c.Close()
	st := c.ConnectionState()
	return tls.VersionName(st.Version) + " " + st.CurveID.String()
}

// TestKeyExchangeMatchesNginx: the gateway picks the key-exchange group
// nginx 1.22 on OpenSSL 3.0 picks, with TLS 1.3 enabled as operators
// configure it (nginx 1.22's default is TLS ≤ 1.2). Broke before: offered
// X25519MLKEM768 (as Go ≥ 1.24 clients, the Outline apps among them, and
// current browsers do), the gateway chose it and sent a 1,120-byte key
// share where nginx chooses X25519 — a difference a passive observer sees
// in the ServerHello, and more CPU per handshake; and in TLS 1.2 it served
// its P-256 certificate to clients whose groups lack P-256, which OpenSSL
// refuses (RFC 8422 §5.1).
func TestKeyExchangeMatchesNginx(t *testing.T) {
	cert := testpeer.SelfSignedCert(t)
	ngx := startNginxConf(t, cert, 404, "        ssl_protocols TLSv1.2 TLSv1.3;")
	sink := testpeer.ListenTCP(t, func(c *net.TCPConn) { io.Copy(io.Discard, c) })
	cfg := gateway.Config{TLS: &gateway.TLSConfig{GetCertificate: cert.GetCertificate}}
	_, gw := startGateway(t, cfg, map[string]string{nginxProbeSecret: sink})
	offers := [][]tls.CurveID{
		nil, // Go's default: X25519MLKEM768, X25519, P-256, …
		{tls.X25519MLKEM768, tls.X25519},
		{tls.X25519MLKEM768, tls.CurveP256},
		{tls.X25519MLKEM768},
		{tls.CurveP256, tls.X25519},
		{tls.CurveP384, tls.CurveP521},
		{tls.CurveP521},
		{tls.SecP256r1MLKEM768, tls.X25519},
		{tls.X25519},
		{tls.CurveP384},
		{tls.X25519, tls.CurveP384},
		{tls.CurveP384, tls.X25519},
	}
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		for _, groups := range offers {
			want := groupOutcome(ngx.TLS, groups, v)
			if v == tls.VersionTLS13 && groups == nil && !strings.HasPrefix(want, "TLS 1.3") {
				t.Fatalf("nginx answered %s with TLS 1.3 offered (is TLS 1.3 enabled?)", want)
			}
			got := groupOutcome(gw, groups, v)
			if got != want {
				t.Errorf("TLS %x, groups %v: gateway %s, nginx %s", v, groups, got, want)
			}
		}
	}
}
