package redisstore

import (
	"context"
	"testing"
	"time"

	"github.com/httvps/httvps/store"
)

// A token stored before the creation day was a field of its own is
// anchored on its creation time all the same.
func TestPeriodAnchorWithoutCreationDay(t *testing.T) {
	srv := startRedis(t, 0)
	s := open(t, srv.url(), WithPrefix("t"+store.NewID()+":"))
	ctx := context.Background()
	created := time.Date(2031, 1, 31, 15, 0, 0, 0, time.UTC)
	tok := store.Token{ID: store.NewID(), Hash: [32]byte{5}, Cipher: "chacha20-ietf-poly1305", SSPassword: "pw",
		CreatedAt: created, QuotaPeriod: store.PeriodMonth, QuotaAnchor: store.AnchorCreated}
	if err := s.CreateToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if err := s.rdb.HDel(ctx, s.key("tok:", tok.ID), "cday").Err(); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2031, 3, 5, 0, 0, 0, 0, time.UTC)
	if err := s.AddUsage(ctx, at, map[string]store.Usage{tok.ID: {Up: 1}}); err != nil {
		t.Fatal(err)
	}
	u, err := s.GetUsage(ctx, tok.ID)
	start, end := store.PeriodBounds(store.PeriodMonth, store.AnchorCreated, created, at)
	if err != nil || !u.Since.Equal(start) || !u.Until.Equal(end) {
		t.Errorf("period [%s, %s) %v, want [%s, %s)", u.Since, u.Until, err, start, end)
	}
}
