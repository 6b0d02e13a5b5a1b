package gateway

import (
	"log/slog"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Memory given back by idle TLS sessions.
//
// A TLS session that goes tlsParkAfter without traffic drops its AEAD key
// schedules (see tlsParkAfter). The freed memory is garbage, and an idle
// gateway allocates nothing, so no garbage collection would run to free it
// (the runtime forces one only every two minutes) and the process would
// keep the pages. So when the number of parked sessions has grown by
// max(reclaimMinParks, sessions/8) over what the last reclaim left, the
// gateway collects and returns free memory to the system, in a goroutine of
// its own, at most every reclaimEvery: two full collections (see below),
// about 1 ms each per 10 MB of live heap here. A second apart at most: a
// burst of sessions parks over a few seconds, and with reclaims 5 s apart
// the last of them waited up to 5 s more for their memory to be returned
// (the bench's TLS idle figure, read 5 s after the last session opened,
// came out at 2.3 or 6.3 KiB per session depending on which side of that
// wait it fell). Each reclaim needs max(reclaimMinParks, sessions/8) more
// parked sessions, so even at that pace it costs a large gateway a few
// per cent of one core at most.
//
// Growth is measured against a high-water mark, not by counting parks, so
// sessions that park and wake again and again (keepalives every few seconds)
// do not cause a reclaim each time: the mark only comes down to the current
// count once reclaimForget has passed since the last reclaim.
//
// Handshake floods leave the same kind of garbage: stalled ClientHellos
// cost tens of KiB each (a goroutine stack, netpoll and crypto/tls
// buffers) that the runtime would give back only over many minutes. So
// when the handshakes in progress fall from a peak of at least
// reclaimMinHandshakes to under a quarter of it, the gateway reclaims too
// (same goroutine, same reclaimEvery bound).
const (
	reclaimEvery    = time.Second
	reclaimForget   = 2 * time.Minute
	reclaimMinParks = 512

	reclaimMinHandshakes = 512
)

// reclaimer decides when to give freed memory back to the OS. Every relay
// loop calls check from its own goroutine: the atomics are
// changed by any loop, log is fixed at New, and the rest is guarded by mu.
type reclaimer struct {
	parked  atomic.Int64 // TLS sessions whose keys are parked now
	running atomic.Bool
	count   atomic.Int64 // reclaims done (tests)
	log     *slog.Logger

	mu     sync.Mutex // guards mark, last and hsPeak
	mark   int64      // parked sessions the last reclaim left; see above
	last   int64      // loop clock of the last reclaim
	hsPeak int64      // most handshakes in progress seen since the last reclaim
}

// check starts a reclaim when the rules above allow one. The relay loops
// call it after every sweep; now is the loop's clock, sessions the live
// count.
// count the live sessions and handshakes the handshakes in progress.
func (r *reclaimer) check(now, sessions, handshakes int64) {
	p := r.parked.Load()
	r.mu.Lock()
	defer r.mu.Unlock()
	if now-r.last >= int64(reclaimForget) && p < r.mark {
		r.mark = p
	}
	r.hsPeak = max(r.hsPeak, handshakes)
	flood := r.hsPeak >= reclaimMinHandshakes && handshakes < r.hsPeak/4
	if (p-r.mark < max(reclaimMinParks, sessions/8) && !flood) || now-r.last < int64(reclaimEvery) {
		return
	}
	if !r.running.CompareAndSwap(false, true) {
		return
	}
	r.mark, r.last, r.hsPeak = p, now, handshakes
	go func() {
		start := time.Now()
		// Buffers in sync.Pools (netpoll's, crypto/tls's) survive one
		// collection in the pools' victim caches: collect once first so
		// that FreeOSMemory's collection frees them.
		runtime.GC()
		debug.FreeOSMemory()
		r.count.Add(1)
		r.running.Store(false)
		if r.log != nil {
			r.log.Debug("gateway: free memory returned", "parked", p, "handshakes", handshakes, "took", time.Since(start))
		}
	}()
}
