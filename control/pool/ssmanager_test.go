package pool

import (
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/httvps/httvps/store"
)

func TestSSManagerAvoidsPortsInUse(t *testing.T) {
	ssm := startSSManager(t)
	// Occupy the first port of a two-port range with another program.
	lo, hi := portRange(t, 2)
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(lo)))
	if err != nil {
		t.Skipf("cannot occupy %d: %v", lo, err)
	}
	defer ln.Close()
	b := newSSManager("127.0.0.1", store.SSManagerConfig{ManagerAddr: ssm.Addr, PortMin: lo, PortMax: hi}, Config{}.withDefaults())
	ctx := ctxT(t)
	for range 2 { // whatever the random start, the busy port is skipped
		up, id, err := b.CreateKey(ctx, "k", testMethod, newPassword())
		if err != nil {
			t.Fatal(err)
		}
		if id != strconv.Itoa(hi) || up != net.JoinHostPort("127.0.0.1", id) {
			t.Fatalf("CreateKey = %q, %q; want port %d", up, id, hi)
		}
		if err := b.DeleteKey(ctx, id); err != nil {
			t.Fatal(err)
		}
		if err := waitClosed(up, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := b.CreateKey(ctx, "k", testMethod, newPassword()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.CreateKey(ctx, "k2", testMethod, newPassword()); !errors.Is(err, ErrPortsExhausted) {
		t.Fatalf("CreateKey on a full range: %v, want ErrPortsExhausted", err)
	}
}

func TestSSManagerPingStats(t *testing.T) {
	ssm := startSSManager(t)
	lo, hi := portRange(t, 10)
	b := newSSManager("127.0.0.1", store.SSManagerConfig{ManagerAddr: ssm.Addr, PortMin: lo, PortMax: hi}, Config{}.withDefaults())
	ctx := ctxT(t)
	var ids []string
	for range 3 {
		_, id, err := b.CreateKey(ctx, "k", "aes-128-gcm", newPassword())
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	st, err := b.stat(ctx)
	if err != nil || len(st) != 3 {
		t.Fatalf("stat = %v, %v", st, err)
	}
	for _, id := range ids {
		if _, ok := st[id]; !ok {
			t.Fatalf("port %s missing from stat %v", id, st)
		}
	}
	keys, load, err := b.Health(ctx)
	if err != nil || keys != 3 || load != 3 {
		t.Fatalf("Health = %d, %v, %v", keys, load, err)
	}
	if err := b.DeleteKey(ctx, "not-a-port"); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("DeleteKey(not-a-port): %v", err)
	}

	// A stopped ss-manager is down at once (ICMP port unreachable on
	// loopback), not after a timeout.
	ssm.Stop(t)
	start := time.Now()
	if _, _, err := b.Health(ctx); err == nil {
		t.Fatal("Health of a stopped ss-manager succeeded")
	}
	if d := time.Since(start); d > DefaultDialTimeout {
		t.Fatalf("Health took %v", d)
	}
}
