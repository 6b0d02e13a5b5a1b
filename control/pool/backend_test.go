package pool

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/httvps/httvps/control/pool/outlinefake"
	"github.com/httvps/httvps/internal/testpeer"
	"github.com/httvps/httvps/store"
)

// backendCase is one Backend under the conformance suite, with what it can
// do: static members have one fixed secret and nothing to delete.
type backendCase struct {
	name string
	b    Backend
	// fixed is the only secret the backend accepts ("" password: any).
	fixedMethod, fixedPassword string
	// perKeyPort: the key's port closes when it is deleted.
	perKeyPort bool
	// countsKeys: Health reports the key count.
	countsKeys bool
	// transferOf returns the id Transfer reports for a key, after making
	// the backend count something for it (nil: no counters).
	setTransfer func(backendKeyID string) (id string, atLeast int64)
}

func backendCases(t *testing.T) []backendCase {
	cfg := Config{}.withDefaults()

	fake := outlinefake.Start(t, outlinefake.Options{SSServer: true})
	ob, err := NewBackend(store.Member{Host: "127.0.0.1", Backend: store.BackendOutlineAPI,
		Outline: &store.OutlineConfig{APIURL: fake.APIURL, CertSHA256: fake.CertSHA256}}, cfg)
	if err != nil {
		t.Fatal(err)
	}

	ssm := startSSManager(t)
	lo, hi := portRange(t, 20)
	sb, err := NewBackend(store.Member{Host: "127.0.0.1", Backend: store.BackendSSManager,
		SSManager: &store.SSManagerConfig{ManagerAddr: ssm.Addr, PortMin: lo, PortMax: hi}}, cfg)
	if err != nil {
		t.Fatal(err)
	}

	ss := testpeer.SSServer(t, testpeer.DefaultPassword, testMethod)
	_, port := splitPort(t, ss)
	stb, err := NewBackend(store.Member{Host: "127.0.0.1", Backend: store.BackendStatic,
		Static: &store.StaticConfig{Port: port, Cipher: testMethod, Password: testpeer.DefaultPassword}}, cfg)
	if err != nil {
		t.Fatal(err)
	}

	return []backendCase{
		{name: "outline-api", b: ob, perKeyPort: true, countsKeys: true,
			setTransfer: func(id string) (string, int64) { fake.SetTransfer(id, 12345); return id, 12345 }},
		{name: "ss-manager", b: sb, perKeyPort: true, countsKeys: true,
			setTransfer: func(id string) (string, int64) { return id, 1 }}, // the fetch itself counts
		{name: "static", b: stb, fixedMethod: testMethod, fixedPassword: testpeer.DefaultPassword},
	}
}

// TestBackendConformance runs every backend through the same life cycle:
// create a key, carry real Shadowsocks traffic with it, see it in Health and
// Transfer, delete it (twice), and see its port close where ports are per key.
func TestBackendConformance(t *testing.T) {
	origin := testpeer.StartOrigin(t)
	for _, bc := range backendCases(t) {
		t.Run(bc.name, func(t *testing.T) {
			ctx := ctxT(t)
			method, password := testMethod, newPassword()
			if bc.fixedPassword != "" {
				method, password = bc.fixedMethod, bc.fixedPassword
			}
			id := store.NewID()
			upstream, keyID, err := bc.b.CreateKey(ctx, id, method, password)
			if err != nil {
				t.Fatalf("CreateKey: %v", err)
			}
			if keyID == "" || upstream == "" {
				t.Fatalf("CreateKey = %q, %q", upstream, keyID)
			}
			if err := fetchThrough(upstream, method, password, origin, 256<<10+7, 3); err != nil {
				t.Fatalf("traffic: %v", err)
			}

			keys, _, err := bc.b.Health(ctx)
			if err != nil {
				t.Fatalf("Health: %v", err)
			}
			if bc.countsKeys && keys != 1 {
				t.Errorf("Health keys = %d, want 1", keys)
			}

			if bc.setTransfer != nil {
				tid, atLeast := bc.setTransfer(keyID)
				// ss-server reports its counters to ss-manager every few
				// seconds; wait for the fetch to show up.
				waitFor(t, 15*time.Second, "transfer counters", func() bool {
					tr, err := bc.b.Transfer(ctx)
					if err != nil {
						t.Fatalf("Transfer: %v", err)
					}
					n, ok := tr[tid]
					return ok && n >= atLeast
				})
			} else if _, err := bc.b.Transfer(ctx); err != nil {
				t.Fatalf("Transfer: %v", err)
			}

			if err := bc.b.DeleteKey(ctx, keyID); err != nil {
				t.Fatalf("DeleteKey: %v", err)
			}
			if err := bc.b.DeleteKey(ctx, keyID); err != nil {
				t.Fatalf("DeleteKey again: %v", err)
			}
			if bc.perKeyPort {
				if err := waitClosed(upstream, 5*time.Second); err != nil {
					t.Fatal(err)
				}
				if keys, _, err := bc.b.Health(ctx); err != nil || keys != 0 {
					t.Fatalf("Health after delete = %d, %v; want 0 keys", keys, err)
				}
			}

			if bc.perKeyPort {
				// A cancelled context is honoured, not waited out.
				cctx, cancel := context.WithCancel(ctx)
				cancel()
				if _, _, err := bc.b.CreateKey(cctx, store.NewID(), method, password); !errors.Is(err, context.Canceled) {
					t.Fatalf("CreateKey with a cancelled context: %v, want context.Canceled", err)
				}
			}
		})
	}
}
