package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/internal/testpeer"
)

// TestNativeConnectCurl: curl through `httvps connect` (native tunnel) →
// gateway /v1/tunnel → ss-server → origin, 64 MiB down and 64 MiB up,
// through the SOCKS5 and the HTTP proxy, plaintext and TLS with a pinned
// self-signed certificate; then UDP through SOCKS5 UDP ASSOCIATE → a udp
// stream → ss-server → a UDP echo.
func TestNativeConnectCurl(t *testing.T) {
	needNativePeers(t, "curl", "ss-server")
	origin := testpeer.StartOrigin(t)
	udpEcho := testpeer.UDPEcho(t)
	ss := testpeer.SSServer(t, testpeer.DefaultPassword, testpeer.DefaultMethod)
	const size = 64 << 20
	up := makeUpload(t, size, 65)
	for _, tlsOn := range []bool{false, true} {
		t.Run(fmt.Sprint("tls=", tlsOn), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			const token = "native-curl-token-5d1e"
			m := &countMetrics{}
			key := nativeKey{token: token, cipher: testpeer.DefaultMethod, secret: testpeer.DefaultPassword}
			var gw string
			if tlsOn {
				var cert *testpeer.TestCert
				_, gw, cert = startTLSGateway(t, gateway.Config{Metrics: m}, map[string]string{token: ss})
				key.pin = certPin(cert)
			} else {
				_, gw = startGateway(t, gateway.Config{Metrics: m}, map[string]string{token: ss})
			}
			key.gateways = []string{gw}
			c := startNativeConnect(t, key)

			for _, p := range []struct {
				name  string
				proxy []string
			}{{"socks5", socksProxy(c)}, {"http", httpProxy(c)}} {
				start := time.Now()
				if err := curlDown(ctx, p.proxy, origin, size, 64); err != nil {
					t.Fatalf("%s: %v", p.name, err)
				}
				down := time.Since(start)
				start = time.Now()
				if err := curlUp(ctx, p.proxy, origin, up); err != nil {
					t.Fatalf("%s: %v", p.name, err)
				}
				t.Logf("%s: 64 MiB down in %v, up in %v", p.name, down.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
			}

			// ss-server (shadowsocks-libev) reads UDP into buffers of about
			// twice its 1397-byte packet size and drops larger packets as
			// "suspicious", so the sizes stay below that.
			u := associate(t, c.listen)
			for _, n := range []int{1, 700, 1400, 2000} {
				if err := u.echo(udpEcho, randomBytes(n)); err != nil {
					t.Fatalf("udp: %v", err)
				}
			}
			// Everything went over the tunnel: the gateway saw the bytes,
			// and tunnels, not one WebSocket per connection.
			if got := m.up.Load(); got < 2*size {
				t.Errorf("gateway counted %d bytes up, want ≥ %d", got, 2*size)
			}
			if got := m.down.Load(); got < 2*size {
				t.Errorf("gateway counted %d bytes down, want ≥ %d", got, 2*size)
			}
			if n := m.handshakeOK.Load(); n > 4 {
				t.Errorf("gateway counted %d upgrades for 4 transfers and a UDP association: not the pooled tunnel", n)
			}
		})
	}
}
