package redisstore

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/httvps/httvps/store"
)

// KEYS: pairs of tok, usage. ARGV: pairs of up, down. Counters of tokens
// that no longer exist are not created.
var addUsageScript = redis.NewScript(`
for i = 1, #KEYS, 2 do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    if ARGV[i] ~= '0' then redis.call('HINCRBY', KEYS[i+1], 'up', ARGV[i]) end
    if ARGV[i+1] ~= '0' then redis.call('HINCRBY', KEYS[i+1], 'down', ARGV[i+1]) end
  end
end
return 0
`)

// usageBatch bounds one script call so Redis is never blocked for long.
const usageBatch = 256

// replicaWait bounds how long AddUsage waits for a replica to confirm its
// counters (Sentinel only). A replica that is down or far behind costs each
// flush this much and no more; the counters are then on the primary only.
// A live replica answers within a round trip; the bound leaves room for a
// busy machine and stays well inside the gateway's 1 s per store call.
const replicaWait = 500 * time.Millisecond

// AddUsage implements store.Store.
//
// Through Sentinel the counters are acknowledged only once a replica has
// them too (WAIT 1 on the connection that wrote them), so a primary that
// dies right after a flush cannot take that flush with it: either a
// replica holds it (and is promoted) or AddUsage fails and the caller
// keeps the deltas for its next flush. What stays open is the other side
// of an unanswered write: if the primary dies after a replica has the
// counters but before the answer arrives, the caller's retry counts them
// twice (at least once, never lost). A replica that does not answer within
// replicaWait does not fail the flush (that would count it twice on a
// healthy primary).
func (s *Store) AddUsage(ctx context.Context, deltas map[string]store.Usage) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	ids := make([]string, 0, len(deltas))
	for id, u := range deltas {
		if u != (store.Usage{}) {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
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
	for len(ids) > 0 {
		n := min(len(ids), usageBatch)
		keys := make([]string, 0, 2*n)
		args := make([]any, 0, 2*n)
		for _, id := range ids[:n] {
			u := deltas[id]
			keys = append(keys, s.key("tok:", id), s.key("usage:", id))
			args = append(args, strconv.FormatInt(u.Up, 10), strconv.FormatInt(u.Down, 10))
		}
		if err := addUsageScript.Run(ctx, rdb, keys, args...).Err(); err != nil && !isNil(err) {
			return s.wrap("add usage", err)
		}
		ids = ids[n:]
	}
	if conn != nil {
		if err := conn.Wait(ctx, 1, s.replicaWait).Err(); err != nil {
			return s.wrap("add usage: wait for a replica", err)
		}
	}
	return nil
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
