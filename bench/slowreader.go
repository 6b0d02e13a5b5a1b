package bench

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// SlowResult is the slow-reader measurement of one peer.
type SlowResult struct {
	Peer          string  `json:"peer"`
	Seconds       float64 `json:"seconds"`
	RateMiBps     float64 `json:"rate_mib_per_s"`
	BytesRead     int64   `json:"bytes_read"`
	BaseRSSKiB    int64   `json:"base_rss_kib"`
	PeakRSSKiB    int64   `json:"peak_rss_kib"`
	PeakGrowthMiB float64 `json:"peak_growth_mib"`
	EndGrowthMiB  float64 `json:"end_growth_mib"`
	Samples       int     `json:"samples"`
}

func runSlowReader(ctx context.Context, cfg *Config, ps *procSet, pe *peer, rep *Report) error {
	r, err := startPair(ctx, cfg, ps, pe)
	if err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond)
	base, err := r.proc.Sample()
	if err != nil {
		return err
	}
	s, err := r.transport.Dial(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	if _, err := s.Write(modeHeader(ModeDownload, uint64(cfg.SlowBytes))); err != nil {
		return err
	}

	res := SlowResult{Peer: pe.info.Name, BaseRSSKiB: base.RSSKiB, PeakRSSKiB: base.RSSKiB}
	var (
		mu       sync.Mutex
		last     int64
		stopSamp = make(chan struct{})
		sampDone = make(chan error, 1)
	)
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopSamp:
				sampDone <- nil
				return
			case <-tick.C:
			}
			x, err := r.proc.Sample()
			if err != nil {
				sampDone <- err
				return
			}
			mu.Lock()
			res.Samples++
			last = x.RSSKiB
			res.PeakRSSKiB = max(res.PeakRSSKiB, x.RSSKiB)
			mu.Unlock()
		}
	}()

	// Reads block only while the relay has nothing for us; the upstream
	// offers far more than the reader takes, so pacing is by sleeping.
	buf := make([]byte, 64<<10)
	start := time.Now()
	end := start.Add(cfg.SlowDuration)
	s.SetDeadline(end.Add(10 * time.Second))
	stop := context.AfterFunc(ctx, func() { s.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	var readErr error
	for now := start; now.Before(end) && res.BytesRead < cfg.SlowBytes; now = time.Now() {
		allowed := int64(now.Sub(start).Seconds()*float64(cfg.SlowRate)) - res.BytesRead
		if allowed <= 0 {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		n := min(allowed, int64(len(buf)), cfg.SlowBytes-res.BytesRead)
		k, err := s.Read(buf[:n])
		if !patternEqual(res.BytesRead, buf[:k]) {
			readErr = fmt.Errorf("%w: slow download at offset %d", errIntegrity, res.BytesRead)
			break
		}
		res.BytesRead += int64(k)
		if err != nil {
			readErr = fmt.Errorf("slow read after %d bytes: %w", res.BytesRead, err)
			break
		}
	}
	close(stopSamp)
	if err := <-sampDone; err != nil {
		return err
	}
	if readErr != nil {
		return readErr
	}
	if x, err := r.proc.Sample(); err == nil {
		last = x.RSSKiB
		res.PeakRSSKiB = max(res.PeakRSSKiB, x.RSSKiB)
	}
	res.Seconds = time.Since(start).Seconds()
	res.RateMiBps = float64(res.BytesRead) / (1 << 20) / res.Seconds
	res.PeakGrowthMiB = float64(res.PeakRSSKiB-base.RSSKiB) / 1024
	res.EndGrowthMiB = float64(last-base.RSSKiB) / 1024
	rep.Slow = append(rep.Slow, res)
	fmt.Fprintf(cfg.Log, "slowreader %-7s read %.1f MiB at %.2f MiB/s, peak RSS +%.1f MiB\n",
		res.Peer, float64(res.BytesRead)/(1<<20), res.RateMiBps, res.PeakGrowthMiB)
	return nil
}
