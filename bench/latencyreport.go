package bench

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// writeLatencyMarkdown writes the latency scenario's section.
func (r *Report) writeLatencyMarkdown(w io.Writer) {
	if len(r.Latency) == 0 && len(r.FirstByte) == 0 {
		return
	}
	msg := 0
	if len(r.Latency) > 0 {
		msg = r.Latency[0].MessageBytes
	}
	fmt.Fprintf(w, "\n## Latency\n\nRound trips of %d-byte messages echoed by the sink, every stream active at once (each sends, waits for its echo, "+
		"checks every byte, sends again); %s is the sink with no relay. Shadowsocks peers carry the messages encrypted to their "+
		"Shadowsocks server. Each cell runs for %.0f s (at most %d round trips, shared by its streams); latencies from the write to the last "+
		"byte of the echo, in ms, as this client sees them (client and relays share the machine's cores).\n\n", msg, PeerDirect,
		r.Settings.LatencySeconds, r.Settings.LatencyMaxRoundTrips)
	fmt.Fprintln(w, "| peer | streams | round trips | p50 ms | p99 ms | p99.9 ms | max ms |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, c := range r.Latency {
		fmt.Fprintf(w, "| %s | %d | %d | %.3f | %s | %.3f | %.2f |\n", c.Peer, c.Streams, c.RoundTrips, c.P50Ms, fmtRange(c.P99Ms, c.P99Range, 3), c.P999Ms, c.MaxMs)
	}
	if len(r.FirstByte) > 0 {
		fmt.Fprintln(w, "\nTime to first byte of a new session, sessions one after the other: from the start of the TCP dial (TLS, WebSocket upgrade, "+
			"the relay's upstream dial) to the first echoed byte; on tunnel peers, a new stream on the open tunnel.")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| peer | sessions | p50 ms | p99 ms | p99.9 ms |\n| --- | ---: | ---: | ---: | ---: |")
		for _, f := range r.FirstByte {
			fmt.Fprintf(w, "| %s | %d | %.3f | %.3f | %.3f |\n", f.Peer, f.Sessions, f.P50Ms, f.P99Ms, f.P999Ms)
		}
	}
	if len(r.LatencyRatios) > 0 {
		fmt.Fprintln(w, "\nOurs ÷ the others of the same kind (plaintext or TLS; Shadowsocks or not) and ÷ direct; tunnels ÷ the same gateway's Outline path.")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| peer | versus | streams | p50 ratio | p99 ratio | p99.9 ratio |\n| --- | --- | ---: | ---: | ---: | ---: |")
		for _, x := range r.LatencyRatios {
			fmt.Fprintf(w, "| %s | %s | %d | %.2f | %.2f | %.2f |\n", x.Peer, x.Versus, x.Streams, x.P50, x.P99, x.P999)
		}
	}
}

// writeLatencyText writes the same as plain tables.
func (r *Report) writeLatencyText(w io.Writer) {
	if len(r.Latency) == 0 && len(r.FirstByte) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "\nlatency (small messages echoed by the sink, all streams active at once; ms)")
	fmt.Fprintln(tw, "peer\tstreams\tround trips\tp50\tp99\tp99.9\tmax\t")
	for _, c := range r.Latency {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.3f\t%.3f\t%.3f\t%.2f\t\n", c.Peer, c.Streams, c.RoundTrips, c.P50Ms, c.P99Ms, c.P999Ms, c.MaxMs)
	}
	tw.Flush()
	if len(r.FirstByte) > 0 {
		fmt.Fprintln(w, "\nfirst byte of a new session (ms)")
		fmt.Fprintln(tw, "peer\tsessions\tp50\tp99\tp99.9\t")
		for _, f := range r.FirstByte {
			fmt.Fprintf(tw, "%s\t%d\t%.3f\t%.3f\t%.3f\t\n", f.Peer, f.Sessions, f.P50Ms, f.P99Ms, f.P999Ms)
		}
		tw.Flush()
	}
	if len(r.LatencyRatios) > 0 {
		fmt.Fprintln(tw, "peer\tversus\tstreams\tp50 ratio\tp99 ratio\tp99.9 ratio\t")
		for _, x := range r.LatencyRatios {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.2f\t%.2f\t%.2f\t\n", x.Peer, x.Versus, x.Streams, x.P50, x.P99, x.P999)
		}
		tw.Flush()
	}
}

// minCPUTicks is the CPU a figure needs for the clock's resolution (one
// tick) to stay under 1%.
const minCPUTicks = 100

// noteShortCPU adds the notes on the CPU figures' resolution, once per
// finish: how many came from clock ticks instead of the threads' exact run
// time (ProcSample.CPUSince), and, where the kernel has no schedstat at all,
// how many of them rest on too few ticks (the short run's small cells).
func (r *Report) noteShortCPU() {
	hz := float64(r.Machine.ClockTick)
	if hz <= 0 {
		return
	}
	if exactCPU() {
		if n := CPUFallbacks(); n > 0 {
			r.addNote(fmt.Sprintf("%d CPU readings come from clock ticks (%.0f/s), not the threads' exact run time: a thread of the peer exited during the cell", n, hz))
		}
		return
	}
	short, all := 0, 0
	for _, c := range append(append([]ThroughputCell(nil), r.Throughput...), r.TLSThroughput...) {
		all++
		if c.CPUSeconds*hz < minCPUTicks {
			short++
		}
	}
	for _, c := range r.UDP {
		all++
		if c.CPUSeconds*hz < minCPUTicks {
			short++
		}
	}
	for _, c := range r.Connect {
		all++
		if c.CPUSeconds*hz < minCPUTicks {
			short++
		}
	}
	if short == 0 {
		return
	}
	r.addNote(fmt.Sprintf("%d of %d CPU figures (throughput, tls-connect, udp) come from under %d clock ticks (%.0f/s; this kernel has no schedstat): ±1 tick is over 1%%; larger cells (-bytes, -tls-bytes, -connect, -udp-packets) need fewer", short, all, minCPUTicks, hz))
}

// addNote adds a note to the report unless it is there already.
func (r *Report) addNote(note string) {
	for _, n := range r.Notes {
		if n == note {
			return
		}
	}
	r.Notes = append(r.Notes, note)
}
