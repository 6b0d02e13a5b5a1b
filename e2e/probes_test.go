package e2e

import (
	"bytes"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/internal/testpeer"
)

const (
	probeSecret        = "probe-right-secret"
	probeHandshake     = 2 * time.Second
	probeMaxFrame      = 64 << 10
	probeBufferCap     = 64 << 10
	probeReadChunk     = 16 << 10
	goroutineTolerance = 3
)

func upgradeRequest(path string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
}

// probe sends req on a fresh connection and returns everything the gateway
// answers before it closes the connection (bounded by 6 s).
func probe(gw string, req []byte) ([]byte, time.Duration, error) {
	c, err := net.DialTimeout("tcp", gw, 5*time.Second)
	if err != nil {
		return nil, 0, err
	}
	defer c.Close()
	start := time.Now()
	c.SetDeadline(start.Add(6 * time.Second))
	if len(req) > 0 {
		if _, err := c.Write(req); err != nil {
			return nil, 0, err
		}
	}
	b, err := io.ReadAll(c)
	return b, time.Since(start), err
}

// TestProbes: active probing gets nginx's answers from the decoy; protocol
// abuse after an upgrade is cut off; slow clients cannot pin memory or slow
// other sessions; nothing leaves goroutines behind.
func TestProbes(t *testing.T) {
	sink := testpeer.ListenTCP(t, func(c *net.TCPConn) { io.Copy(io.Discard, c) })
	var blasted atomic.Int64
	blast := testpeer.ListenTCP(t, func(c *net.TCPConn) {
		chunk := make([]byte, 64<<10)
		for {
			n, err := c.Write(chunk)
			blasted.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
	duplex := duplexPeer(t)
	echo := testpeer.UDPEcho(t)
	// A route whose upstream refuses connections: the dial fails before
	// the 101, so the client gets the decoy like any other failure.
	deadLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := deadLn.Addr().String()
	deadLn.Close()
	m := &countMetrics{}
	cfg := gateway.Config{
		Metrics:          m,
		HandshakeTimeout: probeHandshake,
		MaxFrameSize:     probeMaxFrame,
		MaxMessageSize:   probeMaxFrame,
		BufferCap:        probeBufferCap,
		ReadChunk:        probeReadChunk,
	}
	g, gw := startGateway(t, cfg, map[string]string{
		probeSecret:    sink,
		"probe-blast":  blast,
		"probe-duplex": duplex,
		"probe-udp":    echo,
		"probe-dead":   dead,
	})
	// One full session first, so lazily started runtime and netpoll
	// goroutines are part of the baseline.
	warm := dialWS(t, wsURL(gw, probeSecret, "tcp"))
	warm.CloseWrite()
	io.Copy(io.Discard, warm)
	warm.Close()
	waitSessions(t, g, 0)
	base := goroutineBaseline()

	t.Run("Decoys", func(t *testing.T) {
		testDecoys(t, gw)
		waitGoroutines(t, base, goroutineTolerance, "after decoy probes")
	})
	t.Run("OversizedFrame", func(t *testing.T) {
		testOversizedFrame(t, gw, m)
		waitSessions(t, g, 0)
		waitGoroutines(t, base, goroutineTolerance, "after oversized frame")
	})
	t.Run("ProtocolViolations", func(t *testing.T) {
		testProtocolViolations(t, gw)
		waitSessions(t, g, 0)
		waitGoroutines(t, base, goroutineTolerance, "after protocol violations")
	})
	t.Run("SlowHeaders", func(t *testing.T) {
		testSlowHeaders(t, gw)
		waitGoroutines(t, base, goroutineTolerance, "after slow headers")
	})
	t.Run("SlowReader", func(t *testing.T) {
		testSlowReader(t, g, gw, m, &blasted)
		waitSessions(t, g, 0)
		waitGoroutines(t, base, goroutineTolerance, "after slow reader")
	})
	t.Run("IdleSession", func(t *testing.T) {
		// An established, idle session: no goroutine of its own in the
		// gateway (the sink's handler is the one allowed extra).
		c := dialWS(t, wsURL(gw, probeSecret, "tcp"))
		waitSessions(t, g, 1)
		waitGoroutines(t, base+1, goroutineTolerance, "with one idle session")
		c.Close()
		waitSessions(t, g, 0)
		waitGoroutines(t, base, goroutineTolerance, "after idle session")
	})
	for r := gateway.Reject(0); r < gateway.NumRejects; r++ {
		if n := m.rejected[r].Load(); n > 0 {
			t.Logf("rejected %s: %d", r, n)
		}
	}
}

func waitSessions(t testing.TB, g *gateway.Gateway, want int) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for g.Sessions() != want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := g.Sessions(); n != want {
		t.Fatalf("gateway has %d sessions, want %d", n, want)
	}
}

// testDecoys sends requests that must not become sessions and checks their
// answers: nginx's 400 for what is not HTTP or too large, and for every
// well-formed request one 404, the same bytes apart from Date and the
// Connection header (e2e/decoy_nginx_test.go compares them with nginx's).
// It returns the 404.
func testDecoys(t *testing.T, gw string) []byte {
	probes := []struct {
		name string
		req  []byte
	}{
		{"RandomBytes", append(append([]byte("x"), randomBytes(300)...), "\r\n\r\n"...)},
		{"BareGET", []byte("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")},
		{"RootUpgrade", []byte(upgradeRequest("/"))},
		{"WrongSecret", []byte(upgradeRequest("/wrong-secret/tcp"))},
		{"WrongSecretUDP", []byte(upgradeRequest("/wrong-secret/udp"))},
		{"SecretPrefix", []byte(upgradeRequest("/" + probeSecret[:len(probeSecret)-1] + "/tcp"))},
		{"EmptySecret", []byte(upgradeRequest("//tcp"))},
		{"RightSecretNotUpgrade", []byte("GET /" + probeSecret + "/tcp HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")},
		{"RightSecretUnknownKind", []byte(upgradeRequest("/" + probeSecret + "/tls"))},
		{"RightSecretNoKey", []byte("GET /" + probeSecret + "/tcp HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n")},
		{"RightSecretPOST", []byte(strings.Replace(upgradeRequest("/"+probeSecret+"/tcp"), "GET", "POST", 1))},
		{"MalformedRequestLine", []byte("HELLO\r\n\r\n")},
		{"HTTP10", []byte("GET /" + probeSecret + "/tcp HTTP/1.0\r\n\r\n")},
		{"HeaderTooLarge", []byte("GET /" + probeSecret + "/tcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + strings.Repeat("a", 16<<10) + "\r\n\r\n")},
		{"DeadUpstream", []byte(upgradeRequest("/probe-dead/tcp"))},
		{"TLSClientHello", append([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03}, randomBytes(200)...)},
	}
	type answer struct {
		b   []byte
		d   time.Duration
		err error
	}
	answers := make([]answer, len(probes))
	var wg sync.WaitGroup
	for i, p := range probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, d, err := probe(gw, p.req)
			answers[i] = answer{b, d, err}
		}()
	}
	wg.Wait()
	var decoy []byte
	for i, a := range answers {
		if a.err != nil {
			// A reset after the answer is TestDecoyEndsWithFIN's business;
			// here only the bytes are compared.
			if !errors.Is(a.err, syscall.ECONNRESET) || len(a.b) == 0 {
				t.Errorf("%s: after %v and %d bytes: %v", probes[i].name, a.d.Round(time.Millisecond), len(a.b), a.err)
				continue
			}
			t.Logf("%s: reset after %d bytes", probes[i].name, len(a.b))
		}
		switch probes[i].name {
		case "RandomBytes", "MalformedRequestLine", "HeaderTooLarge", "TLSClientHello":
			if !bytes.HasPrefix(a.b, []byte("HTTP/1.1 400 Bad Request\r\n")) {
				t.Errorf("%s: answer %q is not nginx's 400", probes[i].name, a.b)
			}
			continue
		}
		if !bytes.HasPrefix(a.b, []byte("HTTP/1.1 404 ")) {
			t.Errorf("%s: answer %q is not a 404", probes[i].name, a.b)
			continue
		}
		a.b = dropHeader(dropHeader(a.b, "Date"), "Connection")
		if decoy == nil {
			decoy = a.b
		}
		if !bytes.Equal(a.b, decoy) {
			t.Errorf("%s: answer differs from the others:\n%q\nvs\n%q", probes[i].name, a.b, decoy)
		}
		t.Logf("%s: decoy after %v", probes[i].name, a.d.Round(time.Millisecond))
	}
	if decoy == nil {
		t.Fatal("no decoy answer")
	}
	// A decoy answer must look like a web server's: status, headers, body.
	if !bytes.Contains(decoy, []byte("\r\n\r\n")) || !bytes.Contains(decoy, []byte("Content-Length:")) {
		t.Errorf("decoy is not a complete HTTP response: %q", decoy)
	}
	return decoy
}

// dropHeader removes the named header line from an answer.
func dropHeader(b []byte, name string) []byte {
	i := bytes.Index(b, []byte("\r\n"+name+": "))
	if i < 0 {
		return b
	}
	j := bytes.Index(b[i+2:], []byte("\r\n"))
	if j < 0 {
		return b
	}
	return append(b[:i:i], b[i+2+j:]...)
}

// testOversizedFrame: after a valid upgrade, a frame header longer than
// MaxFrameSize gets close 1009 and the connection ends.
func testOversizedFrame(t *testing.T, gw string, m *countMetrics) {
	c := dialWS(t, wsURL(gw, probeSecret, "tcp"))
	c.NetConn().SetDeadline(time.Now().Add(10 * time.Second))
	// A small valid message first: the session is live.
	if err := c.WriteMessage([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	var hdr bytes.Buffer
	ws.WriteHeader(&hdr, ws.Header{Fin: true, OpCode: ws.OpBinary, Masked: true, Mask: [4]byte{1, 2, 3, 4}, Length: probeMaxFrame + 1})
	hdr.Write(randomBytes(1000))
	if err := c.WriteRaw(hdr.Bytes()); err != nil {
		t.Fatal(err)
	}
	_, err := c.ReadMessage()
	if !errors.Is(err, io.EOF) {
		t.Fatalf("read after oversized frame: %v, want the server's close frame", err)
	}
	if code, _, _ := c.CloseCode(); code != ws.StatusMessageTooBig {
		t.Fatalf("close code %d, want 1009", code)
	}
	if err := c.WaitEOF(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	c.Close() // as a client does once the close handshake is over
	deadline := time.Now().Add(waitFor)
	for m.ends[gateway.EndProtocol].Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if m.ends[gateway.EndProtocol].Load() == 0 {
		t.Errorf("session ends:%s, want a protocol end", m.endsString())
	}
}

// testProtocolViolations: frames that break RFC 6455 or the path's limits
// end the session with the matching close code, and the connection ends.
func testProtocolViolations(t *testing.T, gw string) {
	frame := func(h ws.Header, payload []byte) []byte {
		var b bytes.Buffer
		h.Length = int64(len(payload))
		ws.WriteHeader(&b, h)
		p := bytes.Clone(payload)
		if h.Masked {
			ws.Cipher(p, h.Mask, 0)
		}
		b.Write(p)
		return b.Bytes()
	}
	mask := [4]byte{9, 8, 7, 6}
	cases := []struct {
		name, secret, kind string
		raw                []byte
		want               ws.StatusCode
	}{
		{"Unmasked", probeSecret, "tcp", frame(ws.Header{Fin: true, OpCode: ws.OpBinary}, []byte("x")), ws.StatusProtocolError},
		{"TextFrame", probeSecret, "tcp", frame(ws.Header{Fin: true, OpCode: ws.OpText, Masked: true, Mask: mask}, []byte("hi")), ws.StatusUnsupportedData},
		{"ReservedBits", probeSecret, "tcp", frame(ws.Header{Fin: true, Rsv: 4, OpCode: ws.OpBinary, Masked: true, Mask: mask}, []byte("x")), ws.StatusProtocolError},
		{"StrayContinuation", probeSecret, "tcp", frame(ws.Header{Fin: true, OpCode: ws.OpContinuation, Masked: true, Mask: mask}, []byte("x")), ws.StatusProtocolError},
		{"UDPDatagramTooLarge", "probe-udp", "udp", frame(ws.Header{Fin: true, OpCode: ws.OpBinary, Masked: true, Mask: mask}, make([]byte, 65508)), ws.StatusMessageTooBig},
		{"UDPFragmentsTooLarge", "probe-udp", "udp", append(
			frame(ws.Header{OpCode: ws.OpBinary, Masked: true, Mask: mask}, make([]byte, 40<<10)),
			frame(ws.Header{Fin: true, OpCode: ws.OpContinuation, Masked: true, Mask: mask}, make([]byte, 40<<10))...), ws.StatusMessageTooBig},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialWS(t, wsURL(gw, tc.secret, tc.kind))
			c.NetConn().SetDeadline(time.Now().Add(10 * time.Second))
			if err := c.WriteRaw(tc.raw); err != nil {
				t.Fatal(err)
			}
			_, err := c.ReadMessage()
			if !errors.Is(err, io.EOF) {
				t.Fatalf("read: %v, want the server's close frame", err)
			}
			if code, _, _ := c.CloseCode(); code != tc.want {
				t.Errorf("close code %d, want %d", code, tc.want)
			}
			if err := c.WaitEOF(7 * time.Second); err != nil {
				t.Error(err)
			}
			c.Close()
		})
	}
}

// testSlowHeaders: a client that sends its request one byte per second, and
// one that sends nothing, are cut off at HandshakeTimeout with a bare close
// (as nginx closes at client_header_timeout).
func testSlowHeaders(t *testing.T, gw string) {
	run := func(name string, slow []byte) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c, err := net.DialTimeout("tcp", gw, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			c.SetDeadline(start.Add(4 * probeHandshake))
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				for _, b := range slow {
					if _, err := c.Write([]byte{b}); err != nil {
						return
					}
					select {
					case <-stop:
						return
					case <-time.After(time.Second):
					}
				}
			}()
			b, err := io.ReadAll(c)
			el := time.Since(start)
			close(stop)
			<-done
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("gateway kept a slow-header connection open %v (HandshakeTimeout %v)", el, probeHandshake)
				}
				// A reset is a close too; what arrived before it is checked below.
			}
			// Early is a bug; late only a busy machine's timers (up to 5 s).
			if el < probeHandshake-200*time.Millisecond || el > probeHandshake+5*time.Second {
				t.Errorf("cut off after %v, want about %v", el.Round(time.Millisecond), probeHandshake)
			}
			if len(b) > 0 {
				t.Errorf("answer %q at the deadline; nginx closes silently", b)
			}
			t.Logf("cut off after %v with %d bytes", el.Round(time.Millisecond), len(b))
		})
	}
	t.Run("group", func(t *testing.T) {
		run("OneBytePerSecond", []byte(upgradeRequest("/"+probeSecret+"/tcp")))
		run("Silent", nil)
	})
}

// testSlowReader: a session whose client never reads while its upstream
// sends without end must stop pulling from the upstream at BufferCap; the
// gateway's buffers stay bounded, and another session's transfer meanwhile
// runs at its normal speed.
func testSlowReader(t *testing.T, g *gateway.Gateway, gw string, m *countMetrics, blasted *atomic.Int64) {
	const up, down = 4 << 20, 16 << 20
	transfer := func(seed uint64) time.Duration {
		t.Helper()
		c := dialWS(t, wsURL(gw, "probe-duplex", "tcp"))
		c.NetConn().SetDeadline(time.Now().Add(60 * time.Second))
		start := time.Now()
		if err := duplexExchange(c, seed, up, down, true); err != nil {
			t.Fatalf("transfer: %v", err)
		}
		el := time.Since(start)
		c.Close()
		return el
	}
	alone := transfer(1)

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heapBefore := ms.HeapInuse

	slow := dialWS(t, wsURL(gw, "probe-blast", "tcp"))
	if err := slow.WriteMessage([]byte("send me everything")); err != nil {
		t.Fatal(err)
	}
	// Let the blaster fill every buffer on the way.
	time.Sleep(1500 * time.Millisecond)
	b1 := blasted.Load()

	during := transfer(2)

	time.Sleep(500 * time.Millisecond)
	b2 := blasted.Load()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	heapDuring := ms.HeapInuse
	maxBuf := m.maxBuffered.Load()
	slow.Close()

	t.Logf("transfer alone %v, beside a non-reading session %v; upstream pushed %d MiB (then %d MiB); gateway buffered ≤ %d KiB; heap in use %d → %d KiB",
		alone.Round(time.Millisecond), during.Round(time.Millisecond), b1>>20, b2>>20, maxBuf>>10, heapBefore>>10, heapDuring>>10)

	// Two sessions at most, two directions each, plus one read chunk each.
	if limit := int64(2*2*probeBufferCap + 2*2*probeReadChunk + 16<<10); maxBuf > limit {
		t.Errorf("gateway buffered up to %d bytes, cap allows %d", maxBuf, limit)
	}
	// Kernel socket buffers on loopback hold a few MiB on each hop; an
	// unbounded relay would have read hundreds of MiB by now.
	if b2 > 64<<20 {
		t.Errorf("upstream pushed %d MiB into a session whose client never reads", b2>>20)
	}
	if b2-b1 > 8<<20 {
		t.Errorf("upstream kept sending to a stalled session: %d MiB more", (b2-b1)>>20)
	}
	if heapDuring > heapBefore+32<<20 {
		t.Errorf("heap in use grew from %d to %d KiB beside a stalled session", heapBefore>>10, heapDuring>>10)
	}
	// Not a benchmark: only a stall or a collapse fails here.
	if during > 5*alone+5*time.Second {
		t.Errorf("transfer took %v beside a stalled session, %v alone", during, alone)
	}
}
