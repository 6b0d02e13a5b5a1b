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

// deviceKeep is how long a token's device key lives after its last write.
// Leases of gateways that die are purged by the next acquire; the expiry
// bounds the key of a token nobody uses again. Gateways report their live
// devices more often than this (storeauth's device refresh).
const deviceKeep = 24 * time.Hour

// devLiveLua decodes the token's devices (KEYS[1], device → JSON of
// gatewayID → {f first, l last, s sessions, u grace-until}, Redis ms),
// drops leases that stopped counting (grace over, or held by a gateway
// not live in gw-live, KEYS[2], other than ARGV[2], the caller) and the
// devices left without one, and counts the live devices into n; devs
// maps each live device to its leases.
const devLiveLua = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gwLive = {}
local function alive(gw, l)
  if l.u > 0 then return l.u > now end
  if gw == ARGV[2] then return true end
  local v = gwLive[gw]
  if v == nil then
    local exp = redis.call('ZSCORE', KEYS[2], gw)
    v = (exp and tonumber(exp) > now) or false
    gwLive[gw] = v
  end
  return v
end
local all = redis.call('HGETALL', KEYS[1])
local n, devs = 0, {}
for i = 1, #all, 2 do
  local dev, m = all[i], cjson.decode(all[i+1])
  local live, changed = false, false
  for gw, l in pairs(m) do
    if alive(gw, l) then live = true else m[gw] = nil; changed = true end
  end
  if not live then
    redis.call('HDEL', KEYS[1], dev)
  else
    if changed then redis.call('HSET', KEYS[1], dev, cjson.encode(m)) end
    devs[dev] = m
    n = n + 1
  end
end
`

// KEYS: dev, gw-live. ARGV: device, gatewayID, sessions, max, keep ms.
// Returns 1 if the lease is live.
var acquireDeviceScript = redis.NewScript(devLiveLua + `
local max = tonumber(ARGV[4])
local m = devs[ARGV[1]]
if not m then
  if max > 0 and n >= max then return 0 end
  m = {}
end
local l = m[ARGV[2]]
local first = now
if l and l.f then first = l.f end
m[ARGV[2]] = {f = first, l = now, s = tonumber(ARGV[3]), u = 0}
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(m))
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
`)

// KEYS: dev. ARGV: device, gatewayID, grace ms.
var releaseDeviceScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local m = cjson.decode(v)
local l = m[ARGV[2]]
if not l then return 0 end
local grace = tonumber(ARGV[3])
if grace > 0 then
  l.s, l.l, l.u = 0, now, now + grace
else
  m[ARGV[2]] = nil
end
if next(m) == nil then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(m))
  if redis.call('PTTL', KEYS[1]) < grace then redis.call('PEXPIRE', KEYS[1], grace) end
end
return 1
`)

// KEYS: dev, gw-live. ARGV: "", "" (no caller). Returns the live devices
// as JSON (an empty table encodes as {}).
var listDevicesScript = redis.NewScript(devLiveLua + `
return cjson.encode(devs)
`)

// AcquireDevice implements store.Store.
func (s *Store) AcquireDevice(ctx context.Context, tokenID, device, gatewayID string, sessions, limit int) (bool, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := store.CheckDevice(tokenID, device, gatewayID); err != nil {
		return false, fmt.Errorf("redisstore: acquire device: %w", err)
	}
	n, err := acquireDeviceScript.Run(ctx, s.rdb, []string{s.key("dev:", tokenID), s.key("gw-live")},
		device, gatewayID, max(sessions, 0), limit, deviceKeep.Milliseconds()).Int()
	if err != nil {
		return false, s.wrap("acquire device", err)
	}
	return n == 1, nil
}

// ReleaseDevice implements store.Store.
func (s *Store) ReleaseDevice(ctx context.Context, tokenID, device, gatewayID string, grace time.Duration) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := store.CheckDevice(tokenID, device, gatewayID); err != nil {
		return fmt.Errorf("redisstore: release device: %w", err)
	}
	err := releaseDeviceScript.Run(ctx, s.rdb, []string{s.key("dev:", tokenID)},
		device, gatewayID, max(grace.Milliseconds(), 0)).Err()
	return s.wrap("release device", err)
}

// wireLease is a lease as the scripts encode it.
type wireLease struct {
	F, L int64 // first, last (ms)
	S    int   // sessions
	U    int64 // grace until (ms); 0 while held
}

func (w *wireLease) UnmarshalJSON(b []byte) error {
	var v struct {
		F float64 `json:"f"`
		L float64 `json:"l"`
		S float64 `json:"s"`
		U float64 `json:"u"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	w.F, w.L, w.S, w.U = int64(v.F), int64(v.L), int(v.S), int64(v.U)
	return nil
}

// ListDevices implements store.Store.
func (s *Store) ListDevices(ctx context.Context, tokenID string) ([]store.Device, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	raw, err := listDevicesScript.Run(ctx, s.rdb, []string{s.key("dev:", tokenID), s.key("gw-live")}, "", "").Text()
	if err != nil && err != redis.Nil {
		return nil, s.wrap("list devices", err)
	}
	var devs map[string]map[string]wireLease
	if raw != "" && raw != "{}" {
		if err := json.Unmarshal([]byte(raw), &devs); err != nil {
			return nil, fmt.Errorf("redisstore: list devices: %w: %w", store.ErrUnavailable, err)
		}
	}
	out := make([]store.Device, 0, len(devs))
	for key, leases := range devs {
		d := store.Device{Key: key}
		for gw, l := range leases {
			if d.FirstSeen.IsZero() || msTime(l.F).Before(d.FirstSeen) {
				d.FirstSeen = msTime(l.F)
			}
			if t := msTime(l.L); t.After(d.LastSeen) {
				d.LastSeen = t
			}
			d.Sessions += l.S
			d.Gateways = append(d.Gateways, store.DeviceLease{GatewayID: gw, Sessions: l.S, GraceUntil: msTime(l.U)})
		}
		slices.SortFunc(d.Gateways, func(a, b store.DeviceLease) int { return strings.Compare(a.GatewayID, b.GatewayID) })
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b store.Device) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}
