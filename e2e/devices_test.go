package e2e

import (
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/httvps/httvps/gateway/storeauth"
	"github.com/httvps/httvps/internal/testpeer"
)

// devGrace is the gateways' device grace in these tests: short, so
// "after the grace" is a bounded wait.
const devGrace = 1500 * time.Millisecond

// liveEcho is a session held open after one hash-checked echo.
type liveEcho struct {
	sc *testpeer.SSConn
}

// openEchoes opens n sessions from src on g in parallel and checks an
// echo of size bytes on each (hash of what came back = what was sent).
func openEchoes(t *testing.T, f *ctlFleet, g *ctlGateway, tok ctlToken, src string, n int, size int64) []liveEcho {
	t.Helper()
	out := make([]liveEcho, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			sc, err := g.ssFrom(src, tok, f.echo)
			if err != nil {
				errs <- fmt.Errorf("session %d from %s on %s: %w", i, src, g.name, err)
				return
			}
			out[i].sc = sc
			if err := ctlEcho(sc, size, uint64(i)+1); err != nil {
				errs <- fmt.Errorf("session %d from %s on %s: %w", i, src, g.name, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeEchoes(out) })
	return out
}

func closeEchoes(l []liveEcho) {
	for _, e := range l {
		if e.sc != nil {
			e.sc.Close()
		}
	}
}

// devicesOf is the token's live devices as the API lists them: device →
// sessions.
func devicesOf(p *ctlPlane, id string) map[string]int {
	m := map[string]int{}
	for _, d := range p.token(id).Devices {
		m[d.Device] = d.Sessions
	}
	return m
}

// TestDevicesFleetWide: max_devices 2 with two gateways on one Redis. A
// browser-like client (20 parallel connections from one address) is one
// device; a second address is the second; a third gets the decoy on both
// gateways while the two are live, and gets in once they left and the
// grace passed. A gateway that dies (no heartbeat, no deregistration)
// stops holding its devices when its registration runs out.
func TestDevicesFleetWide(t *testing.T) {
	f := startCtlFleetWith(t, 2, func(c *storeauth.Config) { c.DeviceGrace = devGrace })
	f.staticPair(t)
	tok := f.ctl.issue(map[string]any{"label": "devices", "max_devices": 2})
	if tok.MaxDevices != 2 {
		t.Fatalf("issued max_devices %d", tok.MaxDevices)
	}

	first := openEchoes(t, f, f.a, tok, "127.0.0.2", 20, 64<<10)
	second := openEchoes(t, f, f.b, tok, "127.0.0.3", 1, 64<<10)
	for _, g := range []*ctlGateway{f.a, f.b} {
		if err := g.decoyFrom("127.0.0.4", tok.Token); err != nil {
			t.Fatalf("third device while two are live: %v", err)
		}
	}
	// The first device on the other gateway is still the first device.
	again := openEchoes(t, f, f.b, tok, "127.0.0.2", 2, 16<<10)
	ctlEventually(t, 10*time.Second, "the API to list both devices with their sessions", func() bool {
		d := devicesOf(f.ctl, tok.ID)
		return len(d) == 2 && d["127.0.0.2"] == 22 && d["127.0.0.3"] == 1
	})

	// Both leave; the third address is refused until the grace passed.
	closeEchoes(first)
	closeEchoes(second)
	closeEchoes(again)
	left := time.Now()
	var third []liveEcho
	ctlEventually(t, 15*time.Second, "the third device admitted after the grace", func() bool {
		sc, err := f.a.ssFrom("127.0.0.4", tok, f.echo)
		if err != nil {
			return false
		}
		third = []liveEcho{{sc: sc}}
		return true
	})
	t.Cleanup(func() { closeEchoes(third) })
	if waited := time.Since(left); waited < devGrace {
		t.Fatalf("third device admitted %v after the others left, within the %v grace", waited, devGrace)
	}
	if err := ctlEcho(third[0].sc, 64<<10, 99); err != nil {
		t.Fatal(err)
	}

	// B takes a device, then dies holding it: the limit holds while
	// its registration lives, and frees the device when it runs out.
	// B's own releases of the first devices may have started their grace
	// later than A saw (a busy machine): wait for B to admit the device.
	var onB []liveEcho
	ctlEventually(t, 15*time.Second, "B to admit a second device", func() bool {
		sc, err := f.b.ssFrom("127.0.0.5", tok, f.echo)
		if err != nil {
			return false
		}
		onB = []liveEcho{{sc: sc}}
		return true
	})
	if err := ctlEcho(onB[0].sc, 16<<10, 1); err != nil {
		t.Fatal(err)
	}
	f.b.kill()
	if err := f.a.decoyFrom("127.0.0.6", tok.Token); err != nil {
		t.Fatalf("a new device while the dead gateway's lease may still count: %v", err)
	}
	died := time.Now()
	ctlEventually(t, 15*time.Second, "the dead gateway's device to stop counting", func() bool {
		sc, err := f.a.ssFrom("127.0.0.6", tok, f.echo)
		if err != nil {
			return false
		}
		defer sc.Close()
		return ctlEcho(sc, 16<<10, 7) == nil
	})
	t.Logf("the dead gateway's device stopped counting %v after it died", time.Since(died))
	closeEchoes(onB)
}

// TestDevicesNativeClient: the native client's tunnels carry its device
// id, so two `httvps connect` of one installation (one data directory,
// two tunnels each) are one device, while another installation is a
// second device and a third is refused; an Outline client from the same
// address is a device of its own (it sends no id).
func TestDevicesNativeClient(t *testing.T) {
	needNativePeers(t)
	f := startCtlFleetWith(t, 1, func(c *storeauth.Config) { c.DeviceGrace = devGrace })
	f.staticPair(t)
	tok := f.ctl.issue(map[string]any{"label": "native-devices", "max_devices": 2})
	key := nativeKey{token: tok.Token, cipher: tok.Cipher, secret: tok.Secret, gateways: []string{f.b.addr}}
	install := t.TempDir()
	c1 := startNativeConnect(t, key, "-data-dir", install)
	c2 := startNativeConnect(t, key, "-data-dir", install)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	echoVia := func(c *connectProc, n int) error {
		conn, err := testpeer.SOCKS5Dial(ctx, c.listen, f.echo)
		if err != nil {
			return err
		}
		defer conn.Close()
		msg := randomBytes(n)
		conn.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := conn.Write(msg); err != nil {
			return err
		}
		got := make([]byte, n)
		if _, err := io.ReadFull(conn, got); err != nil {
			return err
		}
		if sum(got) != sum(msg) {
			return fmt.Errorf("echo through %s: hash mismatch", c.listen)
		}
		return nil
	}
	for _, c := range []*connectProc{c1, c2} {
		for i := range 4 {
			if err := echoVia(c, 10000+i); err != nil {
				t.Fatalf("installation 1: %v\n%s", err, c.Output())
			}
		}
	}
	ctlEventually(t, 10*time.Second, "one device with the two clients' tunnels", func() bool {
		d := f.ctl.token(tok.ID).Devices
		return len(d) == 1 && d[0].Kind == "device_id" && d[0].Sessions >= 2
	})
	// An Outline client from the same address: the address is a device.
	outline := openEchoes(t, f, f.b, tok, "127.0.0.1", 1, 16<<10)
	// A second installation is a third device: refused (its tunnels get
	// the decoy, so no stream gets through).
	c3 := startNativeConnect(t, key, "-data-dir", t.TempDir())
	short, cancelShort := context.WithTimeout(ctx, 3*time.Second)
	conn, err := testpeer.SOCKS5Dial(short, c3.listen, f.echo)
	cancelShort()
	if err == nil {
		conn.Close()
		t.Fatalf("a third device got a stream through:\n%s", c3.Output())
	}
	d := devicesOf(f.ctl, tok.ID)
	if len(d) != 2 || d["127.0.0.1"] != 1 {
		t.Fatalf("devices %v, want the installation and 127.0.0.1", d)
	}
	closeEchoes(outline)
}
