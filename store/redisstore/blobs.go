package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/httvps/httvps/store"
)

// Shared files: P blob:<key> is a hash (v: the value, t: Redis's time of
// the last put, "<unix s>.<ns>"), and P blob-keys a zset of every key
// (all scores 0) for prefix listing by ZRANGEBYLEX. Keys never hold the
// byte 0xff (they are UTF-8), so "(" prefix "\xff" ends a prefix's range.

// KEYS: blob:<key>, blob-keys. ARGV: key, value.
var putBlobScript = redis.NewScript(`
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], 'v', ARGV[2], 't', t[1] .. '.' .. string.format('%09d', tonumber(t[2]) * 1000))
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return 1
`)

// KEYS: blob-keys. ARGV: the key, the blob key prefix (P "blob:").
// Deletes the key and the keys under key "/".
var deleteBlobScript = redis.NewScript(`
local keys = redis.call('ZRANGEBYLEX', KEYS[1], '[' .. ARGV[1] .. '/', '(' .. ARGV[1] .. '/\255')
table.insert(keys, ARGV[1])
for _, k in ipairs(keys) do
  redis.call('DEL', ARGV[2] .. k)
  redis.call('ZREM', KEYS[1], k)
end
return #keys
`)

// KEYS: lock:<name>. ARGV: owner, ttl ms.
var tryLockScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`)

// KEYS: lock:<name>. ARGV: owner.
var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// PutBlob implements store.Store.
func (s *Store) PutBlob(ctx context.Context, key string, value []byte) error {
	if err := store.CheckBlob(key, len(value)); err != nil {
		return invalid("put blob")
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.wrap("put blob", putBlobScript.Run(ctx, s.rdb, []string{s.key("blob:", key), s.key("blob-keys")}, key, value).Err())
}

// GetBlob implements store.Store.
func (s *Store) GetBlob(ctx context.Context, key string) (store.Blob, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	vals, err := s.rdb.HMGet(ctx, s.key("blob:", key), "v", "t").Result()
	if err != nil {
		return store.Blob{}, s.wrap("get blob", err)
	}
	v, ok := vals[0].(string)
	if !ok {
		return store.Blob{}, notFound("get blob")
	}
	b := store.Blob{Value: []byte(v)}
	if t, ok := vals[1].(string); ok {
		b.Modified = parseTime(t)
	}
	return b, nil
}

// DeleteBlob implements store.Store.
func (s *Store) DeleteBlob(ctx context.Context, key string) error {
	if key == "" {
		return invalid("delete blob")
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.wrap("delete blob", deleteBlobScript.Run(ctx, s.rdb, []string{s.key("blob-keys")}, key, s.key("blob:")).Err())
}

// ListBlobs implements store.Store.
func (s *Store) ListBlobs(ctx context.Context, prefix string) ([]string, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	min := "-"
	max := "+"
	if prefix != "" {
		min, max = "["+prefix, "("+prefix+"\xff"
	}
	keys, err := s.rdb.ZRangeByLex(ctx, s.key("blob-keys"), &redis.ZRangeBy{Min: min, Max: max}).Result()
	if err != nil {
		return nil, s.wrap("list blobs", err)
	}
	return keys, nil
}

// TryLock implements store.Store. The lock is a key that expires by
// itself (SET PX), so a dead holder frees it after ttl.
func (s *Store) TryLock(ctx context.Context, name, owner string, ttl time.Duration) (bool, error) {
	if name == "" || owner == "" || ttl <= 0 {
		return false, invalid("lock")
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	n, err := tryLockScript.Run(ctx, s.rdb, []string{s.key("lock:", name)}, owner, strconv.FormatInt(max(1, ttl.Milliseconds()), 10)).Int()
	if err != nil {
		return false, s.wrap("lock", err)
	}
	return n == 1, nil
}

// Unlock implements store.Store.
func (s *Store) Unlock(ctx context.Context, name, owner string) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.wrap("unlock", unlockScript.Run(ctx, s.rdb, []string{s.key("lock:", name)}, owner).Err())
}

func invalid(op string) error {
	return fmt.Errorf("redisstore: %s: %w", op, store.ErrInvalid)
}
