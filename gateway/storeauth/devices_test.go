package storeauth

import (
	"net/netip"
	"testing"
	"time"

	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/store"
)

func from(addr string) gateway.Client { return gateway.Client{Addr: netip.MustParseAddr(addr)} }

// register makes a's gateway live in the store for a minute, as Run's
// heartbeat would (leases of unregistered gateways do not count).
func register(t *testing.T, st store.Store, a *Auth) {
	t.Helper()
	if err := st.Heartbeat(ctxT(t), store.Gateway{ID: a.GatewayID()}, time.Minute); err != nil {
		t.Fatal(err)
	}
}

// Device limits: the first session of a device costs one store call, the
// sessions of a device live here none; a third device is refused with
// RejectDevices while two are live, and admitted once one left and its
// grace passed.
func TestDeviceLimitCachedDevice(t *testing.T) {
	r := startRedis(t)
	st := openStore(t, r)
	a := New(st, Config{Logger: quiet, DeviceGrace: 300 * time.Millisecond}) // no Run: lease work is driven below
	register(t, st, a)
	secret, tok := newToken(t, st, []string{"127.0.0.1:1"}, func(tk *store.Token) { tk.MaxDevices = 2 })
	sb := []byte(secret)
	auth := func(c gateway.Client) (gateway.Route, gateway.Reject, bool) {
		return a.Authenticate(sb, gateway.PathTCP, c)
	}
	first, _, ok := auth(from("127.0.0.2"))
	if !ok || first.Account.Key() != tok.ID {
		t.Fatalf("first device: %+v %v", first, ok)
	}
	if n := st.n("AcquireDevice"); n != 1 {
		t.Fatalf("first session of a device: %d AcquireDevice calls, want 1", n)
	}
	before := st.total()
	var held []gateway.Route
	for range 20 {
		rt, _, ok := auth(from("127.0.0.2"))
		if !ok {
			t.Fatal("a live device's session refused")
		}
		held = append(held, rt)
	}
	if n := st.total() - before; n != 0 {
		t.Fatalf("20 sessions of a live device made %d store calls: %v", n, st.calls)
	}
	second, _, ok := auth(from("127.0.0.3"))
	if !ok {
		t.Fatal("second device refused")
	}
	for _, c := range []gateway.Client{from("127.0.0.4"), {Addr: netip.MustParseAddr("127.0.0.2"), Device: []byte("device-id-0123456789")}} {
		if _, why, ok := auth(c); ok || why != gateway.RejectDevices {
			t.Fatalf("third device %+v: admitted %v, reason %v (want devices)", c, ok, why)
		}
	}
	if s := a.Stats(); s.DeniedDevices != 2 {
		t.Fatalf("DeniedDevices = %d, want 2", s.DeniedDevices)
	}
	l, err := st.ListDevices(ctxT(t), tok.ID)
	if err != nil || len(l) != 2 || l[0].Key != "127.0.0.2" || l[1].Key != "127.0.0.3" {
		t.Fatalf("store devices %+v %v", l, err)
	}

	// 127.0.0.3 leaves: its release goes out in the background and its
	// lease counts for the grace, then not.
	second.Account.Release()
	a.settleLeases(ctxT(t), false)
	if n := st.n("ReleaseDevice"); n != 1 {
		t.Fatalf("%d ReleaseDevice calls after the device's last session, want 1", n)
	}
	eventually(t, 10*time.Second, "a new device admitted after the grace", func() bool {
		rt, _, ok := auth(from("127.0.0.4"))
		if ok {
			rt.Account.Release()
		}
		return ok
	})
	a.settleLeases(ctxT(t), false)
	if n := st.n("ReleaseDevice"); n != 2 { // 127.0.0.3's, then 127.0.0.4's
		t.Fatalf("%d ReleaseDevice calls, want 2", n)
	}
	// Sessions of the first device ending keep it live while one is
	// left; the last one releases it.
	for _, rt := range held {
		rt.Account.Release()
	}
	a.settleLeases(ctxT(t), false)
	if n := st.n("ReleaseDevice"); n != 2 {
		t.Fatalf("device released with a session left: %d ReleaseDevice calls", n)
	}
	first.Account.Release()
	a.settleLeases(ctxT(t), false)
	if n := st.n("ReleaseDevice"); n != 3 {
		t.Fatalf("%d ReleaseDevice calls after the first device's last session, want 3", n)
	}
	eventually(t, 10*time.Second, "no device left after the grace", func() bool {
		l, err := st.ListDevices(ctxT(t), tok.ID)
		return err == nil && len(l) == 0
	})
}

// A token without a device limit never touches the device code: no
// device call, and the session charges the account itself.
func TestNoDeviceLimitNoDeviceCalls(t *testing.T) {
	r := startRedis(t)
	st := openStore(t, r)
	a := New(st, Config{Logger: quiet})
	secret, _ := newToken(t, st, []string{"127.0.0.1:1"}, nil)
	for i := range 5 {
		rt, _, ok := a.Authenticate([]byte(secret), gateway.PathTCP, from(netip.AddrFrom4([4]byte{127, 0, 0, byte(2 + i)}).String()))
		if !ok {
			t.Fatal("denied")
		}
		if _, isDevice := rt.Account.(*device); isDevice {
			t.Fatal("a token without a device limit got a device account")
		}
		rt.Account.Release()
	}
	a.settleLeases(ctxT(t), false)
	if st.n("AcquireDevice")+st.n("ReleaseDevice") != 0 {
		t.Fatalf("device calls for an unlimited token: %v", st.calls)
	}
}

// Device keys: IPv6 by /64, IPv4-mapped as IPv4, the device id over the
// address.
func TestDeviceKey(t *testing.T) {
	for _, tc := range []struct {
		c    gateway.Client
		want string
	}{
		{from("192.0.2.7"), "192.0.2.7"},
		{from("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64"},
		{from("2001:db8:1:2::9"), "2001:db8:1:2::/64"},
		{gateway.Client{Addr: netip.MustParseAddr("192.0.2.7"), Device: []byte("Abc_def-0123456789")}, "Abc_def-0123456789"},
		{gateway.Client{}, "unknown"},
	} {
		var buf [store.MaxDeviceKey]byte
		if got := string(deviceKey(buf[:0], tc.c)); got != tc.want {
			t.Errorf("deviceKey(%+v) = %q, want %q", tc.c, got, tc.want)
		}
	}
}

// Two addresses of one IPv6 /64 are one device; a device id is one device
// from any address.
func TestDeviceIPv6AndDeviceID(t *testing.T) {
	r := startRedis(t)
	st := openStore(t, r)
	a := New(st, Config{Logger: quiet})
	secret, _ := newToken(t, st, []string{"127.0.0.1:1"}, func(tk *store.Token) { tk.MaxDevices = 2 })
	sb := []byte(secret)
	id := []byte("native-device-000000001")
	for _, c := range []gateway.Client{
		from("2001:db8:1:2::1"), from("2001:db8:1:2:ffff::2"),
		{Addr: netip.MustParseAddr("127.0.0.5"), Device: id}, {Addr: netip.MustParseAddr("127.0.0.6"), Device: id},
	} {
		if _, why, ok := a.Authenticate(sb, gateway.PathTunnel, c); !ok {
			t.Fatalf("%+v refused (%v): two devices only", c, why)
		}
	}
	if _, why, ok := a.Authenticate(sb, gateway.PathTunnel, from("2001:db8:1:3::1")); ok || why != gateway.RejectDevices {
		t.Fatalf("another /64: admitted %v, reason %v", ok, why)
	}
}

// A live device's session allocates nothing (the cached-hit bar of the
// hot path, with a device limit).
func TestLiveDeviceAllocs(t *testing.T) {
	r := startRedis(t)
	st := openStore(t, r)
	a := New(st, Config{Logger: quiet})
	secret, _ := newToken(t, st, []string{"127.0.0.1:1"}, func(tk *store.Token) { tk.MaxDevices = 2 })
	sb := []byte(secret)
	for _, c := range []gateway.Client{from("2001:db8::1"), {Addr: netip.MustParseAddr("127.0.0.2"), Device: []byte("native-device-000000001")}} {
		keep, _, ok := a.Authenticate(sb, gateway.PathTCP, c)
		if !ok {
			t.Fatal("denied")
		}
		allocs := testing.AllocsPerRun(1000, func() {
			rt, _, ok := a.Authenticate(sb, gateway.PathTCP, c)
			if !ok {
				t.Fatal("denied")
			}
			rt.Account.AddUsage(1, 1)
			rt.Account.Release()
		})
		if allocs != 0 {
			t.Fatalf("%+v: %v allocations per session of a live device", c, allocs)
		}
		keep.Account.Release()
		a.settleLeases(ctxT(t), false)
	}
}

// The store down: a new device is admitted by this gateway's own count
// (up to max), and its lease is taken when the store is back.
func TestDeviceStoreDownLocalCount(t *testing.T) {
	r := startRedis(t)
	st := openStore(t, r)
	a := New(st, Config{Logger: quiet})
	register(t, st, a)
	secret, tok := newToken(t, st, []string{"127.0.0.1:1"}, func(tk *store.Token) { tk.MaxDevices = 2 })
	sb := []byte(secret)
	if _, _, ok := a.Authenticate(sb, gateway.PathTCP, from("127.0.0.9")); !ok { // caches the token
		t.Fatal("denied")
	}
	a.settleLeases(ctxT(t), false)
	st.cut.Store(true)
	if _, why, ok := a.Authenticate(sb, gateway.PathTCP, from("127.0.0.2")); !ok {
		t.Fatalf("store down, second device: refused (%v) below the local count", why)
	}
	if _, why, ok := a.Authenticate(sb, gateway.PathTCP, from("127.0.0.3")); ok || why != gateway.RejectDevices {
		t.Fatalf("store down, third device: admitted %v, %v", ok, why)
	}
	if _, _, ok := a.Authenticate(sb, gateway.PathTCP, from("127.0.0.9")); !ok {
		t.Fatal("store down: a live device refused")
	}
	st.cut.Store(false)
	a.downUntil.Store(0)
	a.settleLeases(ctxT(t), false)
	l, err := st.ListDevices(ctxT(t), tok.ID)
	if err != nil || len(l) != 2 || l[0].Key != "127.0.0.2" || l[1].Key != "127.0.0.9" {
		t.Fatalf("devices after the store came back: %+v %v", l, err)
	}
	if s := a.Stats(); s.DeniedDevices != 1 || s.LocalDevices != 1 {
		t.Fatalf("stats %+v", s)
	}
}
