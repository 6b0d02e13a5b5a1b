package e2e

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/httvps/httvps/codec"
	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/internal/testpeer"
)

// Ping floods (issue 7, finding 4): pongs are coalesced per read, the
// pongs queued to a client count against BufferCap, and a client over the
// control-frame budget is closed with 1008 without disturbing others.

var pingMask = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// serverFrame is one frame the gateway sent.
type serverFrame struct {
	op      ws.OpCode
	payload []byte
}

// frameSplitter cuts a server byte stream (unmasked frames) into frames.
type frameSplitter struct{ buf []byte }

// next reads one record from raw and returns the frames it completes
// (none for a record that is not application data); a read error fails
// the test with what, the thing that was awaited.
func (s *frameSplitter) next(t *testing.T, raw *testpeer.RawTLS, what string) []serverFrame {
	t.Helper()
	ct, content, err := raw.ReadRecord()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if ct != testpeer.RecordAppData {
		return nil
	}
	f, err := s.add(content)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// add appends b and returns the frames now complete.
func (s *frameSplitter) add(b []byte) ([]serverFrame, error) {
	s.buf = append(s.buf, b...)
	var out []serverFrame
	for len(s.buf) >= 2 {
		if s.buf[1]&0x80 != 0 {
			return out, errors.New("masked server frame")
		}
		hl, n := 2, int(s.buf[1]&0x7f)
		switch n {
		case 126:
			if len(s.buf) < 4 {
				return out, nil
			}
			hl, n = 4, int(binary.BigEndian.Uint16(s.buf[2:4]))
		case 127:
			if len(s.buf) < 10 {
				return out, nil
			}
			hl, n = 10, int(binary.BigEndian.Uint64(s.buf[2:10]))
		}
		if len(s.buf) < hl+n {
			return out, nil
		}
		out = append(out, serverFrame{ws.OpCode(s.buf[0] & 0x0f), append([]byte(nil), s.buf[hl:hl+n]...)})
		s.buf = s.buf[hl+n:]
	}
	return out, nil
}

// pingBatch is n pings with distinct payloads, then a binary message and a
// close 1000, as one client write.
func pingBatch(n int) (b []byte, last string) {
	for i := range n {
		last = fmt.Sprintf("ping-%03d", i)
		b = codec.AppendClientFrame(b, ws.OpPing, true, pingMask, []byte(last))
	}
	b = codec.AppendClientFrame(b, ws.OpBinary, true, pingMask, []byte("after the pings"))
	b = codec.AppendClientFrame(b, ws.OpClose, true, pingMask, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
	return b, last
}

// pongSummary checks what the gateway sent for a pingBatch: pongs, the
// echo of the message, close 1000; it returns the number of pongs and the
// last pong's payload.
func pongSummary(frames []serverFrame) (pongs int, last string, err error) {
	var data []byte
	closed := false
	for _, f := range frames {
		switch f.op {
		case ws.OpPong:
			pongs++
			last = string(f.payload)
		case ws.OpBinary:
			data = append(data, f.payload...)
		case ws.OpClose:
			if code, _ := ws.ParseCloseFrameData(f.payload); code != ws.StatusNormalClosure {
				return pongs, last, fmt.Errorf("close %d, want 1000", code)
			}
			closed = true
		default:
			return pongs, last, fmt.Errorf("unexpected frame op %d", f.op)
		}
	}
	if string(data) != "after the pings" || !closed {
		return pongs, last, fmt.Errorf("echo %q, close seen %v", data, closed)
	}
	return pongs, last, nil
}

// TestPingBatchOnePong: 50 pings that arrive in one read get one pong (for
// the last ping, RFC 6455 §5.5.3), not 50 frames and 50 writes.
func TestPingBatchOnePong(t *testing.T) {
	_, gw := startGateway(t, gateway.Config{}, map[string]string{"ping-secret": testpeer.EchoServer(t)})
	c := dialWS(t, wsURL(gw, "ping-secret", "tcp"))
	batch, lastPing := pingBatch(50)
	if err := c.WriteRaw(batch); err != nil {
		t.Fatal(err)
	}
	conn := c.NetConn()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var sp frameSplitter
	var frames []serverFrame
	buf := make([]byte, 64<<10)
	for {
		n, err := conn.Read(buf)
		f, perr := sp.add(buf[:n])
		frames = append(frames, f...)
		if perr != nil {
			t.Fatal(perr)
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("read: %v", err)
			}
			break
		}
	}
	pongs, last, err := pongSummary(frames)
	if err != nil {
		t.Fatal(err)
	}
	if pongs < 1 || pongs > 2 || last != lastPing {
		t.Fatalf("50 pings in one write got %d pongs, the last for %q; want 1 or 2, the last for %q", pongs, last, lastPing)
	}
}

// TestTLSPingBatchOneRecord: 50 pings in one TLS record, and 50 pings in 50
// records of one TCP write, each get one pong in one record.
func TestTLSPingBatchOneRecord(t *testing.T) {
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		for _, split := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/records-per-ping=%v", tls.VersionName(v), split), func(t *testing.T) {
				_, gw, cert := startTLSGateway(t, gateway.Config{}, map[string]string{"ping-secret": testpeer.EchoServer(t)})
				raw, _ := dialRawWS(t, gw, cert, "ping-secret", v)
				batch, lastPing := pingBatch(50)
				var err error
				if split {
					// One record per frame: the pings are spread over 50
					// records that one read brings.
					var recs []byte
					for p := batch; len(p) > 0; {
						k := 2 + 4 + int(p[1]&0x7f)
						recs = append(recs, raw.Seal(testpeer.RecordAppData, p[:k], 0)...)
						p = p[k:]
					}
					err = raw.WriteRaw(recs)
				} else {
					_, err = raw.Write(batch)
				}
				if err != nil {
					t.Fatal(err)
				}
				raw.SetReadDeadline(time.Now().Add(10 * time.Second))
				var sp frameSplitter
				var frames []serverFrame
				pongRecords := 0
				for !raw.SawCloseNotify() {
					f := sp.next(t, raw, "read record")
					for _, fr := range f {
						if fr.op == ws.OpPong {
							pongRecords++
							break
						}
					}
					frames = append(frames, f...)
				}
				pongs, last, err := pongSummary(frames)
				if err != nil {
					t.Fatal(err)
				}
				if pongs < 1 || pongs > 2 || pongRecords > 2 || last != lastPing {
					t.Fatalf("50 pings in one write got %d pongs in %d records, the last for %q; want 1 or 2, the last for %q", pongs, pongRecords, last, lastPing)
				}
			})
		}
	}
}

// dialRawSmallWindow is dialRawWS over a socket with a small receive
// buffer, so that what a client does not read piles up in the gateway
// soon instead of in the kernel.
func dialRawSmallWindow(t *testing.T, gw string, cert *testpeer.TestCert) *testpeer.RawTLS {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return serr
	}}
	tcp, err := d.Dial("tcp", gw)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := testpeer.HandshakeRawTLS(tcp, cert.ClientConfig(tls.VersionTLS13))
	if err != nil {
		tcp.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	if _, err := testpeer.DialWSOver(t.Context(), wsURL(gw, "ping-secret", "tcp"), raw); err != nil {
		t.Fatal(err)
	}
	return raw
}

// emptyPings is the content of a TLS record full of empty pings: each
// 6-byte ping would be answered with a 2-byte pong in a 24-byte record.
func emptyPings() []byte {
	var frames []byte
	for len(frames)+6 <= 1<<14 {
		frames = codec.AppendClientFrame(frames, ws.OpPing, true, pingMask, nil)
	}
	return frames
}

// TestTLSPingFloodUnreadBounded: a TLS client floods empty pings in 16 KiB
// records and never reads (control-frame budget off, to see the buffer
// bound alone). A read gets at most one pong, and every pong answers at
// least one whole record of pings, so what the gateway holds for the client
// (pongs plus a carried partial record) stays far below BufferCap. Before
// the fix each 6-byte ping became a 24-byte sealed pong: the kernel buffers
// filled and then the queue went to the cap and past it, by up to one read's
// worth of pongs (945 KiB with the default 256 KiB cap).
func TestTLSPingFloodUnreadBounded(t *testing.T) {
	const (
		bufferCap = 256 << 10 // the default
		flood     = 16 << 20
	)
	m := &countMetrics{}
	_, gw, cert := startTLSGateway(t, gateway.Config{
		Metrics:        m,
		BufferCap:      bufferCap,
		MaxControlRate: -1,
	}, map[string]string{"ping-secret": testpeer.EchoServer(t)})
	raw := dialRawSmallWindow(t, gw, cert)
	pings := emptyPings()
	sent := 0
	for sent < flood {
		var chunk []byte
		for range 16 {
			chunk = append(chunk, raw.Seal(testpeer.RecordAppData, pings, 0)...)
		}
		raw.SetWriteDeadline(time.Now().Add(time.Second))
		if err := raw.WriteRaw(chunk); err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("write after %d bytes: %v", sent, err)
			}
			break // the gateway stopped reading us
		}
		sent += len(chunk)
	}
	// Let the gateway take what it will of what is on its way.
	for prev := int64(-1); prev != m.up.Load(); {
		prev = m.up.Load()
		time.Sleep(200 * time.Millisecond)
	}
	if ends := m.endsString(); ends != "" {
		t.Fatalf("the session ended during the flood (ends:%s)", ends)
	}
	if peak := m.maxBuffered.Load(); peak >= bufferCap {
		t.Fatalf("a client that never reads made the gateway hold %d bytes (BufferCap %d); it sent %d bytes of pings, the gateway read %d", peak, bufferCap, sent, m.up.Load())
	}
	t.Logf("sent %d KiB of pings, gateway read %d KiB, peak buffered %d bytes", sent>>10, m.up.Load()>>10, m.maxBuffered.Load())
}

// TestControlFloodClosed1008: a client sending pings (or unsolicited
// pongs) past the control-frame budget gets close 1008 and its session
// ends as "flood", while another session on the same gateway relays
// hash-checked bytes both ways throughout.
func TestControlFloodClosed1008(t *testing.T) {
	for _, op := range []ws.OpCode{ws.OpPing, ws.OpPong} {
		t.Run(fmt.Sprintf("op=%d", op), func(t *testing.T) {
			m := &countMetrics{}
			_, gw, cert := startTLSGateway(t, gateway.Config{Metrics: m}, map[string]string{
				"ping-secret": testpeer.EchoServer(t), "duplex-secret": duplexPeer(t),
			})
			other := dialWSS(t, gw, cert, "duplex-secret", tls.VersionTLS13)
			exchanged := make(chan error, 1)
			go func() { exchanged <- duplexExchange(other, 7, 8<<20, 8<<20, false) }()

			raw, _ := dialRawWS(t, gw, cert, "ping-secret", tls.VersionTLS13)
			var frames []byte
			for i := 0; len(frames) < 8<<10; i++ {
				frames = codec.AppendClientFrame(frames, op, true, pingMask, binary.BigEndian.AppendUint32(nil, uint32(i)))
			}
			rec := raw.Seal(testpeer.RecordAppData, frames, 0)
			var wg sync.WaitGroup
			stop := make(chan struct{})
			wg.Add(1)
			go func() {
				// Keep flooding until the gateway closes on us.
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					raw.SetWriteDeadline(time.Now().Add(time.Second))
					if raw.WriteRaw(rec) != nil {
						return
					}
				}
			}()
			raw.SetReadDeadline(time.Now().Add(10 * time.Second))
			var sp frameSplitter
			code := ws.StatusCode(0)
			for code == 0 {
				f := sp.next(t, raw, "no close frame")
				for _, fr := range f {
					if fr.op == ws.OpClose {
						code, _ = ws.ParseCloseFrameData(fr.payload)
					}
				}
			}
			close(stop)
			if op == ws.OpPong {
				// A flooder that resets instead of closing still ends
				// as "flood", not "client_gone".
				raw.TCP.(*net.TCPConn).SetLinger(0)
			}
			raw.Close()
			wg.Wait()
			if code != ws.StatusPolicyViolation {
				t.Fatalf("flood closed with %d, want 1008", code)
			}
			deadline := time.Now().Add(8 * time.Second)
			for m.ends[gateway.EndFlood].Load() == 0 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if n := m.ends[gateway.EndFlood].Load(); n != 1 {
				t.Fatalf("%d sessions ended as flood, want 1 (ends:%s)", n, m.endsString())
			}
			select {
			case err := <-exchanged:
				if err != nil {
					t.Fatalf("the other session: %v", err)
				}
			case <-time.After(60 * time.Second):
				t.Fatal("the other session did not finish within 60 s")
			}
		})
	}
}
