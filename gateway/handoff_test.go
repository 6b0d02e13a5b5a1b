package gateway

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"golang.org/x/sys/unix"

	"github.com/httvps/httvps/internal/testpeer"
)

// openFDs is the number of this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestHandOffRacingHangUps: clients that send a valid upgrade request and
// hang up at once (with a reset, or a FIN after a moment) race the hand-off
// of their socket to a relay loop with netpoll's own close of it. Every
// descriptor is closed exactly once: pipes opened and checked meanwhile are
// never closed under their owner, no descriptor is left behind, and a
// session after the storm relays intact bytes.
func TestHandOffRacingHangUps(t *testing.T) {
	g := startGateway(t, testpeer.EchoServer(t), nil)
	base := openFDs(t)
	addr := g.Addr().String()
	req := []byte("GET /s3cret/tcp HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")

	// The victims a stray close would hit: descriptors opened while the
	// storm runs, each checked before it is closed by its owner.
	stop := make(chan struct{})
	var victims sync.WaitGroup
	var broken atomic.Value
	for range 2 {
		victims.Add(1)
		go func() {
			defer victims.Done()
			var p [2]int
			b := []byte{0}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
					broken.Store(fmt.Errorf("pipe: %w", err))
					return
				}
				b[0] = byte(i)
				_, werr := unix.Write(p[1], b)
				time.Sleep(50 * time.Microsecond)
				n, rerr := unix.Read(p[0], b)
				if werr != nil || rerr != nil || n != 1 || b[0] != byte(i) {
					broken.Store(fmt.Errorf("a pipe closed or swapped under its owner: write %v, read %d %v", werr, n, rerr))
				}
				unix.Close(p[0])
				unix.Close(p[1])
			}
		}()
	}

	const clients, each = 8, 150
	var wg sync.WaitGroup
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+w))}}
			for i := range each {
				c, err := d.Dial("tcp", addr)
				if err != nil {
					continue // a busy machine's backlog; the gateway's side is what counts
				}
				c.Write(req)
				if i%2 == 0 {
					c.(*net.TCPConn).SetLinger(0) // a reset at once
				} else {
					time.Sleep(time.Duration(i%7) * 30 * time.Microsecond)
				}
				c.Close()
			}
		}()
	}
	wg.Wait()
	close(stop)
	victims.Wait()
	if err, _ := broken.Load().(error); err != nil {
		t.Fatal(err)
	}

	deadline := time.Now().Add(20 * time.Second)
	for (g.Sessions() != 0 || g.Handshakes() != 0 || openFDs(t) > base+4) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := openFDs(t); n > base+4 {
		t.Fatalf("%d descriptors open after the storm, %d before: the hand-off leaks", n, base)
	}
	if g.Sessions() != 0 {
		t.Fatalf("%d sessions left after their clients hung up", g.Sessions())
	}

	c := dialWS(t, g, "/s3cret/tcp")
	defer c.Close()
	data := make([]byte, 1<<20)
	rand.Read(data)
	go func() {
		wsutil.WriteClientBinary(c, data)
		ws.WriteFrame(c, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))))
	}()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	h := sha256.New()
	r := wsutil.Reader{Source: c, State: ws.StateClientSide}
	for {
		hdr, err := r.NextFrame()
		if err != nil {
			t.Fatal(err)
		}
		if hdr.OpCode == ws.OpClose {
			break
		}
		io.Copy(h, &r)
	}
	if want := sha256.Sum256(data); !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatal("the session after the storm: hash mismatch")
	}
}
