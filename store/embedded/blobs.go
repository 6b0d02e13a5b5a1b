package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/httvps/httvps/store"
)

// heldLock is one TryLock: its owner and when it lapses (process clock).
type heldLock struct {
	owner   string
	expires time.Time
}

// PutBlob implements store.Store.
func (s *Store) PutBlob(ctx context.Context, key string, value []byte) error {
	if err := s.check(ctx, "put blob"); err != nil {
		return err
	}
	if err := store.CheckBlob(key, len(value)); err != nil {
		return wrap("put blob", err)
	}
	v := make([]byte, 8+len(value))
	binary.BigEndian.PutUint64(v, uint64(time.Now().UnixNano()))
	copy(v[8:], value)
	return wrap("put blob", s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketBlobs).Put([]byte(key), v)
	}))
}

// GetBlob implements store.Store.
func (s *Store) GetBlob(ctx context.Context, key string) (store.Blob, error) {
	if err := s.check(ctx, "get blob"); err != nil {
		return store.Blob{}, err
	}
	var b store.Blob
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketBlobs).Get([]byte(key))
		if len(v) < 8 {
			return errNotFound
		}
		b.Modified = time.Unix(0, int64(binary.BigEndian.Uint64(v)))
		b.Value = bytes.Clone(v[8:])
		return nil
	})
	return b, wrap("get blob", err)
}

// DeleteBlob implements store.Store.
func (s *Store) DeleteBlob(ctx context.Context, key string) error {
	if err := s.check(ctx, "delete blob"); err != nil {
		return err
	}
	if key == "" {
		return wrap("delete blob", errInvalid)
	}
	return wrap("delete blob", s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketBlobs)
		if err := b.Delete([]byte(key)); err != nil {
			return err
		}
		c := b.Cursor()
		dir := []byte(key + "/")
		for k, _ := c.Seek(dir); k != nil && bytes.HasPrefix(k, dir); k, _ = c.Next() {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	}))
}

// ListBlobs implements store.Store.
func (s *Store) ListBlobs(ctx context.Context, prefix string) ([]string, error) {
	if err := s.check(ctx, "list blobs"); err != nil {
		return nil, err
	}
	var keys []string
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketBlobs).Cursor()
		p := []byte(prefix)
		for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
			keys = append(keys, string(k))
		}
		return nil
	})
	return keys, wrap("list blobs", err)
}

// TryLock implements store.Store.
func (s *Store) TryLock(ctx context.Context, name, owner string, ttl time.Duration) (bool, error) {
	if err := s.check(ctx, "lock"); err != nil {
		return false, err
	}
	if name == "" || owner == "" || ttl <= 0 {
		return false, wrap("lock", errInvalid)
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.locks[name]; ok && l.owner != owner && now.Before(l.expires) {
		return false, nil
	}
	s.locks[name] = heldLock{owner: owner, expires: now.Add(ttl)}
	return true, nil
}

// Unlock implements store.Store.
func (s *Store) Unlock(ctx context.Context, name, owner string) error {
	if err := s.check(ctx, "unlock"); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.locks[name]; ok && l.owner == owner {
		delete(s.locks, name)
	}
	return nil
}
