package redisstore

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/httvps/httvps/store"
)

// KEYS: members, member-created. ARGV: id, member JSON, creation time.
var putMemberScript = redis.NewScript(`
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[3])
return 1
`)

// KEYS: members, member-health. ARGV: id, health JSON.
var setHealthScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
`)

// KEYS: members, member-created, member-health. ARGV: id.
var deleteMemberScript = redis.NewScript(`
local n = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return n
`)

func (s *Store) memberKeys() []string {
	return []string{s.key("members"), s.key("member-created"), s.key("member-health")}
}

// PutMember implements store.Store.
func (s *Store) PutMember(ctx context.Context, m store.Member) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if m.ID == "" {
		return fmt.Errorf("redisstore: put member: %w", store.ErrInvalid)
	}
	created := m.CreatedAt
	if created.IsZero() {
		created = time.Now().UTC()
	}
	m.Health, m.CreatedAt = store.Health{}, time.Time{}
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("redisstore: put member: %w", store.ErrInvalid)
	}
	err = putMemberScript.Run(ctx, s.rdb, s.memberKeys()[:2], m.ID, b, fmtTime(created)).Err()
	return s.wrap("put member", err)
}

func decodeMember(js, created, health string) (store.Member, bool) {
	var m store.Member
	if json.Unmarshal([]byte(js), &m) != nil {
		return store.Member{}, false
	}
	m.CreatedAt = parseTime(created)
	if health != "" {
		json.Unmarshal([]byte(health), &m.Health)
	}
	return m, true
}

// GetMember implements store.Store.
func (s *Store) GetMember(ctx context.Context, id string) (store.Member, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	k := s.memberKeys()
	pipe := s.rdb.Pipeline()
	js, cr, h := pipe.HGet(ctx, k[0], id), pipe.HGet(ctx, k[1], id), pipe.HGet(ctx, k[2], id)
	if _, err := pipe.Exec(ctx); err != nil && !isNil(err) {
		return store.Member{}, s.wrap("get member", err)
	}
	if js.Val() == "" {
		return store.Member{}, notFound("get member")
	}
	m, ok := decodeMember(js.Val(), cr.Val(), h.Val())
	if !ok {
		return store.Member{}, notFound("get member")
	}
	return m, nil
}

// ListMembers implements store.Store.
func (s *Store) ListMembers(ctx context.Context) ([]store.Member, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	k := s.memberKeys()
	pipe := s.rdb.Pipeline()
	js, cr, h := pipe.HGetAll(ctx, k[0]), pipe.HGetAll(ctx, k[1]), pipe.HGetAll(ctx, k[2])
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, s.wrap("list members", err)
	}
	out := make([]store.Member, 0, len(js.Val()))
	for id, j := range js.Val() {
		if m, ok := decodeMember(j, cr.Val()[id], h.Val()[id]); ok {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(a, b store.Member) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// DeleteMember implements store.Store.
func (s *Store) DeleteMember(ctx context.Context, id string) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	n, err := deleteMemberScript.Run(ctx, s.rdb, s.memberKeys(), id).Int()
	if err != nil {
		return s.wrap("delete member", err)
	}
	if n == 0 {
		return notFound("delete member")
	}
	return nil
}

// SetMemberHealth implements store.Store.
func (s *Store) SetMemberHealth(ctx context.Context, id string, h store.Health) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	b, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("redisstore: set member health: %w", store.ErrInvalid)
	}
	k := s.memberKeys()
	n, err := setHealthScript.Run(ctx, s.rdb, []string{k[0], k[2]}, id, b).Int()
	if err != nil {
		return s.wrap("set member health", err)
	}
	if n == 0 {
		return notFound("set member health")
	}
	return nil
}
