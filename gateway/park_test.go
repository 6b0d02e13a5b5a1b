package gateway

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// roundTrip sends n random bytes in one message and reads the echo back.
func roundTrip(t *testing.T, c net.Conn, n int) {
	t.Helper()
	data := make([]byte, n)
	rand.Read(data)
	if err := wsutil.WriteClientBinary(c, data); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var got []byte
	for len(got) < n {
		hdr, err := ws.ReadHeader(c)
		if err != nil {
			t.Fatalf("after %d bytes: %v", len(got), err)
		}
		if hdr.OpCode != ws.OpBinary && hdr.OpCode != ws.OpContinuation {
			t.Fatalf("unexpected opcode %v", hdr.OpCode)
		}
		b := make([]byte, hdr.Length)
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatal(err)
		}
		got = append(got, b...)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("echo of %d bytes differs", n)
	}
}

// parkAll parks every TLS session on g's loops and reports how many still
// had keys to drop (the rest were parked already).
func parkAll(g *Gateway) (sessions, dropped int) {
	for _, l := range g.loops {
		done := make(chan struct{})
		l.post(func() {
			for s := l.head.next; s != &l.head; s = s.next {
				if s.tls != nil {
					sessions++
					if s.tls.rl.park() {
						dropped++
					}
				}
			}
			close(done)
		})
		<-done
	}
	return sessions, dropped
}

// TestIdleTLSSessionParksAndResumes: a TLS session idle for longer than
// tlsParkAfter has its AEAD state dropped by the sweep, and then carries
// bytes both ways exactly as before (records sealed and opened with keys
// rebuilt from the kept ones), for TLS 1.3 and TLS 1.2.
func TestIdleTLSSessionParksAndResumes(t *testing.T) {
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		t.Run(TLSVersionName(v), func(t *testing.T) {
			g, pool := startTLSGateway(t, echoServer(t), nil)
			c := dialWSS(t, g, pool, "/s3cret/tcp", v)
			defer c.Close()
			roundTrip(t, c, 1000)
			if n, dropped := parkAll(g); n != 1 || dropped != 1 {
				// parkAll itself parked the busy session: fine, but it must
				// have had keys to drop right after traffic.
				t.Fatalf("sessions %d, dropped %d right after traffic; want 1, 1", n, dropped)
			}
			roundTrip(t, c, 70000) // several records each way after a park
			time.Sleep(tlsParkAfter + 2*sweepEvery*time.Millisecond)
			if n, dropped := parkAll(g); n != 1 || dropped != 0 {
				t.Fatalf("sessions %d, dropped %d after %v idle; want 1, 0 (the sweep parks)", n, dropped, tlsParkAfter)
			}
			roundTrip(t, c, 5000)
			echoThrough(t, c, 1<<20)
		})
	}
}

// TestReclaimRules: a reclaim starts only after enough parks, at most every
// reclaimEvery, never two at once.
func TestReclaimRules(t *testing.T) {
	var r reclaimer
	now := int64(time.Hour)
	wait := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for r.count.Load() != want || r.running.Load() {
			if time.Now().After(deadline) {
				t.Fatalf("reclaims %d, want %d", r.count.Load(), want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	r.parked(reclaimMinParks-1, now, 100)
	wait(0)
	r.parked(1, now, 100)
	wait(1)
	// Enough parks again, but too soon.
	r.parked(reclaimMinParks, now+int64(reclaimEvery)-1, 100)
	wait(1)
	r.parked(0, now+int64(reclaimEvery)-1, 100)
	wait(1)
	// A sweep that parks nothing still reclaims what waited out the pause.
	r.parked(0, now+int64(reclaimEvery), 100)
	wait(2)
	// With many sessions the bar is sessions/8.
	later := now + 3*int64(reclaimEvery)
	r.parked(reclaimMinParks, later, 80000)
	wait(2)
	r.parked(10000-reclaimMinParks, later, 80000)
	wait(3)
	if r.parks.Load() != 0 {
		t.Fatalf("parks not reset: %d", r.parks.Load())
	}
}
