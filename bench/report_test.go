package bench

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
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
		"unknown peer":      func(c *Config) { c.Peers = []string{"nginx"} },
		"unknown scenario":  func(c *Config) { c.Scenarios = []string{"latency"} },
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
