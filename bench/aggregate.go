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

// spanned is the median of f over rows and a pointer to its range.
func spanned[T any](rows []T, f func(T) float64) (float64, *Span) {
	v, s := stat(rows, f)
	return v, &s
}

// medians sets each of c's fields that fields lists to its median over
// rows; fields lists the same fields, in the same order, of any row.
func medians[T any](c *T, rows []T, fields func(x *T) []*float64) {
	for i, f := range fields(c) {
		*f, _ = stat(rows, func(x T) float64 { return *fields(&x)[i] })
	}
}

// aggregateRows replaces each group of rows with the same key by its first
// row merged over the group (a row measured once is kept as is).
func aggregateRows[T any](rows []T, key func(T) string, merge func(c *T, g []T)) []T {
	var out []T
	for _, g := range group(rows, key) {
		c := g[0]
		if len(g) > 1 {
			merge(&c, g)
		}
		out = append(out, c)
	}
	return out
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
	r.Latency = aggregateRows(r.Latency, func(c LatencyCell) string { return fmt.Sprint(c.Peer, "/", c.Streams) }, func(c *LatencyCell, g []LatencyCell) {
		c.Runs = len(g)
		c.P99Ms, c.P99Range = spanned(g, func(x LatencyCell) float64 { return x.P99Ms })
		medians(c, g, func(x *LatencyCell) []*float64 { return []*float64{&x.P50Ms, &x.P999Ms, &x.MaxMs} })
	})
	r.FirstByte = aggregateRows(r.FirstByte, func(c FirstByteResult) string { return c.Peer }, func(c *FirstByteResult, g []FirstByteResult) {
		c.Runs = len(g)
		medians(c, g, func(x *FirstByteResult) []*float64 { return []*float64{&x.P50Ms, &x.P99Ms, &x.P999Ms} })
	})
	r.Connect = aggregateRows(r.Connect, func(c ConnectResult) string { return fmt.Sprint(c.Peer, "/", c.Hogs) }, func(c *ConnectResult, g []ConnectResult) {
		c.Runs = len(g)
		c.CPUmsPerConn, c.CPURange = spanned(g, func(x ConnectResult) float64 { return x.CPUmsPerConn })
		c.PerSecond, c.RateRange = spanned(g, func(x ConnectResult) float64 { return x.PerSecond })
		medians(c, g, func(x *ConnectResult) []*float64 {
			return []*float64{&x.CPUSeconds, &x.ClientCPUmsPerConn, &x.Seconds, &x.HandshakeP50, &x.HandshakeP99, &x.HandshakeP999, &x.SetupP50, &x.SetupP99, &x.SetupP999}
		})
	})
}

func aggregateCells(cells []ThroughputCell) []ThroughputCell {
	key := func(c ThroughputCell) string { return fmt.Sprint(c.Peer, "/", c.Direction, "/", c.Streams) }
	return aggregateRows(cells, key, func(c *ThroughputCell, g []ThroughputCell) {
		c.Runs = len(g)
		c.MBps, c.MBpsRange = spanned(g, func(x ThroughputCell) float64 { return x.MBps })
		c.CPUPerGiB, c.CPURange = spanned(g, func(x ThroughputCell) float64 { return x.CPUPerGiB })
		medians(c, g, func(x *ThroughputCell) []*float64 { return []*float64{&x.Seconds, &x.CPUSeconds} })
	})
}

func aggregateIdle(rs []IdleResult) []IdleResult {
	return aggregateRows(rs, func(c IdleResult) string { return fmt.Sprint(c.Peer, "/", c.Sessions) }, func(c *IdleResult, g []IdleResult) {
		c.Runs = len(g)
		c.PerSessionKiB, c.PerSessionRange = spanned(g, func(x IdleResult) float64 { return x.PerSessionKiB })
		rss, _ := stat(g, func(x IdleResult) float64 { return float64(x.RSSKiB) })
		c.RSSKiB = int64(rss)
		c.SetupSeconds, _ = stat(g, func(x IdleResult) float64 { return x.SetupSeconds })
	})
}

// fmtRange writes a figure with its range over the runs, if it has one.
func fmtRange(v float64, s *Span, prec int) string {
	if s == nil {
		return fmt.Sprintf("%.*f", prec, v)
	}
	return fmt.Sprintf("%.*f (%.*f–%.*f)", prec, v, prec, s.Min, prec, s.Max)
}
