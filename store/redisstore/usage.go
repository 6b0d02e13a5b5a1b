package redisstore

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/httvps/httvps/store"
)

// periodLua holds the Lua shared by the usage scripts: the calendar
// arithmetic of store.PeriodBounds (days from civil dates and back, after
// Howard Hinnant's algorithms) and roll, which moves a token's period
// counters to the period that holds at.
const periodLua = `
local function civil(z)
  z = z + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m, d
end
local function days(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = m > 2 and m - 3 or m + 9
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  return era * 146097 + yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy - 719468
end
local function monthday(y, m, dom)
  local ny, nm = y, m + 1
  if nm == 13 then ny, nm = y + 1, 1 end
  return days(y, m, math.min(dom, days(ny, nm, 1) - days(y, m, 1)))
end
-- bounds returns the period [start, end) in unix seconds, 0, 0 for none.
local function bounds(period, anchor, cday, at)
  local dn = math.floor(at / 86400)
  if period == 'day' then return dn * 86400, (dn + 1) * 86400 end
  if period == 'week' then
    local first = 0
    if anchor == 'created' then first = (cday + 3) % 7 end
    local s = dn - ((dn + 3) % 7 - first) % 7
    return s * 86400, (s + 7) * 86400
  end
  if period == 'month' then
    local dom = 1
    if anchor == 'created' then local _, _, d = civil(cday); dom = d end
    local y, m = civil(dn)
    local s = monthday(y, m, dom)
    if s > dn then
      if m == 1 then y, m = y - 1, 12 else m = m - 1 end
      s = monthday(y, m, dom)
    end
    local ny, nm = y, m + 1
    if nm == 13 then ny, nm = y + 1, 1 end
    return s * 86400, monthday(ny, nm, dom) * 86400
  end
  return 0, 0
end
local function num(v) return string.format('%.0f', v) end
-- roll brings the token's period counters to the period that holds at: an
-- ended period moves to the past periods (at most maxpast), a changed
-- period (new limits, first write) keeps what was counted.
local function roll(tok, usage, past, at, maxpast)
  local spec = redis.call('HMGET', tok, 'period', 'anchor', 'cday', 'created')
  local cday = tonumber(spec[3] or '')
  if not cday then
    -- a token stored before cday existed: its creation time's seconds
    cday = math.floor((tonumber(string.match(spec[4] or '', '^-?%d+') or '0') or 0) / 86400)
  end
  local ps, pe = bounds(spec[1] or '', spec[2] or '', cday, at)
  ps, pe = num(ps), num(pe)
  local cur = redis.call('HMGET', usage, 'ps', 'pe', 'up', 'down')
  local ope = tonumber(cur[2] or '0') or 0
  if ope ~= 0 and at >= ope then
    local up, down = cur[3] or '0', cur[4] or '0'
    if up ~= '0' or down ~= '0' then
      redis.call('HSET', past, cur[1], cur[1] .. ' ' .. cur[2] .. ' ' .. up .. ' ' .. down)
      local n = redis.call('HLEN', past)
      if n > maxpast then
        local ks = redis.call('HKEYS', past)
        table.sort(ks, function(a, b) return tonumber(a) < tonumber(b) end)
        for i = 1, n - maxpast do redis.call('HDEL', past, ks[i]) end
      end
    end
    redis.call('HSET', usage, 'up', 0, 'down', 0, 'ps', ps, 'pe', pe)
  elseif cur[1] ~= ps or cur[2] ~= pe then
    redis.call('HSET', usage, 'ps', ps, 'pe', pe)
  end
end
`

// KEYS: the client's sequence key, the fleet's hour and day buckets, then
// per token: tok, usage, past periods, hour bucket, day bucket. ARGV: the
// batch's sequence number, the key's lifetime (s), at (unix s), the hour
// and day field names, the hour and day buckets' expiry (unix s), the
// past periods' bound, then pairs of up, down. Counters of tokens that no
// longer exist are not created. The sequence key records, in the same
// atomic step, that this batch was applied (so are its buckets: the
// retry of a batch in doubt writes them once too).
var addUsageScript = redis.NewScript(periodLua + `
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
local at, hf, df = tonumber(ARGV[3]), ARGV[4], ARGV[5]
local fu, fd = 0, 0
for i = 4, #KEYS, 5 do
  local j = 9 + (i - 4) / 5 * 2
  local up, down = ARGV[j], ARGV[j + 1]
  if redis.call('EXISTS', KEYS[i]) == 1 then
    roll(KEYS[i], KEYS[i + 1], KEYS[i + 2], at, tonumber(ARGV[8]))
    if up ~= '0' then
      redis.call('HINCRBY', KEYS[i + 1], 'up', up)
      redis.call('HINCRBY', KEYS[i + 3], hf .. 'u', up)
      redis.call('HINCRBY', KEYS[i + 4], df .. 'u', up)
      fu = fu + tonumber(up)
    end
    if down ~= '0' then
      redis.call('HINCRBY', KEYS[i + 1], 'down', down)
      redis.call('HINCRBY', KEYS[i + 3], hf .. 'd', down)
      redis.call('HINCRBY', KEYS[i + 4], df .. 'd', down)
      fd = fd + tonumber(down)
    end
    redis.call('EXPIREAT', KEYS[i + 3], ARGV[6])
    redis.call('EXPIREAT', KEYS[i + 4], ARGV[7])
  end
end
if fu ~= 0 then
  redis.call('HINCRBY', KEYS[2], hf .. 'u', num(fu))
  redis.call('HINCRBY', KEYS[3], df .. 'u', num(fu))
end
if fd ~= 0 then
  redis.call('HINCRBY', KEYS[2], hf .. 'd', num(fd))
  redis.call('HINCRBY', KEYS[3], df .. 'd', num(fd))
end
if fu ~= 0 or fd ~= 0 then
  redis.call('EXPIREAT', KEYS[2], ARGV[6])
  redis.call('EXPIREAT', KEYS[3], ARGV[7])
end
return 0
`)

// KEYS: tok, usage, past periods. ARGV: at (unix s), the past periods'
// bound. Returns 0 if there is no such token.
var resetUsageScript = redis.NewScript(periodLua + `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
roll(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[1]), tonumber(ARGV[2]))
redis.call('HSET', KEYS[2], 'up', 0, 'down', 0)
return 1
`)

// usageBatch bounds one script call so Redis is never blocked for long.
const usageBatch = 256

// usageSeqLife is how long a client's sequence key outlives its last
// batch: an outage longer than this, with a batch in doubt, counts that
// batch again.
const usageSeqLife = 24 * time.Hour

// replicaWait bounds how long AddUsage waits for a replica to confirm its
// counters (Sentinel only). A replica that is down or far behind costs each
// flush this much and no more; the counters are then on the primary only.
// A live replica answers within a round trip; the bound leaves room for a
// busy machine and stays well inside the gateway's 1 s per store call.
const replicaWait = 500 * time.Millisecond

// usageBatchSent is a batch that a failed AddUsage sent, or may have.
type usageBatchSent struct {
	seq    int64 // 0: known to be applied
	deltas map[string]store.Usage
}

// AddUsage implements store.Store.
//
// A failed call may still have written some or all of its counters: a
// batch before the failing one, or the failing one if Redis applied it
// and the answer was lost (a connection that broke, a primary that died).
// The caller keeps the deltas and sends them again with its next call, so
// AddUsage remembers what it sent and, on the next call, subtracts what
// Redis did apply: each batch sets this client's sequence key in the same
// script, and the key (on the primary of the moment, after a failover the
// promoted replica) says which batches took. Usage is counted once.
//
// Through Sentinel a call succeeds only once a replica has its counters
// too (WAIT 1 on the connection that wrote them): a primary that dies
// right after the call cannot take them with it. If it dies while the
// call waits, the call fails and the next one finds out from the sequence
// key on the new primary whether the replica had them. A replica that
// does not answer within replicaWait does not fail the call (the counters
// are then on the primary only, as without Sentinel).
//
// The period and the history buckets are those of at, the caller's clock
// (the gateway's, which also decides when its local view of a period
// rolls over).
func (s *Store) AddUsage(ctx context.Context, at time.Time, deltas map[string]store.Usage) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	s.usageMu.Lock()
	defer s.usageMu.Unlock()
	if len(s.usageDoubt) > 0 {
		// Until a call succeeds, the caller's deltas still hold every
		// batch a failed call applied.
		applied, err := s.appliedBatches(ctx)
		if err != nil {
			return s.wrap("add usage: earlier batches", err)
		}
		s.usageDoubt = applied
		deltas = subtractUsage(deltas, applied)
	}
	ids := make([]string, 0, len(deltas))
	for id, u := range deltas {
		if u != (store.Usage{}) {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		s.usageDoubt = nil
		return nil
	}
	slices.Sort(ids)
	var rdb redis.Scripter = s.rdb
	var conn *redis.Conn
	if s.waitReplica {
		// WAIT counts the writes of its own connection.
		conn = s.rdb.Conn()
		defer conn.Close()
		rdb = conn
	}
	var sent []usageBatchSent
	fail := func(op string, err error) error {
		s.usageDoubt = append(s.usageDoubt, sent...)
		return s.wrap(op, err)
	}
	for len(ids) > 0 {
		n := min(len(ids), usageBatch)
		s.usageSeq++
		b := usageBatchSent{seq: s.usageSeq, deltas: make(map[string]store.Usage, n)}
		for _, id := range ids[:n] {
			b.deltas[id] = deltas[id]
		}
		keys, args := s.usageBatchArgs(b, at)
		sent = append(sent, b)
		if err := addUsageScript.Run(ctx, rdb, keys, args...).Err(); err != nil && !isNil(err) {
			return fail("add usage", err)
		}
		if conn == nil {
			sent[len(sent)-1].seq = 0 // applied; only Sentinel waits for more
		}
		ids = ids[n:]
	}
	if conn != nil {
		if err := conn.Wait(ctx, 1, s.replicaWait).Err(); err != nil {
			return fail("add usage: wait for a replica", err)
		}
	}
	s.usageDoubt = nil
	return nil
}

// usageBatchArgs are addUsageScript's keys and arguments for batch b at
// time at.
func (s *Store) usageBatchArgs(b usageBatchSent, at time.Time) ([]string, []any) {
	at = at.UTC()
	ids := slices.Sorted(maps.Keys(b.deltas))
	hb := histBuckets(at)
	keys := make([]string, 0, 3+5*len(ids))
	args := make([]any, 0, 8+2*len(ids))
	keys = append(keys, s.usageSeqKey, s.key("fh:", hb.day), s.key("fd:", hb.month))
	args = append(args, b.seq, int64(usageSeqLife/time.Second), at.Unix(),
		hb.hourField, hb.dayField, hb.hourExpiry, hb.dayExpiry, store.MaxPastPeriods)
	for _, id := range ids {
		u := b.deltas[id]
		keys = append(keys, s.key("tok:", id), s.key("usage:", id), s.key("upast:", id),
			s.key("uh:", id, ":", hb.day), s.key("ud:", id, ":", hb.month))
		args = append(args, strconv.FormatInt(u.Up, 10), strconv.FormatInt(u.Down, 10))
	}
	return keys, args
}

// appliedBatches returns the batches in doubt that Redis applied (those
// up to the sequence number its key holds now), marked as known.
func (s *Store) appliedBatches(ctx context.Context) ([]usageBatchSent, error) {
	var last int64
	v, err := s.rdb.Get(ctx, s.usageSeqKey).Result()
	switch {
	case isNil(err):
	case err != nil:
		return nil, err
	default:
		last = atoi(v)
	}
	var out []usageBatchSent
	for _, b := range s.usageDoubt {
		if b.seq == 0 || b.seq <= last {
			out = append(out, usageBatchSent{deltas: b.deltas})
		}
	}
	return out, nil
}

// subtractUsage returns deltas less what was applied already (never below
// zero), leaving the caller's map alone.
func subtractUsage(deltas map[string]store.Usage, applied []usageBatchSent) map[string]store.Usage {
	if len(applied) == 0 {
		return deltas
	}
	out := make(map[string]store.Usage, len(deltas))
	for id, u := range deltas {
		for _, a := range applied {
			d := a.deltas[id]
			u.Up -= min(u.Up, d.Up)
			u.Down -= min(u.Down, d.Down)
		}
		out[id] = u
	}
	return out
}

// GetUsage implements store.Store.
func (s *Store) GetUsage(ctx context.Context, id string) (store.Usage, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	m, err := s.GetUsages(ctx, []string{id})
	if err != nil {
		return store.Usage{}, err
	}
	u, ok := m[id]
	if !ok {
		return store.Usage{}, notFound("get usage")
	}
	return u, nil
}

// GetUsages implements store.Store.
func (s *Store) GetUsages(ctx context.Context, ids []string) (map[string]store.Usage, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	out := make(map[string]store.Usage, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	pipe := s.rdb.Pipeline()
	exists := make([]*redis.IntCmd, len(ids))
	vals := make([]*redis.SliceCmd, len(ids))
	for i, id := range ids {
		exists[i] = pipe.Exists(ctx, s.key("tok:", id))
		vals[i] = pipe.HMGet(ctx, s.key("usage:", id), "up", "down", "ps", "pe")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, s.wrap("get usage", err)
	}
	for i, id := range ids {
		if exists[i].Val() == 0 {
			continue
		}
		v := vals[i].Val()
		out[id] = store.Usage{Up: anyInt(v, 0), Down: anyInt(v, 1), Since: unixTime(anyInt(v, 2)), Until: unixTime(anyInt(v, 3))}
	}
	return out, nil
}

func anyInt(v []any, i int) int64 {
	if i >= len(v) {
		return 0
	}
	s, _ := v[i].(string)
	return atoi(s)
}

// unixTime is unix seconds as a time, 0 as the zero time.
func unixTime(sec int64) time.Time {
	if sec == 0 {
		return time.Time{}
	}
	return time.Unix(sec, 0).UTC()
}

// ResetUsage implements store.Store.
func (s *Store) ResetUsage(ctx context.Context, id string, at time.Time) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	n, err := resetUsageScript.Run(ctx, s.rdb,
		[]string{s.key("tok:", id), s.key("usage:", id), s.key("upast:", id)},
		at.Unix(), store.MaxPastPeriods).Int()
	if err != nil {
		return s.wrap("reset usage", err)
	}
	if n == 0 {
		return notFound("reset usage")
	}
	return nil
}

// PastPeriods implements store.Store.
func (s *Store) PastPeriods(ctx context.Context, id string) ([]store.PeriodUsage, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	pipe := s.rdb.Pipeline()
	exists := pipe.Exists(ctx, s.key("tok:", id))
	all := pipe.HGetAll(ctx, s.key("upast:", id))
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, s.wrap("past periods", err)
	}
	if exists.Val() == 0 {
		return nil, notFound("past periods")
	}
	out := make([]store.PeriodUsage, 0, len(all.Val()))
	for _, v := range all.Val() {
		var ps, pe, up, down int64
		if n, _ := fmt.Sscanf(v, "%d %d %d %d", &ps, &pe, &up, &down); n == 4 {
			out = append(out, store.PeriodUsage{Start: unixTime(ps), End: unixTime(pe), Up: up, Down: down})
		}
	}
	slices.SortFunc(out, func(a, b store.PeriodUsage) int { return b.Start.Compare(a.Start) })
	return out, nil
}
