package bench

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestReportRatiosAndFiles(t *testing.T) {
	cfg := Config{Self: "x"}
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	r := newReport(cfg)
	r.Throughput = []ThroughputCell{
		{Peer: PeerHTTVPS, Direction: Upload, Streams: 1, MBps: 900, CPUPerGiB: 0.5},
		{Peer: PeerGoCopy, Direction: Upload, Streams: 1, MBps: 1000, CPUPerGiB: 0.25},
		{Peer: PeerV2Ray, Direction: Upload, Streams: 1, MBps: 450, CPUPerGiB: 2},
		{Peer: PeerV2Ray, Direction: Download, Streams: 1, MBps: 400, CPUPerGiB: 2},
	}
	r.Idle = []IdleResult{{Peer: PeerHTTVPS, Sessions: 10, PerSessionKiB: 1.5}}
	r.finish()
	want := map[string][2]float64{PeerGoCopy: {2, 0.9}, PeerV2Ray: {0.25, 2}}
	if len(r.Ratios) != len(want) {
		t.Fatalf("ratios %+v", r.Ratios)
	}
	for _, x := range r.Ratios {
		w := want[x.Versus]
		if math.Abs(x.CPU-w[0]) > 1e-9 || math.Abs(x.MBps-w[1]) > 1e-9 {
			t.Fatalf("%s: got %+v, want %v", x.Versus, x, w)
		}
	}

	dir := t.TempDir()
	files, err := r.WriteFiles(dir)
	if err != nil || len(files) != 4 {
		t.Fatalf("files %v, %v", files, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "latest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil || len(back.Throughput) != 4 || back.Machine.NProc < 1 {
		t.Fatalf("json round trip: %v %+v", err, back.Machine)
	}
	md, _ := os.ReadFile(filepath.Join(dir, "latest.md"))
	for _, s := range []string{"## Throughput", "## Idle sessions", "| httvps | upload | 1 |"} {
		if !strings.Contains(string(md), s) {
			t.Errorf("markdown lacks %q", s)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for name, mod := range map[string]func(*Config){
		"no self":           func(c *Config) { c.Self = "" },
		"bad gateway env":   func(c *Config) { c.GatewayEnv = []string{"GOMAXPROCS"} },
		"no busy hogs":      func(c *Config) { c.BusyHogs = -1 },
		"unknown peer":      func(c *Config) { c.Peers = []string{"nginx"} },
		"unknown scenario":  func(c *Config) { c.Scenarios = []string{"flood"} },
		"latency streams":   func(c *Config) { c.LatencyStreams = []int{6000} },
		"idle counts":       func(c *Config) { c.IdleCounts = []int{1000, 12000} },
		"latency message":   func(c *Config) { c.LatencyMessage = 1 << 20 },
		"too many sessions": func(c *Config) { c.Sessions = 20000 },
		"zero streams":      func(c *Config) { c.Streams = []int{0} },
	} {
		c := Config{Self: "x"}
		mod(&c)
		c.setDefaults()
		if err := c.validate(); err == nil {
			t.Errorf("%s: validate accepted %+v", name, c)
		}
	}
}

// Quiet and busy tls-connect rows are compared only with their own kind,
// and both kinds appear in the report, labelled.
func TestConnectRatiosByLoad(t *testing.T) {
	cfg := Config{Self: "x"}
	cfg.setDefaults()
	r := newReport(cfg)
	r.Connect = []ConnectResult{
		{Peer: PeerHTTVPSTLS, PerSecond: 900, CPUmsPerConn: 0.6, HandshakeP999: 6},
		{Peer: PeerNginxTLS, PerSecond: 1000, CPUmsPerConn: 0.5, HandshakeP999: 4},
		{Peer: PeerHTTVPSTLS, PerSecond: 400, CPUmsPerConn: 0.6, HandshakeP999: 30, Hogs: 2},
		{Peer: PeerNginxTLS, PerSecond: 800, CPUmsPerConn: 0.4, HandshakeP999: 10, Hogs: 2},
	}
	r.finish()
	want := []ConnectRatio{
		{Versus: PeerNginxTLS, CPU: 1.2, Rate: 0.9, Tail: 1.5},
		{Versus: PeerNginxTLS, Hogs: 2, CPU: 1.5, Rate: 0.5, Tail: 3},
	}
	if len(r.ConnectRatios) != len(want) {
		t.Fatalf("ratios %+v", r.ConnectRatios)
	}
	for i, x := range r.ConnectRatios {
		w := want[i]
		if x.Versus != w.Versus || x.Hogs != w.Hogs || math.Abs(x.CPU-w.CPU) > 1e-9 || math.Abs(x.Rate-w.Rate) > 1e-9 || math.Abs(x.Tail-w.Tail) > 1e-9 {
			t.Errorf("ratio %d: got %+v, want %+v", i, x, w)
		}
	}
	var txt, md strings.Builder
	r.WriteText(&txt)
	r.WriteMarkdown(&md)
	// The text table is aligned: compare its lines' fields.
	var lines []string
	for _, l := range strings.Split(txt.String(), "\n") {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	for _, s := range []string{"busy (2 hogs) nginx-tls 1.50 0.50 3.00", "quiet nginx-tls 1.20 0.90 1.50", "busy (2 hogs) httvps-tls 400 0.600"} {
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, s) }) {
			t.Errorf("text lacks %q:\n%s", s, txt.String())
		}
	}
	for _, s := range []string{"| busy (2 hogs) | httvps-tls |", "| quiet | nginx-tls |", "| busy (2 hogs) | nginx-tls | 1.50 | 0.50 | 3.00 |"} {
		if !strings.Contains(md.String(), s) {
			t.Errorf("markdown lacks %q", s)
		}
	}
}
