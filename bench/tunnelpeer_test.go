package bench

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"
)

// TestTunnelPeerTransfer: on the plain native-tunnel peer, downloads take
// the stream's received chunks without a copy (readChunks) and uploads go
// out as messages masked in place (writeFramed); many streams at once
// arrive intact both ways (SHA-256 checked by transfer and the sink), and a
// byte changed on the way fails the download instead of yielding a figure.
func TestTunnelPeerTransfer(t *testing.T) {
	gw := os.Getenv("HTTVPS_GATEWAY_BIN")
	if gw == "" {
		gw = buildGateway(t)
	}
	pe, err := newHTTVPSPeer(gw, nil, nil)
	if err != nil {
		t.Skip(err)
	}
	asTunnel(pe, PeerTunnel)
	ctx := context.Background()
	r := startPeer(t, pe)
	s, err := r.transport.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.(chunkReader); !ok {
		t.Fatalf("a tunnel stream (%T) does not hand over its chunks", s)
	}
	s.Close()
	// Sizes that end inside a chunk, on a chunk boundary, and past several.
	for _, n := range []int64{1, 32 << 10, 3<<20 + 17} {
		for _, dir := range []string{Upload, Download} {
			if _, err := transfer(ctx, r.transport, dir, 16, 16*n, 16<<10, 30*time.Second); err != nil {
				t.Fatalf("%s of %d bytes per stream: %v", dir, n, err)
			}
		}
	}
	bad := r.transport
	bad.Addr = startCorruptor(t, r.transport.Addr, 3000)
	bad.mux = newMuxClient(bad, pe.token)
	_, err = transfer(ctx, bad, Download, 1, 1<<20, 16<<10, 10*time.Second)
	if !errors.Is(err, errIntegrity) {
		t.Fatalf("a corrupted download: %v, want %v", err, errIntegrity)
	}
}
