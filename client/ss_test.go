package client

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/Jigsaw-Code/outline-sdk/transport/shadowsocks"

	"github.com/httvps/httvps/internal/testpeer"
	"github.com/httvps/httvps/store"
)

// Streams and packets through a real ss-server (shadowsocks-libev), each
// cipher: bytes intact both ways, by hash.
func TestShadowsocksAgainstSSServer(t *testing.T) {
	for i, m := range store.Ciphers {
		t.Run(m, func(t *testing.T) {
			ctx := testCtx(t)
			srv := testpeer.SSServer(t, testPassword, m)
			s, err := NewShadowsocks(NewDirect(srv), m, testPassword)
			if err != nil {
				t.Fatal(err)
			}
			echo := testpeer.EchoServer(t)
			c, err := s.DialStream(ctx, echo)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(60 * time.Second))
			const n = 4 << 20
			seed := uint64(i + 1)
			go io.Copy(c, testpeer.PseudoRandom(n, seed))
			got, err := hashN(c, n)
			if err != nil {
				t.Fatalf("echo read: %v", err)
			}
			if want := testpeer.PseudoRandomSHA256(n, seed); got != want {
				t.Fatalf("echo through ss-server: sha256 %s, want %s", got, want)
			}

			pc, err := s.ListenPacket(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			udpEcho := testpeer.UDPEcho(t)
			checkPacketEcho(t, pc, udpEcho, []int{1, 512, 1300})
		})
	}
}

// checkPacketEcho sends one datagram of each size to a UDP echo through pc
// and checks the answer's bytes and source. Loopback does not lose
// packets in practice; a lost one is sent again, up to three times.
func checkPacketEcho(t *testing.T, pc net.PacketConn, echo string, sizes []int) {
	t.Helper()
	to, _ := net.ResolveUDPAddr("udp", echo)
	buf := make([]byte, 65536)
	for _, size := range sizes {
		payload := make([]byte, size)
		for i := range payload {
			payload[i] = byte(rand.Uint32())
		}
		ok := false
		for try := 0; try < 3 && !ok; try++ {
			if _, err := pc.WriteTo(payload, to); err != nil {
				t.Fatalf("WriteTo: %v", err)
			}
			pc.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, from, err := pc.ReadFrom(buf)
			if ne, isNet := err.(net.Error); isNet && ne.Timeout() {
				continue
			}
			if err != nil {
				t.Fatalf("ReadFrom: %v", err)
			}
			if !bytes.Equal(buf[:n], payload) || from.String() != echo {
				t.Fatalf("udp echo of %d bytes: got %d bytes from %v (want %s)", size, n, from, echo)
			}
			ok = true
		}
		if !ok {
			t.Fatalf("udp echo of %d bytes: no answer", size)
		}
	}
}

// ss-local (shadowsocks-libev's client) against a server side made of
// outline-sdk's shadowsocks.NewReader/NewWriter: what ss-local encrypts the
// SDK decrypts byte for byte, and the reverse, for every cipher.
func TestSSLocalToOutlineSDK(t *testing.T) {
	for i, m := range store.Ciphers {
		t.Run(m, func(t *testing.T) {
			const up, down = 3<<20 + 17, 5<<20 + 3
			seedUp, seedDown := uint64(100+i), uint64(200+i)
			gotAddr := make(chan string, 1)
			gotUp := make(chan string, 1)
			srv := goSSServer(t, m, testPassword, func(r io.Reader, w io.Writer, addr string) {
				gotAddr <- addr
				sum, err := hashN(r, up)
				if err != nil {
					t.Errorf("server read: %v", err)
				}
				gotUp <- sum
				if _, err := io.Copy(w, testpeer.PseudoRandom(down, seedDown)); err != nil {
					t.Errorf("server write: %v", err)
				}
			})
			_, srvPort, _ := net.SplitHostPort(srv)
			port := testpeer.FreePort(t)
			socks := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
			testpeer.StartProc(t, "ss-local", "-s", "127.0.0.1", "-p", srvPort, "-b", "127.0.0.1",
				"-l", strconv.Itoa(port), "-k", testPassword, "-m", m, "-t", "60")
			if err := testpeer.WaitListening(socks, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			c, err := testpeer.SOCKS5Dial(testCtx(t), socks, "origin.example:8080")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(60 * time.Second))
			go io.Copy(c, testpeer.PseudoRandom(up, seedUp))
			sum, err := hashN(c, down)
			if err != nil {
				t.Fatalf("client read: %v", err)
			}
			if want := testpeer.PseudoRandomSHA256(down, seedDown); sum != want {
				t.Errorf("server→ss-local: sha256 %s, want %s", sum, want)
			}
			if a := <-gotAddr; a != "origin.example:8080" {
				t.Errorf("target address %q, want origin.example:8080", a)
			}
			if s := <-gotUp; s != testpeer.PseudoRandomSHA256(up, seedUp) {
				t.Errorf("ss-local→server: sha256 %s, want %s", s, testpeer.PseudoRandomSHA256(up, seedUp))
			}
		})
	}
}

// The key can change while the layer runs; new streams use the new one.
func TestShadowsocksSetKey(t *testing.T) {
	srv := testpeer.SSServer(t, "second-password", "aes-256-gcm")
	s, err := NewShadowsocks(NewDirect(srv), "chacha20-ietf-poly1305", testPassword)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetKey("aes-256-gcm", "second-password"); err != nil {
		t.Fatal(err)
	}
	echo := testpeer.EchoServer(t)
	c, err := s.DialStream(testCtx(t), echo)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	c.Write([]byte("after rotation"))
	buf := make([]byte, 14)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "after rotation" {
		t.Fatalf("echo after SetKey: %q, %v", buf, err)
	}
	if err := s.SetKey("rc4-md5", "x"); err == nil {
		t.Fatal("SetKey accepted rc4-md5")
	}
}

var _ = shadowsocks.NewEncryptionKey
