package bench

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Jigsaw-Code/outline-sdk/transport/shadowsocks"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// startUDPEcho is the sink's UDP echo.
func startUDPEcho(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go ServeUDPEcho(pc)
	return pc.LocalAddr().String()
}

// toyMangle changes what the toy server sends back: k is the reply's
// index in its association; it returns the payload to send (nil: drop it)
// and how long to wait first.
type toyMangle func(k int64, payload []byte) ([]byte, time.Duration)

// startToySSUDP is a minimal Shadowsocks UDP server behind a WebSocket
// packet path, as outline-ss-server's websocket-packet listener: each
// binary message one packet, decrypted, its payload sent to the target;
// each reply sealed with the source address in front.
func startToySSUDP(t *testing.T, key *shadowsocks.EncryptionKey, mangle toyMangle) string {
	t.Helper()
	return serveLoopback(t, func(c net.Conn) {
		if _, err := ws.Upgrade(c); err != nil {
			return
		}
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return
		}
		defer pc.Close()
		var k atomic.Int64
		go func() {
			buf := make([]byte, 65536)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				addr, _ := socksAddr(from.String())
				payload := buf[:n]
				var wait time.Duration
				if mangle != nil {
					if payload, wait = mangle(k.Add(1)-1, append([]byte(nil), payload...)); payload == nil {
						continue
					}
				}
				pkt, _ := shadowsocks.Pack(make([]byte, len(addr)+len(payload)+64), append(addr, payload...), key)
				send := func() { wsutil.WriteServerBinary(c, pkt) }
				if wait > 0 {
					time.AfterFunc(wait, send)
				} else {
					send()
				}
			}
		}()
		for {
			msg, err := wsutil.ReadClientBinary(c)
			if err != nil {
				return
			}
			text, err := shadowsocks.Unpack(nil, msg, key)
			if err != nil || len(text) < 7 || text[0] != 1 {
				continue
			}
			to := &net.UDPAddr{IP: net.IP(text[1:5]), Port: int(text[5])<<8 | int(text[6])}
			pc.WriteTo(text[7:], to)
		}
	})
}

func toyUDPTransport(t *testing.T, mangle toyMangle) Transport {
	ss, err := newSSTarget("toy-password", startUDPEcho(t))
	if err != nil {
		t.Fatal(err)
	}
	return Transport{Addr: startToySSUDP(t, ss.Key, mangle), Path: "/secret/tcp", ss: ss}
}

func TestUDPCell(t *testing.T) {
	tr := toyUDPTransport(t, nil)
	for _, n := range []int{1, 4} {
		x, _, _, err := udpCell(context.Background(), tr, n, 2000, 1200, 16, 20*time.Second)
		if err != nil {
			t.Fatalf("x%d: %v", n, err)
		}
		if x.Sent != 2000 || x.Echoed+x.Drops != x.Sent || x.PPS <= 0 || x.Associations != n {
			t.Fatalf("x%d: %+v", n, x)
		}
	}
}

// A changed byte is an error; a lost packet is counted, exactly; a packet
// held past the wait is counted dropped and then late.
func TestUDPDetectsCorruptionLossAndDelay(t *testing.T) {
	corrupt := toyUDPTransport(t, func(k int64, p []byte) ([]byte, time.Duration) {
		if k == 500 {
			p[len(p)-1] ^= 1
		}
		return p, 0
	})
	if _, _, _, err := udpCell(context.Background(), corrupt, 1, 1000, 256, 8, 20*time.Second); !errors.Is(err, errIntegrity) {
		t.Fatalf("corrupt: err = %v, want errIntegrity", err)
	}
	// Replies 0 (the warm-up) and then every 100th are lost.
	drop := toyUDPTransport(t, func(k int64, p []byte) ([]byte, time.Duration) {
		if k > 1 && k%100 == 0 {
			return nil, 0
		}
		return p, 0
	})
	x, _, _, err := udpCell(context.Background(), drop, 1, 1000, 256, 8, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// Reply k answers the cell's packet k-1 (the warm-up was reply 0).
	if x.Drops != 10 || x.Echoed != 990 {
		t.Fatalf("drop: %+v, want 10 dropped", x)
	}
	delay := toyUDPTransport(t, func(k int64, p []byte) ([]byte, time.Duration) {
		if k == 50 {
			return p, udpWait + 300*time.Millisecond
		}
		return p, 0
	})
	x, _, _, err = udpCell(context.Background(), delay, 1, 200, 256, 4, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if x.Drops != 1 || x.Echoed != 199 {
		t.Fatalf("delay: %+v, want 1 dropped", x)
	}
}

// startSinkUDP is the sink with its UDP echo on the same port, as the
// sink subcommand serves them.
func startSinkUDP(t *testing.T) string {
	t.Helper()
	addr := startSink(t)
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go ServeUDPEcho(pc)
	return addr
}

// TestSSPeersUDP sends checked Shadowsocks UDP packets through every
// installed peer of the udp scenario, started as the harness does (the
// gateway's ss-server with -u, outline-ss-server's packet listener, the
// native tunnel's udp streams).
func TestSSPeersUDP(t *testing.T) {
	dir := t.TempDir()
	cert, err := writeBenchCert(dir, CertECDSA)
	if err != nil {
		t.Fatal(err)
	}
	gw := buildGateway(t)
	makers := ssPeerMakers(gw, dir, cert)
	for _, name := range []string{PeerHTTVPSSS, PeerHTTVPSSSTLS, PeerTunnelSSTLS, PeerOutline, PeerNginxWSS} {
		t.Run(name, func(t *testing.T) {
			pe := makePeer(t, makers[name])
			if !udpPeer(name) {
				t.Fatalf("%s is not a udp peer", name)
			}
			ps := &procSet{}
			defer ps.stopAll()
			r, err := withUDP(pe).start(context.Background(), ps, startSinkUDP(t))
			if err != nil {
				t.Fatal(err)
			}
			x, _, _, err := udpCell(context.Background(), r.transport, 2, 400, 1200, 4, 30*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if x.Sent != 400 || x.Echoed+x.Drops != 400 || x.Echoed == 0 {
				t.Fatalf("%+v", x)
			}
		})
	}
}
