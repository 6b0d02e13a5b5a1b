package api

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/httvps/httvps/control/api/wire"
	"github.com/httvps/httvps/store"
)

// max_devices is taken on create and shown; GET /v1/tokens/{id} lists the
// live devices the gateways lease, with their gateways and sessions.
func TestTokenDevices(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		h := newHarness(t, st)
		c := h.createToken(`{"label":"bob","max_devices":2}`)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stored, err := st.GetToken(ctx, c.ID)
		if err != nil || stored.MaxDevices != 2 {
			t.Fatalf("stored max devices %d (%v), want 2", stored.MaxDevices, err)
		}
		v := decode[wire.TokenView](t, h.admin("GET", "/v1/tokens/"+c.ID, ""))
		if v.MaxDevices != 2 || len(v.Devices) != 0 {
			t.Fatalf("fresh token: max_devices %d, devices %+v", v.MaxDevices, v.Devices)
		}
		h.heartbeat("gw-a", "wss://a.example:443", 3, time.Minute)
		h.heartbeat("gw-b", "wss://b.example:443", 1, time.Minute)
		before := time.Now().Add(-time.Second)
		for _, l := range []struct {
			dev, gw  string
			sessions int
		}{{"127.0.0.2", "gw-a", 3}, {"127.0.0.2", "gw-b", 1}, {"Native_device-0123456789", "gw-b", 1}} {
			if ok, err := st.AcquireDevice(ctx, c.ID, l.dev, l.gw, l.sessions, 2); !ok || err != nil {
				t.Fatalf("AcquireDevice %+v: %v %v", l, ok, err)
			}
		}
		if err := st.ReleaseDevice(ctx, c.ID, "Native_device-0123456789", "gw-b", time.Minute); err != nil {
			t.Fatal(err)
		}
		r := h.admin("GET", "/v1/tokens/"+c.ID, "")
		if r.StatusCode != http.StatusOK {
			t.Fatalf("GET: %d %s", r.StatusCode, r.body)
		}
		v = decode[wire.TokenView](t, r)
		if len(v.Devices) != 2 {
			t.Fatalf("devices %+v", v.Devices)
		}
		addr, native := v.Devices[0], v.Devices[1]
		if addr.Device != "127.0.0.2" || addr.Kind != wire.DeviceAddress || addr.Sessions != 4 || len(addr.Gateways) != 2 ||
			addr.Gateways[0].GatewayID != "gw-a" || addr.Gateways[0].Sessions != 3 || addr.Gateways[0].GraceUntil != nil ||
			addr.FirstSeen.Before(before) || addr.LastSeen.Before(addr.FirstSeen) {
			t.Fatalf("address device %+v", addr)
		}
		if native.Device != "Native_device-0123456789" || native.Kind != wire.DeviceID || native.Sessions != 0 ||
			len(native.Gateways) != 1 || native.Gateways[0].GraceUntil == nil {
			t.Fatalf("native device in its grace %+v", native)
		}
		// The list shows the limit, not the devices.
		l := decode[wire.TokenList](t, h.admin("GET", "/v1/tokens", ""))
		if len(l.Tokens) != 1 || l.Tokens[0].MaxDevices != 2 || l.Tokens[0].Devices != nil {
			t.Fatalf("list %+v", l.Tokens)
		}
	})
}
