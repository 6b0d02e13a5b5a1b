package redisstore

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/httvps/httvps/store"
)

// KEYS: tok, tok-hash, tok-order, usage, lease, dev, past periods.
// ARGV: id, hash hex, order member, then field/value pairs.
// Returns 0 on success, 1 if the ID is taken, 2 if the hash is.
var createScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then return 2 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], 0, ARGV[3])
redis.call('DEL', KEYS[4], KEYS[5], KEYS[6], KEYS[7])
return 0
`)

// KEYS: tok. ARGV: field/value pairs. Returns 0 if there is no such token.
var updateScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
`)

// KEYS: tok. ARGV: revocation time. Keeps the first revocation time.
var revokeScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HGET', KEYS[1], 'revoked') ~= '1' then
  redis.call('HSET', KEYS[1], 'revoked', '1', 'revoked_at', ARGV[1])
end
return 1
`)

// KEYS: tok, tok-hash, tok-order, usage, lease, dev, past periods. ARGV: id.
// The token's history buckets expire with their TTLs.
var deleteScript = redis.NewScript(`
local v = redis.call('HMGET', KEYS[1], 'hash', 'cur')
if not v[1] then return 0 end
if redis.call('HGET', KEYS[2], v[1]) == ARGV[1] then redis.call('HDEL', KEYS[2], v[1]) end
redis.call('ZREM', KEYS[3], v[2])
redis.call('DEL', KEYS[1], KEYS[4], KEYS[5], KEYS[6], KEYS[7])
return 1
`)

// KEYS: tok, tok-hash. ARGV: id, new hash hex. Returns the token's fields
// as they were, 0 if there is no such token, 2 if the hash is taken.
var rotateScript = redis.NewScript(`
local old = redis.call('HGETALL', KEYS[1])
if #old == 0 then return 0 end
local cur = redis.call('HGET', KEYS[1], 'hash')
if cur == ARGV[2] then return old end
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then return 2 end
if redis.call('HGET', KEYS[2], cur) == ARGV[1] then redis.call('HDEL', KEYS[2], cur) end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[1], 'hash', ARGV[2])
return old
`)

func (s *Store) tokKeys(id string) []string {
	return []string{
		s.key("tok:", id), s.key("tok-hash"), s.key("tok-order"),
		s.key("usage:", id), s.key("lease:", id), s.key("dev:", id), s.key("upast:", id),
	}
}

func encodeAssignments(a []store.Assignment) string {
	if len(a) == 0 {
		return ""
	}
	b, _ := json.Marshal(a) // plain strings: cannot fail
	return string(b)
}

func limitFields(l store.Limits, which store.LimitSet) []any {
	var f []any
	if which&store.LimitExpiry != 0 {
		f = append(f, "expires", fmtTime(l.ExpiresAt))
	}
	if which&store.LimitQuota != 0 {
		f = append(f, "quota", strconv.FormatInt(l.QuotaBytes, 10))
	}
	if which&store.LimitPeriod != 0 {
		f = append(f, "period", l.QuotaPeriod, "anchor", l.QuotaAnchor)
	}
	if which&store.LimitSessions != 0 {
		f = append(f, "maxsess", strconv.Itoa(l.MaxSessions))
	}
	if which&store.LimitDevices != 0 {
		f = append(f, "maxdev", strconv.Itoa(l.MaxDevices))
	}
	return f
}

// unixDay is t's day number since 1970-01-01 (UTC), the "cday" field the
// usage script anchors created-anchored periods on.
func unixDay(t time.Time) int64 {
	return int64(math.Floor(float64(t.Unix()) / 86400))
}

// CreateToken implements store.Store.
func (s *Store) CreateToken(ctx context.Context, t store.Token) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if t.ID == "" || t.Hash == ([32]byte{}) || !store.ValidPeriod(t.QuotaPeriod, t.QuotaAnchor) {
		return fmt.Errorf("redisstore: create token: %w", store.ErrInvalid)
	}
	if t.CreatedAt.IsZero() {
		t.CreatedAt = time.Now().UTC()
	}
	hh := hex.EncodeToString(t.Hash[:])
	cur := orderMember(t.CreatedAt, t.ID)
	revoked := "0"
	if t.Revoked {
		revoked = "1"
	}
	args := []any{t.ID, hh, cur,
		"id", t.ID, "hash", hh, "label", t.Label, "created", fmtTime(t.CreatedAt),
		"revoked", revoked, "revoked_at", fmtTime(t.RevokedAt),
		"cipher", t.Cipher, "sspw", t.SSPassword,
		"assign", encodeAssignments(t.Assignments), "cur", cur,
		"cday", strconv.FormatInt(unixDay(t.CreatedAt), 10),
	}
	args = append(args, limitFields(store.LimitsOf(t), store.AllLimits)...)
	n, err := createScript.Run(ctx, s.rdb, s.tokKeys(t.ID), args...).Int()
	if err != nil {
		return s.wrap("create token", err)
	}
	switch n {
	case 1:
		return fmt.Errorf("redisstore: create token: ID %w", store.ErrExists)
	case 2:
		return fmt.Errorf("redisstore: create token: hash %w", store.ErrExists)
	}
	return nil
}

func decodeToken(m map[string]string) (store.Token, bool) {
	if m["id"] == "" {
		return store.Token{}, false
	}
	t := store.Token{
		ID:          m["id"],
		Label:       m["label"],
		CreatedAt:   parseTime(m["created"]),
		ExpiresAt:   parseTime(m["expires"]),
		QuotaBytes:  atoi(m["quota"]),
		QuotaPeriod: m["period"],
		QuotaAnchor: m["anchor"],
		MaxSessions: int(atoi(m["maxsess"])),
		MaxDevices:  int(atoi(m["maxdev"])),
		Revoked:     m["revoked"] == "1",
		RevokedAt:   parseTime(m["revoked_at"]),
		Cipher:      m["cipher"],
		SSPassword:  m["sspw"],
	}
	hex.Decode(t.Hash[:], []byte(m["hash"]))
	if a := m["assign"]; a != "" {
		if json.Unmarshal([]byte(a), &t.Assignments) != nil {
			return store.Token{}, false
		}
	}
	return t, true
}

// GetToken implements store.Store.
func (s *Store) GetToken(ctx context.Context, id string) (store.Token, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	m, err := s.rdb.HGetAll(ctx, s.key("tok:", id)).Result()
	if err != nil {
		return store.Token{}, s.wrap("get token", err)
	}
	t, ok := decodeToken(m)
	if !ok {
		return store.Token{}, notFound("get token")
	}
	return t, nil
}

// tokenByHashScript looks the id up in the hash index and returns the
// token's fields, in one round trip (the gateways' cache-miss path). The
// token key is derived from the id inside the script (KEYS[2] is its
// prefix), so the store is for a single Redis, not a cluster.
var tokenByHashScript = redis.NewScript(`
local id = redis.call('HGET', KEYS[1], ARGV[1])
if not id then return false end
return redis.call('HGETALL', KEYS[2] .. id)
`)

// GetTokenByHash implements store.Store.
func (s *Store) GetTokenByHash(ctx context.Context, hash [32]byte) (store.Token, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	res, err := tokenByHashScript.Run(ctx, s.rdb, []string{s.key("tok-hash"), s.key("tok:")}, hex.EncodeToString(hash[:])).StringSlice()
	if isNil(err) {
		return store.Token{}, notFound("get token by hash")
	}
	if err != nil {
		return store.Token{}, s.wrap("get token by hash", err)
	}
	m := make(map[string]string, len(res)/2)
	for i := 0; i+1 < len(res); i += 2 {
		m[res[i]] = res[i+1]
	}
	t, ok := decodeToken(m)
	if !ok || t.Hash != hash {
		return store.Token{}, notFound("get token by hash")
	}
	return t, nil
}

// ListTokens implements store.Store.
func (s *Store) ListTokens(ctx context.Context, cursor string, limit int) ([]store.Token, string, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if limit <= 0 {
		limit = store.DefaultPageSize
	}
	limit = min(limit, store.MaxPageSize)
	lo := "-"
	if cursor != "" {
		if !validCursor(cursor) {
			return nil, "", fmt.Errorf("redisstore: list tokens: cursor: %w", store.ErrInvalid)
		}
		lo = "(" + cursor
	}
	members, err := s.rdb.ZRangeByLex(ctx, s.key("tok-order"), &redis.ZRangeBy{
		Min: lo, Max: "+", Count: int64(limit) + 1,
	}).Result()
	if err != nil {
		return nil, "", s.wrap("list tokens", err)
	}
	next := ""
	if len(members) > limit {
		members = members[:limit]
		next = members[limit-1]
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(members))
	for i, m := range members {
		_, id, _ := strings.Cut(m, ":")
		cmds[i] = pipe.HGetAll(ctx, s.key("tok:", id))
	}
	if len(members) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, "", s.wrap("list tokens", err)
		}
	}
	out := make([]store.Token, 0, len(members))
	for _, c := range cmds {
		if t, ok := decodeToken(c.Val()); ok { // skip tokens deleted meanwhile
			out = append(out, t)
		}
	}
	return out, next, nil
}

// RevokeToken implements store.Store.
func (s *Store) RevokeToken(ctx context.Context, id string) (store.Token, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	n, err := revokeScript.Run(ctx, s.rdb, []string{s.key("tok:", id)}, fmtTime(time.Now())).Int()
	if err != nil {
		return store.Token{}, s.wrap("revoke token", err)
	}
	if n == 0 {
		return store.Token{}, notFound("revoke token")
	}
	return s.GetToken(ctx, id)
}

func (s *Store) update(ctx context.Context, op, id string, fields ...any) error {
	n, err := updateScript.Run(ctx, s.rdb, []string{s.key("tok:", id)}, fields...).Int()
	if err != nil {
		return s.wrap(op, err)
	}
	if n == 0 {
		return notFound(op)
	}
	return nil
}

// UpdateAssignments implements store.Store.
func (s *Store) UpdateAssignments(ctx context.Context, id string, a []store.Assignment) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.update(ctx, "update assignments", id, "assign", encodeAssignments(a))
}

// UpdateLimits implements store.Store.
func (s *Store) UpdateLimits(ctx context.Context, id string, l store.Limits, which store.LimitSet) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if which&store.LimitPeriod != 0 && !store.ValidPeriod(l.QuotaPeriod, l.QuotaAnchor) {
		return fmt.Errorf("redisstore: update limits: period: %w", store.ErrInvalid)
	}
	fields := limitFields(l, which)
	if len(fields) == 0 {
		// Nothing to write; the token must still exist.
		_, err := s.GetToken(ctx, id)
		return err
	}
	return s.update(ctx, "update limits", id, fields...)
}

// UpdateLabel implements store.Store.
func (s *Store) UpdateLabel(ctx context.Context, id, label string) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.update(ctx, "update label", id, "label", label)
}

// RotateToken implements store.Store.
func (s *Store) RotateToken(ctx context.Context, id string, hash [32]byte) (store.Token, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if hash == ([32]byte{}) {
		return store.Token{}, fmt.Errorf("redisstore: rotate token: %w", store.ErrInvalid)
	}
	res, err := rotateScript.Run(ctx, s.rdb, []string{s.key("tok:", id), s.key("tok-hash")}, id, hex.EncodeToString(hash[:])).Result()
	if err != nil {
		return store.Token{}, s.wrap("rotate token", err)
	}
	switch v := res.(type) {
	case int64:
		if v == 2 {
			return store.Token{}, fmt.Errorf("redisstore: rotate token: hash %w", store.ErrExists)
		}
		return store.Token{}, notFound("rotate token")
	case []any:
		m := make(map[string]string, len(v)/2)
		for i := 0; i+1 < len(v); i += 2 {
			k, _ := v[i].(string)
			m[k], _ = v[i+1].(string)
		}
		if t, ok := decodeToken(m); ok {
			return t, nil
		}
	}
	return store.Token{}, notFound("rotate token")
}

// DeleteToken implements store.Store.
func (s *Store) DeleteToken(ctx context.Context, id string) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	n, err := deleteScript.Run(ctx, s.rdb, s.tokKeys(id), id).Int()
	if err != nil {
		return s.wrap("delete token", err)
	}
	if n == 0 {
		return notFound("delete token")
	}
	return nil
}
