package clientdoc

import (
	"context"
	"errors"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/httvps/httvps/store"
	"github.com/httvps/httvps/store/embedded"
)

func openStore(t *testing.T) *embedded.Store {
	t.Helper()
	st, err := embedded.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// Every state a token can be in gives its own Outline document, and the
// states that grant nothing give no client config; an unknown secret is
// told apart from them only by found/Unknown.
func TestDocumentsByState(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	src := &Source{Store: st, Now: func() time.Time { return now }}
	add := func(secret string, mod func(*store.Token)) store.Token {
		tok := store.Token{ID: store.NewID(), Hash: store.HashToken(secret), Cipher: "aes-128-gcm", SSPassword: "pw-" + secret}
		if mod != nil {
			mod(&tok)
		}
		if err := st.CreateToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
		return tok
	}
	add("live", nil)
	add("revoked", func(t *store.Token) { t.Revoked, t.RevokedAt = true, now })
	add("expired", func(t *store.Token) { t.ExpiresAt = now.Add(-time.Second) })
	q := add("quota", func(t *store.Token) { t.QuotaBytes = 10 })
	if err := st.AddUsage(ctx, time.Now(), map[string]store.Usage{q.ID: {Up: 10}}); err != nil {
		t.Fatal(err)
	}
	base := &url.URL{Scheme: "https", Host: "gw.example.com:8443"}

	// No gateway yet: the live key's document says so.
	doc, found, err := src.Outline(ctx, "live")
	if err != nil || !found || !strings.Contains(string(doc), "No gateway is online") {
		t.Fatalf("no gateway: %q %v %v", doc, found, err)
	}
	if err := st.Heartbeat(ctx, store.Gateway{ID: "gw", PublicURL: "https://gw.example.com:8443"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"live":    "url: wss://gw.example.com:8443/live/udp",
		"revoked": "This access key has been revoked.",
		"expired": "This access key has expired.",
		"quota":   "This access key has used its data limit.",
	}
	for secret, w := range want {
		doc, found, err := src.Outline(ctx, secret)
		if err != nil || !found || !strings.Contains(string(doc), w) {
			t.Errorf("%s: %q found=%v err=%v, want %q in it", secret, doc, found, err, w)
		}
	}
	if doc, found, err := src.Outline(ctx, "nobody"); err != nil || found || doc != nil {
		t.Errorf("unknown secret: %q %v %v", doc, found, err)
	}

	states := map[string]State{"live": Active, "revoked": Revoked, "expired": Expired, "quota": OverQuota, "nobody": Unknown}
	for secret, w := range states {
		cc, got, err := src.Config(ctx, secret, base, nil)
		if err != nil || got != w {
			t.Errorf("config %s: state %d err %v, want %d", secret, got, err, w)
		}
		if w == Active && (cc.Secret != "pw-live" || cc.AccessKeys.SSConf != "ssconf://gw.example.com:8443/v1/outline/live") {
			t.Errorf("config %+v", cc)
		}
	}

	// A closed store is a StoreError naming the token, never "unknown".
	st.Close()
	if _, _, err := src.Outline(ctx, "live"); !errors.As(err, new(*StoreError)) || !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("closed store: %v", err)
	}
}
