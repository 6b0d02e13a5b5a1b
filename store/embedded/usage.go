package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/httvps/httvps/store"
)

// fleetBucket names the fleet's history buckets (token IDs are base64url,
// so no token has this ID).
var fleetBucket = []byte("*")

// pruneEvery is how often AddUsage drops history past its retention.
const pruneEvery = time.Hour

// clock is what history retention is measured by: the real clock (as
// Redis's expiry is), or the test's.
func (s *Store) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

// AddUsage implements store.Store. Concurrent callers share one
// transaction (bolt's Batch), so fsyncs do not serialise the gateways.
func (s *Store) AddUsage(ctx context.Context, at time.Time, deltas map[string]store.Usage) error {
	if err := s.check(ctx, "add usage"); err != nil {
		return err
	}
	if len(deltas) == 0 {
		return nil
	}
	at = at.UTC()
	now := s.clock()
	prune := now.Unix()-s.prunedAt.Load() >= int64(pruneEvery/time.Second)
	return wrap("add usage", s.db.Batch(func(tx *bolt.Tx) error {
		usage := tx.Bucket(bucketUsage)
		var fleet store.Usage
		for id, d := range deltas {
			if d.Up == 0 && d.Down == 0 {
				continue
			}
			r, err := getRecord(tx, id)
			if err == errNotFound {
				continue
			}
			if err != nil {
				return err
			}
			u, err := rollUsage(tx, r.Token, at)
			if err != nil {
				return err
			}
			u.Up += d.Up
			u.Down += d.Down
			if err := usage.Put([]byte(id), encodeUsage(u)); err != nil {
				return err
			}
			if err := addHistory(tx, []byte(id), at, now, d); err != nil {
				return err
			}
			fleet.Up += d.Up
			fleet.Down += d.Down
		}
		if fleet.Up != 0 || fleet.Down != 0 {
			if err := addHistory(tx, fleetBucket, at, now, fleet); err != nil {
				return err
			}
		}
		if prune {
			s.prunedAt.Store(now.Unix())
			return pruneHistory(tx, now)
		}
		return nil
	}))
}

// rollUsage returns t's usage record brought to the period that holds at
// (the same rule as the Redis store's roll): an ended period moves to the
// past periods and the counters start from zero; a changed period keeps
// the counts.
func rollUsage(tx *bolt.Tx, t store.Token, at time.Time) (store.Usage, error) {
	u := decodeUsage(tx.Bucket(bucketUsage).Get([]byte(t.ID)))
	start, end := store.PeriodBounds(t.QuotaPeriod, t.QuotaAnchor, t.CreatedAt, at)
	if !u.Until.IsZero() && !at.Before(u.Until) {
		if u.Up != 0 || u.Down != 0 {
			if err := archivePeriod(tx, t.ID, u); err != nil {
				return u, err
			}
		}
		return store.Usage{Since: start, Until: end}, nil
	}
	u.Since, u.Until = start, end
	return u, nil
}

func pastKey(id string, start time.Time) []byte {
	k := make([]byte, 0, len(id)+9)
	k = append(k, id...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, uint64(start.Unix()))
}

// archivePeriod records an ended period and drops the oldest beyond
// store.MaxPastPeriods.
func archivePeriod(tx *bolt.Tx, id string, u store.Usage) error {
	b := tx.Bucket(bucketPast)
	v := make([]byte, 24)
	binary.BigEndian.PutUint64(v, uint64(u.Until.Unix()))
	binary.BigEndian.PutUint64(v[8:], uint64(u.Up))
	binary.BigEndian.PutUint64(v[16:], uint64(u.Down))
	if err := b.Put(pastKey(id, u.Since), v); err != nil {
		return err
	}
	var keys [][]byte
	prefix := append([]byte(id), 0)
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys[:max(0, len(keys)-store.MaxPastPeriods)] {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// addHistory adds d to the hour and day buckets of at under name, unless
// they are already past their retention at now.
func addHistory(tx *bolt.Tx, name []byte, at, now time.Time, d store.Usage) error {
	for _, h := range []struct {
		bucket []byte
		step   time.Duration
		keep   time.Duration
	}{{bucketHour, store.StepHour, store.HourlyRetention}, {bucketDay, store.StepDay, store.DailyRetention}} {
		start := at.Truncate(h.step)
		if start.Before(now.Add(-h.keep)) {
			continue
		}
		b, err := tx.Bucket(h.bucket).CreateBucketIfNotExists(name)
		if err != nil {
			return err
		}
		k := binary.BigEndian.AppendUint64(nil, uint64(start.Unix()))
		u := decodeUsage(b.Get(k))
		u.Up += d.Up
		u.Down += d.Down
		if err := b.Put(k, encodeUsage(store.Usage{Up: u.Up, Down: u.Down})); err != nil {
			return err
		}
	}
	return nil
}

// pruneHistory drops the buckets past their retention at now: keys are
// times in order, so each token's pass stops at its first kept bucket.
func pruneHistory(tx *bolt.Tx, now time.Time) error {
	for _, h := range []struct {
		bucket []byte
		keep   time.Duration
	}{{bucketHour, store.HourlyRetention}, {bucketDay, store.DailyRetention}} {
		cut := binary.BigEndian.AppendUint64(nil, uint64(now.Add(-h.keep).Unix()))
		top := tx.Bucket(h.bucket)
		var names [][]byte
		if err := top.ForEachBucket(func(k []byte) error {
			names = append(names, bytes.Clone(k))
			return nil
		}); err != nil {
			return err
		}
		for _, n := range names {
			b := top.Bucket(n)
			var old [][]byte
			c := b.Cursor()
			for k, _ := c.First(); k != nil && bytes.Compare(k, cut) < 0; k, _ = c.Next() {
				old = append(old, bytes.Clone(k))
			}
			for _, k := range old {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// forgetUsage removes a token's usage, past periods and history.
func forgetUsage(tx *bolt.Tx, id string) error {
	if err := tx.Bucket(bucketUsage).Delete([]byte(id)); err != nil {
		return err
	}
	past := tx.Bucket(bucketPast)
	prefix := append([]byte(id), 0)
	var keys [][]byte
	c := past.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		if err := past.Delete(k); err != nil {
			return err
		}
	}
	for _, b := range [][]byte{bucketHour, bucketDay} {
		top := tx.Bucket(b)
		if top.Bucket([]byte(id)) != nil {
			if err := top.DeleteBucket([]byte(id)); err != nil {
				return err
			}
		}
	}
	return nil
}

func unix(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	return uint64(t.Unix())
}

func unixTime(v uint64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.Unix(int64(v), 0).UTC()
}

func encodeUsage(u store.Usage) []byte {
	if u.Since.IsZero() && u.Until.IsZero() {
		b := make([]byte, 16)
		binary.BigEndian.PutUint64(b, uint64(u.Up))
		binary.BigEndian.PutUint64(b[8:], uint64(u.Down))
		return b
	}
	b := make([]byte, 32)
	binary.BigEndian.PutUint64(b, uint64(u.Up))
	binary.BigEndian.PutUint64(b[8:], uint64(u.Down))
	binary.BigEndian.PutUint64(b[16:], unix(u.Since))
	binary.BigEndian.PutUint64(b[24:], unix(u.Until))
	return b
}

func decodeUsage(b []byte) store.Usage {
	if len(b) != 16 && len(b) != 32 {
		return store.Usage{}
	}
	u := store.Usage{Up: int64(binary.BigEndian.Uint64(b)), Down: int64(binary.BigEndian.Uint64(b[8:]))}
	if len(b) == 32 {
		u.Since, u.Until = unixTime(binary.BigEndian.Uint64(b[16:])), unixTime(binary.BigEndian.Uint64(b[24:]))
	}
	return u
}

// GetUsage implements store.Store.
func (s *Store) GetUsage(ctx context.Context, id string) (store.Usage, error) {
	m, err := s.GetUsages(ctx, []string{id})
	if err != nil {
		return store.Usage{}, err
	}
	u, ok := m[id]
	if !ok {
		return store.Usage{}, fmt.Errorf("embedded: get usage: %w", store.ErrNotFound)
	}
	return u, nil
}

// GetUsages implements store.Store.
func (s *Store) GetUsages(ctx context.Context, ids []string) (map[string]store.Usage, error) {
	if err := s.check(ctx, "get usage"); err != nil {
		return nil, err
	}
	out := make(map[string]store.Usage, len(ids))
	err := s.db.View(func(tx *bolt.Tx) error {
		tokens, usage := tx.Bucket(bucketTokens), tx.Bucket(bucketUsage)
		for _, id := range ids {
			if tokens.Get([]byte(id)) != nil {
				out[id] = decodeUsage(usage.Get([]byte(id)))
			}
		}
		return nil
	})
	if err != nil {
		return nil, wrap("get usage", err)
	}
	return out, nil
}

// ResetUsage implements store.Store.
func (s *Store) ResetUsage(ctx context.Context, id string, at time.Time) error {
	if err := s.check(ctx, "reset usage"); err != nil {
		return err
	}
	return wrap("reset usage", s.db.Update(func(tx *bolt.Tx) error {
		r, err := getRecord(tx, id)
		if err != nil {
			return err
		}
		u, err := rollUsage(tx, r.Token, at.UTC())
		if err != nil {
			return err
		}
		u.Up, u.Down = 0, 0
		return tx.Bucket(bucketUsage).Put([]byte(id), encodeUsage(u))
	}))
}

// PastPeriods implements store.Store.
func (s *Store) PastPeriods(ctx context.Context, id string) ([]store.PeriodUsage, error) {
	if err := s.check(ctx, "past periods"); err != nil {
		return nil, err
	}
	var out []store.PeriodUsage
	err := s.db.View(func(tx *bolt.Tx) error {
		if _, err := getRecord(tx, id); err != nil {
			return err
		}
		prefix := append([]byte(id), 0)
		c := tx.Bucket(bucketPast).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if len(v) != 24 || len(k) != len(prefix)+8 {
				continue
			}
			out = append(out, store.PeriodUsage{
				Start: unixTime(binary.BigEndian.Uint64(k[len(prefix):])),
				End:   unixTime(binary.BigEndian.Uint64(v)),
				Up:    int64(binary.BigEndian.Uint64(v[8:])),
				Down:  int64(binary.BigEndian.Uint64(v[16:])),
			})
		}
		return nil
	})
	if err != nil {
		return nil, wrap("past periods", err)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i] // newest first
	}
	if out == nil {
		out = []store.PeriodUsage{}
	}
	return out, nil
}

// UsageHistory implements store.Store.
func (s *Store) UsageHistory(ctx context.Context, id string, from, to time.Time, step time.Duration) ([]store.Bucket, error) {
	if err := s.check(ctx, "usage history"); err != nil {
		return nil, err
	}
	from, _, n, err := store.HistoryRange(from, to, step)
	if err != nil {
		return nil, fmt.Errorf("embedded: usage history: %w", err)
	}
	bucket, keep := bucketHour, store.HourlyRetention
	if step == store.StepDay {
		bucket, keep = bucketDay, store.DailyRetention
	}
	oldest := s.clock().Add(-keep)
	out := make([]store.Bucket, n)
	err = s.db.View(func(tx *bolt.Tx) error {
		name := fleetBucket
		if id != "" {
			if _, err := getRecord(tx, id); err != nil {
				return err
			}
			name = []byte(id)
		}
		b := tx.Bucket(bucket).Bucket(name)
		for i := range out {
			out[i].Start = from.Add(time.Duration(i) * step)
			if b == nil || out[i].Start.Before(oldest) {
				continue // not yet pruned, but past retention: as Redis answers
			}
			u := decodeUsage(b.Get(binary.BigEndian.AppendUint64(nil, uint64(out[i].Start.Unix()))))
			out[i].Up, out[i].Down = u.Up, u.Down
		}
		return nil
	})
	if err != nil {
		return nil, wrap("usage history", err)
	}
	return out, nil
}
