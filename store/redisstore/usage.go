package redisstore

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/httvps/httvps/store"
)

// KEYS: the client's sequence key, then pairs of tok, usage. ARGV: the
// batch's sequence number, the key's lifetime (s), then pairs of up, down.
// Counters of tokens that no longer exist are not created. The sequence
// key records, in the same atomic step, that this batch was applied.
var addUsageScript = redis.NewScript(`
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
for i = 2, #KEYS, 2 do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    if ARGV[i+1] ~= '0' then redis.call('HINCRBY', KEYS[i+1], 'up', ARGV[i+1]) end
    if ARGV[i+2] ~= '0' then redis.call('HINCRBY', KEYS[i+1], 'down', ARGV[i+2]) end
  end
end
return 0
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
func (s *Store) AddUsage(ctx context.Context, deltas map[string]store.Usage) error {
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
		keys := make([]string, 0, 1+2*n)
		args := make([]any, 0, 2+2*n)
		keys = append(keys, s.usageSeqKey)
		args = append(args, b.seq, int64(usageSeqLife/time.Second))
		for _, id := range ids[:n] {
			u := deltas[id]
			b.deltas[id] = u
			keys = append(keys, s.key("tok:", id), s.key("usage:", id))
			args = append(args, strconv.FormatInt(u.Up, 10), strconv.FormatInt(u.Down, 10))
		}
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
		vals[i] = pipe.HMGet(ctx, s.key("usage:", id), "up", "down")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, s.wrap("get usage", err)
	}
	for i, id := range ids {
		if exists[i].Val() == 0 {
			continue
		}
		v := vals[i].Val()
		out[id] = store.Usage{Up: anyInt(v, 0), Down: anyInt(v, 1)}
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
