package redisstore

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/httvps/httvps/store"
)

// quotaUsedLua defines used(at): the token's usage that its quota is
// compared with at (unix s; KEYS[2] is its usage hash): that of its
// current period, none once the period ended (store.Usage.At). It is the
// one place that says so for LeaseQuota.
const quotaUsedLua = `
local function used(at)
  local u = redis.call('HMGET', KEYS[2], 'up', 'down', 'pe')
  local pe = tonumber(u[3] or '0') or 0
  if pe ~= 0 and at >= pe then return 0 end
  return (tonumber(u[1]) or 0) + (tonumber(u[2]) or 0)
end
`

// KEYS: tok, usage, qlease (gateway → slice), gw-live. ARGV: gatewayID,
// quota, consumed, delta, ttl ms, at (unix s). Returns {granted, held, used, free}, or
// -1 if there is no such token. Slices of gateways that are not live by
// Redis's clock are deleted, as for session leases (countLua).
var leaseQuotaScript = redis.NewScript(quotaUsedLua + `
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local quota, consumed, delta = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local mine = math.max(0, (tonumber(redis.call('HGET', KEYS[3], ARGV[1])) or 0) - consumed)
local others = 0
local all = redis.call('HGETALL', KEYS[3])
for i = 1, #all, 2 do
  local gw = all[i]
  if gw ~= ARGV[1] then
    local exp = redis.call('ZSCORE', KEYS[4], gw)
    if exp and tonumber(exp) > now then
      others = others + tonumber(all[i+1])
    else
      redis.call('HDEL', KEYS[3], gw)
    end
  end
end
local u = used(tonumber(ARGV[6]))
local granted = 0
if delta < 0 then
  mine = math.max(0, mine + delta)
elseif delta > 0 then
  granted = math.max(0, math.min(delta, quota - u - others - mine))
  mine = mine + granted
end
if mine > 0 then
  redis.call('HSET', KEYS[3], ARGV[1], mine)
else
  redis.call('HDEL', KEYS[3], ARGV[1])
end
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('PEXPIRE', KEYS[3], ARGV[5]) end
return {granted, mine, u, math.max(0, quota - u - others - mine)}
`)

// LeaseQuota implements store.Store.
func (s *Store) LeaseQuota(ctx context.Context, tokenID, gatewayID string, at time.Time, quota, consumed, delta int64) (store.QuotaLease, error) {
	if gatewayID == "" || quota <= 0 || consumed < 0 {
		return store.QuotaLease{}, fmt.Errorf("redisstore: lease quota: %w", store.ErrInvalid)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	keys := []string{s.key("tok:", tokenID), s.key("usage:", tokenID), s.key("qlease:", tokenID), s.key("gw-live")}
	res, err := leaseQuotaScript.Run(ctx, s.rdb, keys, gatewayID, quota, consumed, delta, store.QuotaLeaseTTL.Milliseconds(), at.Unix()).Result()
	if err != nil {
		return store.QuotaLease{}, s.wrap("lease quota", err)
	}
	v, ok := res.([]any)
	if !ok || len(v) != 4 {
		return store.QuotaLease{}, notFound("lease quota")
	}
	var n [4]int64
	for i := range n {
		n[i], _ = v[i].(int64)
	}
	return store.QuotaLease{Granted: n[0], Held: n[1], Used: n[2], Free: n[3]}, nil
}
