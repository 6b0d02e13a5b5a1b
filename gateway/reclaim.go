package gateway

import (
	"log/slog"
	"runtime/debug"
	"sync/atomic"
	"time"
)

// Memory given back by idle TLS sessions.
//
// A TLS session that goes tlsParkAfter without traffic drops its AEAD key
// schedules (see tlsParkAfter). The freed memory is garbage, and an idle
// gateway allocates nothing, so no garbage collection would run to free it
// (the runtime forces one only every two minutes) and the process would
// keep the pages. So once enough sessions have parked since the last time,
// the gateway collects and returns free memory to the system in a goroutine
// of its own: at most every reclaimEvery, and only after
// max(reclaimMinParks, sessions/8) parks, which bounds the cost (one full
// collection; about 1 ms per 10 MB of live heap here) to bursts of sessions
// going idle, as after a wave of new connections.
const (
	reclaimEvery    = 5 * time.Second
	reclaimMinParks = 512
)

type reclaimer struct {
	parks   atomic.Int64 // sessions parked since the last reclaim
	last    atomic.Int64 // UnixNano of the last reclaim
	running atomic.Bool
	count   atomic.Int64 // reclaims done (tests)
	log     *slog.Logger
}

// parked records n sessions parked by a sweep (every sweep calls it, n = 0
// included, so parks that came too soon after the last reclaim are reclaimed
// later) and starts a reclaim when the rules above allow one. now is the
// loop's clock; sessions the live count.
func (r *reclaimer) parked(n int, now, sessions int64) {
	p := r.parks.Add(int64(n))
	if p == 0 || p < max(reclaimMinParks, sessions/8) || now-r.last.Load() < int64(reclaimEvery) {
		return
	}
	if !r.running.CompareAndSwap(false, true) {
		return
	}
	r.parks.Store(0)
	r.last.Store(now)
	go func() {
		start := time.Now()
		debug.FreeOSMemory()
		r.count.Add(1)
		r.running.Store(false)
		if r.log != nil {
			r.log.Debug("gateway: memory of idle TLS sessions returned", "parked", p, "took", time.Since(start))
		}
	}()
}
