package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ScenarioFlood is the handshake flood: thousands of stalled clients (TCP
// connected, then nothing, or a partial TLS ClientHello / HTTP request)
// held open and garbage clients (random bytes) at a fixed rate, from
// source addresses of their own, while established sessions of a client
// elsewhere move data and do small round trips. Their throughput and
// latency during the flood are reported beside the same without it.
const ScenarioFlood = "handshake-flood"

// FloodResult is one peer's flood measurement.
type FloodResult struct {
	Peer string `json:"peer"`
	// The flood offered: stalled clients held open (reopened when the peer
	// drops them) from SourceAddrs addresses, garbage connections per second.
	Stalled     int `json:"stalled_clients"`
	SourceAddrs int `json:"source_addrs"`
	GarbageRate int `json:"garbage_per_s"`
	// What the peer let it hold: stalled connections open when the
	// measurement ended, stalled connections the peer closed (and the flood
	// reopened) during the flood phase, garbage connections made, dials
	// that failed.
	HeldAtEnd   int     `json:"held_at_end"`
	Reopened    int     `json:"reopened"`
	Garbage     int     `json:"garbage_conns"`
	DialErrors  int     `json:"dial_errors"`
	RampSeconds float64 `json:"ramp_seconds"`
	// DefaultLimits: our gateway ran with its default per-address limits
	// (the other scenarios turn them off).
	DefaultLimits bool `json:"default_limits,omitempty"`
	// The established sessions: download MB/s and round-trip p50/p99
	// without the flood (Quiet) and during it.
	Streams        int     `json:"streams"`
	LatencyStreams int     `json:"latency_streams"`
	QuietMBps      float64 `json:"quiet_mb_per_s"`
	FloodMBps      float64 `json:"flood_mb_per_s"`
	QuietP50Ms     float64 `json:"quiet_p50_ms"`
	QuietP99Ms     float64 `json:"quiet_p99_ms"`
	FloodP50Ms     float64 `json:"flood_p50_ms"`
	FloodP99Ms     float64 `json:"flood_p99_ms"`
	// The peer's CPU (cores busy) over the flood phase, and its RSS growth
	// from before the flood to the end of the ramp.
	FloodCPUCores   float64 `json:"flood_cpu_cores"`
	FloodRSSGrowKiB int64   `json:"flood_rss_growth_kib"`
	// Kept is FloodMBps ÷ QuietMBps; P99Growth is FloodP99 ÷ QuietP99.
	Kept      float64 `json:"throughput_kept"`
	P99Growth float64 `json:"p99_growth"`
	Runs      int     `json:"runs,omitempty"`
	KeptRange *Span   `json:"throughput_kept_range,omitempty"`
	P99Range  *Span   `json:"p99_growth_range,omitempty"`
}

// floodPerAddr is how many stalled clients share one source address: under
// our gateway's default per-address handshake cap (512), so the flood
// reaches the global machinery as a distributed one does.
const floodPerAddr = 250

// floodPeer reports whether the flood runs on the named peer: the TLS peers
// and the plaintext Shadowsocks peers (outline-ss has no TLS listener), not
// the tunnel peers (the same listener as their Outline-path twins).
func floodPeer(name string) bool {
	return (tlsPeer(name) || ssPeer(name)) && !tunnelPeer(name)
}

// withDefaultLimits is our gateway peer pe run with its default
// per-address limits, as an operator runs it; other peers are returned as
// they are.
func withDefaultLimits(pe *peer) (*peer, bool) {
	if !ownPeer(pe.info.Name) {
		return pe, false
	}
	cp := *pe
	argv := pe.argv
	cp.argv = func(port int, sink string) []string {
		a := argv(port, sink)
		var out []string
		for i := 0; i < len(a); i++ {
			if (a[i] == "-addr-rate" || a[i] == "-addr-handshakes") && i+1 < len(a) && a[i+1] == "-1" {
				i++
				continue
			}
			out = append(out, a[i])
		}
		return out
	}
	return &cp, true
}

// flood runs the stalled and garbage clients until stopped.
type flood struct {
	addr    string
	tls     bool // the peer speaks TLS first (else HTTP)
	srcs    []net.IP
	stalled int
	rate    int

	held, reopened, garbage, dialErrs atomic.Int64
	counting                          atomic.Bool // reopened counts from here

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newFlood(addr string, tls bool, stalled, rate int) *flood {
	n := max(1, (stalled+floodPerAddr-1)/floodPerAddr)
	f := &flood{addr: addr, tls: tls, stalled: stalled, rate: rate}
	for i := range n {
		f.srcs = append(f.srcs, net.IPv4(127, 0, byte(1+i/250), byte(2+i%250)))
	}
	return f
}

// partialHello is the start of a TLS ClientHello record, cut short.
func partialHello() []byte {
	b := []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03}
	r := make([]byte, 32)
	rand.Read(r)
	return append(b, r...)
}

const partialRequest = "GET /index.html HTTP/1.1\r\nHost: localhost\r\nUser-Agent: Mozilla/5.0\r\n"

func (f *flood) dial(ctx context.Context, src net.IP) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "tcp", f.addr)
	if err != nil && ctx.Err() == nil {
		f.dialErrs.Add(1)
	}
	return c, err
}

// start launches the flood; the stalled clients ramp up through at most 64
// dials at once.
func (f *flood) start(ctx context.Context) {
	ctx, f.cancel = context.WithCancel(ctx)
	sem := make(chan struct{}, 64)
	for i := range f.stalled {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.stalledClient(ctx, i, sem)
		}()
	}
	if f.rate > 0 {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.garbageClients(ctx)
		}()
	}
}

// stalledClient holds one stalled connection, reopening it (after a pause)
// whenever the peer closes it.
func (f *flood) stalledClient(ctx context.Context, i int, sem chan struct{}) {
	src := f.srcs[i%len(f.srcs)]
	var payload []byte
	switch {
	case i%2 == 0: // nothing at all
	case f.tls:
		payload = partialHello()
	default:
		payload = []byte(partialRequest)
	}
	buf := make([]byte, 512)
	for ctx.Err() == nil {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		c, err := f.dial(ctx, src)
		<-sem
		if err != nil {
			sleepCtx(ctx, 200*time.Millisecond)
			continue
		}
		stop := context.AfterFunc(ctx, func() { c.Close() })
		if len(payload) > 0 {
			c.Write(payload)
		}
		f.held.Add(1)
		for {
			if _, err := c.Read(buf); err != nil {
				break
			}
		}
		f.held.Add(-1)
		stop()
		c.Close()
		if ctx.Err() != nil {
			return
		}
		if f.counting.Load() {
			f.reopened.Add(1)
		}
		sleepCtx(ctx, 50*time.Millisecond)
	}
}

// garbageClients opens rate connections a second, each sending 1 KiB of
// random bytes and waiting (at most 1 s) for the peer to close; at most 512
// are outstanding.
func (f *flood) garbageClients(ctx context.Context) {
	tick := time.NewTicker(time.Second / time.Duration(f.rate))
	defer tick.Stop()
	sem := make(chan struct{}, 512)
	var wg sync.WaitGroup
	defer wg.Wait()
	for k := 0; ; k++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		select {
		case sem <- struct{}{}:
		default:
			continue // the peer is slower than the flood: skip a beat
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, err := f.dial(ctx, f.srcs[k%len(f.srcs)])
			if err != nil {
				return
			}
			defer c.Close()
			stop := context.AfterFunc(ctx, func() { c.Close() })
			defer stop()
			f.garbage.Add(1)
			junk := make([]byte, 1024)
			rand.Read(junk)
			if junk[0] == 0x16 {
				junk[0] = 0x17 // never a TLS handshake record
			}
			c.Write(junk)
			c.SetReadDeadline(time.Now().Add(time.Second))
			buf := make([]byte, 512)
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
			}
		}()
	}
}

func (f *flood) stop() {
	f.cancel()
	f.wg.Wait()
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// floodPhase is one measurement of the established sessions.
type floodPhase struct {
	mbps     float64
	p50, p99 float64
}

// established opens the sessions one phase measures, before it begins.
type established struct {
	data, echo []Stream
}

func openEstablished(ctx context.Context, tr Transport, streams, echo int, deadline time.Time) (*established, error) {
	e := &established{}
	var err error
	if e.echo, err = openEchoStreams(ctx, tr, echo, deadline); err != nil {
		e.close()
		return nil, fmt.Errorf("echo sessions: %w", err)
	}
	for i := range streams {
		t := tr
		t.LocalIP = net.IPv4(127, 0, 0, byte(2+i%idleSourceIPs))
		s, err := t.Dial(ctx)
		if err != nil {
			e.close()
			return nil, fmt.Errorf("data session %d: %w", i, err)
		}
		e.data = append(e.data, s)
	}
	return e, nil
}

func (e *established) close() {
	closeStreams(e.data)
	closeStreams(e.echo)
}

// measure downloads bytes over the data sessions (SHA-256 checked), then
// has the echo sessions do round trips for dur.
func (e *established) measure(ctx context.Context, cfg *Config, bytes int64, dur time.Duration) (floodPhase, error) {
	res, err := transferOn(ctx, e.data, Download, bytes, cfg.Message, time.Now().Add(cfg.CellTimeout))
	if err != nil {
		return floodPhase{}, fmt.Errorf("download: %w", err)
	}
	per := max(cfg.LatencyRoundTrips/max(len(e.echo), 1), 10)
	c, err := roundTrips(ctx, e.echo, per, cfg.LatencyMessage, dur)
	if err != nil {
		return floodPhase{}, fmt.Errorf("round trips: %w", err)
	}
	return floodPhase{mbps: float64(res.Bytes) / 1e6 / res.Wall.Seconds(), p50: c.P50Ms, p99: c.P99Ms}, nil
}

// transferOn moves total bytes (split evenly) in direction dir over
// streams that are already open, checking every stream's SHA-256, and
// closes them.
func transferOn(ctx context.Context, streams []Stream, dir string, total int64, msg int, deadline time.Time) (transferResult, error) {
	per := total / int64(len(streams))
	patternHash(per)
	var (
		wg     sync.WaitGroup
		ec     errCollector
		mu     sync.Mutex
		lastOK time.Time
	)
	start := time.Now()
	for i, s := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := transferOne(ctx, s, dir, per, msg, deadline)
			now := time.Now()
			finish(s)
			if err != nil {
				ec.fail(fmt.Errorf("stream %d: %w", i, err))
				return
			}
			mu.Lock()
			if now.After(lastOK) {
				lastOK = now
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if err := ec.err(len(streams)); err != nil {
		return transferResult{}, err
	}
	return transferResult{Bytes: per * int64(len(streams)), Wall: lastOK.Sub(start)}, nil
}

// floodRamp bounds the wait for the stalled clients to be connected.
const floodRamp = 20 * time.Second

// runFlood measures one peer: established sessions without the flood, then
// (on fresh ones, opened before it starts) during it.
func runFlood(ctx context.Context, cfg *Config, ps *procSet, pe *peer, rep *Report) error {
	pe, limits := withDefaultLimits(pe)
	r, err := startPair(ctx, cfg, ps, pe)
	if err != nil {
		return err
	}
	tr := r.transport
	deadline := time.Now().Add(cfg.CellTimeout + floodRamp + 2*cfg.FloodDuration)
	// Warm-up outside the figures.
	if _, err := transfer(ctx, tr, Download, 1, 1<<20, cfg.Message, 10*time.Second); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	quietSet, err := openEstablished(ctx, tr, cfg.FloodStreams, cfg.FloodEcho, deadline)
	if err != nil {
		return err
	}
	quiet, err := quietSet.measure(ctx, cfg, cfg.FloodBytes, cfg.FloodDuration)
	quietSet.close()
	if err != nil {
		return fmt.Errorf("without flood: %w", err)
	}
	floodSet, err := openEstablished(ctx, tr, cfg.FloodStreams, cfg.FloodEcho, deadline)
	if err != nil {
		return err
	}
	defer floodSet.close()
	before, err := r.proc.Sample()
	if err != nil {
		return err
	}
	f := newFlood(tr.Addr, tr.TLS != nil, cfg.FloodStalled, cfg.FloodGarbageRate)
	t0 := time.Now()
	f.start(ctx)
	defer f.stop()
	for int(f.held.Load()) < cfg.FloodStalled*95/100 && time.Since(t0) < floodRamp && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	ramp := time.Since(t0)
	time.Sleep(500 * time.Millisecond) // garbage at its rate, handshakes timing out
	ramped, err := r.proc.Sample()
	if err != nil {
		return err
	}
	f.counting.Store(true)
	flooded, err := floodSet.measure(ctx, cfg, cfg.FloodBytes, cfg.FloodDuration)
	held := int(f.held.Load())
	after, _ := r.proc.Sample()
	wall := time.Since(t0)
	f.stop()
	if err != nil {
		return fmt.Errorf("during the flood: %w", err)
	}
	x := FloodResult{Peer: pe.info.Name, Stalled: cfg.FloodStalled, SourceAddrs: len(f.srcs), GarbageRate: cfg.FloodGarbageRate,
		HeldAtEnd: held, Reopened: int(f.reopened.Load()), Garbage: int(f.garbage.Load()), DialErrors: int(f.dialErrs.Load()),
		RampSeconds: ramp.Seconds(), DefaultLimits: limits, Streams: cfg.FloodStreams, LatencyStreams: cfg.FloodEcho,
		QuietMBps: quiet.mbps, FloodMBps: flooded.mbps, QuietP50Ms: quiet.p50, QuietP99Ms: quiet.p99, FloodP50Ms: flooded.p50, FloodP99Ms: flooded.p99,
		FloodCPUCores: after.CPUSince(before).Seconds() / wall.Seconds(), FloodRSSGrowKiB: ramped.RSSKiB - before.RSSKiB}
	x.setRatios()
	rep.Flood = append(rep.Flood, x)
	fmt.Fprintf(cfg.Log, "flood      %-13s %d stalled (%d held, %d reopened) + %d garbage/s: %6.1f → %6.1f MB/s, p99 %.3f → %.3f ms, %.2f cores\n",
		x.Peer, x.Stalled, x.HeldAtEnd, x.Reopened, x.GarbageRate, x.QuietMBps, x.FloodMBps, x.QuietP99Ms, x.FloodP99Ms, x.FloodCPUCores)
	return nil
}

func (x *FloodResult) setRatios() {
	if x.QuietMBps > 0 {
		x.Kept = x.FloodMBps / x.QuietMBps
	}
	if x.QuietP99Ms > 0 {
		x.P99Growth = x.FloodP99Ms / x.QuietP99Ms
	}
}

// aggregateFlood replaces repeated flood rows by their medians.
func aggregateFlood(rs []FloodResult) []FloodResult {
	return aggregateRows(rs, func(c FloodResult) string { return c.Peer }, func(c *FloodResult, g []FloodResult) {
		c.Runs = len(g)
		medians(c, g, func(x *FloodResult) []*float64 {
			return []*float64{&x.QuietMBps, &x.FloodMBps, &x.QuietP50Ms, &x.QuietP99Ms, &x.FloodP50Ms, &x.FloodP99Ms, &x.FloodCPUCores}
		})
		held, _ := stat(g, func(x FloodResult) float64 { return float64(x.HeldAtEnd) })
		c.HeldAtEnd = int(held)
		c.Kept, c.KeptRange = spanned(g, func(x FloodResult) float64 { return x.Kept })
		c.P99Growth, c.P99Range = spanned(g, func(x FloodResult) float64 { return x.P99Growth })
	})
}

// floodVersus lists, for each of our flood peers, the peers it is compared
// with: like with like (Shadowsocks or not, TLS or not; gotls and nginx-tls
// for httvps-tls).
func floodVersus(ours string) []string {
	switch ours {
	case PeerHTTVPSSS:
		return []string{PeerOutline, PeerNginxWS}
	case PeerHTTVPSSSTLS:
		return []string{PeerNginxWSS}
	case PeerHTTVPSTLS:
		return []string{PeerNginxTLS, PeerGoTLS, PeerV2RayTLS}
	}
	return nil
}

// floodRows is each of our peers' flood impact beside the others'.
func (r *Report) floodSummary() []SummaryRow {
	var out []SummaryRow
	find := func(p string) *FloodResult {
		i := slices.IndexFunc(r.Flood, func(x FloodResult) bool { return x.Peer == p })
		if i < 0 {
			return nil
		}
		return &r.Flood[i]
	}
	for _, ours := range []string{PeerHTTVPSSS, PeerHTTVPSSSTLS, PeerHTTVPSTLS} {
		a := find(ours)
		if a == nil {
			continue
		}
		for _, vs := range floodVersus(ours) {
			b := find(vs)
			if b == nil {
				continue
			}
			if a.FloodMBps > 0 && b.FloodMBps > 0 {
				out = append(out, SummaryRow{Scenario: ScenarioFlood, Metric: "MB/s during the flood", Peer: ours, Versus: vs, Ratio: a.FloodMBps / b.FloodMBps})
			}
			if a.FloodP99Ms > 0 && b.FloodP99Ms > 0 {
				out = append(out, SummaryRow{Scenario: ScenarioFlood, Metric: "p99 round trip during the flood", Peer: ours, Versus: vs, Ratio: a.FloodP99Ms / b.FloodP99Ms})
			}
		}
	}
	return out
}
