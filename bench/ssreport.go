package bench

import (
	"fmt"
	"io"
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
	if len(r.SSRatios) == 0 && len(r.SSConnectRatios) == 0 {
		return
	}
	fmt.Fprintf(w, "\n## HTTVPS against Outline\n\n%s\n", ssPeersDoc)
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
	if len(r.SSRatios) == 0 && len(r.SSConnectRatios) == 0 {
		return
	}
	fmt.Fprintln(w, "\nhttvps-ss (gateway + ss-server) vs outline-ss-server peers (Shadowsocks inside the WebSocket)")
	for _, x := range r.SSRatios {
		fmt.Fprintf(w, "  %-8s x%-4d vs %-10s CPU ratio %.2f  MB/s ratio %.2f\n", x.Direction, x.Streams, x.Versus, x.CPU, x.MBps)
	}
	for _, x := range r.SSConnectRatios {
		fmt.Fprintf(w, "  tls-connect %s vs %-10s CPU ratio %.2f  conn/s ratio %.2f  handshake p99.9 ratio %.2f\n", x.load(), x.Versus, x.CPU, x.Rate, x.Tail)
	}
}
