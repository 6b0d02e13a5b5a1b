package gateway

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"golang.org/x/sys/unix"

	"github.com/httvps/httvps/internal/testpeer"
)

// stormSockets lists this process's open TCP sockets (not listeners) with
// an end on one of ports: the descriptors a test's connections hold, told
// apart from whatever else the process opens and closes meanwhile (other
// tests' cleanups, the runtime), which a plain count of /proc/self/fd
// mistook for a leak on a busy machine.
func stormSockets(t *testing.T, ports ...int) []string {
	t.Helper()
	type ends struct{ local, remote, state string }
	byInode := map[string]ends{}
	for _, f := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range bytes.Split(b, []byte("\n"))[1:] {
			fs := bytes.Fields(line)
			if len(fs) < 10 {
				continue
			}
			byInode[string(fs[9])] = ends{string(fs[1]), string(fs[2]), string(fs[3])}
		}
	}
	port := func(hexAddr string) int {
		var p int
		fmt.Sscanf(hexAddr[strings.LastIndexByte(hexAddr, ':')+1:], "%X", &p)
		return p
	}
	want := map[int]bool{}
	for _, p := range ports {
		want[p] = true
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		l, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil || !strings.HasPrefix(l, "socket:[") {
			continue
		}
		en, ok := byInode[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")]
		if !ok || en.state == "0A" { // not TCP, or a listener
			continue
		}
		if lp, rp := port(en.local), port(en.remote); want[lp] || want[rp] {
			out = append(out, fmt.Sprintf("fd %s %d->%d state %s", e.Name(), lp, rp, en.state))
		}
	}
	return out
}

func mustPort(t *testing.T, addr string) int {
	t.Helper()
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return int(ap.Port())
}

// TestHandOffRacingHangUps: clients that send a valid upgrade request and
// hang up at once (with a reset, or a FIN after a moment) race the hand-off
// of their socket to a relay loop with netpoll's own close of it. Every
// descriptor is closed exactly once: pipes opened and checked meanwhile are
// never closed under their owner, no descriptor is left behind, and a
// session after the storm relays intact bytes.
func TestHandOffRacingHangUps(t *testing.T) {
	echo := testpeer.EchoServer(t)
	g := startGateway(t, echo, nil)
	addr := g.Addr().String()
	gwPort, echoPort := g.Addr().(*net.TCPAddr).Port, mustPort(t, echo)
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
	for (g.Sessions() != 0 || g.Handshakes() != 0 || len(stormSockets(t, gwPort, echoPort)) != 0) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if left := stormSockets(t, gwPort, echoPort); len(left) != 0 {
		t.Fatalf("%d sockets of the storm still open 20 s after it (%d sessions, %d handshakes): the hand-off leaks: %v",
			len(left), g.Sessions(), g.Handshakes(), left)
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
