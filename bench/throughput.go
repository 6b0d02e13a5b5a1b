package bench

import (
	"context"
	"fmt"
	"time"
)

// ThroughputCell is one (peer, direction, streams) measurement.
type ThroughputCell struct {
	Peer       string  `json:"peer"`
	Direction  string  `json:"direction"`
	Streams    int     `json:"streams"`
	Bytes      int64   `json:"bytes"`
	Seconds    float64 `json:"seconds"`
	MBps       float64 `json:"mb_per_s"` // 10^6 bytes per second
	CPUSeconds float64 `json:"cpu_seconds"`
	CPUPerGiB  float64 `json:"cpu_s_per_gib"`
	RSSKiB     int64   `json:"rss_kib_after"`
	// Runs > 1: the figures are medians over that many runs, with ranges.
	Runs      int   `json:"runs,omitempty"`
	MBpsRange *Span `json:"mb_per_s_range,omitempty"`
	CPURange  *Span `json:"cpu_s_per_gib_range,omitempty"`
}

func runThroughput(ctx context.Context, cfg *Config, ps *procSet, pe *peer, bytes int64, dst *[]ThroughputCell) error {
	r, err := startPair(ctx, cfg, ps, pe)
	if err != nil {
		return err
	}
	// Warm up (first connections, lazy initialisation) outside the figures.
	if _, err := transfer(ctx, r.transport, Download, 1, 1<<20, cfg.Message, 10*time.Second); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	for _, dir := range []string{Upload, Download} {
		for _, n := range cfg.Streams {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			before, err := r.proc.Sample()
			if err != nil {
				return err
			}
			res, err := transfer(ctx, r.transport, dir, n, bytes, cfg.Message, cfg.CellTimeout)
			if err != nil {
				return fmt.Errorf("%s x%d: %w", dir, n, err)
			}
			after, err := r.proc.Sample()
			if err != nil {
				return err
			}
			cpu := after.CPUSince(before).Seconds()
			c := ThroughputCell{
				Peer: pe.info.Name, Direction: dir, Streams: n, Bytes: res.Bytes,
				Seconds:    res.Wall.Seconds(),
				MBps:       float64(res.Bytes) / 1e6 / res.Wall.Seconds(),
				CPUSeconds: cpu,
				CPUPerGiB:  cpu / (float64(res.Bytes) / (1 << 30)),
				RSSKiB:     after.RSSKiB,
			}
			*dst = append(*dst, c)
			fmt.Fprintf(cfg.Log, "throughput %-10s %-8s x%-2d %8.1f MB/s  %5.2f CPU s/GiB  (%.2fs)\n",
				c.Peer, c.Direction, c.Streams, c.MBps, c.CPUPerGiB, c.Seconds)
		}
	}
	return nil
}
