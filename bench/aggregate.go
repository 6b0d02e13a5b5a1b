package bench

import (
	"fmt"
	"slices"
)

// repeatedScenario reports whether a scenario runs once per Config.Runs;
// the others run in the first run only.
func repeatedScenario(sc string) bool {
	switch sc {
	case ScenarioThroughput, ScenarioTLSThroughput, ScenarioIdle, ScenarioTLSIdle, ScenarioLatency,
		ScenarioTLSConnect, ScenarioTLSConnectBusy, ScenarioFlood, ScenarioUDP:
		return true
	}
	return false
}

// Span is the range of a figure over the runs.
type Span struct {
	Min float64 `json:"min"`
	Max float64 `json:"max"`
}

// group collects rows by key, in the order keys first appear.
func group[T any](rows []T, key func(T) string) [][]T {
	idx := map[string]int{}
	var out [][]T
	for _, r := range rows {
		k := key(r)
		i, ok := idx[k]
		if !ok {
			i = len(out)
			idx[k] = i
			out = append(out, nil)
		}
		out[i] = append(out[i], r)
	}
	return out
}

// stat is the median and range of f over rows.
func stat[T any](rows []T, f func(T) float64) (float64, Span) {
	v := make([]float64, len(rows))
	for i, r := range rows {
		v[i] = f(r)
	}
	return median(v), Span{Min: slices.Min(v), Max: slices.Max(v)}
}

// aggregate replaces the repeated scenarios' rows, one per run, by their
// medians with the range over the runs (a row measured once is kept as is).
func (r *Report) aggregate() {
	r.Throughput = aggregateCells(r.Throughput)
	r.TLSThroughput = aggregateCells(r.TLSThroughput)
	r.Idle = aggregateIdle(r.Idle)
	r.Flood = aggregateFlood(r.Flood)
	r.UDP = aggregateUDP(r.UDP)
	r.TLSIdle = aggregateIdle(r.TLSIdle)
	var lat []LatencyCell
	for _, g := range group(r.Latency, func(c LatencyCell) string { return fmt.Sprint(c.Peer, "/", c.Streams) }) {
		c := g[0]
		if len(g) > 1 {
			c.Runs = len(g)
			c.P50Ms, _ = stat(g, func(x LatencyCell) float64 { return x.P50Ms })
			var s Span
			c.P99Ms, s = stat(g, func(x LatencyCell) float64 { return x.P99Ms })
			c.P99Range = &s
			c.P999Ms, _ = stat(g, func(x LatencyCell) float64 { return x.P999Ms })
			c.MaxMs, _ = stat(g, func(x LatencyCell) float64 { return x.MaxMs })
		}
		lat = append(lat, c)
	}
	r.Latency = lat
	var fb []FirstByteResult
	for _, g := range group(r.FirstByte, func(c FirstByteResult) string { return c.Peer }) {
		c := g[0]
		if len(g) > 1 {
			c.Runs = len(g)
			c.P50Ms, _ = stat(g, func(x FirstByteResult) float64 { return x.P50Ms })
			c.P99Ms, _ = stat(g, func(x FirstByteResult) float64 { return x.P99Ms })
			c.P999Ms, _ = stat(g, func(x FirstByteResult) float64 { return x.P999Ms })
		}
		fb = append(fb, c)
	}
	r.FirstByte = fb
	var conn []ConnectResult
	for _, g := range group(r.Connect, func(c ConnectResult) string { return fmt.Sprint(c.Peer, "/", c.Hogs) }) {
		c := g[0]
		if len(g) > 1 {
			c.Runs = len(g)
			var s, t Span
			c.CPUmsPerConn, s = stat(g, func(x ConnectResult) float64 { return x.CPUmsPerConn })
			c.PerSecond, t = stat(g, func(x ConnectResult) float64 { return x.PerSecond })
			c.CPURange, c.RateRange = &s, &t
			c.CPUSeconds, _ = stat(g, func(x ConnectResult) float64 { return x.CPUSeconds })
			c.Seconds, _ = stat(g, func(x ConnectResult) float64 { return x.Seconds })
			c.HandshakeP50, _ = stat(g, func(x ConnectResult) float64 { return x.HandshakeP50 })
			c.HandshakeP99, _ = stat(g, func(x ConnectResult) float64 { return x.HandshakeP99 })
			c.HandshakeP999, _ = stat(g, func(x ConnectResult) float64 { return x.HandshakeP999 })
			c.SetupP50, _ = stat(g, func(x ConnectResult) float64 { return x.SetupP50 })
			c.SetupP99, _ = stat(g, func(x ConnectResult) float64 { return x.SetupP99 })
			c.SetupP999, _ = stat(g, func(x ConnectResult) float64 { return x.SetupP999 })
		}
		conn = append(conn, c)
	}
	r.Connect = conn
}

func aggregateCells(cells []ThroughputCell) []ThroughputCell {
	var out []ThroughputCell
	for _, g := range group(cells, func(c ThroughputCell) string { return fmt.Sprint(c.Peer, "/", c.Direction, "/", c.Streams) }) {
		c := g[0]
		if len(g) > 1 {
			c.Runs = len(g)
			var s, t Span
			c.MBps, s = stat(g, func(x ThroughputCell) float64 { return x.MBps })
			c.CPUPerGiB, t = stat(g, func(x ThroughputCell) float64 { return x.CPUPerGiB })
			c.MBpsRange, c.CPURange = &s, &t
			c.Seconds, _ = stat(g, func(x ThroughputCell) float64 { return x.Seconds })
			c.CPUSeconds, _ = stat(g, func(x ThroughputCell) float64 { return x.CPUSeconds })
		}
		out = append(out, c)
	}
	return out
}

func aggregateIdle(rs []IdleResult) []IdleResult {
	var out []IdleResult
	for _, g := range group(rs, func(c IdleResult) string { return fmt.Sprint(c.Peer, "/", c.Sessions) }) {
		c := g[0]
		if len(g) > 1 {
			c.Runs = len(g)
			var s Span
			c.PerSessionKiB, s = stat(g, func(x IdleResult) float64 { return x.PerSessionKiB })
			c.PerSessionRange = &s
			rss, _ := stat(g, func(x IdleResult) float64 { return float64(x.RSSKiB) })
			c.RSSKiB = int64(rss)
			c.SetupSeconds, _ = stat(g, func(x IdleResult) float64 { return x.SetupSeconds })
		}
		out = append(out, c)
	}
	return out
}

// fmtRange writes a figure with its range over the runs, if it has one.
func fmtRange(v float64, s *Span, prec int) string {
	if s == nil {
		return fmt.Sprintf("%.*f", prec, v)
	}
	return fmt.Sprintf("%.*f (%.*f–%.*f)", prec, v, prec, s.Min, prec, s.Max)
}
