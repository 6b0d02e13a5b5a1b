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
