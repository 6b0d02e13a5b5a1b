package bench

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestWriteCharts draws a small report's charts with the benchcharts tool
// and checks each is a real SVG and PNG.
func TestWriteCharts(t *testing.T) {
	cfg := Config{Self: "x"}
	cfg.setDefaults()
	r := newReport(cfg)
	r.Throughput = []ThroughputCell{
		{Peer: PeerHTTVPS, Direction: Upload, Streams: 1, MBps: 900, CPUPerGiB: 0.5},
		{Peer: PeerV2Ray, Direction: Upload, Streams: 1, MBps: 450, CPUPerGiB: 2},
	}
	r.Idle = []IdleResult{{Peer: PeerHTTVPS, Sessions: 10, PerSessionKiB: 1.5}, {Peer: PeerHTTVPS, Sessions: 100, PerSessionKiB: 1.2}}
	r.Latency = []LatencyCell{{Peer: PeerDirect, Streams: 1, P50Ms: 0.02, P99Ms: 0.05, P999Ms: 0.1}, {Peer: PeerHTTVPS, Streams: 1, P50Ms: 0.1, P99Ms: 0.3, P999Ms: 0.4}}
	r.FirstByte = []FirstByteResult{{Peer: PeerHTTVPS, Sessions: 5, P50Ms: 0.5, P99Ms: 1, P999Ms: 2}}
	r.finish()
	dir := t.TempDir()
	if _, err := r.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	files, err := writeCharts("../tools/benchcharts", t.TempDir(), dir, filepath.Join(dir, "latest.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"throughput", "throughput-cpu", "idle", "idle-n", "latency-1", "first-byte"} {
		for ext, magic := range map[string][]byte{".svg": []byte("<svg"), ".png": []byte("\x89PNG")} {
			f := filepath.Join(dir, name+ext)
			if !slices.Contains(files, f) {
				t.Errorf("%s not reported in %v", f, files)
			}
			b, err := os.ReadFile(f)
			if err != nil || !bytes.Contains(b[:min(len(b), 512)], magic) {
				t.Errorf("%s: %d bytes, %v", f, len(b), err)
			}
		}
	}
}
