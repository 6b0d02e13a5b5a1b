package bench

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// writeFloodUDPText writes the handshake-flood and udp tables.
func (r *Report) writeFloodUDPText(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	if len(r.Flood) > 0 {
		x := r.Flood[0]
		fmt.Fprintf(w, "\nhandshake-flood (%d stalled clients from %d addresses + %d garbage conns/s; %d sessions download, %d do round trips)\n",
			x.Stalled, x.SourceAddrs, x.GarbageRate, x.Streams, x.LatencyStreams)
		fmt.Fprintln(tw, "peer\theld\treopened\tMB/s quiet\tMB/s flood\tkept\tp99 quiet ms\tp99 flood ms\tp99 growth\tCPU cores\tRSS growth MiB\t")
		for _, x := range r.Flood {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f\t%.1f\t%.2f\t%.3f\t%.3f\t%.2f\t%.2f\t%.1f\t\n", x.Peer, x.HeldAtEnd, x.Reopened, x.QuietMBps, x.FloodMBps, x.Kept,
				x.QuietP99Ms, x.FloodP99Ms, x.P99Growth, x.FloodCPUCores, float64(x.FloodRSSGrowKiB)/1024)
		}
		tw.Flush()
	}
	if len(r.UDP) > 0 {
		x := r.UDP[0]
		fmt.Fprintf(w, "\nudp (Shadowsocks UDP packets of %d bytes through the packet path to a UDP echo, at most %d in flight per association)\n", x.PayloadBytes, x.Window)
		fmt.Fprintln(tw, "peer\tassociations\tround trips/s\tCPU s/million\tdropped\tsent\tseconds\t")
		for _, x := range r.UDP {
			fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.2f\t%d\t%d\t%.2f\t\n", x.Peer, x.Associations, x.PPS, x.CPUPerMillion, x.Drops, x.Sent, x.Seconds)
		}
		tw.Flush()
	}
}

// writeFloodUDPMarkdown writes the handshake-flood and udp sections.
func (r *Report) writeFloodUDPMarkdown(w io.Writer) {
	if len(r.Flood) > 0 {
		x := r.Flood[0]
		fmt.Fprintf(w, "\n## Handshake flood\n\n%d stalled clients (half connect and send nothing, half send a partial TLS ClientHello — a partial HTTP request on "+
			"plaintext peers — and wait; reopened 50 ms after the peer closes one) from %d source addresses (%d each, under the gateway's default per-address "+
			"handshake cap), and %d garbage connections a second (1 KiB of random bytes each), "+
			"while a client on another address keeps %d established sessions downloading %s (SHA-256 checked) and %d echo sessions doing %d-byte round trips. "+
			"The same figures without the flood (on the same peer, just before) beside them. Our gateway runs with its **default per-address limits** "+
			"(-addr-rate, -addr-handshakes) in this scenario, as an operator runs it; the other scenarios turn them off. "+
			"Held: stalled connections open when the measurement ended; reopened: stalled connections the peer closed during it. "+
			"CPU: the peer's cores busy over the flood; RSS: its growth under the flood.\n\n",
			x.Stalled, x.SourceAddrs, floodPerAddr, x.GarbageRate, x.Streams, humanBytes(r.Settings.FloodBytes), x.LatencyStreams, r.Settings.LatencyMessage)
		fmt.Fprintln(w, "| peer | held | reopened | MB/s quiet | MB/s flood | kept | p50 quiet ms | p50 flood | p99 quiet ms | p99 flood | p99 growth | CPU cores | RSS growth MiB |\n"+
			"| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
		for _, x := range r.Flood {
			fmt.Fprintf(w, "| %s | %d | %d | %.1f | %.1f | %s | %.3f | %.3f | %.3f | %.3f | %s | %.2f | %.1f |\n", x.Peer, x.HeldAtEnd, x.Reopened,
				x.QuietMBps, x.FloodMBps, fmtRange(x.Kept, x.KeptRange, 2), x.QuietP50Ms, x.FloodP50Ms, x.QuietP99Ms, x.FloodP99Ms,
				fmtRange(x.P99Growth, x.P99Range, 2), x.FloodCPUCores, float64(x.FloodRSSGrowKiB)/1024)
		}
	}
	if len(r.UDP) > 0 {
		x := r.UDP[0]
		fmt.Fprintf(w, "\n## UDP\n\nShadowsocks UDP packets (%s, %d-byte payloads, a QUIC-sized datagram) through each peer's packet path — "+
			"ws(s)://…/SECRET/udp, one binary message per Shadowsocks UDP packet — to a UDP echo behind the Shadowsocks server and back: "+
			"httvps-ss is our gateway + ss-server -u (httvps-tunnel-ss: the same, each association a udp stream on one native tunnel, one DATA frame per packet), outline-ss is outline-ss-server's websocket-packet listener, nginx-ws/nginx-wss nginx's WebSocket proxy in front of it. "+
			"Each association keeps at most %d packets in flight; every echo is authenticated and its association, sequence number and bytes checked; "+
			"a packet not back within %v is a drop (counted, never retried; its slot is freed, so a loss does not stall the association). CPU is the relay's (summed over its processes) per million round trips.\n\n",
			ssCipher, x.PayloadBytes, x.Window, udpWait)
		fmt.Fprintln(w, "| peer | associations | round trips/s | CPU s/million | dropped | sent | seconds |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
		for _, x := range r.UDP {
			fmt.Fprintf(w, "| %s | %d | %s | %s | %d | %d | %.2f |\n", x.Peer, x.Associations, fmtRange(x.PPS, x.PPSRange, 0), fmtRange(x.CPUPerMillion, x.CPURange, 2), x.Drops, x.Sent, x.Seconds)
		}
	}
}
