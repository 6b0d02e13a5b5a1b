package storeauth

import (
	"testing"
	"time"

	"github.com/httvps/httvps/gateway"
)

// The heartbeat carries the handshakes per second since the previous
// heartbeat, on the injected clock; the first heartbeat says 0.
func TestHeartbeatHandshakeRate(t *testing.T) {
	r := startRedis(t)
	st := openStore(t, r)
	now := time.Unix(1_800_000_000, 0)
	cfg := fastConfig()
	cfg.Now = func() time.Time { return now }
	a := New(st, cfg)
	rate := func() float64 {
		t.Helper()
		gws, err := st.ListGateways(ctxT(t))
		if err != nil || len(gws) != 1 {
			t.Fatalf("gateways %+v, %v", gws, err)
		}
		return gws[0].HandshakesPerSec
	}
	for range 5 {
		a.Authenticate([]byte("unknown-secret"), gateway.PathTCP, gateway.Client{})
	}
	a.heartbeat(t.Context())
	if got := rate(); got != 0 {
		t.Fatalf("first heartbeat: %v handshakes/s, want 0", got)
	}
	for range 30 {
		a.Authenticate([]byte("unknown-secret"), gateway.PathTCP, gateway.Client{})
	}
	now = now.Add(2 * time.Second)
	a.heartbeat(t.Context())
	if got := rate(); got != 15 {
		t.Fatalf("30 handshakes in 2 s: %v handshakes/s, want 15", got)
	}
	now = now.Add(4 * time.Second)
	a.heartbeat(t.Context())
	if got := rate(); got != 0 {
		t.Fatalf("no handshakes: %v handshakes/s, want 0", got)
	}
}
