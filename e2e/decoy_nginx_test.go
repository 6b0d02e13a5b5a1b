package e2e

import (
	"io"
	"net"
	"sync"
	"testing"

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
	sink := listenTCP(t, func(c *net.TCPConn) { io.Copy(io.Discard, c) })
	routes := map[string]string{nginxProbeSecret: sink}
	_, plain := startGateway(t, gateway.Config{}, routes)
	cfg := gateway.Config{TLS: &gateway.TLSConfig{GetCertificate: cert.GetCertificate}}
	_, tlsGW := startGateway(t, cfg, routes)

	type run struct {
		name      string
		shape     probeShape
		ngx, gw   string
		overTLS   bool
		want, got probeAnswer
		werr, gerr error
	}
	var runs []*run
	for _, s := range probeShapes {
		if s.tlsPort {
			runs = append(runs, &run{name: s.name, shape: s, ngx: ngx.TLS, gw: tlsGW})
			continue
		}
		runs = append(runs,
			&run{name: s.name, shape: s, ngx: ngx.Plain, gw: plain},
			&run{name: s.name + "/TLS", shape: s, ngx: ngx.TLS, gw: tlsGW, overTLS: true})
	}
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for _, r := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			var tc = cert.ClientConfig(0)
			if !r.overTLS {
				tc = nil
			}
			r.want, r.werr = sendShape(r.ngx, tc, r.shape.req)
			r.got, r.gerr = sendShape(r.gw, tc, r.shape.req)
		}()
	}
	wg.Wait()
	match := 0
	for _, r := range runs {
		if r.werr != nil {
			t.Errorf("%s: nginx: %v", r.name, r.werr)
			continue
		}
		if r.gerr != nil {
			t.Errorf("%s: gateway: %v", r.name, r.gerr)
			continue
		}
		if d := sameAnswer(r.want, r.got); d != "" {
			t.Errorf("%s: %s", r.name, d)
			continue
		}
		match++
	}
	t.Logf("%d of %d probes (%d shapes) answered as nginx does", match, len(runs), len(probeShapes))
}
