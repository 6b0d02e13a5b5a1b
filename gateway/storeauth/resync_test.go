package storeauth

import (
	"testing"

	"github.com/httvps/httvps/gateway"
)

// TestResyncKeepsStaleTokens: after a resync (the event subscription came
// back), a cached token asks the store again, and is still admitted as a
// stale entry when the store fails right then; an unknown hash is not
// remembered as unknown. Before, resync dropped the cache and such a token
// was refused until the store answered again.
func TestResyncKeepsStaleTokens(t *testing.T) {
	r := startRedis(t)
	st := openStore(t, r)
	a := New(st, Config{Logger: quiet})
	secret, _ := newToken(t, st, []string{"127.0.0.1:1"}, nil)
	route, _, ok := a.Authenticate([]byte(secret), gateway.PathTCP, gateway.Client{})
	if !ok {
		t.Fatal("token denied")
	}
	route.Account.Release()
	a.resync()
	lookups := st.n("GetTokenByHash")
	r.Kill()
	route, why, ok := a.Authenticate([]byte(secret), gateway.PathTCP, gateway.Client{})
	if !ok {
		t.Fatalf("cached token after a resync with the store down: refused (%v)", why)
	}
	route.Account.Release()
	if st.n("GetTokenByHash") != lookups+1 {
		t.Errorf("the expired entry did not ask the store first (%d lookups, had %d)", st.n("GetTokenByHash"), lookups)
	}
	if s := a.Stats(); s.StaleHits != 1 {
		t.Errorf("stale hits %d, want 1", s.StaleHits)
	}
}
