package bench

import (
	"fmt"
	"io"
	"slices"
)

// withoutSS drops the comparisons with Shadowsocks peers (unlike work).
func withoutSS(rs []Ratio) []Ratio {
	var out []Ratio
	for _, x := range rs {
		if !ssPeer(x.Versus) {
			out = append(out, x)
		}
	}
	return out
}

// ssPeersDoc says what each Shadowsocks peer does, for the Markdown report.
const ssPeersDoc = "Shadowsocks peers: the client speaks Shadowsocks AEAD (" + ssCipher + ") inside the WebSocket, end to end to a Shadowsocks " +
	"server that decrypts it and dials the sink, as an Outline deployment does. " +
	"**httvps-ss**: our gateway (Outline-compatible path, never decrypts) forwarding each WebSocket to a real ss-server (shadowsocks-libev), which decrypts. " +
	"**outline-ss**: outline-ss-server alone (its service package behind a websocket-stream listener; it terminates the WebSocket and decrypts). " +
	"**nginx-ws**: nginx's http module as a WebSocket reverse proxy (proxy_pass, Upgrade/Connection) in front of outline-ss-server. " +
	"**httvps-ss-tls** / **nginx-wss**: the same with TLS on the gateway / on nginx (outline-ss-server has no TLS listener). " +
	"CPU, RSS and fds are summed over every process of the peer (gateway + ss-server; nginx master + workers + outline-ss-server)."

// writeSSMarkdown writes the Shadowsocks peers' comparison.
func (r *Report) writeSSMarkdown(w io.Writer) {
	if len(r.SSRatios) == 0 && len(r.SSConnectRatios) == 0 && len(r.OutlineSummary) == 0 {
		return
	}
	fmt.Fprintf(w, "\n## HTTVPS against Outline\n\n%s\n", ssPeersDoc)
	if len(r.OutlineSummary) > 0 {
		fmt.Fprintln(w, "\nSummary, ours ÷ theirs per scenario (below 1 is better for HTTVPS, except MB/s and sessions per second).")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| scenario | metric | peer | versus | ratio |\n| --- | --- | --- | --- | ---: |")
		for _, x := range r.OutlineSummary {
			fmt.Fprintf(w, "| %s | %s | %s | %s | %.2f |\n", x.Scenario, x.Metric, x.Peer, x.Versus, x.Ratio)
		}
	}
	if len(r.SSRatios) > 0 {
		fmt.Fprintln(w, "\nThroughput cells (ratio of CPU s/GiB, ratio of MB/s; httvps-ss-tls rows compare TLS peers).")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| direction | streams | httvps-ss vs | CPU ratio | MB/s ratio |\n| --- | ---: | --- | ---: | ---: |")
		for _, x := range r.SSRatios {
			fmt.Fprintf(w, "| %s | %d | %s | %.2f | %.2f |\n", x.Direction, x.Streams, x.Versus, x.CPU, x.MBps)
		}
	}
	if len(r.SSConnectRatios) > 0 {
		fmt.Fprintln(w, "\nNew TLS sessions (tls-connect).")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| load | httvps-ss-tls vs | CPU ratio | conn/s ratio | handshake p99.9 ratio |\n| --- | --- | ---: | ---: | ---: |")
		for _, x := range r.SSConnectRatios {
			fmt.Fprintf(w, "| %s | %s | %.2f | %.2f | %.2f |\n", x.load(), x.Versus, x.CPU, x.Rate, x.Tail)
		}
	}
}

// writeSSText writes the same comparison as a plain table.
func (r *Report) writeSSText(w io.Writer) {
	if len(r.SSRatios) == 0 && len(r.SSConnectRatios) == 0 && len(r.OutlineSummary) == 0 {
		return
	}
	fmt.Fprintln(w, "\nhttvps-ss (gateway + ss-server) vs outline-ss-server peers (Shadowsocks inside the WebSocket)")
	for _, x := range r.SSRatios {
		fmt.Fprintf(w, "  %-8s x%-4d vs %-10s CPU ratio %.2f  MB/s ratio %.2f\n", x.Direction, x.Streams, x.Versus, x.CPU, x.MBps)
	}
	for _, x := range r.SSConnectRatios {
		fmt.Fprintf(w, "  tls-connect %s vs %-10s CPU ratio %.2f  conn/s ratio %.2f  handshake p99.9 ratio %.2f\n", x.load(), x.Versus, x.CPU, x.Rate, x.Tail)
	}
	if len(r.OutlineSummary) > 0 {
		fmt.Fprintln(w, "summary, ours ÷ theirs (below 1 is better, except MB/s and sessions per second)")
		for _, x := range r.OutlineSummary {
			fmt.Fprintf(w, "  %-15s %-40s %-13s vs %-10s %.2f\n", x.Scenario, x.Metric, x.Peer, x.Versus, x.Ratio)
		}
	}
}

// SummaryRow is one figure of HTTVPS against an Outline deployment: ours ÷
// versus for one scenario's metric (below 1 is better for HTTVPS on every
// metric except throughput and rates, where above 1 is).
type SummaryRow struct {
	Scenario string  `json:"scenario"`
	Metric   string  `json:"metric"`
	Peer     string  `json:"peer"`
	Versus   string  `json:"versus"`
	Ratio    float64 `json:"ratio"`
}

// outlineSummary gathers, per scenario, httvps-ss ÷ outline-ss and
// nginx-ws, and httvps-ss-tls ÷ nginx-wss; throughput cells are summarised
// by their median ratio.
func (r *Report) outlineSummary() []SummaryRow {
	var out []SummaryRow
	add := func(sc, metric, ours, vs string, a, b float64) {
		if a > 0 && b > 0 {
			out = append(out, SummaryRow{Scenario: sc, Metric: metric, Peer: ours, Versus: vs, Ratio: a / b})
		}
	}
	for _, pair := range [][2]string{{PeerHTTVPSSS, PeerOutline}, {PeerHTTVPSSS, PeerNginxWS}, {PeerHTTVPSSSTLS, PeerNginxWSS},
		{PeerTunnelSS, PeerOutline}, {PeerTunnelSS, PeerNginxWS}, {PeerTunnelSSTLS, PeerNginxWSS}} {
		ours, vs := pair[0], pair[1]
		cells := r.Throughput
		if tlsPeer(vs) {
			cells = r.TLSThroughput
		}
		var cpu, mbps []float64
		for _, x := range ratios(cells, ours) {
			if x.Versus == vs {
				cpu, mbps = append(cpu, x.CPU), append(mbps, x.MBps)
			}
		}
		sc := ScenarioThroughput
		if tlsPeer(vs) {
			sc = ScenarioTLSThroughput
		}
		if len(cpu) > 0 {
			out = append(out, SummaryRow{Scenario: sc, Metric: "CPU s/GiB (median of cells)", Peer: ours, Versus: vs, Ratio: median(cpu)},
				SummaryRow{Scenario: sc, Metric: "MB/s (median of cells)", Peer: ours, Versus: vs, Ratio: median(mbps)})
		}
		idle := r.Idle
		if tlsPeer(vs) {
			idle = r.TLSIdle
		}
		var a, b float64
		for _, x := range idle {
			if x.Peer == ours {
				a = x.PerSessionKiB
			}
			if x.Peer == vs {
				b = x.PerSessionKiB
			}
		}
		add(ScenarioIdle, "KiB per idle session", ours, vs, a, b)
		for _, x := range r.LatencyRatios {
			if x.Peer == ours && x.Versus == vs {
				out = append(out, SummaryRow{Scenario: ScenarioLatency, Metric: fmt.Sprintf("p99 round trip, %d streams", x.Streams), Peer: ours, Versus: vs, Ratio: x.P99})
			}
		}
		a, b = 0, 0
		for _, f := range r.FirstByte {
			if f.Peer == ours {
				a = f.P50Ms
			}
			if f.Peer == vs {
				b = f.P50Ms
			}
		}
		add(ScenarioLatency, "first byte of a new session, p50", ours, vs, a, b)
		for _, x := range r.SSConnectRatios {
			if x.Versus == vs && ours == PeerHTTVPSSSTLS {
				out = append(out, SummaryRow{Scenario: ScenarioTLSConnect, Metric: "CPU ms per new session, " + x.load(), Peer: ours, Versus: vs, Ratio: x.CPU},
					SummaryRow{Scenario: ScenarioTLSConnect, Metric: "new sessions per second, " + x.load(), Peer: ours, Versus: vs, Ratio: x.Rate})
			}
		}
	}
	out = append(out, r.udpSummary()...)
	return append(out, r.floodSummary()...)
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
