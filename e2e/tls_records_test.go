package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/internal/testpeer"
)

// echoPhase sends msgs as binary messages (then runs after, if not nil, on
// the writing goroutine) and checks that their bytes come back in order.
func echoPhase(c *testpeer.WSConn, msgs [][]byte, after func() error) error {
	errc := make(chan error, 1)
	go func() {
		for i, m := range msgs {
			if err := c.WriteMessage(m); err != nil {
				errc <- fmt.Errorf("message %d: %w", i, err)
				return
			}
		}
		if after != nil {
			errc <- after()
			return
		}
		errc <- nil
	}()
	want := bytes.Join(msgs, nil)
	got := make([]byte, len(want))
	c.NetConn().SetReadDeadline(time.Now().Add(60 * time.Second))
	defer c.NetConn().SetReadDeadline(time.Time{})
	n, err := io.ReadFull(c, got)
	if werr := <-errc; werr != nil {
		return werr
	}
	if err != nil {
		return fmt.Errorf("echo: %w after %d of %d bytes", err, n, len(want))
	}
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && got[i] == want[i] {
			i++
		}
		return fmt.Errorf("echo differs at byte %d of %d", i, len(want))
	}
	return nil
}

func randomMessages(r *rand.Rand, count, minSize, maxSize int) [][]byte {
	msgs := make([][]byte, count)
	for i := range msgs {
		m := make([]byte, minSize+r.IntN(maxSize-minSize+1))
		for j := range m {
			m[j] = byte(r.Uint32())
		}
		msgs[i] = m
	}
	return msgs
}

// TestTLSRecordBoundaries: crypto/tls writes its records through a
// ChunkConn, so the gateway sees each record cut at every byte boundary
// (header and body), one byte per read, cut at random places, and many
// records coalesced into one segment; then full-size records (16 KiB of
// plaintext, 16401 bytes on the wire). Every phase's echo is checked byte
// for byte on one session, which then ends cleanly.
func TestTLSRecordBoundaries(t *testing.T) {
	const secret = "tls-boundaries"
	m := &countMetrics{}
	g, gw, cert := startTLSGateway(t, gateway.Config{Metrics: m}, map[string]string{secret: testpeer.EchoServer(t)})
	tcp, err := net.DialTimeout("tcp", gw, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	tcp.(*net.TCPConn).SetNoDelay(true)
	cc := testpeer.NewChunkConn(tcp, 42)
	cfg := cert.ClientConfig(tls.VersionTLS13)
	cfg.DynamicRecordSizingDisabled = true // full-size records from the first byte
	tc := tls.Client(cc, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := testpeer.DialWSOver(ctx, wsURL(gw, secret, "tcp"), tc)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	phase := func(name string, mode testpeer.ChunkMode, msgs [][]byte, flush bool) {
		t.Helper()
		if err := cc.SetMode(mode); err != nil {
			t.Fatal(err)
		}
		before := cc.Pieces()
		var after func() error
		if flush {
			after = cc.Flush
		}
		start := time.Now()
		if err := echoPhase(c, msgs, after); err != nil {
			t.Fatalf("%s: %v (session ends:%s)", name, err, m.endsString())
		}
		t.Logf("%s: %d messages in %d TCP writes, %v", name, len(msgs), cc.Pieces()-before, time.Since(start).Round(time.Millisecond))
	}
	// 20-byte messages: 26-byte frames, 48-byte records: 47 cut points, each
	// used twice. 300-byte messages: 327-byte records, every cut once.
	phase("every boundary (48-byte records)", testpeer.ChunkEveryBoundary, randomMessages(r, 94, 20, 20), false)
	phase("every boundary (327-byte records)", testpeer.ChunkEveryBoundary, randomMessages(r, 326, 300, 300), false)
	cc.Pause = 200 * time.Microsecond
	phase("one byte per write", testpeer.ChunkBytewise, randomMessages(r, 4, 1, 200), false)
	phase("random cuts", testpeer.ChunkRandom, randomMessages(r, 300, 1, 40000), false)
	cc.CoalesceRecords = 64
	phase("64 records per write", testpeer.ChunkCoalesce, randomMessages(r, 640+17, 1, 3000), true)
	cc.CoalesceRecords = 1000
	phase("1000 small records per write", testpeer.ChunkCoalesce, randomMessages(r, 1000, 0, 10), true)
	phase("full-size records", testpeer.ChunkPass, randomMessages(r, 16, 1<<20, 1<<20), false)

	if err := cc.SetMode(testpeer.ChunkPass); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if n, err := io.Copy(io.Discard, c); n != 0 || err != nil {
		t.Fatalf("after close: %d bytes, %v", n, err)
	}
	if code, _, _ := c.CloseCode(); code != ws.StatusNormalClosure {
		t.Fatalf("close code %d", code)
	}
	waitSessions(t, g, 0)
	if m.ends[gateway.EndNormal].Load() != 1 {
		t.Fatalf("session ends:%s, want normal", m.endsString())
	}
}

// TestTLSPaddedRecords: records the raw client seals itself: a 16384-byte
// plaintext record, and records with zero padding up to the 2^14+1-byte
// inner plaintext limit (RFC 8446 §5.4), which the gateway must strip.
func TestTLSPaddedRecords(t *testing.T) {
	const secret = "tls-padded"
	_, gw, cert := startTLSGateway(t, gateway.Config{}, map[string]string{secret: testpeer.EchoServer(t)})
	raw, c := dialRawWS(t, gw, cert, secret, tls.VersionTLS13)
	r := rand.New(rand.NewPCG(3, 4))
	var want []byte
	var wire []byte
	frame := func(p []byte) []byte {
		var b bytes.Buffer
		f := ws.NewBinaryFrame(append([]byte(nil), p...))
		f.Header.Masked = true
		f.Header.Mask = ws.NewMask()
		ws.Cipher(f.Payload, f.Header.Mask, 0)
		ws.WriteFrame(&b, f)
		return b.Bytes()
	}
	// One frame exactly filling a 16384-byte record.
	p := randomMessages(r, 1, 16384-8, 16384-8)[0]
	want = append(want, p...)
	fr := frame(p)
	if len(fr) != 16384 {
		t.Fatalf("frame of %d bytes", len(fr))
	}
	wire = append(wire, raw.Seal(testpeer.RecordAppData, fr, 0)...)
	// Small frames with padding up to the limit, and in between.
	for _, n := range []int{1, 10, 125, 1000} {
		p := randomMessages(r, 1, n, n)[0]
		want = append(want, p...)
		fr := frame(p)
		wire = append(wire, raw.Seal(testpeer.RecordAppData, fr, 16384-len(fr))...)
		wire = append(wire, raw.Seal(testpeer.RecordAppData, nil, 100)...) // empty, padded
	}
	if err := raw.WriteRaw(wire); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(want))
	c.NetConn().SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("echo differs")
	}
}

// TestTLSKeyUpdate: the raw client sends KeyUpdate mid-stream, with and
// without update_requested, 40 times during a 16 MiB echo; every byte before
// and after each is hash-checked, and the gateway answers each request with
// its own KeyUpdate (at most one per request, at least one in all).
func TestTLSKeyUpdate(t *testing.T) {
	const secret = "tls-keyupdate"
	m := &countMetrics{}
	g, gw, cert := startTLSGateway(t, gateway.Config{Metrics: m}, map[string]string{secret: testpeer.EchoServer(t)})
	raw, c := dialRawWS(t, gw, cert, secret, tls.VersionTLS13)
	requested := 0
	err := echoCheck(c, 16<<20, 7, func(i int) int { return 1 + (i*7919)%40000 }, func(i int, _ int64) error {
		if i == 0 || i%20 != 0 {
			return nil
		}
		req := (i/20)%2 == 1
		if req {
			requested++
		}
		return raw.KeyUpdate(req)
	})
	if err != nil {
		t.Fatal(err)
	}
	n := raw.ServerKeyUpdates()
	t.Logf("%d KeyUpdates sent (%d requesting an update), %d received", 40, requested, n)
	if n < 1 || n > requested {
		t.Fatalf("gateway sent %d KeyUpdates for %d requests", n, requested)
	}
	waitSessions(t, g, 0)
	if m.ends[gateway.EndNormal].Load() != 1 {
		t.Fatalf("session ends:%s, want normal", m.endsString())
	}
}

// TestTLSCloseNotify: at the end of a clean session the gateway sends
// close_notify after its close frame, then closes; a client that sends
// close_notify right after its close 1000 (TLS 1.3 half-close, as
// tls.Conn.CloseWrite does) still gets the rest of its echo, the close
// frame and close_notify, and the session ends normally.
func TestTLSCloseNotify(t *testing.T) {
	const secret = "tls-close-notify"
	up := testpeer.ListenTCP(t, func(c *net.TCPConn) {
		// Echo, but answer only after a pause, so the echo is still in
		// flight when the client's close_notify arrives.
		c.SetDeadline(time.Now().Add(30 * time.Second))
		b, _ := io.ReadAll(c)
		time.Sleep(200 * time.Millisecond)
		c.Write(b)
		c.CloseWrite()
	})
	m := &countMetrics{}
	g, gw, cert := startTLSGateway(t, gateway.Config{Metrics: m}, map[string]string{secret: up})
	// How the client ends: close 1000 only; close 1000, then close_notify in
	// a later TCP write; both in one TCP write (so the gateway reads them in
	// one read).
	for _, how := range []string{"CloseFrameOnly", "CloseNotifyLater", "CloseNotifySameSegment"} {
		t.Run(how, func(t *testing.T) {
			before := m.ends[gateway.EndNormal].Load()
			raw, c := dialRawWS(t, gw, cert, secret, tls.VersionTLS13)
			msg := randomBytes(100000)
			if err := c.WriteMessage(msg); err != nil {
				t.Fatal(err)
			}
			switch how {
			case "CloseFrameOnly", "CloseNotifyLater":
				if err := c.CloseWrite(); err != nil {
					t.Fatal(err)
				}
				if how == "CloseNotifyLater" {
					time.Sleep(50 * time.Millisecond)
					if err := raw.SendAlert(0); err != nil {
						t.Fatal(err)
					}
				}
			case "CloseNotifySameSegment":
				var f bytes.Buffer
				ws.WriteFrame(&f, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))))
				b := raw.Seal(testpeer.RecordAppData, f.Bytes(), 0)
				b = append(b, raw.Seal(testpeer.RecordAlert, []byte{1, 0}, 0)...)
				if err := raw.WriteRaw(b); err != nil {
					t.Fatal(err)
				}
			}
			raw.SetReadDeadline(time.Now().Add(10 * time.Second))
			got, err := io.ReadAll(c)
			if err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("echo: %d of %d bytes, %v (session ends:%s)", len(got), len(msg), err, m.endsString())
			}
			if code, _, _ := c.CloseCode(); code != ws.StatusNormalClosure {
				t.Fatalf("close code %d", code)
			}
			if _, err := raw.Read(make([]byte, 1)); err != io.EOF || !raw.SawCloseNotify() {
				t.Fatalf("after the close frame: %v, want close_notify", err)
			}
			if err := raw.WaitTCPEOF(5 * time.Second); err != nil {
				t.Fatal(err)
			}
			waitSessions(t, g, 0)
			if m.ends[gateway.EndNormal].Load() != before+1 {
				t.Fatalf("session ends:%s, want one more normal", m.endsString())
			}
		})
	}
}

// TestTLS12Echo: a TLS 1.2 client (each ECDSA AEAD suite) echoes 4 MiB,
// hash-checked, and gets close_notify at the end.
func TestTLS12Echo(t *testing.T) {
	const secret = "tls12-echo"
	_, gw, cert := startTLSGateway(t, gateway.Config{}, map[string]string{secret: testpeer.EchoServer(t)})
	for _, suite := range []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	} {
		t.Run(tls.CipherSuiteName(suite), func(t *testing.T) {
			cfg := cert.ClientConfig(tls.VersionTLS12)
			cfg.CipherSuites = []uint16{suite}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := testpeer.DialWSS(ctx, wssURL(gw, secret, "tcp"), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if st := c.NetConn().(*tls.Conn).ConnectionState(); st.Version != tls.VersionTLS12 || st.CipherSuite != suite {
				t.Fatalf("negotiated %x %s", st.Version, tls.CipherSuiteName(st.CipherSuite))
			}
			if err := echoCheck(c, 4<<20+1, 12, func(i int) int { return 1 + (i*104729)%70000 }, nil); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("RawCloseNotify", func(t *testing.T) {
		raw, c := dialRawWS(t, gw, cert, secret, tls.VersionTLS12)
		if err := echoPhase(c, [][]byte{randomBytes(50000)}, c.CloseWrite); err != nil {
			t.Fatal(err)
		}
		raw.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := io.Copy(io.Discard, c); n != 0 || err != nil {
			t.Fatalf("before close frame: %d bytes, %v", n, err)
		}
		if _, err := raw.Read(make([]byte, 1)); err != io.EOF || !raw.SawCloseNotify() {
			t.Fatalf("after the close frame: %v, want close_notify", err)
		}
	})
}
