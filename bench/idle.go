package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// IdleResult is the idle-session memory measurement of one peer.
type IdleResult struct {
	Peer           string  `json:"peer"`
	Sessions       int     `json:"sessions"`
	Established    int     `json:"established"`
	SetupSeconds   float64 `json:"setup_seconds"`
	BaseRSSKiB     int64   `json:"base_rss_kib"`
	RSSKiB         int64   `json:"rss_kib"`
	PerSessionKiB  float64 `json:"per_session_kib"`
	RelayFDs       int     `json:"relay_fds"`
	CPUSetupSecond float64 `json:"cpu_seconds_setup"`
	// Runs > 1: medians over that many runs, with the range per session.
	Runs            int   `json:"runs,omitempty"`
	PerSessionRange *Span `json:"per_session_kib_range,omitempty"`
}

// idleDialers is how many sessions are set up at once.
const idleDialers = 32

// idleSourceIPs spreads client sockets over 127.0.0.2.. so one source
// address never runs short of ephemeral ports.
const idleSourceIPs = 8

// runIdleCounts runs runIdle at each of cfg.IdleCounts on a fresh relay
// (gocopy's counts capped at GoCopySessions, each count once).
func runIdleCounts(ctx context.Context, cfg *Config, ps *procSet, pe *peer, run int, dst *[]IdleResult) error {
	var done []int
	var errs []error
	for _, n := range idleCountsOf(cfg, run) {
		if pe.info.Name == PeerGoCopy {
			n = min(n, cfg.GoCopySessions)
		}
		if slices.Contains(done, n) || ctx.Err() != nil {
			continue
		}
		done = append(done, n)
		if err := runIdle(ctx, cfg, ps, pe, n, dst); err != nil {
			errs = append(errs, fmt.Errorf("%d sessions: %w", n, err))
		}
		ps.stopAll()
	}
	return errors.Join(errs...)
}

// idleCountsOf is the idle counts of run: every count in run 1, the
// largest alone in the later runs unless IdleSweepEveryRun (the curve is
// drawn once, the headline figure gets every run's median).
func idleCountsOf(cfg *Config, run int) []int {
	if run <= 1 || cfg.IdleSweepEveryRun || len(cfg.IdleCounts) == 0 {
		return cfg.IdleCounts
	}
	return []int{slices.Max(cfg.IdleCounts)}
}

func runIdle(ctx context.Context, cfg *Config, ps *procSet, pe *peer, n int, dst *[]IdleResult) error {
	r, err := startPair(ctx, cfg, ps, pe)
	if err != nil {
		return err
	}
	time.Sleep(time.Second)
	base, err := r.proc.Sample()
	if err != nil {
		return err
	}
	conns := make([]Stream, n)
	defer func() {
		var wg sync.WaitGroup
		for i := range idleDialers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := i; j < n; j += idleDialers {
					if conns[j] != nil {
						conns[j].Close()
					}
				}
			}()
		}
		wg.Wait()
	}()

	var (
		next     atomic.Int64
		ok       atomic.Int64
		firstErr error
		errOnce  sync.Once
		wg       sync.WaitGroup
	)
	setupDeadline := time.Now().Add(time.Duration(n)*10*time.Millisecond + 30*time.Second)
	start := time.Now()
	for range idleDialers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil || time.Now().After(setupDeadline) {
					return
				}
				tr := r.transport
				tr.LocalIP = net.IPv4(127, 0, 0, byte(2+i%idleSourceIPs))
				tr.ReadBuffer = 256
				s, err := openIdle(ctx, tr)
				if err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("session %d: %w", i, err) })
					continue
				}
				conns[i] = s
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	setup := time.Since(start)
	res := IdleResult{Peer: pe.info.Name, Sessions: n, Established: int(ok.Load()),
		SetupSeconds: setup.Seconds(), BaseRSSKiB: base.RSSKiB}
	if res.Established != n {
		return fmt.Errorf("only %d of %d idle sessions established: %v", res.Established, n, firstErr)
	}
	// Let the relay's runtime settle (GC, scavenger) before reading RSS.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(cfg.Settle):
	}
	x, err := r.proc.Sample()
	if err != nil {
		return err
	}
	res.RSSKiB = x.RSSKiB
	res.CPUSetupSecond = x.CPUSince(base).Seconds()
	res.PerSessionKiB = float64(x.RSSKiB-base.RSSKiB) / float64(n)
	res.RelayFDs = r.proc.FDs()
	*dst = append(*dst, res)
	fmt.Fprintf(cfg.Log, "idle       %-10s %d sessions (%d relay fds) in %.1fs: RSS %d -> %d KiB, %.1f KiB/session\n",
		res.Peer, n, res.RelayFDs, res.SetupSeconds, res.BaseRSSKiB, res.RSSKiB, res.PerSessionKiB)
	return nil
}

// openIdle opens a session, asks the sink to hold it, and waits for the
// sink's one-byte answer, so the upstream connection exists end to end.
func openIdle(ctx context.Context, tr Transport) (Stream, error) {
	s, err := tr.Dial(ctx)
	if err != nil {
		return nil, err
	}
	s.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := s.Write(modeHeader(ModeIdle, 0)); err != nil {
		s.Close()
		return nil, err
	}
	var b [1]byte
	if _, err := io.ReadFull(s, b[:]); err != nil || b[0] != idleAck {
		s.Close()
		return nil, fmt.Errorf("no ack from the sink: %q %v", b[0], err)
	}
	s.SetDeadline(time.Time{})
	return s, nil
}
