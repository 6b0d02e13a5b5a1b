package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Scenario names.
const (
	ScenarioThroughput = "throughput"
	ScenarioIdle       = "idle"
	ScenarioSlowReader = "slowreader"

	// The TLS scenarios run on the TLS peers only, the others on the
	// plaintext peers only.
	ScenarioTLSIdle       = "tls-idle"
	ScenarioTLSThroughput = "tls-throughput"
	ScenarioTLSConnect    = "tls-connect"
	// ScenarioTLSConnectBusy is tls-connect with one CPU hog per core (a
	// spinning child process, the same for every peer) running throughout.
	ScenarioTLSConnectBusy = "tls-connect-busy"

	// ScenarioTunnelIdle opens idle native tunnels (no stream) on the
	// tunnel peers, plaintext and TLS (tunnelidle.go).
	ScenarioTunnelIdle = "tunnel-idle"

	// ScenarioClientCPU runs once, on no peer: the reference client
	// (native tunnel and Outline paths) and ss-local + ss-v2ray-plugin
	// carrying the same bytes through one TLS gateway (clientcpu.go).
	ScenarioClientCPU = "client-cpu"

	// ScenarioControl runs once, on no peer: token checks, the control
	// API and Redis itself (control.go).
	ScenarioControl = "control"
)

var (
	allScenarios = []string{ScenarioThroughput, ScenarioIdle, ScenarioSlowReader,
		ScenarioTLSThroughput, ScenarioTLSIdle, ScenarioTLSConnect, ScenarioTLSConnectBusy, ScenarioTunnelIdle, ScenarioLatency, ScenarioFlood, ScenarioUDP, ScenarioClientCPU, ScenarioControl}
	allPeers = []string{PeerHTTVPS, PeerTunnel, PeerGoCopy, PeerGoBuf, PeerV2Ray,
		PeerHTTVPSSS, PeerTunnelSS, PeerOutline, PeerNginxWS,
		PeerHTTVPSTLS, PeerTunnelTLS, PeerV2RayTLS, PeerNginxTLS, PeerGoTLS, PeerHTTVPSSSTLS, PeerTunnelSSTLS, PeerNginxWSS}
)

func tlsScenario(s string) bool {
	return s == ScenarioTLSIdle || s == ScenarioTLSThroughput || s == ScenarioTLSConnect || s == ScenarioTLSConnectBusy
}

// Config selects what Run measures. Zero values mean the documented defaults.
type Config struct {
	// Self is the path of the httvps-bench binary; its "sink" and "relay"
	// subcommands run the upstream and the gocopy peer. Required.
	Self string
	// GatewayBin is our gateway binary. "" means bin/httvps-gateway.
	GatewayBin string
	// GatewayArgs are extra gateway flags (e.g. -buffer-cap 262144);
	// GatewayEnv extra KEY=VALUE environment of the gateway (e.g.
	// GOMAXPROCS=4), shown in its peer's command line.
	GatewayArgs []string
	GatewayEnv  []string
	// V2RayBin is the v2ray-plugin binary. "" means ss-v2ray-plugin.
	V2RayBin string
	// NginxBin is the nginx binary of the nginx-tls, nginx-ws and
	// nginx-wss peers. "" means /usr/sbin/nginx.
	NginxBin string
	// OutlineBin is the outline-ss-server peer's binary (outline-ss, and
	// the backend of nginx-ws/nginx-wss); "" means build it from
	// OutlineSrc ("" means tools/outline-ss-server, a module of its own)
	// into a temporary directory. A failed build skips those peers.
	OutlineBin string
	OutlineSrc string
	// ChartsSrc is the tools module that draws the charts into OutDir
	// ("" means tools/benchcharts); NoCharts leaves them out.
	ChartsSrc string
	NoCharts  bool
	// Peers to measure, in order. nil means all: httvps, gocopy, gobuf,
	// v2ray (plaintext scenarios) and httvps-tls, v2ray-tls, nginx-tls (TLS
	// scenarios); a peer whose binary is missing is skipped with a note.
	Peers []string
	// Scenarios to run. nil means all: throughput, idle, slowreader,
	// tls-throughput, tls-idle, tls-connect, tls-connect-busy, tunnel-idle, control.
	Scenarios []string

	// Client CPU: HTTVPSBin is the reference client ("" means bin/httvps),
	// SSServerBin and SSLocalBin default to ss-server and ss-local;
	// ClientBytes is the bytes per cell (0 means 512 MiB).
	HTTVPSBin   string
	SSServerBin string
	SSLocalBin  string
	ClientBytes int64

	// Control: ControlBin is the httvps-control binary ("" means
	// bin/httvps-control); RedisBin and RedisBenchBin default to
	// redis-server and redis-benchmark. TokenCheckTime is each token-check
	// run (0 means 3s); ConfigLoadTime the GET /v1/client/config load (0
	// means 5s) over ConfigConns keep-alive connections (0 means 8).
	ControlBin     string
	RedisBin       string
	RedisBenchBin  string
	TokenCheckTime time.Duration
	ConfigLoadTime time.Duration
	ConfigConns    int

	// CertType is the certificate every TLS peer serves, generated for the
	// run: "ecdsa" (P-256, the default) or "rsa" (2048 bits).
	CertType string
	// TLSBytes is the bytes per tls-throughput cell; 0 means 1 GiB.
	TLSBytes int64
	// ConnectCount is the tls-connect connections per peer, 0 means 2000;
	// ConnectWorkers how many run at once, 0 means 4. BusyHogs is the CPU
	// hogs of tls-connect-busy, 0 means one per core (runtime.NumCPU).
	ConnectCount   int
	ConnectWorkers int
	BusyHogs       int

	// Throughput: Bytes per (peer, direction, streams) cell, 0 means 1 GiB;
	// Streams nil means 1, 16 and 64; Message is the client's piece size, 0 means
	// 16 KiB; CellTimeout 0 means 120s.
	Bytes       int64
	Streams     []int
	Message     int
	CellTimeout time.Duration

	// Latency: LatencyStreams nil means 1, 100 and 1000 concurrently active
	// streams; each cell runs for LatencyDuration (0 means 3s) or until
	// LatencyRoundTrips, shared by its streams (at least 10 each; 0 means
	// 100000); LatencyMessage 0 means 64 bytes; FirstByteSessions (new
	// sessions one after the other) 0 means 500.
	LatencyStreams    []int
	LatencyDuration   time.Duration
	LatencyRoundTrips int
	LatencyMessage    int
	FirstByteSessions int

	// Handshake flood: FloodStalled stalled clients (0 means 5000) and
	// FloodGarbageRate garbage connections a second (0 means 200) while
	// FloodStreams sessions download FloodBytes (0: 4 and 256 MiB) and
	// FloodEcho sessions do round trips for FloodDuration (0: 10 and 3s).
	FloodStalled     int
	FloodGarbageRate int
	FloodStreams     int
	FloodEcho        int
	FloodBytes       int64
	FloodDuration    time.Duration

	// UDP: UDPPackets per cell (0 means 1,000,000), shared by each of
	// UDPAssociations (nil means 1 and 8), at most UDPWindow (0 means 32)
	// in flight each, packets of UDPPayload bytes (0 means 1200, a QUIC-sized datagram).
	UDPPackets      int64
	UDPAssociations []int
	UDPWindow       int
	UDPPayload      int

	// Tunnel idle: Tunnels 0 means 19000 (one gateway fd each; the
	// clients are child processes of at most 9600 tunnels each).
	Tunnels int

	// Idle: Sessions 0 means 9000 (the relay holds two fds per session and
	// may not exceed 20000 fds); Settle 0 means 10s.
	Sessions int
	Settle   time.Duration
	// IdleCounts, when set, runs idle and tls-idle once per count, each on
	// a fresh relay (how memory per session grows with N); nil means
	// Sessions alone.
	IdleCounts []int
	// IdleSweepEveryRun runs every IdleCounts entry in every run; by
	// default the runs after the first measure the largest count alone.
	IdleSweepEveryRun bool
	// GoCopySessions is the idle session count for gocopy. Go's io.Copy
	// between TCP conns splices through a pipe, and a copy blocked waiting
	// for data holds its pipe: six fds per idle session, so 9000 sessions
	// would exceed the fd limit. 0 means min(Sessions, 3000).
	GoCopySessions int

	// Slow reader: Duration 0 means 20s, Rate 0 means 2 MiB/s, SlowBytes
	// (what the upstream offers) 0 means 256 MiB.
	SlowDuration time.Duration
	SlowRate     int64
	SlowBytes    int64

	// Runs is how many times the repeated scenarios (throughput,
	// tls-throughput, idle, tls-idle, latency, tls-connect,
	// tls-connect-busy) run, every peer in turn each time; figures are the
	// medians, with the range. 0 means 1.
	Runs int

	// Live shows progress as one status line redrawn in place (Log is a
	// terminal); otherwise a plain line per step. PlanOnly writes the run
	// plan with its estimated duration to Out and measures nothing.
	Live     bool
	PlanOnly bool

	// Mode names the run's sizes for the report ("short", "full"; "" is
	// left out).
	Mode string

	// OutDir receives the timestamped JSON and Markdown reports and
	// latest.json / latest.md. "" means no files.
	OutDir string
	// Out receives the human table; Log receives progress. nil means discard.
	Out io.Writer
	Log io.Writer
}

func (c *Config) setDefaults() {
	if c.GatewayBin == "" {
		c.GatewayBin = "bin/httvps-gateway"
	}
	if c.V2RayBin == "" {
		c.V2RayBin = "ss-v2ray-plugin"
	}
	if c.NginxBin == "" {
		c.NginxBin = "/usr/sbin/nginx"
	}
	if c.Runs == 0 {
		c.Runs = 1
	}
	if c.OutlineSrc == "" {
		c.OutlineSrc = "tools/outline-ss-server"
	}
	if c.ChartsSrc == "" {
		c.ChartsSrc = "tools/benchcharts"
	}
	if c.HTTVPSBin == "" {
		c.HTTVPSBin = "bin/httvps"
	}
	if c.SSServerBin == "" {
		c.SSServerBin = "ss-server"
	}
	if c.SSLocalBin == "" {
		c.SSLocalBin = "ss-local"
	}
	if c.ClientBytes == 0 {
		c.ClientBytes = 512 << 20
	}
	if c.ControlBin == "" {
		c.ControlBin = "bin/httvps-control"
	}
	if c.RedisBin == "" {
		c.RedisBin = "redis-server"
	}
	if c.RedisBenchBin == "" {
		c.RedisBenchBin = "redis-benchmark"
	}
	if c.TokenCheckTime == 0 {
		c.TokenCheckTime = 3 * time.Second
	}
	if c.ConfigLoadTime == 0 {
		c.ConfigLoadTime = 5 * time.Second
	}
	if c.ConfigConns == 0 {
		c.ConfigConns = 8
	}
	if c.Peers == nil {
		c.Peers = allPeers
	}
	if c.Scenarios == nil {
		c.Scenarios = allScenarios
	}
	if c.CertType == "" {
		c.CertType = CertECDSA
	}
	if c.TLSBytes == 0 {
		c.TLSBytes = 1 << 30
	}
	if c.ConnectCount == 0 {
		c.ConnectCount = 2000
	}
	if c.ConnectWorkers == 0 {
		c.ConnectWorkers = 4
	}
	if c.BusyHogs == 0 {
		c.BusyHogs = runtime.NumCPU()
	}
	if c.Bytes == 0 {
		c.Bytes = 1 << 30
	}
	if c.Streams == nil {
		c.Streams = []int{1, 16, 64}
	}
	if c.Message == 0 {
		c.Message = 16 << 10
	}
	if c.CellTimeout == 0 {
		c.CellTimeout = 120 * time.Second
	}
	if c.Sessions == 0 {
		c.Sessions = 9000
	}
	if c.GoCopySessions == 0 {
		c.GoCopySessions = min(c.Sessions, 3000)
	}
	if c.IdleCounts == nil {
		c.IdleCounts = []int{c.Sessions}
	}
	if c.Settle == 0 {
		c.Settle = 10 * time.Second
	}
	if c.SlowDuration == 0 {
		c.SlowDuration = 20 * time.Second
	}
	if c.Tunnels == 0 {
		c.Tunnels = 19000
	}
	if c.LatencyStreams == nil {
		c.LatencyStreams = []int{1, 100, 1000}
	}
	if c.LatencyRoundTrips == 0 {
		c.LatencyRoundTrips = 100000
	}
	if c.LatencyDuration == 0 {
		c.LatencyDuration = 3 * time.Second
	}
	if c.LatencyMessage == 0 {
		c.LatencyMessage = 64
	}
	if c.FirstByteSessions == 0 {
		c.FirstByteSessions = 500
	}
	if c.FloodStalled == 0 {
		c.FloodStalled = 5000
	}
	if c.FloodGarbageRate == 0 {
		c.FloodGarbageRate = 200
	}
	if c.FloodStreams == 0 {
		c.FloodStreams = 4
	}
	if c.FloodEcho == 0 {
		c.FloodEcho = 10
	}
	if c.FloodBytes == 0 {
		c.FloodBytes = 256 << 20
	}
	if c.FloodDuration == 0 {
		c.FloodDuration = 3 * time.Second
	}
	if c.UDPPackets == 0 {
		c.UDPPackets = 1000000
	}
	if c.UDPAssociations == nil {
		c.UDPAssociations = []int{1, 8}
	}
	if c.UDPWindow == 0 {
		c.UDPWindow = 32
	}
	if c.UDPPayload == 0 {
		c.UDPPayload = 1200
	}
	if c.SlowRate == 0 {
		c.SlowRate = 2 << 20
	}
	if c.SlowBytes == 0 {
		c.SlowBytes = 256 << 20
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
}

// maxIdleSessions keeps the relay (two fds per session plus a few) and this
// client (one per session) under the 20000-fd hard limit.
const maxIdleSessions = 9900

func (c *Config) validate() error {
	if c.Self == "" {
		return errors.New("bench: Config.Self is required")
	}
	for _, s := range c.Scenarios {
		if !slices.Contains(allScenarios, s) {
			return fmt.Errorf("bench: unknown scenario %q", s)
		}
	}
	for _, kv := range c.GatewayEnv {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("bench: gateway environment %q: want KEY=VALUE", kv)
		}
	}
	for _, p := range c.Peers {
		if !slices.Contains(allPeers, p) {
			return fmt.Errorf("bench: unknown peer %q", p)
		}
	}
	for _, n := range c.Streams {
		if n < 1 || int64(n) > min(c.Bytes, c.TLSBytes) {
			return fmt.Errorf("bench: bad stream count %d", n)
		}
	}
	if c.CertType != CertECDSA && c.CertType != CertRSA {
		return fmt.Errorf("bench: certificate type %q: want %s or %s", c.CertType, CertECDSA, CertRSA)
	}
	if c.ConnectCount < 1 || c.ConnectWorkers < 1 || c.ConnectWorkers > 64 {
		return errors.New("bench: tls-connect needs >= 1 connection and 1..64 workers")
	}
	if c.BusyHogs < 1 || c.BusyHogs > 64 {
		return errors.New("bench: tls-connect-busy needs 1..64 CPU hogs")
	}
	if c.Tunnels < 1 || c.Tunnels > 19500 {
		return errors.New("bench: tunnel-idle tunnels must be 1..19500 (the gateway holds one fd each)")
	}
	if c.Sessions < 1 || c.Sessions > maxIdleSessions {
		return fmt.Errorf("bench: idle sessions must be 1..%d (fd limit)", maxIdleSessions)
	}
	if c.Runs < 1 || c.Runs > 99 {
		return errors.New("bench: runs must be 1..99")
	}
	for _, n := range c.IdleCounts {
		if n < 1 || n > maxIdleSessions {
			return fmt.Errorf("bench: idle session count %d: want 1..%d (fd limit)", n, maxIdleSessions)
		}
	}
	if c.GoCopySessions < 1 || c.GoCopySessions*6 > 19900 {
		return errors.New("bench: gocopy idle sessions must be 1..3316 (6 fds each)")
	}
	if c.TokenCheckTime < 0 || c.ConfigLoadTime < 0 || c.ConfigConns < 1 || c.ConfigConns > 512 {
		return errors.New("bench: control needs positive durations and 1..512 connections")
	}
	for _, n := range c.LatencyStreams {
		// The relay may hold 4 fds a stream (gateway + ss-server are one
		// group, but each process has its own limit: 2 each).
		if n < 1 || n > 5000 {
			return fmt.Errorf("bench: latency stream count %d: want 1..5000", n)
		}
	}
	if c.LatencyRoundTrips < 1 || c.LatencyDuration < 0 || c.LatencyMessage < 1 || c.LatencyMessage > 16<<10 || c.FirstByteSessions < 1 {
		return errors.New("bench: latency needs >= 1 round trip, 1..16384-byte messages, >= 1 first-byte session")
	}
	// The flood's fds are this process's: 20000 at most, with room for
	// the established sessions.
	if c.FloodStalled < 1 || c.FloodStalled+c.FloodGarbageRate > 18000 || c.FloodGarbageRate < 0 || c.FloodStreams < 1 || c.FloodEcho < 1 || c.FloodBytes < int64(c.FloodStreams) {
		return errors.New("bench: handshake-flood needs 1..18000 stalled clients (with the garbage rate), >= 1 data and echo session")
	}
	for _, n := range c.UDPAssociations {
		if n < 1 || n > 1000 {
			return fmt.Errorf("bench: udp association count %d: want 1..1000", n)
		}
	}
	if c.UDPPackets < 1 || c.UDPWindow < 1 || c.UDPWindow > 4096 || c.UDPPayload < 12 || c.UDPPayload > 65000 {
		return errors.New("bench: udp needs >= 1 packet, a 1..4096 window, 12..65000-byte payloads")
	}
	if c.Message < 1 || c.Message > 1<<20 {
		return errors.New("bench: message size must be 1..1 MiB")
	}
	return nil
}

// Run measures the selected scenarios on the selected peers, writes the
// report, and kills every process it started before returning, also when ctx
// is cancelled. A corrupted stream or a failed peer is an error: its figure
// is left out, the other peers are still measured, and Run returns the errors.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ps := &procSet{}
	defer ps.stopAll()

	rep := newReport(cfg)
	var cert *benchCert
	needCert := func(s string) bool {
		return (tlsScenario(s) || s == ScenarioTunnelIdle || s == ScenarioLatency || s == ScenarioFlood || s == ScenarioUDP) && slices.ContainsFunc(cfg.Peers, tlsPeer)
	}
	if slices.ContainsFunc(cfg.Scenarios, needCert) || slices.Contains(cfg.Scenarios, ScenarioClientCPU) {
		dir, err := os.MkdirTemp("", "httvps-bench-tls-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		if cert, err = writeBenchCert(dir, cfg.CertType); err != nil {
			return nil, err
		}
	}
	work, err := os.MkdirTemp("", "httvps-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	// outline-ss-server is built once, when a peer first needs it.
	var (
		outlineBin  string
		outlineErr  error
		outlineDone bool
	)
	outline := func() (string, error) {
		if !outlineDone {
			outlineDone = true
			outlineBin, outlineErr = outlineBinary(cfg.OutlineBin, cfg.OutlineSrc, work)
		}
		return outlineBin, outlineErr
	}
	var peers []*peer
	for _, name := range cfg.Peers {
		var (
			pe  *peer
			err error
		)
		if tlsPeer(name) && cert == nil {
			continue // no TLS scenario selected
		}
		switch name {
		case PeerHTTVPS:
			pe, err = newHTTVPSPeer(cfg.GatewayBin, cfg.GatewayArgs, cfg.GatewayEnv)
		case PeerGoCopy:
			pe = newGoCopyPeer(cfg.Self, false)
		case PeerGoBuf:
			pe = newGoCopyPeer(cfg.Self, true)
		case PeerV2Ray:
			pe, err = newV2RayPeer(cfg.V2RayBin)
		case PeerTunnel:
			if pe, err = newHTTVPSPeer(cfg.GatewayBin, cfg.GatewayArgs, cfg.GatewayEnv); err == nil {
				asTunnel(pe, name)
			}
		case PeerHTTVPSTLS:
			pe, err = newHTTVPSTLSPeer(cfg.GatewayBin, cfg.GatewayArgs, cfg.GatewayEnv, cert)
		case PeerTunnelTLS:
			if pe, err = newHTTVPSTLSPeer(cfg.GatewayBin, cfg.GatewayArgs, cfg.GatewayEnv, cert); err == nil {
				asTunnel(pe, name)
			}
		case PeerV2RayTLS:
			pe, err = newV2RayTLSPeer(cfg.V2RayBin, cert)
		case PeerNginxTLS:
			pe, err = newNginxTLSPeer(cfg.NginxBin, filepath.Dir(cert.CertFile), cert)
		case PeerGoTLS:
			pe = newGoTLSPeer(cfg.Self, cert)
		case PeerHTTVPSSS:
			pe, err = newHTTVPSSSPeer(cfg.GatewayBin, cfg.GatewayArgs, cfg.GatewayEnv, cfg.SSServerBin, nil)
		case PeerHTTVPSSSTLS:
			pe, err = newHTTVPSSSPeer(cfg.GatewayBin, cfg.GatewayArgs, cfg.GatewayEnv, cfg.SSServerBin, cert)
		case PeerTunnelSS, PeerTunnelSSTLS:
			var c *benchCert
			if name == PeerTunnelSSTLS {
				c = cert
			}
			if pe, err = newHTTVPSSSPeer(cfg.GatewayBin, cfg.GatewayArgs, cfg.GatewayEnv, cfg.SSServerBin, c); err == nil {
				asTunnel(pe, name)
			}
		case PeerOutline:
			var bin string
			if bin, err = outline(); err == nil {
				pe = newOutlinePeer(bin)
			}
		case PeerNginxWS, PeerNginxWSS:
			var bin string
			if bin, err = outline(); err == nil {
				var c *benchCert
				if name == PeerNginxWSS {
					c = cert
				}
				pe, err = newNginxWSPeer(cfg.NginxBin, work, bin, c)
			}
		}
		if err != nil {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s skipped: %v", name, err))
			fmt.Fprintf(cfg.Log, "skip %s: %v\n", name, err)
			continue
		}
		peers = append(peers, pe)
		rep.Peers = append(rep.Peers, pe.info)
	}

	var errs []error
	fail := func(scenario, peer string, err error) {
		err = fmt.Errorf("%s/%s: %w", scenario, peer, err)
		errs = append(errs, err)
		rep.Errors = append(rep.Errors, err.Error())
		fmt.Fprintf(cfg.Log, "ERROR %v\n", err)
	}
	// Each run goes through every scenario and peer in turn, so drift on
	// the machine hits every peer alike; figures are the runs' medians.
	plan := planSteps(&cfg, peers)
	writePlan(cfg.Log, &cfg, plan)
	if cfg.PlanOnly {
		writePlan(cfg.Out, &cfg, plan)
		return rep, nil
	}
	start := time.Now()
	ps0 := &progressState{n: len(plan), runs: cfg.Runs, start: start}
	for _, st := range plan {
		ps0.estTotal += estimateStep(&cfg, st)
	}
	var live *liveLog
	if cfg.Live {
		live = newLiveLog(cfg.Log)
		cfg.Log = live
		live.run(func() string { return ps0.line(time.Now()) })
		defer live.close()
	}
	for k, st := range plan {
		if ctx.Err() != nil {
			break
		}
		name := PeerDirect
		if st.pe != nil {
			name = st.pe.info.Name
		} else if st.sc == ScenarioClientCPU || st.sc == ScenarioControl {
			name = "no relay"
		}
		ps0.mu.Lock()
		if k > 0 {
			ps0.estDone += ps0.estStep
		}
		ps0.k, ps0.st, ps0.name, ps0.stepAt, ps0.estStep = k, st, name, time.Now(), estimateStep(&cfg, st)
		ps0.mu.Unlock()
		if live != nil {
			live.redraw()
		} else {
			fmt.Fprintln(cfg.Log, ps0.line(time.Now()))
		}
		var err error
		switch st.sc {
		case ScenarioClientCPU:
			err = runClientCPU(ctx, &cfg, ps, cert, rep)
		case ScenarioControl:
			err = runControl(ctx, &cfg, ps, rep)
		case ScenarioLatency:
			err = runLatency(ctx, &cfg, ps, st.pe, rep)
		case ScenarioFlood:
			err = runFlood(ctx, &cfg, ps, st.pe, rep)
		case ScenarioUDP:
			err = runUDP(ctx, &cfg, ps, st.pe, rep)
		case ScenarioTunnelIdle:
			err = runTunnelIdle(ctx, &cfg, ps, st.pe, cert, &rep.TunnelIdle)
		case ScenarioThroughput:
			err = runThroughput(ctx, &cfg, ps, st.pe, cfg.Bytes, &rep.Throughput)
		case ScenarioIdle:
			err = runIdleCounts(ctx, &cfg, ps, st.pe, st.run, &rep.Idle)
		case ScenarioSlowReader:
			err = runSlowReader(ctx, &cfg, ps, st.pe, rep)
		case ScenarioTLSThroughput:
			err = runThroughput(ctx, &cfg, ps, st.pe, cfg.TLSBytes, &rep.TLSThroughput)
		case ScenarioTLSIdle:
			err = runIdleCounts(ctx, &cfg, ps, st.pe, st.run, &rep.TLSIdle)
		case ScenarioTLSConnect:
			err = runConnect(ctx, &cfg, ps, st.pe, 0, rep)
		case ScenarioTLSConnectBusy:
			err = runConnect(ctx, &cfg, ps, st.pe, cfg.BusyHogs, rep)
		}
		if err != nil {
			fail(st.sc, name, err)
		}
		ps.stopAll()
	}
	rep.aggregate()
	rep.finish()
	if ctx.Err() != nil {
		errs = append(errs, ctx.Err())
		rep.Errors = append(rep.Errors, "interrupted: "+ctx.Err().Error())
	}
	rep.WriteText(cfg.Out)
	if cfg.OutDir != "" {
		files, err := rep.WriteFiles(cfg.OutDir)
		if err != nil {
			errs = append(errs, err)
		} else {
			fmt.Fprintf(cfg.Log, "report: %s\n", strings.Join(files, ", "))
			if !cfg.NoCharts {
				// Charts are a view of the report: a failure is a note.
				charts, err := writeCharts(cfg.ChartsSrc, work, cfg.OutDir, filepath.Join(cfg.OutDir, "latest.json"))
				if err != nil {
					fmt.Fprintf(cfg.Log, "charts: %v\n", err)
				} else {
					fmt.Fprintf(cfg.Log, "charts: %s\n", strings.Join(charts, ", "))
				}
			}
		}
	}
	return rep, errors.Join(errs...)
}

// startPair starts a fresh sink and the peer in front of it.
func startPair(ctx context.Context, cfg *Config, ps *procSet, pe *peer) (*running, error) {
	_, sinkAddr, err := ps.startSelf("sink", []string{cfg.Self, "sink", "-listen", "127.0.0.1:0"})
	if err != nil {
		return nil, err
	}
	return pe.start(ctx, ps, sinkAddr)
}
