package embedded

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/httvps/httvps/store"
)

// record is a token as stored.
type record struct {
	store.Token
	Cursor string
}

// orderKey is a token's key in tok-order and its list cursor: 16 hex digits
// of the seconds (sign bit flipped so negative times sort first), 8 of the
// nanoseconds, ':' and the ID.
func orderKey(created time.Time, id string) string {
	return fmt.Sprintf("%016x%08x:%s", uint64(created.Unix())^(1<<63), created.Nanosecond(), id)
}

func validCursor(c string) bool {
	if len(c) < 26 || c[24] != ':' {
		return false
	}
	_, err := hex.DecodeString(c[:24])
	return err == nil
}

func getRecord(tx *bolt.Tx, id string) (record, error) {
	v := tx.Bucket(bucketTokens).Get([]byte(id))
	if v == nil {
		return record{}, errNotFound
	}
	var r record
	if err := json.Unmarshal(v, &r); err != nil {
		return record{}, fmt.Errorf("corrupt token record: %w", err)
	}
	return r, nil
}

func putRecord(tx *bolt.Tx, r record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketTokens).Put([]byte(r.ID), b)
}

// CreateToken implements store.Store.
func (s *Store) CreateToken(ctx context.Context, t store.Token) error {
	if err := s.check(ctx, "create token"); err != nil {
		return err
	}
	if t.ID == "" || t.Hash == ([32]byte{}) || !store.ValidPeriod(t.QuotaPeriod, t.QuotaAnchor) {
		return fmt.Errorf("embedded: create token: %w", store.ErrInvalid)
	}
	if t.CreatedAt.IsZero() {
		t.CreatedAt = time.Now()
	}
	t.CreatedAt = t.CreatedAt.UTC()
	t.Assignments = append([]store.Assignment(nil), t.Assignments...)
	r := record{Token: t, Cursor: orderKey(t.CreatedAt, t.ID)}
	return wrap("create token", s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketTokens).Get([]byte(t.ID)) != nil {
			return fmt.Errorf("ID %w", errExists)
		}
		if tx.Bucket(bucketTokHash).Get(t.Hash[:]) != nil {
			return fmt.Errorf("hash %w", errExists)
		}
		if err := putRecord(tx, r); err != nil {
			return err
		}
		if err := tx.Bucket(bucketTokHash).Put(t.Hash[:], []byte(t.ID)); err != nil {
			return err
		}
		if err := forgetUsage(tx, t.ID); err != nil {
			return err
		}
		return tx.Bucket(bucketOrder).Put([]byte(r.Cursor), []byte(t.ID))
	}))
}

// GetToken implements store.Store.
func (s *Store) GetToken(ctx context.Context, id string) (store.Token, error) {
	if err := s.check(ctx, "get token"); err != nil {
		return store.Token{}, err
	}
	var r record
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		r, err = getRecord(tx, id)
		return err
	})
	return r.Token, wrap("get token", err)
}

// GetTokenByHash implements store.Store.
func (s *Store) GetTokenByHash(ctx context.Context, hash [32]byte) (store.Token, error) {
	if err := s.check(ctx, "get token by hash"); err != nil {
		return store.Token{}, err
	}
	var r record
	err := s.db.View(func(tx *bolt.Tx) error {
		id := tx.Bucket(bucketTokHash).Get(hash[:])
		if id == nil {
			return errNotFound
		}
		var err error
		r, err = getRecord(tx, string(id))
		return err
	})
	return r.Token, wrap("get token by hash", err)
}

// ListTokens implements store.Store.
func (s *Store) ListTokens(ctx context.Context, cursor string, limit int) ([]store.Token, string, error) {
	if err := s.check(ctx, "list tokens"); err != nil {
		return nil, "", err
	}
	if cursor != "" && !validCursor(cursor) {
		return nil, "", fmt.Errorf("embedded: list tokens: cursor: %w", store.ErrInvalid)
	}
	if limit <= 0 {
		limit = store.DefaultPageSize
	}
	limit = min(limit, store.MaxPageSize)
	var out []store.Token
	next := ""
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketOrder).Cursor()
		k, v := c.First()
		if cursor != "" {
			k, v = c.Seek([]byte(cursor))
			if k != nil && bytes.Equal(k, []byte(cursor)) {
				k, v = c.Next()
			}
		}
		last := ""
		for ; k != nil; k, v = c.Next() {
			if len(out) == limit {
				next = last
				return nil
			}
			r, err := getRecord(tx, string(v))
			if err != nil {
				return err
			}
			out = append(out, r.Token)
			last = string(k)
		}
		return nil
	})
	if err != nil {
		return nil, "", wrap("list tokens", err)
	}
	return out, next, nil
}

// modify applies fn to the stored token with that id.
func (s *Store) modify(ctx context.Context, op, id string, fn func(*store.Token)) (store.Token, error) {
	if err := s.check(ctx, op); err != nil {
		return store.Token{}, err
	}
	var r record
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		if r, err = getRecord(tx, id); err != nil {
			return err
		}
		fn(&r.Token)
		return putRecord(tx, r)
	})
	return r.Token, wrap(op, err)
}

// RevokeToken implements store.Store.
func (s *Store) RevokeToken(ctx context.Context, id string) (store.Token, error) {
	now := time.Now().UTC()
	return s.modify(ctx, "revoke token", id, func(t *store.Token) {
		if !t.Revoked {
			t.Revoked, t.RevokedAt = true, now
		}
	})
}

// UpdateAssignments implements store.Store.
func (s *Store) UpdateAssignments(ctx context.Context, id string, a []store.Assignment) error {
	a = append([]store.Assignment(nil), a...)
	_, err := s.modify(ctx, "update assignments", id, func(t *store.Token) { t.Assignments = a })
	return err
}

// UpdateLimits implements store.Store.
func (s *Store) UpdateLimits(ctx context.Context, id string, l store.Limits, which store.LimitSet) error {
	if which&store.LimitPeriod != 0 && !store.ValidPeriod(l.QuotaPeriod, l.QuotaAnchor) {
		return fmt.Errorf("embedded: update limits: period: %w", store.ErrInvalid)
	}
	_, err := s.modify(ctx, "update limits", id, func(t *store.Token) {
		if which&store.LimitExpiry != 0 {
			t.ExpiresAt = l.ExpiresAt
		}
		if which&store.LimitQuota != 0 {
			t.QuotaBytes = l.QuotaBytes
		}
		if which&store.LimitPeriod != 0 {
			t.QuotaPeriod, t.QuotaAnchor = l.QuotaPeriod, l.QuotaAnchor
		}
		if which&store.LimitSessions != 0 {
			t.MaxSessions = l.MaxSessions
		}
		if which&store.LimitDevices != 0 {
			t.MaxDevices = l.MaxDevices
		}
	})
	return err
}

// UpdateLabel implements store.Store.
func (s *Store) UpdateLabel(ctx context.Context, id, label string) error {
	_, err := s.modify(ctx, "update label", id, func(t *store.Token) { t.Label = label })
	return err
}

// RotateToken implements store.Store: one transaction moves the hash
// index entry and the record's hash.
func (s *Store) RotateToken(ctx context.Context, id string, hash [32]byte) (store.Token, error) {
	if err := s.check(ctx, "rotate token"); err != nil {
		return store.Token{}, err
	}
	if hash == ([32]byte{}) {
		return store.Token{}, fmt.Errorf("embedded: rotate token: %w", store.ErrInvalid)
	}
	var old store.Token
	err := s.db.Update(func(tx *bolt.Tx) error {
		r, err := getRecord(tx, id)
		if err != nil {
			return err
		}
		old = r.Token
		if r.Hash == hash {
			return nil
		}
		idx := tx.Bucket(bucketTokHash)
		if idx.Get(hash[:]) != nil {
			return fmt.Errorf("hash %w", errExists)
		}
		if err := idx.Delete(r.Hash[:]); err != nil {
			return err
		}
		if err := idx.Put(hash[:], []byte(id)); err != nil {
			return err
		}
		r.Hash = hash
		return putRecord(tx, r)
	})
	return old, wrap("rotate token", err)
}

// DeleteToken implements store.Store.
func (s *Store) DeleteToken(ctx context.Context, id string) error {
	if err := s.check(ctx, "delete token"); err != nil {
		return err
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		r, err := getRecord(tx, id)
		if err != nil {
			return err
		}
		for _, d := range []struct {
			bucket, key []byte
		}{
			{bucketTokens, []byte(id)},
			{bucketTokHash, r.Hash[:]},
			{bucketOrder, []byte(r.Cursor)},
		} {
			if err := tx.Bucket(d.bucket).Delete(d.key); err != nil {
				return err
			}
		}
		return forgetUsage(tx, id)
	})
	if err == nil {
		s.mu.Lock()
		delete(s.leases, id)
		for _, leases := range s.devices[id] {
			s.devLeaseN -= len(leases)
		}
		delete(s.devices, id)
		delete(s.slices, id)
		s.mu.Unlock()
	}
	return wrap("delete token", err)
}
