package redisstore

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/httvps/httvps/store"
)

// countLua sums a token's leases (KEYS[1]) on gateways live in gw-live
// (KEYS[2]) by Redis's clock, plus those of ARGV[1] (the caller), and
// deletes the leases of dead gateways.
const countLua = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local all = redis.call('HGETALL', KEYS[1])
local n = 0
for i = 1, #all, 2 do
  local gw, c = all[i], tonumber(all[i+1])
  if gw == ARGV[1] then
    n = n + c
  else
    local exp = redis.call('ZSCORE', KEYS[2], gw)
    if exp and tonumber(exp) > now then
      n = n + c
    else
      redis.call('HDEL', KEYS[1], gw)
    end
  end
end
`

// KEYS: lease, gw-live. ARGV: gatewayID, max. Returns 1 if a lease was taken.
var acquireScript = redis.NewScript(countLua + `
local max = tonumber(ARGV[2])
if max > 0 and n >= max then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
return 1
`)

// KEYS: lease, gw-live. ARGV: "" (no caller). Returns the live count.
var countScript = redis.NewScript(countLua + `
return n
`)

// KEYS: lease. ARGV: gatewayID.
var releaseScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 1
`)

// KEYS: gw-live, gw:<id>. ARGV: id, ttl ms, retention ms, url, sessions,
// started. Returns the heartbeat time (Redis ms).
var heartbeatScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl, keep = tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - keep)
redis.call('HSET', KEYS[2], 'id', ARGV[1], 'url', ARGV[4], 'sessions', ARGV[5],
  'started', ARGV[6], 'hb', now, 'exp', now + ttl, 'ver', ARGV[7], 'hs', ARGV[8])
redis.call('PEXPIRE', KEYS[2], ttl + keep)
return now
`)

// KEYS: gw-live, gw:<id>. ARGV: id.
var removeGatewayScript = redis.NewScript(`
return redis.call('ZREM', KEYS[1], ARGV[1]) + redis.call('DEL', KEYS[2])
`)

// AcquireSession implements store.Store.
func (s *Store) AcquireSession(ctx context.Context, tokenID, gatewayID string, max int) (bool, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if gatewayID == "" {
		return false, fmt.Errorf("redisstore: acquire session: gateway ID: %w", store.ErrInvalid)
	}
	n, err := acquireScript.Run(ctx, s.rdb, []string{s.key("lease:", tokenID), s.key("gw-live")}, gatewayID, max).Int()
	if err != nil {
		return false, s.wrap("acquire session", err)
	}
	return n == 1, nil
}

// ReleaseSession implements store.Store.
func (s *Store) ReleaseSession(ctx context.Context, tokenID, gatewayID string) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	err := releaseScript.Run(ctx, s.rdb, []string{s.key("lease:", tokenID)}, gatewayID).Err()
	return s.wrap("release session", err)
}

// SessionCount implements store.Store.
func (s *Store) SessionCount(ctx context.Context, tokenID string) (int, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	n, err := countScript.Run(ctx, s.rdb, []string{s.key("lease:", tokenID), s.key("gw-live")}, "").Int()
	if err != nil {
		return 0, s.wrap("session count", err)
	}
	return n, nil
}

// Heartbeat implements store.Store.
func (s *Store) Heartbeat(ctx context.Context, g store.Gateway, ttl time.Duration) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if g.ID == "" || ttl < time.Millisecond {
		return fmt.Errorf("redisstore: heartbeat: %w", store.ErrInvalid)
	}
	err := heartbeatScript.Run(ctx, s.rdb, []string{s.key("gw-live"), s.key("gw:", g.ID)},
		g.ID, ttl.Milliseconds(), store.DeadGatewayRetention.Milliseconds(),
		g.PublicURL, g.Sessions, fmtTime(g.Started), g.Version, strconv.FormatFloat(g.HandshakesPerSec, 'g', -1, 64)).Err()
	return s.wrap("heartbeat", err)
}

// RemoveGateway implements store.Store.
func (s *Store) RemoveGateway(ctx context.Context, id string) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	n, err := removeGatewayScript.Run(ctx, s.rdb, []string{s.key("gw-live"), s.key("gw:", id)}, id).Int()
	if err != nil {
		return s.wrap("remove gateway", err)
	}
	if n == 0 {
		return notFound("remove gateway")
	}
	return nil
}

// ListGateways implements store.Store.
func (s *Store) ListGateways(ctx context.Context) ([]store.Gateway, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	pipe := s.rdb.Pipeline()
	now := pipe.Time(ctx)
	live := pipe.ZRangeWithScores(ctx, s.key("gw-live"), 0, -1)
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, s.wrap("list gateways", err)
	}
	nowMs := now.Val().UnixMilli()
	keep := store.DeadGatewayRetention.Milliseconds()
	pipe = s.rdb.Pipeline()
	var cmds []*redis.MapStringStringCmd
	for _, z := range live.Val() {
		if int64(z.Score) < nowMs-keep {
			continue
		}
		cmds = append(cmds, pipe.HGetAll(ctx, s.key("gw:", z.Member.(string))))
	}
	if len(cmds) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, s.wrap("list gateways", err)
		}
	}
	out := make([]store.Gateway, 0, len(cmds))
	for _, c := range cmds {
		m := c.Val()
		if m["id"] == "" {
			continue
		}
		exp := atoi(m["exp"])
		sessions, _ := strconv.Atoi(m["sessions"])
		hs, _ := strconv.ParseFloat(m["hs"], 64)
		out = append(out, store.Gateway{
			ID:               m["id"],
			PublicURL:        m["url"],
			Sessions:         sessions,
			Started:          parseTime(m["started"]),
			Version:          m["ver"],
			HandshakesPerSec: hs,
			LastHeartbeat:    msTime(atoi(m["hb"])),
			ExpiresAt:        msTime(exp),
			Live:             exp > nowMs,
		})
	}
	slices.SortFunc(out, func(a, b store.Gateway) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out, nil
}
