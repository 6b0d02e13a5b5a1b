package bench

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"
)

// TestLatencyCell runs round trips through the gocopy relay at two stream
// counts and checks every figure is there and ordered.
func TestLatencyCell(t *testing.T) {
	tr := Transport{Addr: startGoCopy(t, startSink(t))}
	for _, n := range []int{1, 50} {
		c, err := latencyCell(context.Background(), tr, n, 20, 64, time.Minute, 20*time.Second)
		if err != nil {
			t.Fatalf("x%d: %v", n, err)
		}
		if c.RoundTrips != n*20 || c.Streams != n || c.P50Ms <= 0 || c.P50Ms > c.P99Ms || c.P99Ms > c.P999Ms || c.P999Ms > c.MaxMs {
			t.Fatalf("x%d: %+v", n, c)
		}
	}
}

// A relay that changes one echoed byte fails the cell, never gives a figure.
func TestLatencyDetectsCorruption(t *testing.T) {
	tr := Transport{Addr: startCorruptor(t, startSink(t), 100)}
	_, err := latencyCell(context.Background(), tr, 1, 20, 64, time.Minute, 10*time.Second)
	if !errors.Is(err, errIntegrity) {
		t.Fatalf("err = %v, want errIntegrity", err)
	}
}

func TestLatencyRatios(t *testing.T) {
	cells := []LatencyCell{
		{Peer: PeerDirect, Streams: 1, P50Ms: 0.1, P99Ms: 0.2, P999Ms: 0.4},
		{Peer: PeerHTTVPS, Streams: 1, P50Ms: 0.2, P99Ms: 0.4, P999Ms: 0.8},
		{Peer: PeerV2Ray, Streams: 1, P50Ms: 0.4, P99Ms: 0.8, P999Ms: 1.6},
		{Peer: PeerOutline, Streams: 1, P50Ms: 1, P99Ms: 1, P999Ms: 1}, // Shadowsocks: not httvps's kind
		{Peer: PeerHTTVPSSS, Streams: 1, P50Ms: 0.5, P99Ms: 0.5, P999Ms: 0.5},
		{Peer: PeerV2Ray, Streams: 100, P50Ms: 1, P99Ms: 1, P999Ms: 1}, // no httvps cell at 100
	}
	got := map[string]LatencyRatio{}
	for _, x := range latencyRatios(cells) {
		got[x.Peer+"/"+x.Versus] = x
	}
	want := map[string]float64{
		PeerHTTVPS + "/" + PeerDirect:    2,
		PeerHTTVPS + "/" + PeerV2Ray:     0.5,
		PeerHTTVPSSS + "/" + PeerDirect:  5,
		PeerHTTVPSSS + "/" + PeerOutline: 0.5,
	}
	if len(got) != len(want) {
		t.Fatalf("ratios %+v", got)
	}
	for k, w := range want {
		if x, ok := got[k]; !ok || math.Abs(x.P50-w) > 1e-9 {
			t.Errorf("%s: %+v, want p50 ratio %v", k, x, w)
		}
	}
}
