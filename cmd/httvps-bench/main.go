// Command httvps-bench measures the HTTVPS gateway against a plain Go relay,
// v2ray-plugin and (over TLS) nginx: bulk throughput and CPU, memory per idle
// session, memory under a slow reader, and the cost of a new TLS session;
// and the control side (token checks, the client API, Redis) against a real
// redis-server. See bench/ for what each scenario does.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/httvps/httvps/bench"
	"github.com/httvps/httvps/internal/cliconf"
	"golang.org/x/sys/unix"
)

const usage = `usage: httvps-bench [flags]            run the benchmark
       httvps-bench sink  -listen ADDR   (internal) the upstream sink
       httvps-bench relay -listen ADDR -target ADDR [-buffered]
                                         (internal) the gocopy / gobuf peer
       httvps-bench hog                  (internal) spin one CPU (tls-connect-busy)

Each relay runs alone as its own process; the same bytes go through every
relay and every stream's SHA-256 is checked. Results: a table on stdout and
OUT/report-<time>.{json,md}, OUT/latest.{json,md} and charts (OUT is
bench/out, ignored by git; make bench-publish copies a full run into
docs/bench). The run plan and its estimated duration come first (-plan:
only that); on a terminal, progress is one line redrawn in place.

Examples:
  go run ./cmd/httvps-bench
  go run ./cmd/httvps-bench -scenarios throughput -peers gocopy,v2ray -bytes 256M
  go run ./cmd/httvps-bench -scenarios idle -sessions 5000
  go run ./cmd/httvps-bench -scenarios tls-connect -cert-type rsa
  go run ./cmd/httvps-bench -scenarios control
  go run ./cmd/httvps-bench -scenarios handshake-flood -peers httvps-tls,nginx-tls -flood-stalled 8000
  go run ./cmd/httvps-bench -scenarios udp -peers httvps-ss,outline-ss -udp-packets 100000
  go run ./cmd/httvps-bench -short -plan

Plaintext scenarios (throughput, idle, slowreader) run on the plaintext
peers; TLS scenarios (tls-throughput, tls-idle, tls-connect, tls-connect-busy) on the TLS peers
(httvps-tls, v2ray-tls, nginx-tls), which all serve one certificate generated
for the run. nginx-tls needs nginx's stream module (Debian libnginx-mod-stream).
Shadowsocks peers (httvps-ss, outline-ss, nginx-ws; TLS: httvps-ss-tls,
nginx-wss) carry Shadowsocks inside the WebSocket to a server that decrypts
it: our gateway + ss-server against outline-ss-server, alone or behind
nginx; outline-ss-server is built from tools/outline-ss-server (its own
module, a pinned version). The latency scenario runs on every peer and on
the sink alone (small echoed messages at 1, 100, 1000 active streams).
handshake-flood holds stalled and garbage TLS (or HTTP) clients against
each TLS peer and the plaintext Shadowsocks peers while established
sessions download and echo, beside the same without the flood; the
gateway runs there with its default per-address limits. udp sends
Shadowsocks UDP packets through the packet paths (/SECRET/udp) of the
Shadowsocks peers (udp streams on the tunnel peers) to a UDP echo, every echo checked, drops counted.
The control scenario runs once, on no relay: it starts redis-server and
measures storeauth token checks (cache hit and miss, in this process),
GET /v1/client/config against bin/httvps-control, and redis-benchmark.

flags:
`

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "sink":
			os.Exit(serveSub(os.Args[2:], false))
		case "relay":
			os.Exit(serveSub(os.Args[2:], true))
		case "hog":
			bench.Hog()
		case "tunnels":
			os.Exit(serveTunnels(os.Args[2:]))
		}
	}
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("httvps-bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	var (
		scenarios = fs.String("scenarios", "throughput,idle,slowreader,tls-throughput,tls-idle,tls-connect,tls-connect-busy,tunnel-idle,latency,handshake-flood,udp,client-cpu,control", "scenarios to run: throughput, idle, slowreader, tls-throughput, tls-idle, tls-connect, tls-connect-busy (tls-connect with one CPU hog per core), tunnel-idle (idle native tunnels), latency (small-message round trips at several concurrent streams, and first byte of a new session, every peer and direct), handshake-flood (stalled and garbage clients while established sessions move data; TLS and Shadowsocks peers), udp (Shadowsocks UDP packets through the packet paths; Shadowsocks peers), client-cpu (the reference client beside ss-local + v2ray-plugin), control")
		peers     = fs.String("peers", "httvps,httvps-tunnel,gocopy,gobuf,v2ray,httvps-ss,httvps-tunnel-ss,outline-ss,nginx-ws,httvps-tls,httvps-tunnel-tls,v2ray-tls,nginx-tls,gotls,httvps-ss-tls,httvps-tunnel-ss-tls,nginx-wss", "relays to measure: httvps (bin/httvps-gateway, a WebSocket per stream), httvps-tunnel (the same gateway, streams on one native tunnel), gocopy (Go io.Copy, splice), gobuf (Go io.Copy, 32 KiB buffer), v2ray (ss-v2ray-plugin); Shadowsocks inside the WebSocket: httvps-ss (gateway + ss-server), httvps-tunnel-ss (the same, streams on native tunnels), outline-ss (outline-ss-server), nginx-ws (nginx WebSocket proxy + outline-ss-server); over TLS: httvps-tls, httvps-tunnel-tls, v2ray-tls, nginx-tls (nginx stream TLS proxy, raw TLS client), gotls (Go crypto/tls relay, raw TLS client: the floor of a Go TLS server), httvps-ss-tls, httvps-tunnel-ss-tls, nginx-wss; a missing binary is skipped with a note")
		outlineB  = fs.String("outline", "", "outline-ss, nginx-ws, nginx-wss: the outline-ss-bench binary (\"\": build it from -outline-src)")
		outlineS  = fs.String("outline-src", "tools/outline-ss-server", "the tools module with our main around outline-ss-server's service package (its own go.mod, a pinned version)")
		ssServer  = fs.String("ss-server", "ss-server", "httvps-ss, client-cpu: the ss-server binary (shadowsocks-libev)")
		gateway   = fs.String("gateway", "bin/httvps-gateway", "our gateway binary (go build -o bin/httvps-gateway ./cmd/httvps-gateway)")
		gwArgs    = fs.String("gateway-args", "", "extra gateway flags, space separated (e.g. \"-buffer-cap 262144\")")
		gwEnv     = fs.String("gateway-env", "", "extra gateway environment, space separated KEY=VALUE (e.g. \"GOMAXPROCS=4\")")
		v2ray     = fs.String("v2ray", "ss-v2ray-plugin", "v2ray-plugin binary")
		nginx     = fs.String("nginx", "/usr/sbin/nginx", "nginx binary (nginx-tls peer)")
		certType  = fs.String("cert-type", "ecdsa", "TLS peers' certificate: ecdsa (P-256) or rsa (2048)")
		tlsBytes  = fs.String("tls-bytes", "512M", "tls-throughput: bytes per (peer, direction, streams) cell")
		connN     = fs.Int("connect", 1000, "tls-connect: connections per peer")
		connW     = fs.Int("connect-workers", 4, "tls-connect: connections opened at once")
		busyHogs  = fs.Int("busy-hogs", runtime.NumCPU(), "tls-connect-busy: spinning CPU hog processes beside every peer")
		bytesFlag = fs.String("bytes", "512M", "throughput: bytes per (peer, direction, streams) cell; K/M/G suffixes are binary")
		streams   = fs.String("streams", "1,16,64", "throughput: parallel stream counts")
		latStr    = fs.String("latency-streams", "1,100,1000", "latency: concurrently active stream counts")
		latDur    = fs.Duration("latency-duration", 1500*time.Millisecond, "latency: how long each cell's streams do round trips")
		latRTs    = fs.Int("latency-round-trips", 100000, "latency: at most this many round trips per cell, shared by its streams (at least 10 each)")
		latMsg    = fs.Int("latency-msg", 64, "latency: message size, bytes")
		fbN       = fs.Int("first-byte", 300, "latency: new sessions, one after the other, for the time to first byte")
		flStalled = fs.Int("flood-stalled", 5000, "handshake-flood: stalled clients held open (250 per source address 127.0.1.x)")
		flRate    = fs.Int("flood-garbage", 200, "handshake-flood: garbage connections per second")
		flStreams = fs.Int("flood-streams", 4, "handshake-flood: established sessions downloading during the flood")
		flEcho    = fs.Int("flood-echo", 10, "handshake-flood: established sessions doing round trips during the flood")
		flBytes   = fs.String("flood-bytes", "256M", "handshake-flood: bytes the established sessions download per phase")
		flDur     = fs.Duration("flood-duration", 2*time.Second, "handshake-flood: how long the round trips run per phase")
		udpN      = fs.String("udp-packets", "50000", "udp: packets per (peer, associations) cell")
		udpAssoc  = fs.String("udp-assocs", "1,8", "udp: association counts")
		udpWin    = fs.Int("udp-window", 32, "udp: packets in flight per association")
		udpSize   = fs.Int("udp-payload", 1200, "udp: payload bytes per packet")
		tunnels   = fs.Int("tunnels", 19000, "tunnel-idle: idle native tunnels per tunnel peer (the gateway holds one fd each; max 19500)")
		msg       = fs.String("msg", "16K", "throughput: client message (write) size")
		cellTO    = fs.Duration("cell-timeout", 120*time.Second, "throughput: time limit per cell")
		sessions  = fs.String("sessions", "1000,3000,9000", "idle, tls-idle: sessions per relay, a list runs once per count on a fresh relay (memory per session against N; max 9900: the relay holds 2 fds each under a 20000-fd limit)")
		gcSess    = fs.Int("gocopy-sessions", 3000, "idle: sessions for gocopy (its spliced io.Copy holds 6 fds per idle session; max 3316)")
		settle    = fs.Duration("settle", 5*time.Second, "idle: wait after the last session before reading RSS (every relay gets the same; long enough for a steady state)")
		slowDur   = fs.Duration("slow-duration", 10*time.Second, "slowreader: how long the client reads")
		slowRate  = fs.String("slow-rate", "2M", "slowreader: client read rate, bytes per second")
		slowBytes = fs.String("slow-bytes", "256M", "slowreader: bytes the upstream offers")
		httvpsBin = fs.String("httvps", "bin/httvps", "client-cpu: the reference client binary (go build -o bin/httvps ./cmd/httvps)")
		clientB   = fs.String("client-bytes", "256M", "client-cpu: bytes per (client, direction, streams) cell")
		control   = fs.String("control", "bin/httvps-control", "control: the control plane binary (go build -o bin/httvps-control ./cmd/httvps-control)")
		redisBin  = fs.String("redis-server", "redis-server", "control: redis-server binary")
		redisB    = fs.String("redis-benchmark", "redis-benchmark", "control: redis-benchmark binary")
		checkTime = fs.Duration("token-check-time", 3*time.Second, "control: duration of each token-check run")
		loadTime  = fs.Duration("config-load-time", 5*time.Second, "control: duration of the GET /v1/client/config load")
		loadConns = fs.Int("config-conns", 8, "control: keep-alive connections of the client config load")
		out       = fs.String("out", "bench/out", "report directory (\"\" for none); bench/out is ignored by git: make bench-publish copies the last full run into bench/results for the README")
		planOnly  = fs.Bool("plan", false, "print the run plan with its estimated duration and exit")
		quiet     = fs.Bool("q", false, "no progress lines on stderr")
		runs      = fs.Int("runs", 5, "times the repeated scenarios (throughput, tls-throughput, idle, tls-idle, latency, tls-connect, tls-connect-busy) run, every peer in turn each time; figures are medians with the range")
		chartsSrc = fs.String("charts-src", "tools/benchcharts", "the tools module that draws the charts (SVG, PNG) into -out (gonum.org/v1/plot, its own go.mod)")
		noCharts  = fs.Bool("no-charts", false, "write no charts")
		short     = fs.Bool("short", false, "the short run (make bench, about 10 minutes on 2 cores): smaller cells and counts for every flag not given (see shortFlags); without it, the full run (make bench-full)")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	mode := "full"
	if *short {
		mode = "short"
		given := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
		for name, v := range shortFlags {
			if !given[name] {
				if err := fs.Set(name, v); err != nil {
					fmt.Fprintln(os.Stderr, "httvps-bench: -short:", name, err)
					return 2
				}
			}
		}
	}
	cfg := bench.Config{
		GatewayBin: *gateway, V2RayBin: *v2ray, NginxBin: *nginx, CertType: *certType,
		OutlineBin: *outlineB, OutlineSrc: *outlineS, SSServerBin: *ssServer, Mode: mode,
		ChartsSrc: *chartsSrc, NoCharts: *noCharts, Runs: *runs,
		LatencyRoundTrips: *latRTs, LatencyDuration: *latDur, LatencyMessage: *latMsg, FirstByteSessions: *fbN,
		ConnectCount: *connN, ConnectWorkers: *connW, BusyHogs: *busyHogs,
		Peers: cliconf.SplitList(*peers), Scenarios: cliconf.SplitList(*scenarios),
		GatewayArgs: strings.Fields(*gwArgs), GatewayEnv: strings.Fields(*gwEnv),
		CellTimeout: *cellTO, Tunnels: *tunnels, Settle: *settle,
		SlowDuration: *slowDur, OutDir: *out, Out: os.Stdout, Log: os.Stderr,
		HTTVPSBin: *httvpsBin, ControlBin: *control, RedisBin: *redisBin, RedisBenchBin: *redisB,
		TokenCheckTime: *checkTime, ConfigLoadTime: *loadTime, ConfigConns: *loadConns,
		FloodStalled: *flStalled, FloodGarbageRate: *flRate, FloodStreams: *flStreams, FloodEcho: *flEcho, FloodDuration: *flDur,
		UDPWindow: *udpWin, UDPPayload: *udpSize,
	}
	if *quiet {
		cfg.Log = nil
	} else {
		cfg.Live = isTerminal(os.Stderr)
	}
	cfg.PlanOnly = *planOnly
	var err error
	if cfg.Self, err = os.Executable(); err != nil {
		fmt.Fprintln(os.Stderr, "httvps-bench:", err)
		return 1
	}
	for _, f := range []struct {
		s   string
		dst *int64
	}{{*bytesFlag, &cfg.Bytes}, {*tlsBytes, &cfg.TLSBytes}, {*slowRate, &cfg.SlowRate}, {*slowBytes, &cfg.SlowBytes}, {*clientB, &cfg.ClientBytes}, {*flBytes, &cfg.FloodBytes}, {*udpN, &cfg.UDPPackets}} {
		if *f.dst, err = parseSize(f.s); err != nil {
			fmt.Fprintln(os.Stderr, "httvps-bench:", err)
			return 2
		}
	}
	m, err := parseSize(*msg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "httvps-bench:", err)
		return 2
	}
	cfg.Message = int(m)
	for _, s := range cliconf.SplitList(*streams) {
		n, err := strconv.Atoi(s)
		if err != nil {
			fmt.Fprintln(os.Stderr, "httvps-bench: -streams:", err)
			return 2
		}
		cfg.Streams = append(cfg.Streams, n)
	}

	for _, s := range cliconf.SplitList(*sessions) {
		n, err := strconv.Atoi(s)
		if err != nil {
			fmt.Fprintln(os.Stderr, "httvps-bench: -sessions:", err)
			return 2
		}
		cfg.IdleCounts = append(cfg.IdleCounts, n)
		cfg.Sessions = max(cfg.Sessions, n)
	}
	cfg.GoCopySessions = min(*gcSess, max(cfg.Sessions, 1))
	for _, s := range cliconf.SplitList(*latStr) {
		n, err := strconv.Atoi(s)
		if err != nil {
			fmt.Fprintln(os.Stderr, "httvps-bench: -latency-streams:", err)
			return 2
		}
		cfg.LatencyStreams = append(cfg.LatencyStreams, n)
	}

	for _, s := range cliconf.SplitList(*udpAssoc) {
		n, err := strconv.Atoi(s)
		if err != nil {
			fmt.Fprintln(os.Stderr, "httvps-bench: -udp-assocs:", err)
			return 2
		}
		cfg.UDPAssociations = append(cfg.UDPAssociations, n)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := bench.Run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "httvps-bench:", err)
		return 1
	}
	return 0
}

// shortFlags are -short's values: every scenario and peer still runs, with
// cells long enough for CPU figures (hundreds of clock ticks) but fewer and
// smaller (measured on 2 cores: see bench/doc.go).
var shortFlags = map[string]string{
	"runs":             "1",
	"bytes":            "256M",
	"tls-bytes":        "256M",
	"streams":          "1,16",
	"sessions":         "2000",
	"gocopy-sessions":  "2000",
	"settle":           "3s",
	"slow-duration":    "5s",
	"connect":          "500",
	"tunnels":          "3000",
	"latency-duration": "1s",
	"first-byte":       "200",
	"client-bytes":     "128M",
	"token-check-time": "1s",
	"config-load-time": "2s",
	"flood-stalled":    "2000",
	"flood-bytes":      "128M",
	"flood-duration":   "1s",
	"udp-packets":      "30000",
}

// serveSub runs the sink or the gocopy relay until killed, after printing
// "listening ADDR" for the harness.
func serveSub(args []string, relay bool) int {
	fs := flag.NewFlagSet("httvps-bench sub", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "listen address")
	target := fs.String("target", "", "relay: upstream address")
	buffered := fs.Bool("buffered", false, "relay: copy through a user-space buffer instead of splice")
	tlsCert := fs.String("tls-cert", "", "relay: terminate TLS with this certificate (PEM; the gotls peer)")
	tlsKey := fs.String("tls-key", "", "relay: the key of -tls-cert")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if relay && *target == "" {
		fmt.Fprintln(os.Stderr, "relay: -target is required")
		return 2
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if *tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(*tlsCert, *tlsKey)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	if !relay {
		// The sink echoes UDP on its TCP port too (the udp scenario).
		pc, err := net.ListenPacket("udp", ln.Addr().String())
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		go bench.ServeUDPEcho(pc)
	}
	fmt.Printf("listening %s\n", ln.Addr())
	if relay {
		err = (&bench.GoCopyRelay{Target: *target, Buffered: *buffered}).Serve(ln)
	} else {
		err = (&bench.Sink{}).Serve(ln)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// serveTunnels runs the "tunnels" subcommand (bench.ServeTunnels).
func serveTunnels(args []string) int {
	var c bench.TunnelsConfig
	fs := flag.NewFlagSet("httvps-bench tunnels", flag.ContinueOnError)
	fs.StringVar(&c.Addr, "addr", "", "gateway address")
	fs.StringVar(&c.Token, "token", "", "token")
	fs.IntVar(&c.N, "n", 1, "tunnels to open")
	fs.IntVar(&c.Src, "src", 2, "first source address 127.0.0.SRC (eight are used)")
	fs.StringVar(&c.CA, "ca", "", "TLS: the gateway's certificate (PEM); empty: plaintext")
	fs.StringVar(&c.SNI, "sni", "localhost", "TLS: server name")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	return bench.ServeTunnels(c)
}

// isTerminal reports whether f is a terminal (the progress line is drawn
// in place there).
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// parseSize parses "1G", "256M", "16K" (binary units) or a plain byte count.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	t := strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "IB")
	t = strings.TrimSuffix(t, "B")
	switch {
	case strings.HasSuffix(t, "K"):
		mult, t = 1<<10, t[:len(t)-1]
	case strings.HasSuffix(t, "M"):
		mult, t = 1<<20, t[:len(t)-1]
	case strings.HasSuffix(t, "G"):
		mult, t = 1<<30, t[:len(t)-1]
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}
