package redisstore

import (
	"context"
	"testing"
	"time"

	"github.com/httvps/httvps/internal/testpeer"
	"github.com/httvps/httvps/store"
)

// A token stored before the creation day was a field of its own is
// anchored on its creation time all the same.
func TestPeriodAnchorWithoutCreationDay(t *testing.T) {
	srv := testpeer.StartRedis(t, testpeer.RedisSpec{})
	s := open(t, srv.URL(), WithPrefix("t"+store.NewID()+":"))
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

// History keys carry their expiry from the script that writes them: a
// day's hours live 90 days past the day, a month's days two years past
// the month, the fleet's alike; a bucket already past its retention is
// never kept.
func TestHistoryKeysExpire(t *testing.T) {
	srv := testpeer.StartRedis(t, testpeer.RedisSpec{})
	s := open(t, srv.URL(), WithPrefix("t"+store.NewID()+":"))
	ctx := context.Background()
	tok := store.Token{ID: store.NewID(), Hash: [32]byte{6}, Cipher: "chacha20-ietf-poly1305", SSPassword: "pw"}
	if err := s.CreateToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	if err := s.AddUsage(ctx, now, map[string]store.Usage{tok.ID: {Up: 1}}); err != nil {
		t.Fatal(err)
	}
	hb := histBuckets(now)
	day := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	month := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		key string
		end time.Time
	}{
		{s.key("uh:", tok.ID, ":", hb.day), day.AddDate(0, 0, 1).Add(store.HourlyRetention)},
		{s.key("fh:", hb.day), day.AddDate(0, 0, 1).Add(store.HourlyRetention)},
		{s.key("ud:", tok.ID, ":", hb.month), month.AddDate(0, 1, 0).Add(store.DailyRetention)},
		{s.key("fd:", hb.month), month.AddDate(0, 1, 0).Add(store.DailyRetention)},
	} {
		at, err := s.rdb.ExpireTime(ctx, c.key).Result()
		if err != nil || at != time.Duration(c.end.Unix())*time.Second {
			t.Errorf("%s expires at %v (%v), want %v", c.key, at, err, c.end)
		}
	}
	old := now.Add(-store.HourlyRetention - 72*time.Hour)
	if err := s.AddUsage(ctx, old, map[string]store.Usage{tok.ID: {Up: 1}}); err != nil {
		t.Fatal(err)
	}
	ob := histBuckets(old)
	if n, _ := s.rdb.Exists(ctx, s.key("uh:", tok.ID, ":", ob.day), s.key("fh:", ob.day)).Result(); n != 0 {
		t.Errorf("%d hour hashes past retention kept", n)
	}
	if n, _ := s.rdb.Exists(ctx, s.key("ud:", tok.ID, ":", ob.month)).Result(); n != 1 {
		t.Errorf("the day hash of an old hour is gone")
	}
}
