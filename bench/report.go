package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// Report is everything one Run measured.
type Report struct {
	Started    time.Time        `json:"started"`
	Seconds    float64          `json:"seconds"`
	Machine    Machine          `json:"machine"`
	Settings   Settings         `json:"settings"`
	Peers      []PeerInfo       `json:"peers"`
	Throughput []ThroughputCell `json:"throughput,omitempty"`
	Ratios     []Ratio          `json:"ratios,omitempty"`
	Idle       []IdleResult     `json:"idle,omitempty"`
	Slow       []SlowResult     `json:"slowreader,omitempty"`

	TLSThroughput []ThroughputCell `json:"tls_throughput,omitempty"`
	TLSRatios     []Ratio          `json:"tls_ratios,omitempty"`
	TLSIdle       []IdleResult     `json:"tls_idle,omitempty"`
	Connect       []ConnectResult  `json:"tls_connect,omitempty"`
	ConnectRatios []ConnectRatio   `json:"tls_connect_ratios,omitempty"`
	// The native tunnel: idle tunnels, its throughput beside separate
	// Outline-path connections (httvps-tunnel ÷ httvps, and the TLS pair),
	// and a stream opened on an open tunnel beside a new TLS session.
	TunnelIdle   []TunnelIdleResult `json:"tunnel_idle,omitempty"`
	TunnelRatios []Ratio            `json:"tunnel_ratios,omitempty"`
	StreamOpen   []ConnectRatio     `json:"stream_open_ratios,omitempty"`
	// Shadowsocks peers: httvps-ss (gateway + ss-server) ÷ outline-ss and
	// nginx-ws per throughput cell (and the TLS pair), and httvps-ss-tls ÷
	// nginx-wss on new sessions.
	SSRatios        []Ratio        `json:"ss_ratios,omitempty"`
	SSConnectRatios []ConnectRatio `json:"ss_connect_ratios,omitempty"`
	// OutlineSummary is the per-scenario comparison with Outline's peers.
	OutlineSummary []SummaryRow `json:"outline_summary,omitempty"`
	// The latency scenario: round trips at each stream count, first bytes
	// of new sessions, and our peers ÷ the others of their kind and direct.
	Latency       []LatencyCell     `json:"latency,omitempty"`
	FirstByte     []FirstByteResult `json:"first_byte,omitempty"`
	LatencyRatios []LatencyRatio    `json:"latency_ratios,omitempty"`
	// The client-cpu scenario: its cells and, per cell, the reference
	// client's CPU ÷ ss-local + ss-v2ray-plugin's.
	Clients      []ClientCell  `json:"client_cpu,omitempty"`
	ClientRatios []ClientRatio `json:"client_cpu_ratios,omitempty"`
	// The handshake flood and UDP scenarios.
	Flood   []FloodResult  `json:"handshake_flood,omitempty"`
	UDP     []UDPResult    `json:"udp,omitempty"`
	Control *ControlResult `json:"control,omitempty"`
	Notes   []string       `json:"notes,omitempty"`
	Errors  []string       `json:"errors,omitempty"`
}

// Machine describes where the figures were taken.
type Machine struct {
	NProc     int    `json:"nproc"`
	CPU       string `json:"cpu"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"go_version"`
	MemTotal  string `json:"mem_total"`
	FDLimit   uint64 `json:"fd_limit"`
	ClockTick int64  `json:"clock_ticks_per_s"`
}

// Settings are the sizes the run used.
type Settings struct {
	Mode          string   `json:"mode,omitempty"`
	Runs          int      `json:"runs,omitempty"`
	Scenarios     []string `json:"scenarios"`
	BytesPerCell  int64    `json:"bytes_per_cell"`
	Streams       []int    `json:"streams"`
	MessageBytes  int      `json:"message_bytes"`
	IdleSessions  int      `json:"idle_sessions"`
	IdleSettleSec float64  `json:"idle_settle_seconds"`
	SlowSeconds   float64  `json:"slow_seconds"`
	SlowRate      int64    `json:"slow_rate_bytes_per_s"`
	SlowBytes     int64    `json:"slow_offered_bytes"`

	CertType       string `json:"tls_cert_type"`
	TLSClient      string `json:"tls_client"`
	TLSBytes       int64  `json:"tls_bytes_per_cell"`
	ConnectCount   int    `json:"tls_connect_count"`
	ConnectWorkers int    `json:"tls_connect_workers"`
	ClientBytes    int64  `json:"client_bytes_per_cell,omitempty"`

	LatencySeconds       float64 `json:"latency_seconds_per_cell,omitempty"`
	LatencyMaxRoundTrips int     `json:"latency_max_round_trips,omitempty"`
	LatencyMessage       int     `json:"latency_message_bytes,omitempty"`

	FloodBytes int64 `json:"flood_bytes,omitempty"`
	UDPPackets int64 `json:"udp_packets_per_cell,omitempty"`
}

// tlsClientDesc describes the client side of every TLS peer (clientTLS).
const tlsClientDesc = "Go crypto/tls client: TLS 1.3 only, X25519, certificate verified, no session resumption"

// certDesc names a certificate type for people.
func certDesc(t string) string {
	switch t {
	case CertECDSA:
		return "ECDSA P-256"
	case CertRSA:
		return "RSA-2048"
	}
	return t
}

// Ratio compares httvps with a reference peer in one throughput cell.
type Ratio struct {
	// Peer is ours when it is not the table's one (tunnel ratios).
	Peer      string  `json:"peer,omitempty"`
	Direction string  `json:"direction"`
	Streams   int     `json:"streams"`
	Versus    string  `json:"versus"`
	CPU       float64 `json:"cpu_ratio"`        // httvps CPU s/GiB ÷ versus
	MBps      float64 `json:"throughput_ratio"` // httvps MB/s ÷ versus
}

// tunnel names the tunnel peer of a tunnel ratio.
func (x Ratio) tunnel() string {
	switch {
	case x.Peer != "":
		return x.Peer
	case tlsPeer(x.Versus):
		return PeerTunnelTLS
	}
	return PeerTunnel
}

func newReport(cfg Config) *Report {
	var rl syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	m := Machine{
		NProc: runtime.NumCPU(), GoVersion: runtime.Version(), FDLimit: rl.Max,
		Kernel: readTrim("/proc/sys/kernel/osrelease"), ClockTick: clockTicks(),
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if kib, err := parseStatusKiB(b, "MemTotal"); err == nil {
			m.MemTotal = fmt.Sprintf("%.1f GiB", float64(kib)/(1<<20))
		}
	}
	return &Report{
		Started: time.Now(), Machine: m,
		Settings: Settings{
			Mode: cfg.Mode, Runs: cfg.Runs, Scenarios: cfg.Scenarios, BytesPerCell: cfg.Bytes, Streams: cfg.Streams,
			MessageBytes: cfg.Message, IdleSessions: cfg.Sessions, IdleSettleSec: cfg.Settle.Seconds(),
			SlowSeconds: cfg.SlowDuration.Seconds(), SlowRate: cfg.SlowRate, SlowBytes: cfg.SlowBytes,
			CertType: cfg.CertType, TLSClient: tlsClientDesc, TLSBytes: cfg.TLSBytes,
			ConnectCount: cfg.ConnectCount, ConnectWorkers: cfg.ConnectWorkers, ClientBytes: cfg.ClientBytes,
			LatencySeconds: cfg.LatencyDuration.Seconds(), LatencyMaxRoundTrips: cfg.LatencyRoundTrips,
			LatencyMessage: cfg.LatencyMessage, FloodBytes: cfg.FloodBytes, UDPPackets: cfg.UDPPackets,
		},
	}
}

func readTrim(p string) string {
	b, _ := os.ReadFile(p)
	return strings.TrimSpace(string(b))
}

func (r *Report) finish() {
	r.Seconds = time.Since(r.Started).Seconds()
	// Shadowsocks peers carry encrypted streams to a decrypting server:
	// compared only with each other (like with like).
	r.Ratios = withoutSS(ratios(r.Throughput, PeerHTTVPS))
	r.TLSRatios = withoutSS(ratios(r.TLSThroughput, PeerHTTVPSTLS))
	r.LatencyRatios = latencyRatios(r.Latency)
	r.noteShortCPU()
	defer func() { r.OutlineSummary = r.outlineSummary() }() // after every ratio
	r.SSRatios = nil
	for _, x := range append(ratios(r.Throughput, PeerHTTVPSSS), ratios(r.TLSThroughput, PeerHTTVPSSSTLS)...) {
		if ssPeer(x.Versus) && !tunnelPeer(x.Versus) {
			r.SSRatios = append(r.SSRatios, x)
		}
	}
	r.TunnelRatios = nil
	for _, x := range append(ratios(r.Throughput, PeerTunnel), ratios(r.TLSThroughput, PeerTunnelTLS)...) {
		if x.Versus == PeerHTTVPS || x.Versus == PeerHTTVPSTLS {
			r.TunnelRatios = append(r.TunnelRatios, x)
		}
	}
	// Shadowsocks streams on one tunnel beside as many Outline-path
	// WebSockets: to the same gateway + ss-server, and to Outline's peers.
	for _, x := range append(ratios(r.Throughput, PeerTunnelSS), ratios(r.TLSThroughput, PeerTunnelSSTLS)...) {
		if ssPeer(x.Versus) {
			x.Peer = PeerTunnelSS
			if tlsPeer(x.Versus) {
				x.Peer = PeerTunnelSSTLS
			}
			r.TunnelRatios = append(r.TunnelRatios, x)
		}
	}
	r.ClientRatios = nil
	for _, c := range r.Clients {
		if c.Client == ClientSSLocal {
			continue
		}
		for _, o := range r.Clients {
			if o.Client == ClientSSLocal && o.Direction == c.Direction && o.Streams == c.Streams {
				r.ClientRatios = append(r.ClientRatios, ClientRatio{Client: c.Client, Direction: c.Direction, Streams: c.Streams,
					CPU: c.CPUPerGiB / o.CPUPerGiB, MBps: c.MBps / o.MBps})
			}
		}
	}
	r.ConnectRatios, r.StreamOpen = nil, nil
	for _, c := range r.Connect {
		if c.Peer != PeerTunnelTLS {
			continue
		}
		for _, o := range r.Connect {
			if o.Peer == PeerHTTVPSTLS && o.Hogs == c.Hogs {
				r.StreamOpen = append(r.StreamOpen, ConnectRatio{Versus: o.Peer, Hogs: c.Hogs,
					CPU: c.CPUmsPerConn / o.CPUmsPerConn, Rate: c.PerSecond / o.PerSecond,
					Tail: c.SetupP999 / o.SetupP999})
			}
		}
	}
	r.SSConnectRatios = nil
	for _, c := range r.Connect {
		if c.Peer != PeerHTTVPSSSTLS {
			continue
		}
		for _, o := range r.Connect {
			if o.Peer != c.Peer && ssPeer(o.Peer) && !tunnelPeer(o.Peer) && o.Hogs == c.Hogs {
				r.SSConnectRatios = append(r.SSConnectRatios, ConnectRatio{Versus: o.Peer, Hogs: c.Hogs,
					CPU: c.CPUmsPerConn / o.CPUmsPerConn, Rate: c.PerSecond / o.PerSecond,
					Tail: c.HandshakeP999 / o.HandshakeP999})
			}
		}
	}
	for _, c := range r.Connect {
		if c.Peer != PeerHTTVPSTLS {
			continue
		}
		for _, o := range r.Connect {
			if o.Peer != c.Peer && o.Peer != PeerTunnelTLS && !ssPeer(o.Peer) && o.Hogs == c.Hogs {
				r.ConnectRatios = append(r.ConnectRatios, ConnectRatio{Versus: o.Peer, Hogs: c.Hogs,
					CPU: c.CPUmsPerConn / o.CPUmsPerConn, Rate: c.PerSecond / o.PerSecond,
					Tail: c.HandshakeP999 / o.HandshakeP999})
			}
		}
	}
}

// ratios compares peer ours with every other peer in the same cell.
func ratios(cells []ThroughputCell, ours string) []Ratio {
	var out []Ratio
	for _, c := range cells {
		if c.Peer != ours {
			continue
		}
		for _, o := range cells {
			if o.Peer == ours || o.Direction != c.Direction || o.Streams != c.Streams {
				continue
			}
			out = append(out, Ratio{Direction: c.Direction, Streams: c.Streams, Versus: o.Peer,
				CPU: c.CPUPerGiB / o.CPUPerGiB, MBps: c.MBps / o.MBps})
		}
	}
	return out
}

// WriteText writes the human tables.
func (r *Report) WriteText(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	textThroughput := func(title string, cells []ThroughputCell, rs []Ratio, bytes int64, ours string) {
		if len(cells) == 0 {
			return
		}
		fmt.Fprintf(w, "\n%s (%s per cell, %d-byte client messages)\n", title, humanBytes(bytes), r.Settings.MessageBytes)
		fmt.Fprintln(tw, "peer\tdirection\tstreams\tMB/s\tCPU s/GiB\tseconds\t")
		for _, c := range cells {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.1f\t%.2f\t%.2f\t\n", c.Peer, c.Direction, c.Streams, c.MBps, c.CPUPerGiB, c.Seconds)
		}
		tw.Flush()
		if len(rs) > 0 {
			fmt.Fprintf(w, "\n%s vs peers (ratio of CPU s/GiB; ratio of MB/s)\n", ours)
			fmt.Fprintln(tw, "direction\tstreams\tversus\tCPU ratio\tMB/s ratio\t")
			for _, x := range rs {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%.2f\t%.2f\t\n", x.Direction, x.Streams, x.Versus, x.CPU, x.MBps)
			}
			tw.Flush()
		}
	}
	textIdle := func(title string, rs []IdleResult) {
		if len(rs) == 0 {
			return
		}
		fmt.Fprintf(w, "\n%s (upstream connected, %.0fs settle)\n", title, r.Settings.IdleSettleSec)
		fmt.Fprintln(tw, "peer\tsessions\trelay fds\tbase RSS KiB\tRSS KiB\tKiB/session\tsetup s\t")
		for _, x := range rs {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%.2f\t%.1f\t\n", x.Peer, x.Sessions, x.RelayFDs, x.BaseRSSKiB, x.RSSKiB, x.PerSessionKiB, x.SetupSeconds)
		}
		tw.Flush()
	}
	textThroughput("throughput", r.Throughput, r.Ratios, r.Settings.BytesPerCell, PeerHTTVPS)
	textIdle("idle sessions", r.Idle)
	if len(r.Slow) > 0 {
		fmt.Fprintf(w, "\nslow reader (upstream offers %s, client reads %.1f MiB/s for %.0fs)\n",
			humanBytes(r.Settings.SlowBytes), float64(r.Settings.SlowRate)/(1<<20), r.Settings.SlowSeconds)
		fmt.Fprintln(tw, "peer\tread MiB\tbase RSS MiB\tpeak growth MiB\tend growth MiB\t")
		for _, x := range r.Slow {
			fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t%.1f\t\n", x.Peer, float64(x.BytesRead)/(1<<20), float64(x.BaseRSSKiB)/1024, x.PeakGrowthMiB, x.EndGrowthMiB)
		}
		tw.Flush()
	}
	if r.hasTLS() {
		fmt.Fprintf(w, "\nTLS peers: %s certificate; %s\n", certDesc(r.Settings.CertType), r.Settings.TLSClient)
	}
	textThroughput("tls-throughput", r.TLSThroughput, r.TLSRatios, r.Settings.TLSBytes, PeerHTTVPSTLS)
	textIdle("tls-idle sessions", r.TLSIdle)
	if len(r.Connect) > 0 {
		fmt.Fprintf(w, "\ntls-connect (%d connections, %d workers; handshake + upgrade + upstream dial + 1 byte echoed + close)\n",
			r.Settings.ConnectCount, r.Settings.ConnectWorkers)
		fmt.Fprintln(tw, "load\tpeer\tconn/s\tCPU ms/conn\tclient CPU ms/conn\thandshake p50/p99/p99.9 ms\tsetup p50/p99/p99.9 ms\tsuite\t")
		for _, x := range r.Connect {
			fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.3f\t%.3f\t%.2f / %.2f / %.2f\t%.2f / %.2f / %.2f\t%s\t\n", x.load(), x.Peer, x.PerSecond, x.CPUmsPerConn, x.ClientCPUmsPerConn,
				x.HandshakeP50, x.HandshakeP99, x.HandshakeP999, x.SetupP50, x.SetupP99, x.SetupP999, x.Suite)
		}
		tw.Flush()
		if len(r.ConnectRatios) > 0 {
			fmt.Fprintln(tw, "load\thttvps-tls vs\tCPU ratio\tconn/s ratio\thandshake p99.9 ratio\t")
			for _, x := range r.ConnectRatios {
				fmt.Fprintf(tw, "%s\t%s\t%.2f\t%.2f\t%.2f\t\n", x.load(), x.Versus, x.CPU, x.Rate, x.Tail)
			}
			tw.Flush()
		}
	}
	if len(r.StreamOpen) > 0 {
		fmt.Fprintln(tw, "\nload\tstream on an open tunnel vs\tCPU ratio\tper-second ratio\tsetup p99.9 ratio\t")
		for _, x := range r.StreamOpen {
			fmt.Fprintf(tw, "%s\t%s\t%.3f\t%.2f\t%.2f\t\n", x.load(), x.Versus, x.CPU, x.Rate, x.Tail)
		}
		tw.Flush()
	}
	if len(r.TunnelRatios) > 0 {
		fmt.Fprintln(w, "\nnative tunnel vs separate Outline-path connections (ratio of CPU s/GiB; ratio of MB/s)")
		fmt.Fprintln(tw, "tunnel\tdirection\tstreams\tversus\tCPU ratio\tMB/s ratio\t")
		for _, x := range r.TunnelRatios {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%.2f\t%.2f\t\n", x.tunnel(), x.Direction, x.Streams, x.Versus, x.CPU, x.MBps)
		}
		tw.Flush()
	}
	if len(r.TunnelIdle) > 0 {
		fmt.Fprintln(w, "\ntunnel-idle (native tunnels, no stream open)")
		fmt.Fprintln(tw, "peer\ttunnels\trelay fds\tclients\tbase RSS KiB\tRSS KiB\tKiB/tunnel\tsetup s\t")
		for _, x := range r.TunnelIdle {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%.2f\t%.1f\t\n", x.Peer, x.Tunnels, x.RelayFDs, x.Clients, x.BaseRSSKiB, x.RSSKiB, x.PerTunnelKiB, x.SetupSeconds)
		}
		tw.Flush()
	}
	if len(r.Clients) > 0 {
		fmt.Fprintln(w, "\nclient-cpu (SOCKS5 → client → TLS WebSocket → gateway → ss-server → sink; CPU of the client process(es))")
		fmt.Fprintln(tw, "client\tdirection\tstreams\tMB/s\tclient CPU s/GiB\tgateway CPU s/GiB\t")
		for _, c := range r.Clients {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.1f\t%.2f\t%.2f\t\n", c.Client, c.Direction, c.Streams, c.MBps, c.CPUPerGiB, c.GatewayPerGiB)
		}
		tw.Flush()
		fmt.Fprintln(tw, "client\tdirection\tstreams\tCPU ratio vs ss-local+v2ray\tMB/s ratio\t")
		for _, x := range r.ClientRatios {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.2f\t%.2f\t\n", x.Client, x.Direction, x.Streams, x.CPU, x.MBps)
		}
		tw.Flush()
	}
	r.writeSSText(w)
	r.writeLatencyText(w)
	r.writeFloodUDPText(w)
	r.writeControlText(w)
	for _, n := range r.Notes {
		fmt.Fprintln(w, "note:", n)
	}
	for _, e := range r.Errors {
		fmt.Fprintln(w, "ERROR:", e)
	}
}

func (r *Report) hasTLS() bool {
	return len(r.TLSThroughput) > 0 || len(r.TLSIdle) > 0 || len(r.Connect) > 0
}

// WriteMarkdown writes the report as Markdown.
func (r *Report) WriteMarkdown(w io.Writer) {
	fmt.Fprintf(w, "# httvps-bench report %s\n\n", r.Started.UTC().Format(time.RFC3339))
	m := r.Machine
	fmt.Fprintf(w, "Machine: %d CPUs (%s), %s RAM, kernel %s, fd limit %d; harness %s; run took %.0f s",
		m.NProc, m.CPU, m.MemTotal, m.Kernel, m.FDLimit, m.GoVersion, r.Seconds)
	if r.Settings.Mode != "" {
		fmt.Fprintf(w, " (%s run)", r.Settings.Mode)
	}
	if r.Settings.Runs > 1 {
		fmt.Fprintf(w, "; throughput, idle, latency and tls-connect ran %d times, every peer in turn each time: figures are medians, (min–max) over the runs", r.Settings.Runs)
	}
	fmt.Fprint(w, ".\n\n")
	fmt.Fprintln(w, "| peer | version | command |\n| --- | --- | --- |")
	for _, p := range r.Peers {
		fmt.Fprintf(w, "| %s | %s | `%s` |\n", p.Name, p.Version, p.Command)
	}
	mdThroughput := func(title string, cells []ThroughputCell, rs []Ratio, bytes int64, ours, extra string) {
		if len(cells) == 0 {
			return
		}
		fmt.Fprintf(w, "\n## %s\n\n%s per cell, client messages/writes of %d bytes; CPU is the relay process's run time (the sum of its threads' schedstat, nanoseconds; utime+stime where that is missing)%s.\n\n",
			title, humanBytes(bytes), r.Settings.MessageBytes, extra)
		fmt.Fprintln(w, "| peer | direction | streams | MB/s | CPU s/GiB | seconds |\n| --- | --- | ---: | ---: | ---: | ---: |")
		for _, c := range cells {
			fmt.Fprintf(w, "| %s | %s | %d | %s | %s | %.2f |\n", c.Peer, c.Direction, c.Streams, fmtRange(c.MBps, c.MBpsRange, 1), fmtRange(c.CPUPerGiB, c.CPURange, 2), c.Seconds)
		}
		if len(rs) > 0 {
			fmt.Fprintf(w, "\n| direction | streams | %s vs | CPU ratio | MB/s ratio |\n| --- | ---: | --- | ---: | ---: |\n", ours)
			for _, x := range rs {
				fmt.Fprintf(w, "| %s | %d | %s | %.2f | %.2f |\n", x.Direction, x.Streams, x.Versus, x.CPU, x.MBps)
			}
		}
	}
	mdIdle := func(title string, rs []IdleResult, extra string) {
		if len(rs) == 0 {
			return
		}
		fmt.Fprintf(w, "\n## %s\n\nEach session reaches the sink (one byte answered end to end), then %.0f s settle; KiB/session = (RSS − RSS before connecting) / sessions%s.\n\n",
			title, r.Settings.IdleSettleSec, extra)
		fmt.Fprintln(w, "| peer | sessions | relay fds | base RSS KiB | RSS KiB | KiB/session | setup s |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
		for _, x := range rs {
			fmt.Fprintf(w, "| %s | %d | %d | %d | %d | %s | %.1f |\n", x.Peer, x.Sessions, x.RelayFDs, x.BaseRSSKiB, x.RSSKiB, fmtRange(x.PerSessionKiB, x.PerSessionRange, 2), x.SetupSeconds)
		}
	}
	mdThroughput("Throughput", r.Throughput, r.Ratios, r.Settings.BytesPerCell, PeerHTTVPS, "")
	mdIdle("Idle sessions", r.Idle, "")
	if len(r.Slow) > 0 {
		fmt.Fprintf(w, "\n## Slow reader\n\nThe upstream offers %s as fast as it can; the client reads %.1f MiB/s for %.0f s; relay RSS sampled every 100 ms.\n\n",
			humanBytes(r.Settings.SlowBytes), float64(r.Settings.SlowRate)/(1<<20), r.Settings.SlowSeconds)
		fmt.Fprintln(w, "| peer | read MiB | base RSS MiB | peak growth MiB | end growth MiB |\n| --- | ---: | ---: | ---: | ---: |")
		for _, x := range r.Slow {
			fmt.Fprintf(w, "| %s | %.1f | %.1f | %.1f | %.1f |\n", x.Peer, float64(x.BytesRead)/(1<<20), float64(x.BaseRSSKiB)/1024, x.PeakGrowthMiB, x.EndGrowthMiB)
		}
	}
	if r.hasTLS() {
		fmt.Fprintf(w, "\n## TLS peers\n\nEvery TLS peer serves the same self-signed %s certificate generated for the run. Client: %s. "+
			"httvps-tls and v2ray-tls carry WebSocket over TLS (wss://); nginx-tls is nginx's stream module, a TLS-terminating TCP proxy, "+
			"and its client speaks raw TLS (no WebSocket framing), so nginx does less work per byte than a WebSocket relay. "+
			"nginx figures are summed over its master and worker processes.\n", certDesc(r.Settings.CertType), r.Settings.TLSClient)
	}
	mdThroughput("TLS throughput", r.TLSThroughput, r.TLSRatios, r.Settings.TLSBytes, PeerHTTVPSTLS,
		" (nginx: summed over master and workers). Target: httvps-tls ≤ 0.5× v2ray-tls CPU s/GiB")
	mdIdle("TLS idle sessions", r.TLSIdle, " (nginx: RSS summed over master and workers). Target: httvps-tls ≤ 10 KiB/session")
	if len(r.Connect) > 0 {
		fmt.Fprintf(w, "\n## TLS new sessions\n\n%d connections per peer, %d at a time (after %d warm-up): TCP connect, full TLS handshake, WebSocket upgrade "+
			"(not on nginx-tls), the relay's upstream dial, one byte echoed by the sink, close. CPU is the relay's; client CPU is the harness's own (it shares the cores); latencies are from the start of the TCP dial "+
			"to the finished handshake and to the echoed byte. Busy rows (tls-connect-busy) ran with one spinning CPU hog process per core beside every peer. "+
			"Targets: httvps-tls ≥ 0.9× nginx-tls conn/s and handshake p99.9 ≤ 1.5× nginx-tls's, quiet and busy; CPU per session ≤ 0.8× nginx-tls's.\n\n",
			r.Settings.ConnectCount, r.Settings.ConnectWorkers, connectWarmup)
		fmt.Fprintln(w, "| load | peer | cert | suite | conn/s | CPU ms/conn | client CPU ms/conn | handshake p50 ms | p99 | p99.9 | setup p50 ms | p99 | p99.9 |\n| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
		for _, x := range r.Connect {
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %.3f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |\n", x.load(), x.Peer, certDesc(x.CertType), x.Suite,
				fmtRange(x.PerSecond, x.RateRange, 0), fmtRange(x.CPUmsPerConn, x.CPURange, 3), x.ClientCPUmsPerConn, x.HandshakeP50, x.HandshakeP99, x.HandshakeP999, x.SetupP50, x.SetupP99, x.SetupP999)
		}
		if len(r.ConnectRatios) > 0 {
			fmt.Fprintln(w, "\n| load | httvps-tls vs | CPU ratio | conn/s ratio | handshake p99.9 ratio |\n| --- | --- | ---: | ---: | ---: |")
			for _, x := range r.ConnectRatios {
				fmt.Fprintf(w, "| %s | %s | %.2f | %.2f | %.2f |\n", x.load(), x.Versus, x.CPU, x.Rate, x.Tail)
			}
		}
	}
	r.writeSSMarkdown(w)
	r.writeLatencyMarkdown(w)
	r.writeFloodUDPMarkdown(w)
	r.writeTunnelMarkdown(w)
	r.writeClientMarkdown(w)
	r.writeControlMarkdown(w)
	if len(r.Notes) > 0 || len(r.Errors) > 0 {
		fmt.Fprintln(w, "\n## Notes and errors")
		for _, n := range r.Notes {
			fmt.Fprintf(w, "\n- note: %s", n)
		}
		for _, e := range r.Errors {
			fmt.Fprintf(w, "\n- **error**: %s", e)
		}
		fmt.Fprintln(w)
	}
}

// WriteFiles writes report-<time>.json/.md and latest.json/.md into dir.
func (r *Report) WriteFiles(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	var md strings.Builder
	r.WriteMarkdown(&md)
	stamp := r.Started.UTC().Format("20060102T150405Z")
	var files []string
	for _, f := range []struct {
		name string
		data []byte
	}{
		{"report-" + stamp + ".json", append(js, '\n')},
		{"report-" + stamp + ".md", []byte(md.String())},
		{"latest.json", append(js, '\n')},
		{"latest.md", []byte(md.String())},
	} {
		p := filepath.Join(dir, f.name)
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			return files, err
		}
		files = append(files, p)
	}
	return files, nil
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20:
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%d bytes", n)
	}
}

// writeTunnelMarkdown writes the native tunnel's sections.
func (r *Report) writeTunnelMarkdown(w io.Writer) {
	if len(r.TunnelIdle) == 0 && len(r.TunnelRatios) == 0 && len(r.StreamOpen) == 0 {
		return
	}
	fmt.Fprintf(w, "\n## Native tunnel\n\nhttvps-tunnel and httvps-tunnel-tls are the same gateway as httvps and httvps-tls, reached through "+
		"/v1/tunnel: every client stream of a scenario is a stream on one shared tunnel (the harness's own client on codec/mux, "+
		"announcing 1 MiB stream and 16 MiB session windows and 256 KiB frames), where httvps opens a WebSocket per stream.\n")
	if len(r.StreamOpen) > 0 {
		fmt.Fprintln(w, "\nA stream opened on an open tunnel (tls-connect rows of httvps-tunnel-tls: OPEN with the first byte, the member dialled, one byte echoed, "+
			"RESET) beside a new TLS session of httvps-tls. Target: CPU ratio ≤ 0.1.")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| load | versus | CPU ratio | per-second ratio | setup p99.9 ratio |\n| --- | --- | ---: | ---: | ---: |")
		for _, x := range r.StreamOpen {
			fmt.Fprintf(w, "| %s | %s | %.3f | %.2f | %.2f |\n", x.load(), x.Versus, x.CPU, x.Rate, x.Tail)
		}
	}
	if len(r.TunnelRatios) > 0 {
		fmt.Fprintln(w, "\nStreams on one tunnel beside as many Outline-path connections (throughput cells). Target at 64 streams: MB/s ratio ≥ 0.85, CPU ratio ≤ 1.15.")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| tunnel | direction | streams | versus | CPU ratio | MB/s ratio |\n| --- | --- | ---: | --- | ---: | ---: |")
		for _, x := range r.TunnelRatios {
			fmt.Fprintf(w, "| %s | %s | %d | %s | %.2f | %.2f |\n", x.tunnel(), x.Direction, x.Streams, x.Versus, x.CPU, x.MBps)
		}
	}
	if len(r.TunnelIdle) > 0 {
		fmt.Fprintf(w, "\nIdle tunnels: each upgraded with the token and SETTINGS exchanged both ways, no stream open, opened by child client processes; "+
			"then %.0f s settle. KiB/tunnel = (gateway RSS − RSS before) / tunnels. Target: ≤ 2 KiB at N ≈ 19,000.\n\n", r.Settings.IdleSettleSec)
		fmt.Fprintln(w, "| peer | tunnels | relay fds | client processes | base RSS KiB | RSS KiB | KiB/tunnel | setup s |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
		for _, x := range r.TunnelIdle {
			fmt.Fprintf(w, "| %s | %d | %d | %d | %d | %d | %.2f | %.1f |\n", x.Peer, x.Tunnels, x.RelayFDs, x.Clients, x.BaseRSSKiB, x.RSSKiB, x.PerTunnelKiB, x.SetupSeconds)
		}
	}
}

// ClientRatio compares a reference-client cell with ss-local + v2ray's.
type ClientRatio struct {
	Client    string  `json:"client"`
	Direction string  `json:"direction"`
	Streams   int     `json:"streams"`
	CPU       float64 `json:"cpu_ratio"`
	MBps      float64 `json:"throughput_ratio"`
}

// writeClientMarkdown writes the client-cpu section.
func (r *Report) writeClientMarkdown(w io.Writer) {
	if len(r.Clients) == 0 {
		return
	}
	fmt.Fprintf(w, "\n## Client CPU\n\nThe same bytes (%s per cell) go SOCKS5 → client → TLS WebSocket → one httvps gateway → a real ss-server → the sink, "+
		"Shadowsocks %s end to end. Clients: %s (`httvps connect`, native tunnel), %s (`httvps connect -transport outline`, a WebSocket per connection), "+
		"%s (`ss-local` with `ss-v2ray-plugin` mode=websocket, mux=0, tls; CPU summed over both processes). Target: %s ≤ 0.5× %s CPU s/GiB.\n\n",
		humanBytes(r.Settings.ClientBytes), clientCipher, ClientNative, ClientOutline, ClientSSLocal, ClientNative, ClientSSLocal)
	fmt.Fprintln(w, "| client | direction | streams | MB/s | client CPU s/GiB | gateway CPU s/GiB |\n| --- | --- | ---: | ---: | ---: | ---: |")
	for _, c := range r.Clients {
		fmt.Fprintf(w, "| %s | %s | %d | %.1f | %.2f | %.2f |\n", c.Client, c.Direction, c.Streams, c.MBps, c.CPUPerGiB, c.GatewayPerGiB)
	}
	if len(r.ClientRatios) > 0 {
		fmt.Fprintf(w, "\n| client | direction | streams | CPU ratio vs %s | MB/s ratio |\n| --- | --- | ---: | ---: | ---: |\n", ClientSSLocal)
		for _, x := range r.ClientRatios {
			fmt.Fprintf(w, "| %s | %s | %d | %.2f | %.2f |\n", x.Client, x.Direction, x.Streams, x.CPU, x.MBps)
		}
	}
}
