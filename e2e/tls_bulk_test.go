package e2e

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/httvps/httvps/gateway"
)

// TestTLSBulk1GiB: 1 GiB up and 1 GiB down at the same time through one
// TLS 1.3 session (full-size records both ways), both hash-checked, with
// the peer's end of stream and close 1000 after.
func TestTLSBulk1GiB(t *testing.T) {
	const secret = "tls-bulk"
	m := &countMetrics{}
	g, gw, cert := startTLSGateway(t, gateway.Config{Metrics: m}, map[string]string{secret: duplexPeer(t)})
	c := dialWSS(t, gw, cert, secret, tls.VersionTLS13)
	start := time.Now()
	const size = 1 << 30
	if err := duplexExchange(c, 1030, size, size, false); err != nil {
		t.Fatalf("%v (session ends:%s)", err, m.endsString())
	}
	el := time.Since(start)
	t.Logf("1 GiB each way in %v (%.0f MiB/s each way)", el.Round(time.Millisecond), float64(size)/(1<<20)/el.Seconds())
	waitSessions(t, g, 0)
}
