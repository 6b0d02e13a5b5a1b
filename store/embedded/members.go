package embedded

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/httvps/httvps/store"
)

func getMember(tx *bolt.Tx, id string) (store.Member, error) {
	v := tx.Bucket(bucketMembers).Get([]byte(id))
	if v == nil {
		return store.Member{}, errNotFound
	}
	var m store.Member
	if err := json.Unmarshal(v, &m); err != nil {
		return store.Member{}, fmt.Errorf("corrupt member record: %w", err)
	}
	return m, nil
}

func putMember(tx *bolt.Tx, m store.Member) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketMembers).Put([]byte(m.ID), b)
}

// PutMember implements store.Store.
func (s *Store) PutMember(ctx context.Context, m store.Member) error {
	if err := s.check(ctx, "put member"); err != nil {
		return err
	}
	if m.ID == "" {
		return fmt.Errorf("embedded: put member: %w", store.ErrInvalid)
	}
	return wrap("put member", s.db.Update(func(tx *bolt.Tx) error {
		old, err := getMember(tx, m.ID)
		switch {
		case err == nil:
			m.Health, m.CreatedAt = old.Health, old.CreatedAt
		case errors.Is(err, errNotFound):
			m.Health = store.Health{}
			if m.CreatedAt.IsZero() {
				m.CreatedAt = time.Now()
			}
			m.CreatedAt = m.CreatedAt.UTC()
		default:
			return err
		}
		return putMember(tx, m)
	}))
}

// GetMember implements store.Store.
func (s *Store) GetMember(ctx context.Context, id string) (store.Member, error) {
	if err := s.check(ctx, "get member"); err != nil {
		return store.Member{}, err
	}
	var m store.Member
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		m, err = getMember(tx, id)
		return err
	})
	return m, wrap("get member", err)
}

// ListMembers implements store.Store.
func (s *Store) ListMembers(ctx context.Context) ([]store.Member, error) {
	if err := s.check(ctx, "list members"); err != nil {
		return nil, err
	}
	var out []store.Member
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMembers).ForEach(func(k, _ []byte) error {
			m, err := getMember(tx, string(k))
			if err == nil {
				out = append(out, m) // bolt keys are sorted: ordered by ID
			}
			return err
		})
	})
	if err != nil {
		return nil, wrap("list members", err)
	}
	return out, nil
}

// DeleteMember implements store.Store.
func (s *Store) DeleteMember(ctx context.Context, id string) error {
	if err := s.check(ctx, "delete member"); err != nil {
		return err
	}
	return wrap("delete member", s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMembers).Get([]byte(id)) == nil {
			return errNotFound
		}
		return tx.Bucket(bucketMembers).Delete([]byte(id))
	}))
}

// SetMemberHealth implements store.Store.
func (s *Store) SetMemberHealth(ctx context.Context, id string, h store.Health) error {
	if err := s.check(ctx, "set member health"); err != nil {
		return err
	}
	return wrap("set member health", s.db.Update(func(tx *bolt.Tx) error {
		m, err := getMember(tx, id)
		if err != nil {
			return err
		}
		m.Health = h
		return putMember(tx, m)
	}))
}
