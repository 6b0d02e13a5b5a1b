package bench

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestParseRedisBenchmark(t *testing.T) {
	// redis-benchmark 7 -q: progress lines end in \r, results in \n.
	out := "SET: rps=0.0 (overall: nan) avg_msec=nan (overall: nan)\r" +
		"SET: 110987.79 requests per second, p50=0.231 msec                    \n" +
		"GET: rps=98000.0 (overall: 98000.0) avg_msec=0.250 (overall: 0.250)\r" +
		"GET: 108342.37 requests per second, p50=0.239 msec                    \n\n"
	got := parseRedisBenchmark(out)
	want := []RedisBenchResult{{"SET", 110987.79, 0.231}, {"GET", 108342.37, 0.239}}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	// Redis 6 prints no p50.
	if got := parseRedisBenchmark("PING_INLINE: 92081.03 requests per second\n"); len(got) != 1 || got[0].PerSecond != 92081.03 || got[0].P50Ms != 0 {
		t.Errorf("redis 6 line: %+v", got)
	}
}

// TestControlScenario runs the control scenario briefly against a real
// redis-server; the client-config part needs bin/httvps-control.
func TestControlScenario(t *testing.T) {
	for _, bin := range []string{"redis-server", "redis-benchmark"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed", bin)
		}
	}
	cfg := Config{Self: "unused", ControlBin: "../bin/httvps-control",
		TokenCheckTime: 200 * time.Millisecond, ConfigLoadTime: 300 * time.Millisecond}
	cfg.setDefaults()
	cfg.Log = io.Discard
	_, statErr := os.Stat(cfg.ControlBin)
	ps := &procSet{}
	defer ps.stopAll()
	rep := newReport(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := runControl(ctx, &cfg, ps, rep)
	if err != nil && !(statErr != nil && errors.Is(err, errPeerUnavailable)) {
		t.Fatal(err)
	}
	c := rep.Control
	if len(c.TokenChecks) != 5 || c.TokenChecks[0].Path != checkHit || c.TokenChecks[0].StoreCallsPerOp != 0 {
		t.Fatalf("token checks %+v", c.TokenChecks)
	}
	// A live device costs no store call and no allocation; a new one a
	// device lease each.
	if x := c.TokenChecks[1]; x.Path != checkDeviceLive || x.StoreCallsPerOp != 0 || x.PerSecond <= 0 || x.AllocsPerOp >= 0.5 {
		t.Errorf("device-live run %+v", x)
	}
	if x := c.TokenChecks[2]; x.Path != checkDeviceNew || x.StoreCallsPerOp < 0.9 || x.PerSecond <= 0 {
		t.Errorf("device-new run %+v", x)
	}
	for _, x := range c.TokenChecks[3:] {
		if x.Path != "miss" || x.StoreCallsPerOp < 0.9 || x.PerSecond <= 0 {
			t.Errorf("miss run %+v", x)
		}
	}
	if len(c.RedisBenchmark) != 2 {
		t.Errorf("redis-benchmark %+v", c.RedisBenchmark)
	}
	if statErr == nil && (c.ClientConfig == nil || c.ClientConfig.Requests == 0 || c.ClientConfig.Errors != 0) {
		t.Errorf("client config %+v", c.ClientConfig)
	}
	if statErr != nil {
		t.Logf("client config skipped: %v", statErr)
	}
}
