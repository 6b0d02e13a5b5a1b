package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/httvps/httvps/store"
)

func acquireDev(t *testing.T, s store.Store, tok, dev, gw string, sessions, max int) bool {
	t.Helper()
	ok, err := s.AcquireDevice(ctxT(t), tok, dev, gw, sessions, max)
	must(t, err, "AcquireDevice "+dev)
	return ok
}

func releaseDev(t *testing.T, s store.Store, tok, dev, gw string, grace time.Duration) {
	t.Helper()
	must(t, s.ReleaseDevice(ctxT(t), tok, dev, gw, grace), "ReleaseDevice "+dev)
}

func deviceKeys(t *testing.T, s store.Store, tok string) []string {
	t.Helper()
	l, err := s.ListDevices(ctxT(t), tok)
	must(t, err, "ListDevices")
	keys := make([]string, len(l))
	for i, d := range l {
		keys[i] = d.Key
	}
	return keys
}

// waitDevices polls until the token's live devices are want (the store's
// clock decides, so the wait is bounded, not timed).
func waitDevices(t *testing.T, s store.Store, tok string, want []string, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := deviceKeys(t, s, tok)
		if fmt.Sprint(got) == fmt.Sprint(want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: live devices %v, want %v", what, got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A device already counted is admitted again at the limit, on any
// gateway; a new one is not, until a device is released with no grace.
func testDeviceLimit(t *testing.T, s store.Store) {
	tok := store.NewID()
	g1, g2 := "gw1-"+store.NewID(), "gw2-"+store.NewID()
	heartbeat(t, s, g1, time.Minute)
	heartbeat(t, s, g2, time.Minute)
	if !acquireDev(t, s, tok, "127.0.0.2", g1, 1, 2) || !acquireDev(t, s, tok, "dev-aaaaaaaaaaaaaaaa", g2, 1, 2) {
		t.Fatal("first two devices refused")
	}
	if acquireDev(t, s, tok, "127.0.0.4", g1, 1, 2) || acquireDev(t, s, tok, "127.0.0.4", g2, 1, 2) {
		t.Fatal("third device admitted with max 2")
	}
	// The same devices on the other gateway: still two devices.
	if !acquireDev(t, s, tok, "127.0.0.2", g2, 3, 2) || !acquireDev(t, s, tok, "dev-aaaaaaaaaaaaaaaa", g1, 1, 2) {
		t.Fatal("a live device refused on a second gateway")
	}
	// max 0 is unlimited (a gateway reporting a session count).
	if !acquireDev(t, s, tok, "2001:db8:1:2::/64", g1, 1, 0) {
		t.Fatal("max 0 refused")
	}
	if got := deviceKeys(t, s, tok); fmt.Sprint(got) != "[127.0.0.2 2001:db8:1:2::/64 dev-aaaaaaaaaaaaaaaa]" {
		t.Fatalf("devices %v", got)
	}
	releaseDev(t, s, tok, "2001:db8:1:2::/64", g1, 0)
	// Released on one gateway only: still counted through the other.
	releaseDev(t, s, tok, "127.0.0.2", g1, 0)
	if acquireDev(t, s, tok, "127.0.0.4", g1, 1, 2) {
		t.Fatal("a device with a lease on another gateway stopped counting")
	}
	releaseDev(t, s, tok, "127.0.0.2", g2, 0)
	if !acquireDev(t, s, tok, "127.0.0.4", g1, 1, 2) {
		t.Fatal("new device refused after a device was released (no grace)")
	}
	// Releases of unknown leases are no-ops.
	releaseDev(t, s, tok, "127.0.0.9", g1, time.Minute)
	releaseDev(t, s, store.NewID(), "127.0.0.9", g1, time.Minute)
	if got := deviceKeys(t, s, tok); fmt.Sprint(got) != "[127.0.0.4 dev-aaaaaaaaaaaaaaaa]" {
		t.Fatalf("devices %v", got)
	}
	// DeleteToken takes the token's device leases.
	tk := newToken("devices")
	tk.ID = tok
	must(t, s.CreateToken(ctxT(t), tk), "CreateToken")
	must(t, s.DeleteToken(ctxT(t), tok), "DeleteToken")
	if got := deviceKeys(t, s, tok); len(got) != 0 {
		t.Fatalf("devices after DeleteToken: %v", got)
	}
}

// Concurrent acquirers of distinct devices: exactly max win; acquirers of
// one device all win.
func testDeviceConcurrent(t *testing.T, s store.Store) {
	tok := store.NewID()
	gws := []string{"gwa-" + store.NewID(), "gwb-" + store.NewID(), "gwc-" + store.NewID()}
	for _, g := range gws {
		heartbeat(t, s, g, time.Minute)
	}
	const racers, max = 30, 4
	ok := race(t, racers, func(i int) (bool, error) {
		return s.AcquireDevice(ctxT(t), tok, fmt.Sprintf("10.0.0.%d", i), gws[i%len(gws)], 1, max)
	})
	shared := store.NewID()
	sharedOK := race(t, racers, func(i int) (bool, error) {
		return s.AcquireDevice(ctxT(t), shared, "one-device-id-0000", gws[i%len(gws)], 1, 1)
	})
	if ok != max {
		t.Fatalf("%d of %d distinct devices admitted, want %d", ok, racers, max)
	}
	if n := len(deviceKeys(t, s, tok)); n != max {
		t.Fatalf("%d live devices, want %d", n, max)
	}
	if sharedOK != racers {
		t.Fatalf("one device: %d of %d acquirers admitted, want all", sharedOK, racers)
	}
}

// A released device keeps counting for its grace, then stops; acquired
// again within the grace it is live again (and stays so).
func testDeviceGrace(t *testing.T, s store.Store) {
	tok := store.NewID()
	gw := "gw-" + store.NewID()
	heartbeat(t, s, gw, time.Minute)
	if !acquireDev(t, s, tok, "127.0.0.2", gw, 1, 1) {
		t.Fatal("device refused")
	}
	const grace = 600 * time.Millisecond
	released := time.Now()
	releaseDev(t, s, tok, "127.0.0.2", gw, grace)
	if acquireDev(t, s, tok, "127.0.0.3", gw, 1, 1) {
		if time.Since(released) < grace {
			t.Fatal("a device in its grace stopped counting")
		}
		releaseDev(t, s, tok, "127.0.0.3", gw, 0) // a slow machine: the grace was over
	}
	l, err := s.ListDevices(ctxT(t), tok)
	must(t, err, "ListDevices")
	if time.Since(released) < grace {
		if len(l) != 1 || l[0].Sessions != 0 || len(l[0].Gateways) != 1 || l[0].Gateways[0].GraceUntil.IsZero() {
			t.Fatalf("device in its grace listed as %+v", l)
		}
	}
	waitDevices(t, s, tok, nil, "after the grace")
	if !acquireDev(t, s, tok, "127.0.0.3", gw, 1, 1) {
		t.Fatal("new device refused after the grace passed")
	}
	// Back within the grace: held again, the grace no longer applies.
	releaseDev(t, s, tok, "127.0.0.3", gw, grace)
	if !acquireDev(t, s, tok, "127.0.0.3", gw, 2, 1) {
		t.Fatal("a device in its grace refused")
	}
	time.Sleep(grace + 200*time.Millisecond) // past the grace: must still count
	if got := deviceKeys(t, s, tok); fmt.Sprint(got) != "[127.0.0.3]" {
		t.Fatalf("re-acquired device: live %v", got)
	}
}

// A dead gateway's held leases stop counting when its heartbeat expires.
func testDeviceGatewayExpiry(t *testing.T, s store.Store) {
	tok := store.NewID()
	dying, alive := "dying-"+store.NewID(), "alive-"+store.NewID()
	heartbeat(t, s, dying, 400*time.Millisecond)
	heartbeat(t, s, alive, time.Minute)
	if !acquireDev(t, s, tok, "127.0.0.2", dying, 5, 2) || !acquireDev(t, s, tok, "127.0.0.3", dying, 1, 2) {
		t.Fatal("devices refused")
	}
	if !acquireDev(t, s, tok, "127.0.0.3", alive, 1, 2) {
		t.Fatal("live device refused on a second gateway")
	}
	if acquireDev(t, s, tok, "127.0.0.4", alive, 1, 2) {
		t.Fatal("limit not enforced across gateways")
	}
	waitDevices(t, s, tok, []string{"127.0.0.3"}, "after the dying gateway's heartbeat expired")
	if !acquireDev(t, s, tok, "127.0.0.4", alive, 1, 2) {
		t.Fatal("device refused after the dead gateway's leases expired")
	}
}

// ListDevices reports first and last seen, each gateway's lease and the
// session sum.
func testDeviceList(t *testing.T, s store.Store) {
	tok := store.NewID()
	g1, g2 := "gw1-"+store.NewID(), "gw2-"+store.NewID()
	heartbeat(t, s, g1, time.Minute)
	heartbeat(t, s, g2, time.Minute)
	before := time.Now().Add(-time.Second) // Redis's clock may lag a little
	acquireDev(t, s, tok, "127.0.0.2", g1, 2, 0)
	acquireDev(t, s, tok, "127.0.0.2", g2, 3, 0)
	acquireDev(t, s, tok, "127.0.0.2", g1, 4, 0) // a new session count from g1
	l, err := s.ListDevices(ctxT(t), tok)
	must(t, err, "ListDevices")
	if len(l) != 1 {
		t.Fatalf("devices %+v", l)
	}
	d := l[0]
	after := time.Now().Add(time.Second)
	if d.Key != "127.0.0.2" || d.Sessions != 7 || len(d.Gateways) != 2 {
		t.Fatalf("device %+v", d)
	}
	if d.FirstSeen.Before(before) || d.FirstSeen.After(after) || d.LastSeen.Before(d.FirstSeen) || d.LastSeen.After(after) {
		t.Fatalf("first %v last %v not within [%v, %v]", d.FirstSeen, d.LastSeen, before, after)
	}
	want := map[string]int{g1: 4, g2: 3}
	for _, gl := range d.Gateways {
		if want[gl.GatewayID] != gl.Sessions || !gl.GraceUntil.IsZero() {
			t.Fatalf("lease %+v, want sessions %d and no grace", gl, want[gl.GatewayID])
		}
	}
	if d.Gateways[0].GatewayID > d.Gateways[1].GatewayID {
		t.Fatalf("leases not ordered by gateway: %+v", d.Gateways)
	}
	first := d.FirstSeen
	releaseDev(t, s, tok, "127.0.0.2", g1, time.Minute)
	l, err = s.ListDevices(ctxT(t), tok)
	must(t, err, "ListDevices")
	if len(l) != 1 || l[0].Sessions != 3 || !l[0].FirstSeen.Equal(first) {
		t.Fatalf("after g1's release: %+v (first seen was %v)", l, first)
	}
	for _, gl := range l[0].Gateways {
		if (gl.GatewayID == g1) == gl.GraceUntil.IsZero() {
			t.Fatalf("lease %+v: only g1's is in its grace", gl)
		}
		if gl.GatewayID == g1 && (gl.GraceUntil.Before(time.Now().Add(30*time.Second)) || gl.GraceUntil.After(time.Now().Add(2*time.Minute))) {
			t.Fatalf("g1's grace ends %v, want about a minute from now", gl.GraceUntil)
		}
	}
	if l, err := s.ListDevices(ctxT(t), store.NewID()); err != nil || len(l) != 0 {
		t.Fatalf("unknown token: %v %v", l, err)
	}
}

func testDeviceArguments(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	tok, gw := store.NewID(), "gw-"+store.NewID()
	for _, dev := range []string{"", "has space", "ctl\x01", string(make([]byte, store.MaxDeviceKey+1))} {
		_, err := s.AcquireDevice(ctx, tok, dev, gw, 1, 0)
		mustErr(t, err, store.ErrInvalid, fmt.Sprintf("AcquireDevice(%q)", dev))
		mustErr(t, s.ReleaseDevice(ctx, tok, dev, gw, 0), store.ErrInvalid, fmt.Sprintf("ReleaseDevice(%q)", dev))
	}
	_, err := s.AcquireDevice(ctx, tok, "127.0.0.2", "", 1, 0)
	mustErr(t, err, store.ErrInvalid, "AcquireDevice without gateway")
}
