package bench

import "testing"

// Rows of the same cell over several runs become one row: the median, with
// the range; a cell measured once is left as it is.
func TestAggregate(t *testing.T) {
	r := &Report{
		Throughput: []ThroughputCell{
			{Peer: PeerHTTVPS, Direction: Upload, Streams: 1, MBps: 300, CPUPerGiB: 1},
			{Peer: PeerV2Ray, Direction: Upload, Streams: 1, MBps: 100, CPUPerGiB: 3},
			{Peer: PeerHTTVPS, Direction: Upload, Streams: 1, MBps: 100, CPUPerGiB: 0.5},
			{Peer: PeerHTTVPS, Direction: Upload, Streams: 1, MBps: 200, CPUPerGiB: 2},
		},
		Latency: []LatencyCell{{Peer: PeerDirect, Streams: 1, P99Ms: 2}, {Peer: PeerDirect, Streams: 1, P99Ms: 4}},
		Connect: []ConnectResult{{Peer: PeerNginxTLS, PerSecond: 10}, {Peer: PeerNginxTLS, Hogs: 2, PerSecond: 5}},
	}
	r.aggregate()
	if len(r.Throughput) != 2 {
		t.Fatalf("cells %+v", r.Throughput)
	}
	h := r.Throughput[0]
	if h.Peer != PeerHTTVPS || h.Runs != 3 || h.MBps != 200 || h.CPUPerGiB != 1 ||
		*h.MBpsRange != (Span{100, 300}) || *h.CPURange != (Span{0.5, 2}) {
		t.Fatalf("httvps %+v", h)
	}
	if v := r.Throughput[1]; v.Runs != 0 || v.MBpsRange != nil || v.MBps != 100 {
		t.Fatalf("v2ray %+v", v)
	}
	if l := r.Latency; len(l) != 1 || l[0].P99Ms != 3 || *l[0].P99Range != (Span{2, 4}) {
		t.Fatalf("latency %+v", l)
	}
	if len(r.Connect) != 2 { // quiet and busy are different rows
		t.Fatalf("connect %+v", r.Connect)
	}
	if s := fmtRange(200, h.MBpsRange, 1); s != "200.0 (100.0–300.0)" {
		t.Fatalf("fmtRange: %q", s)
	}
}

// Flood and UDP rows of several runs: medians of every figure, ranges of
// kept, p99 growth, round trips/s and CPU, drops and sends summed.
func TestAggregateFloodUDP(t *testing.T) {
	r := &Report{
		Flood: []FloodResult{
			{Peer: PeerHTTVPSTLS, QuietMBps: 10, FloodMBps: 8, QuietP50Ms: 1, FloodP99Ms: 9, FloodCPUCores: 0.5, HeldAtEnd: 100, Kept: 0.8, P99Growth: 3},
			{Peer: PeerHTTVPSTLS, QuietMBps: 30, FloodMBps: 6, QuietP50Ms: 3, FloodP99Ms: 5, FloodCPUCores: 1.5, HeldAtEnd: 300, Kept: 0.2, P99Growth: 1},
			{Peer: PeerHTTVPSTLS, QuietMBps: 20, FloodMBps: 7, QuietP50Ms: 2, FloodP99Ms: 7, FloodCPUCores: 1, HeldAtEnd: 200, Kept: 0.4, P99Growth: 2},
		},
		UDP: []UDPResult{
			{Peer: PeerOutline, Associations: 4, PPS: 100, CPUPerMillion: 2, Drops: 1, Sent: 10, Seconds: 1, CPUSeconds: 3},
			{Peer: PeerOutline, Associations: 4, PPS: 300, CPUPerMillion: 4, Drops: 2, Sent: 20, Seconds: 3, CPUSeconds: 5},
			{Peer: PeerOutline, Associations: 1, PPS: 50},
		},
	}
	r.aggregate()
	if len(r.Flood) != 1 {
		t.Fatalf("flood %+v", r.Flood)
	}
	f := r.Flood[0]
	if f.Runs != 3 || f.QuietMBps != 20 || f.FloodMBps != 7 || f.QuietP50Ms != 2 || f.FloodP99Ms != 7 || f.FloodCPUCores != 1 ||
		f.HeldAtEnd != 200 || f.Kept != 0.4 || *f.KeptRange != (Span{0.2, 0.8}) || f.P99Growth != 2 || *f.P99Range != (Span{1, 3}) {
		t.Fatalf("flood %+v", f)
	}
	if len(r.UDP) != 2 {
		t.Fatalf("udp %+v", r.UDP)
	}
	u := r.UDP[0]
	if u.Runs != 2 || u.PPS != 200 || *u.PPSRange != (Span{100, 300}) || u.CPUPerMillion != 3 || *u.CPURange != (Span{2, 4}) ||
		u.Drops != 3 || u.Sent != 30 || u.Seconds != 2 || u.CPUSeconds != 4 {
		t.Fatalf("udp %+v", u)
	}
	if v := r.UDP[1]; v.Runs != 0 || v.PPSRange != nil || v.PPS != 50 {
		t.Fatalf("udp once %+v", v)
	}
}
