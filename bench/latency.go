package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ScenarioLatency: request/response round trips of small messages (the sink
// echoes them) through each relay, plaintext and TLS, at several numbers of
// concurrently active streams, beside the sink reached directly; and the
// time to the first byte of a new session.
const ScenarioLatency = "latency"

// PeerDirect names the latency rows of the sink reached with no relay.
const PeerDirect = "direct"

// LatencyCell is one (peer, concurrent streams) latency measurement.
type LatencyCell struct {
	Peer         string  `json:"peer"`
	Streams      int     `json:"streams"`
	RoundTrips   int     `json:"round_trips"`
	MessageBytes int     `json:"message_bytes"`
	Seconds      float64 `json:"seconds"`
	P50Ms        float64 `json:"p50_ms"`
	P99Ms        float64 `json:"p99_ms"`
	P999Ms       float64 `json:"p999_ms"`
	MaxMs        float64 `json:"max_ms"`
	// Runs > 1: medians over that many runs; P99Range is p99's range.
	Runs     int   `json:"runs,omitempty"`
	P99Range *Span `json:"p99_ms_range,omitempty"`
}

// FirstByteResult is the time from the start of a new session's dial (TCP,
// TLS, WebSocket upgrade; a new stream on the open tunnel for tunnel peers)
// to its first echoed byte, sessions opened one after the other.
type FirstByteResult struct {
	Peer     string  `json:"peer"`
	Sessions int     `json:"sessions"`
	P50Ms    float64 `json:"p50_ms"`
	P99Ms    float64 `json:"p99_ms"`
	P999Ms   float64 `json:"p999_ms"`
	Runs     int     `json:"runs,omitempty"` // > 1: medians over that many runs
}

// LatencyRatio is ours ÷ versus at one stream count (p50, p99, p99.9).
type LatencyRatio struct {
	Peer    string  `json:"peer"`
	Versus  string  `json:"versus"`
	Streams int     `json:"streams"`
	P50     float64 `json:"p50_ratio"`
	P99     float64 `json:"p99_ratio"`
	P999    float64 `json:"p999_ratio"`
}

// latencyDialers bounds how many sessions of a cell are set up at once.
const latencyDialers = 32

// runLatency measures one peer (pe nil: the sink directly).
func runLatency(ctx context.Context, cfg *Config, ps *procSet, pe *peer, rep *Report) error {
	var (
		tr   Transport
		name = PeerDirect
	)
	if pe == nil {
		_, sinkAddr, err := ps.startSelf("sink", []string{cfg.Self, "sink", "-listen", "127.0.0.1:0"})
		if err != nil {
			return err
		}
		tr = Transport{Addr: sinkAddr}
	} else {
		r, err := startPair(ctx, cfg, ps, pe)
		if err != nil {
			return err
		}
		tr, name = r.transport, pe.info.Name
	}
	// Warm-up (lazy initialisation, the tunnel's dial), then first bytes.
	if _, _, err := connectMany(ctx, tr, 20, 1); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	lat, _, err := connectMany(ctx, tr, cfg.FirstByteSessions, 1)
	if err != nil {
		return fmt.Errorf("first byte: %w", err)
	}
	fb := make([]time.Duration, len(lat))
	for i, l := range lat {
		fb[i] = l.Upgrade
	}
	f := FirstByteResult{Peer: name, Sessions: len(fb), P50Ms: percentileMs(fb, 50), P99Ms: percentileMs(fb, 99), P999Ms: percentileMs(fb, 99.9)}
	rep.FirstByte = append(rep.FirstByte, f)
	fmt.Fprintf(cfg.Log, "first-byte %-17s %d sessions: p50 %.3f p99 %.3f p99.9 %.3f ms\n", name, f.Sessions, f.P50Ms, f.P99Ms, f.P999Ms)
	for _, n := range cfg.LatencyStreams {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		per := max(cfg.LatencyRoundTrips/n, 10)
		c, err := latencyCell(ctx, tr, n, per, cfg.LatencyMessage, cfg.LatencyDuration, cfg.CellTimeout)
		if err != nil {
			return fmt.Errorf("x%d: %w", n, err)
		}
		c.Peer = name
		rep.Latency = append(rep.Latency, c)
		fmt.Fprintf(cfg.Log, "latency    %-17s x%-4d %6d round trips: p50 %.3f p99 %.3f p99.9 %.3f max %.2f ms\n",
			name, n, c.RoundTrips, c.P50Ms, c.P99Ms, c.P999Ms, c.MaxMs)
	}
	return nil
}

// latencyCell opens n echo streams, then has each do round trips of msg
// bytes at the same time, checking every echoed byte, for dur (every peer is
// exposed to the machine's hiccups for as long) but at most per each.
func latencyCell(ctx context.Context, tr Transport, n, per, msg int, dur, timeout time.Duration) (LatencyCell, error) {
	deadline := time.Now().Add(timeout + dur)
	if tr.mux != nil {
		tr.mux = tr.mux.fresh()
		defer tr.mux.close()
	}
	streams, err := openEchoStreams(ctx, tr, n, deadline)
	defer closeStreams(streams)
	if err != nil {
		return LatencyCell{}, err
	}
	return roundTrips(ctx, streams, per, msg, dur)
}

func closeStreams(streams []Stream) {
	for _, s := range streams {
		if s != nil {
			s.Close()
		}
	}
}

// errCollector keeps the first few errors of many goroutines and how many
// there were.
type errCollector struct {
	mu     sync.Mutex
	errs   []error
	failed int
}

func (c *errCollector) fail(err error) {
	c.mu.Lock()
	if c.failed++; len(c.errs) < 5 {
		c.errs = append(c.errs, err)
	}
	c.mu.Unlock()
}

func (c *errCollector) err(n int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failed == 0 {
		return nil
	}
	return fmt.Errorf("%d of %d streams failed: %w", c.failed, n, errors.Join(c.errs...))
}

// openEchoStreams dials n echo streams (source addresses 127.0.0.2…),
// each with the deadline; on an error the streams opened so far are
// returned with it, for the caller to close.
func openEchoStreams(ctx context.Context, tr Transport, n int, deadline time.Time) ([]Stream, error) {
	streams := make([]Stream, n)
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		ec   errCollector
	)
	for range min(n, latencyDialers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				t := tr
				t.LocalIP = net.IPv4(127, 0, 0, byte(2+i%idleSourceIPs))
				s, err := t.Dial(ctx)
				if err == nil {
					s.SetDeadline(deadline)
					_, err = s.Write(modeHeader(ModeEcho, 0))
				}
				if err != nil {
					if s != nil {
						s.Close()
					}
					ec.fail(fmt.Errorf("stream %d: %w", i, err))
					return
				}
				streams[i] = s
			}
		}()
	}
	wg.Wait()
	return streams, ec.err(n)
}

// roundTrips has each of the open echo streams do round trips of msg bytes
// at the same time, checking every echoed byte, for dur but at most per
// each.
func roundTrips(ctx context.Context, streams []Stream, per, msg int, dur time.Duration) (LatencyCell, error) {
	n := len(streams)
	var (
		wg    sync.WaitGroup
		ec    errCollector
		fail  = ec.fail
		ready sync.WaitGroup
	)
	failure := func() error { return ec.err(n) }
	stop := context.AfterFunc(ctx, func() {
		for _, s := range streams {
			s.SetDeadline(time.Unix(1, 0))
		}
	})
	defer stop()
	// One round trip each before the clock: the upstream exists end to end.
	rtts := make([][]time.Duration, n)
	start := make(chan struct{})
	var began time.Time // set before start is closed
	for i, s := range streams {
		wg.Add(1)
		ready.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, msg)
			err := roundTrip(s, buf, int64(i)*int64(msg))
			ready.Done()
			if err != nil {
				fail(fmt.Errorf("stream %d warm-up: %w", i, err))
				return
			}
			<-start
			d := make([]time.Duration, 0, per)
			for k := 0; k < per && time.Since(began) < dur; k++ {
				t0 := time.Now()
				if err := roundTrip(s, buf, int64(i+k+1)*int64(msg)); err != nil {
					fail(fmt.Errorf("stream %d round trip %d: %w", i, k, err))
					return
				}
				d = append(d, time.Since(t0))
			}
			rtts[i] = d
		}()
	}
	ready.Wait()
	began = time.Now()
	close(start)
	wg.Wait()
	wall := time.Since(began)
	if err := failure(); err != nil {
		return LatencyCell{}, err
	}
	var all []time.Duration
	for _, d := range rtts {
		all = append(all, d...)
	}
	c := LatencyCell{Streams: n, RoundTrips: len(all), MessageBytes: msg, Seconds: wall.Seconds(),
		P50Ms: percentileMs(all, 50), P99Ms: percentileMs(all, 99), P999Ms: percentileMs(all, 99.9), MaxMs: percentileMs(all, 100)}
	return c, nil
}

// roundTrip writes msg bytes of the pattern from offset off and checks the
// echo is exactly those bytes.
func roundTrip(s Stream, buf []byte, off int64) error {
	p := buf[:0]
	for len(p) < len(buf) {
		p = append(p, patternAt(off+int64(len(p)), len(buf)-len(p))...)
	}
	if _, err := s.Write(p); err != nil {
		return err
	}
	// The write is done with buf: the echo is read into it and compared.
	if _, err := io.ReadFull(s, buf); err != nil {
		return err
	}
	if !patternEqual(off, buf) {
		return fmt.Errorf("%w: echo of %d bytes at offset %d differs", errIntegrity, len(buf), off)
	}
	return nil
}

// latencyRatios compares each of our peers with the others of its kind
// (plaintext or TLS, Shadowsocks or not) and with direct, per stream count;
// a tunnel peer is compared with the same gateway's Outline path.
func latencyRatios(cells []LatencyCell) []LatencyRatio {
	versus := func(ours, o string) bool {
		switch ours {
		case PeerTunnel:
			return o == PeerHTTVPS || o == PeerDirect
		case PeerTunnelTLS:
			return o == PeerHTTVPSTLS || o == PeerDirect
		case PeerTunnelSS:
			return o == PeerHTTVPSSS || o == PeerOutline || o == PeerNginxWS || o == PeerDirect
		case PeerTunnelSSTLS:
			return o == PeerHTTVPSSSTLS || o == PeerNginxWSS || o == PeerDirect
		case PeerHTTVPS, PeerHTTVPSTLS, PeerHTTVPSSS, PeerHTTVPSSSTLS:
			return o == PeerDirect || (!ownPeer(o) && tlsPeer(o) == tlsPeer(ours) && ssPeer(o) == ssPeer(ours))
		}
		return false
	}
	var out []LatencyRatio
	for _, c := range cells {
		for _, o := range cells {
			if o.Streams != c.Streams || o.Peer == c.Peer || !versus(c.Peer, o.Peer) {
				continue
			}
			out = append(out, LatencyRatio{Peer: c.Peer, Versus: o.Peer, Streams: c.Streams,
				P50: c.P50Ms / o.P50Ms, P99: c.P99Ms / o.P99Ms, P999: c.P999Ms / o.P999Ms})
		}
	}
	return out
}

// ownPeer reports whether a peer is one of HTTVPS's own.
func ownPeer(name string) bool {
	switch name {
	case PeerHTTVPS, PeerHTTVPSTLS, PeerHTTVPSSS, PeerHTTVPSSSTLS, PeerTunnel, PeerTunnelTLS, PeerTunnelSS, PeerTunnelSSTLS:
		return true
	}
	return false
}
