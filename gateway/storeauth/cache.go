package storeauth

import (
	"crypto/sha256"
	"sync"
	"sync/atomic"
)

type hashKey = [sha256.Size]byte

// numShards spreads the hot-path read locks; keys are SHA-256 digests, so
// their first byte is uniform.
const numShards = 64

// evictScan is how many entries a full shard looks at for an expired one
// before it evicts whatever it found first.
const evictScan = 8

type item[V any] struct {
	v     V
	until int64 // unix nanoseconds; the entry is stale after it
}

type shard[V any] struct {
	mu sync.RWMutex
	m  map[hashKey]item[V]
}

// ttlCache is a bounded map from token hash to V with a freshness deadline
// per entry. Stale entries are kept (a cached token still works while the
// store is down) until a full shard evicts them, expired ones first.
//
// When idOf is set the cache also indexes entries by token ID (drop by ID
// on events). Index updates happen under the lock of the entry's shard, so
// an entry present in a shard is always in the index.
type ttlCache[V any] struct {
	shards   [numShards]shard[V]
	perShard int
	n        atomic.Int64

	idOf  func(V) string
	idMu  sync.Mutex
	index map[string]hashKey // guarded by idMu
}

func newTTLCache[V any](size int, idOf func(V) string) *ttlCache[V] {
	c := &ttlCache[V]{perShard: max(1, (size+numShards-1)/numShards), idOf: idOf}
	for i := range c.shards {
		c.shards[i].m = make(map[hashKey]item[V])
	}
	if idOf != nil {
		c.index = make(map[string]hashKey)
	}
	return c
}

func (c *ttlCache[V]) shard(k *hashKey) *shard[V] { return &c.shards[k[0]%numShards] }

// get returns the entry and whether it is still fresh at now.
func (c *ttlCache[V]) get(k *hashKey, now int64) (v V, fresh, ok bool) {
	s := c.shard(k)
	s.mu.RLock()
	it, ok := s.m[*k]
	s.mu.RUnlock()
	return it.v, ok && now < it.until, ok
}

// put stores v until the deadline, evicting one entry if the shard is full.
func (c *ttlCache[V]) put(k *hashKey, v V, until, now int64) {
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, exists := s.m[*k]; !exists && len(s.m) >= c.perShard {
		c.evictLocked(s, now)
	}
	if _, exists := s.m[*k]; !exists {
		c.n.Add(1)
	}
	s.m[*k] = item[V]{v: v, until: until}
	if c.idOf != nil {
		c.idMu.Lock()
		c.index[c.idOf(v)] = *k
		c.idMu.Unlock()
	}
}

func (c *ttlCache[V]) evictLocked(s *shard[V], now int64) {
	var victim hashKey
	found, seen := false, 0
	for k, it := range s.m { // map order is randomised
		if !found || it.until <= now {
			victim, found = k, true
			if it.until <= now {
				break
			}
		}
		if seen++; seen >= evictScan {
			break
		}
	}
	if found {
		c.deleteLocked(s, &victim)
	}
}

func (c *ttlCache[V]) deleteLocked(s *shard[V], k *hashKey) {
	it, ok := s.m[*k]
	if !ok {
		return
	}
	delete(s.m, *k)
	c.n.Add(-1)
	if c.idOf != nil {
		id := c.idOf(it.v)
		c.idMu.Lock()
		if c.index[id] == *k {
			delete(c.index, id)
		}
		c.idMu.Unlock()
	}
}

func (c *ttlCache[V]) del(k *hashKey) {
	s := c.shard(k)
	s.mu.Lock()
	c.deleteLocked(s, k)
	s.mu.Unlock()
}

// delID drops the entry of a token ID (only with idOf).
func (c *ttlCache[V]) delID(id string) {
	c.idMu.Lock()
	k, ok := c.index[id]
	c.idMu.Unlock()
	if ok {
		c.del(&k)
	}
}

func (c *ttlCache[V]) clear() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for k := range s.m {
			c.deleteLocked(s, &k)
		}
		s.mu.Unlock()
	}
}

// expireAll makes every entry stale without dropping it: the next use asks
// the store, and a stale entry still answers while the store is down.
func (c *ttlCache[V]) expireAll() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for k, it := range s.m {
			it.until = 0
			s.m[k] = it
		}
		s.mu.Unlock()
	}
}

func (c *ttlCache[V]) len() int { return int(c.n.Load()) }
