package e2e

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/internal/testpeer"
)

// TestFallbackMatchesNginx: with -fallback pointing at a real nginx 1.22's
// plaintext port, every probe shape gets through the gateway what that
// nginx answers directly, Date apart, and the connection is closed or kept
// open as nginx does: on the plaintext listener (against nginx's plaintext
// port) and inside TLS on the TLS listener (against nginx's TLS port, which
// is what a prober compares an HTTPS site with). The gateways' own decoy
// signs its pages "decoy-tracer", so a shape that got the built-in decoy
// instead of the fallback cannot pass. Plain HTTP on the TLS port is the
// one case the fallback does not take (it is a plain-HTTP server and would
// answer as on its own port); those shapes go to a TLS gateway with the
// default decoy, which answers as nginx's TLS port does. Fails to compile
// on the old tree (no Config.Fallback).
func TestFallbackMatchesNginx(t *testing.T) {
	cert := testpeer.SelfSignedCert(t)
	ngx := startNginx(t, cert)
	sink := testpeer.ListenTCP(t, func(c *net.TCPConn) { io.Copy(io.Discard, c) })
	routes := map[string]string{nginxProbeSecret: sink}
	m := &countMetrics{}
	tracer := gateway.Config{Fallback: ngx.Plain, ServerHeader: "decoy-tracer", Metrics: m}
	gPlain, plain := startGateway(t, tracer, routes)
	tracer.TLS = &gateway.TLSConfig{GetCertificate: cert.GetCertificate}
	gTLS, tlsGW := startGateway(t, tracer, routes)
	gPort, tlsPortGW := startGateway(t, gateway.Config{Fallback: ngx.Plain, Metrics: m,
		TLS: &gateway.TLSConfig{GetCertificate: cert.GetCertificate}}, routes)

	match, total := compareWithNginx(t, ngx, cert, plain, tlsGW, tlsPortGW)
	t.Logf("%d of %d probes (%d shapes) answered through -fallback as nginx does", match, total, len(probeShapes))
	if n := m.dropped.Load(); n != 0 {
		t.Errorf("%d bytes dropped (fallback busy or not dialled?)", n)
	}
	// Every fallback connection ends once its client has gone.
	deadline := time.Now().Add(10 * time.Second)
	for _, g := range []*gateway.Gateway{gPlain, gTLS, gPort} {
		for g.Fallbacks() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%d fallback connections still open", g.Fallbacks())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
