package testpeer

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

func TestEVPBytesToKey(t *testing.T) {
	// Known value: OpenSSL EVP_BytesToKey(MD5, "foobar") as used by
	// shadowsocks for 32-byte keys.
	got := evpBytesToKey("foobar", 32)
	want := []byte{0x38, 0x58, 0xf6, 0x22, 0x30, 0xac, 0x3c, 0x91, 0x5f, 0x30, 0x0c, 0x66, 0x43, 0x12, 0xc6, 0x3f,
		0x56, 0x83, 0x78, 0x52, 0x96, 0x14, 0xd2, 0x2d, 0xdb, 0x49, 0x23, 0x7d, 0x2f, 0x60, 0xbf, 0xdf}
	if !bytes.Equal(got, want) {
		t.Fatalf("key = %x, want %x", got, want)
	}
}

func TestStreamRoundTrip(t *testing.T) {
	c, err := NewCipher(DefaultMethod, "pw")
	if err != nil {
		t.Fatal(err)
	}
	var wire bytes.Buffer
	w := c.NewWriter(&wire)
	msg := make([]byte, 3*MaxChunk+17)
	rand.Read(msg)
	w.Write(msg[:5])
	w.Write(msg[5:])
	r := c.NewReader(&wire)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(r, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("round trip mismatch")
	}
	pkt, err := c.SealPacket("127.0.0.1:53", msg[:1400])
	if err != nil {
		t.Fatal(err)
	}
	addr, payload, err := c.OpenPacket(pkt)
	if err != nil || addr != "127.0.0.1:53" || !bytes.Equal(payload, msg[:1400]) {
		t.Fatalf("packet round trip: %v %q", err, addr)
	}
}

// TestSSAEADAgainstSSServer cross-checks this package's Shadowsocks AEAD
// with a real ss-server: TCP download and upload with hashes, and UDP echo.
func TestSSAEADAgainstSSServer(t *testing.T) {
	for _, method := range []string{"chacha20-ietf-poly1305", "aes-256-gcm"} {
		t.Run(method, func(t *testing.T) {
			origin := StartOrigin(t)
			ss := SSServer(t, DefaultPassword, method)
			c, err := NewCipher(method, DefaultPassword)
			if err != nil {
				t.Fatal(err)
			}
			const size = 3<<20 + 12345
			tcp, err := net.DialTimeout("tcp", ss, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer tcp.Close()
			tcp.SetDeadline(time.Now().Add(30 * time.Second))
			sc, err := c.NewSSConn(tcp.(*net.TCPConn), origin.Addr)
			if err != nil {
				t.Fatal(err)
			}
			sum, n, err := HTTPGetSHA256(sc, origin.Addr, fmt.Sprintf("/bytes/%d?seed=9", size))
			if err != nil {
				t.Fatal(err)
			}
			if want := PseudoRandomSHA256(size, 9); n != size || sum != want {
				t.Fatalf("download: %d bytes sha %s, want %d %s", n, sum, size, want)
			}

			up, err := net.DialTimeout("tcp", ss, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer up.Close()
			up.SetDeadline(time.Now().Add(30 * time.Second))
			uc, err := c.NewSSConn(up.(*net.TCPConn), origin.Addr)
			if err != nil {
				t.Fatal(err)
			}
			sum, n, err = HTTPPostSHA256(uc, origin.Addr, PseudoRandom(size, 4), size)
			if err != nil {
				t.Fatal(err)
			}
			if want := PseudoRandomSHA256(size, 4); n != size || sum != want {
				t.Fatalf("upload: %d bytes sha %s, want %d %s", n, sum, size, want)
			}

			echo := UDPEcho(t)
			pc, err := net.Dial("udp", ss)
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			checkUDPEcho(t, c, pc, echo)
		})
	}
}

// checkUDPEcho sends Shadowsocks UDP packets to echo over pc and checks the
// decrypted replies.
func checkUDPEcho(t *testing.T, c *Cipher, pc net.Conn, echo string) {
	t.Helper()
	for i, size := range []int{1, 100, 1000, 1380, 1400} {
		payload := make([]byte, size)
		rand.Read(payload)
		pkt, err := c.SealPacket(echo, payload)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 65536)
		var got []byte
		for try := 0; try < 5 && got == nil; try++ {
			pc.Write(pkt)
			pc.SetReadDeadline(time.Now().Add(time.Second))
			n, err := pc.Read(buf)
			if err != nil {
				continue
			}
			from, p, err := c.OpenPacket(buf[:n])
			if err != nil {
				t.Fatalf("packet %d: %v", i, err)
			}
			if from != echo {
				t.Fatalf("packet %d from %s, want %s", i, from, echo)
			}
			got = p
		}
		if !bytes.Equal(got, payload) {
			t.Fatalf("packet %d (%d bytes): echo mismatch (got %d bytes)", i, size, len(got))
		}
	}
}

// TestClientsAgainstV2RayPluginServer validates the WebSocket client and
// SSLocal against the stock v2ray-plugin server standing in for a gateway.
func TestClientsAgainstV2RayPluginServer(t *testing.T) {
	origin := StartOrigin(t)
	ss := SSServer(t, DefaultPassword, DefaultMethod)
	const secret = "s3cret"
	gw := V2RayPluginServer(t, "/"+secret+"/tcp", ss)
	c, _ := NewCipher(DefaultMethod, DefaultPassword)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wc, err := DialWS(ctx, "ws://"+gw+"/"+secret+"/tcp")
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close()
	wc.NetConn().SetDeadline(time.Now().Add(30 * time.Second))
	sc, err := c.NewSSConn(wc, origin.Addr)
	if err != nil {
		t.Fatal(err)
	}
	const size = 5 << 20
	sum, n, err := HTTPGetSHA256(sc, origin.Addr, "/bytes/5242880?seed=1")
	if err != nil {
		t.Fatal(err)
	}
	if n != size || sum != PseudoRandomSHA256(size, 1) {
		t.Fatalf("ws download: %d bytes, hash mismatch", n)
	}

	socks := SSLocal(t, gw, secret, DefaultPassword, DefaultMethod)
	if err := WaitSOCKSReady(socks, origin, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	conn, err := SOCKS5Dial(ctx, socks, origin.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	sum, n, err = HTTPGetSHA256(conn, origin.Addr, "/bytes/5242880?seed=2")
	if err != nil {
		t.Fatal(err)
	}
	if n != size || sum != PseudoRandomSHA256(size, 2) {
		t.Fatalf("socks download: %d bytes, hash mismatch", n)
	}
}
