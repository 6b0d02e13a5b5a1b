package bench

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

func floodTestConfig() *Config {
	cfg := &Config{Self: "x"}
	cfg.setDefaults()
	cfg.CellTimeout = 20 * time.Second
	cfg.LatencyRoundTrips = 200
	return cfg
}

// The flood holds its stalled clients against a relay while the
// established sessions' bytes are checked and measured.
func TestFloodAgainstToyRelay(t *testing.T) {
	cfg := floodTestConfig()
	tr := Transport{Addr: startGoCopy(t, startSink(t))}
	ctx := context.Background()
	e, err := openEstablished(ctx, tr, 2, 4, time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	// The sink waits for the silent half's header, and closes the other
	// half on their partial HTTP request (not a mode): those are reopened.
	f := newFlood(tr.Addr, false, 300, 50)
	f.counting.Store(true)
	f.start(ctx)
	defer f.stop()
	for deadline := time.Now().Add(20 * time.Second); f.held.Load() < 150 || f.reopened.Load() == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 300 stalled clients held, %d reopened", f.held.Load(), f.reopened.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(f.srcs) != 2 || !f.srcs[0].Equal(net.IPv4(127, 0, 1, 2)) {
		t.Fatalf("source addresses %v", f.srcs)
	}
	ph, err := e.measure(ctx, cfg, 4<<20, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if ph.mbps <= 0 || ph.p50 <= 0 || ph.p50 > ph.p99 {
		t.Fatalf("phase %+v", ph)
	}
	time.Sleep(200 * time.Millisecond)
	f.stop()
	if f.garbage.Load() == 0 {
		t.Fatal("no garbage connection was made")
	}
	if f.held.Load() != 0 {
		t.Fatalf("%d stalled clients still held after stop", f.held.Load())
	}
}

// A relay that changes a byte, or loses one, fails the flood's established
// sessions: no figure.
func TestFloodDetectsCorruptionAndLoss(t *testing.T) {
	cfg := floodTestConfig()
	for name, addr := range map[string]string{
		"corrupt": startCorruptor(t, startSink(t), 100<<10),
		"drop":    startDropper(t, startSink(t), 100<<10),
	} {
		t.Run(name, func(t *testing.T) {
			e, err := openEstablished(context.Background(), Transport{Addr: addr}, 1, 1, time.Now().Add(5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			defer e.close()
			cfg.CellTimeout = 3 * time.Second
			_, err = e.measure(context.Background(), cfg, 1<<20, 100*time.Millisecond)
			if err == nil {
				t.Fatal("no error")
			}
			if name == "corrupt" && !errors.Is(err, errIntegrity) {
				t.Fatalf("err = %v, want errIntegrity", err)
			}
		})
	}
	// And the round trips alone.
	e, err := openEstablished(context.Background(), Transport{Addr: startCorruptor(t, startSink(t), 100)}, 1, 1, time.Now().Add(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	if _, err := roundTrips(context.Background(), e.echo, 50, 64, time.Second); !errors.Is(err, errIntegrity) {
		t.Fatalf("round trips: err = %v, want errIntegrity", err)
	}
}

// startDropper relays to target, leaving out the upstream's byte at off.
func startDropper(t *testing.T, target string, off int) string {
	t.Helper()
	return startEditRelay(t, target, func(b []byte, at int) []byte {
		if at <= off && off < at+len(b) {
			i := off - at
			b = append(append([]byte(nil), b[:i]...), b[i+1:]...)
		}
		return b
	})
}

// The gateway's per-address limits come back on for the flood only.
func TestWithDefaultLimits(t *testing.T) {
	pe := &peer{info: PeerInfo{Name: PeerHTTVPSTLS}, argv: func(int, string) []string {
		return []string{"gw", "-listen", "x", "-addr-rate", "-1", "-addr-handshakes", "-1", "-tls-cert", "c"}
	}}
	got, ok := withDefaultLimits(pe)
	a := got.argv(1, "s")
	if !ok || len(a) != 5 || a[3] != "-tls-cert" {
		t.Fatalf("argv %q (%v)", a, ok)
	}
	if len(pe.argv(1, "s")) != 9 {
		t.Fatal("the peer itself changed")
	}
	other := &peer{info: PeerInfo{Name: PeerNginxTLS}}
	if p, ok := withDefaultLimits(other); ok || p != other {
		t.Fatal("nginx-tls changed")
	}
}
