package bench

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// TestSSPeers starts every Shadowsocks peer that is installed exactly as the
// harness does (outline-ss-server built from tools/outline-ss-server) and
// passes hashed streams both ways, an idle session and connect-and-echo
// through each, the client speaking Shadowsocks inside the WebSocket.
func TestSSPeers(t *testing.T) {
	dir := t.TempDir()
	cert, err := writeBenchCert(dir, CertECDSA)
	if err != nil {
		t.Fatal(err)
	}
	gw := os.Getenv("HTTVPS_GATEWAY_BIN")
	if gw == "" {
		gw = buildGateway(t)
	}
	makers := ssPeerMakers(gw, dir, cert)
	for _, name := range []string{PeerHTTVPSSS, PeerHTTVPSSSTLS, PeerTunnelSS, PeerOutline, PeerNginxWS, PeerNginxWSS} {
		t.Run(name, func(t *testing.T) {
			pe := makePeer(t, makers[name])
			ctx := context.Background()
			r := startPeer(t, pe)
			if r.transport.ss == nil {
				t.Fatal("client does not speak Shadowsocks")
			}
			if pe.tunnel {
				// A gateway built without /v1/tunnel answers with its decoy.
				s, err := r.transport.Dial(ctx)
				if err != nil && strings.Contains(err.Error(), "websocket upgrade") {
					t.Skipf("%s has no native tunnel: %v", gw, err)
				}
				if err != nil {
					t.Fatal(err)
				}
				s.Close()
			}
			for _, dir := range []string{Upload, Download} {
				if _, err := transfer(ctx, r.transport, dir, 2, 4<<20, 16<<10, 20*time.Second); err != nil {
					t.Fatalf("%s: %v", dir, err)
				}
			}
			s, err := openIdle(ctx, r.transport)
			if err != nil {
				t.Fatalf("idle: %v", err)
			}
			s.Close()
			lat, suite, err := connectMany(ctx, r.transport, 20, 2)
			if err != nil {
				t.Fatal(err)
			}
			if tlsPeer(name) != strings.HasPrefix(suite, "TLS 1.3 ") || lat[19].Upgrade <= 0 {
				t.Fatalf("suite %q, times %+v", suite, lat[19])
			}
			if c, err := latencyCell(ctx, r.transport, 10, 10, 64, time.Minute, 20*time.Second); err != nil || c.RoundTrips != 100 {
				t.Fatalf("latency: %+v, %v", c, err)
			}
			// Front and backend are one process group: both are sampled.
			if pe.backend != nil {
				if _, n, err := ReadGroup(r.proc.Pid()); err != nil || n < 2 {
					t.Fatalf("group of %s: %d processes, %v", name, n, err)
				}
			}

			// A byte changed between the peer and the client fails the
			// stream (the AEAD tag), never yields a figure.
			if pe.tls == nil {
				bad := r.transport
				// Offset 3000: past the 101 and the tunnel's SETTINGS.
				bad.Addr = startCorruptor(t, r.transport.Addr, 3000)
				if bad.mux != nil {
					bad.mux = newMuxClient(bad, pe.token)
				}
				if _, err := transfer(ctx, bad, Download, 1, 1<<20, 16<<10, 10*time.Second); err == nil {
					t.Fatal("a corrupted stream passed")
				}
				// 1 + 50 echoes of 64 bytes, each ~100 bytes with the
				// Shadowsocks and WebSocket framing, pass offset 3000.
				if bad.mux != nil {
					bad.mux = newMuxClient(bad, pe.token)
				}
				if _, err := latencyCell(ctx, bad, 1, 50, 64, time.Minute, 10*time.Second); err == nil {
					t.Fatal("a corrupted echo passed")
				}
			}
			// A client with the wrong key gets nothing through: the
			// bytes really are Shadowsocks to that server (one peer per
			// kind of server).
			if name == PeerHTTVPSSS || name == PeerOutline {
				wrong := r.transport
				if wrong.ss, err = newSSTarget("not-the-password", wrong.ss.Target); err != nil {
					t.Fatal(err)
				}
				s, err := wrong.Dial(ctx)
				if err != nil {
					t.Fatal(err)
				}
				s.SetDeadline(time.Now().Add(500 * time.Millisecond))
				s.Write(modeHeader(ModeDownload, 1<<10))
				var b [1]byte
				if n, err := s.Read(b[:]); err == nil {
					t.Fatalf("a wrong Shadowsocks key passed: %d bytes", n)
				}
				s.Close()
			}
		})
	}
}

// The per-scenario summary divides ours by Outline's peers, like with like.
func TestOutlineSummary(t *testing.T) {
	r := &Report{
		Throughput: []ThroughputCell{
			{Peer: PeerHTTVPS, Direction: Upload, Streams: 1, MBps: 900, CPUPerGiB: 0.5},
			{Peer: PeerHTTVPSSS, Direction: Upload, Streams: 1, MBps: 200, CPUPerGiB: 3},
			{Peer: PeerOutline, Direction: Upload, Streams: 1, MBps: 400, CPUPerGiB: 2},
		},
		Idle:      []IdleResult{{Peer: PeerHTTVPSSS, PerSessionKiB: 10}, {Peer: PeerOutline, PerSessionKiB: 40}},
		Latency:   []LatencyCell{{Peer: PeerHTTVPSSS, Streams: 100, P50Ms: 1, P99Ms: 3, P999Ms: 4}, {Peer: PeerOutline, Streams: 100, P50Ms: 1, P99Ms: 2, P999Ms: 4}},
		FirstByte: []FirstByteResult{{Peer: PeerHTTVPSSS, P50Ms: 1}, {Peer: PeerOutline, P50Ms: 4}},
	}
	r.finish()
	for _, x := range r.Ratios {
		if ssPeer(x.Versus) {
			t.Fatalf("httvps compared with a Shadowsocks peer: %+v", x)
		}
	}
	want := map[string]float64{
		"throughput/CPU s/GiB (median of cells)":   1.5,
		"throughput/MB/s (median of cells)":        0.5,
		"idle/KiB per idle session":                0.25,
		"latency/p99 round trip, 100 streams":      1.5,
		"latency/first byte of a new session, p50": 0.25,
	}
	got := map[string]float64{}
	for _, x := range r.OutlineSummary {
		if x.Peer != PeerHTTVPSSS || x.Versus != PeerOutline {
			t.Fatalf("row %+v", x)
		}
		got[x.Scenario+"/"+x.Metric] = x.Ratio
	}
	if len(got) != len(want) {
		t.Fatalf("summary %v", got)
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || g < w-1e-9 || g > w+1e-9 {
			t.Errorf("%s = %v, want %v", k, g, w)
		}
	}
}

// ssPeerMakers starts each Shadowsocks peer as the harness does
// (outline-ss-server built from tools/outline-ss-server into dir), gw the
// gateway binary, cert the TLS peers' certificate.
func ssPeerMakers(gw, dir string, cert *benchCert) map[string]func() (*peer, error) {
	outline, outlineErr := outlineBinary("", "../tools/outline-ss-server", dir)
	tunnel := func(name string, cert *benchCert) func() (*peer, error) {
		return func() (*peer, error) {
			pe, err := newHTTVPSSSPeer(gw, nil, nil, "ss-server", cert)
			if err == nil {
				asTunnel(pe, name)
			}
			return pe, err
		}
	}
	nginx := func(cert *benchCert) func() (*peer, error) {
		return func() (*peer, error) {
			if outlineErr != nil {
				return nil, outlineErr
			}
			return newNginxWSPeer("/usr/sbin/nginx", dir, outline, cert)
		}
	}
	return map[string]func() (*peer, error){
		PeerHTTVPSSS:    func() (*peer, error) { return newHTTVPSSSPeer(gw, nil, nil, "ss-server", nil) },
		PeerHTTVPSSSTLS: func() (*peer, error) { return newHTTVPSSSPeer(gw, nil, nil, "ss-server", cert) },
		PeerTunnelSS:    tunnel(PeerTunnelSS, nil),
		PeerTunnelSSTLS: tunnel(PeerTunnelSSTLS, cert),
		PeerOutline: func() (*peer, error) {
			if outlineErr != nil {
				return nil, outlineErr
			}
			return newOutlinePeer(outline), nil
		},
		PeerNginxWS:  nginx(nil),
		PeerNginxWSS: nginx(cert),
	}
}

// makePeer starts a peer with mk, skipping the test if the peer is not
// installed.
// startPeer starts pe in front of a sink of its own, for the test's
// duration.
func startPeer(t *testing.T, pe *peer) *running {
	t.Helper()
	ps := &procSet{}
	t.Cleanup(ps.stopAll)
	r, err := pe.start(context.Background(), ps, startSink(t))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func makePeer(t *testing.T, mk func() (*peer, error)) *peer {
	t.Helper()
	pe, err := mk()
	if errors.Is(err, errPeerUnavailable) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return pe
}
