package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/httvps/httvps/internal/testpeer"
)

// startGateway runs a gateway on 127.0.0.1:0 routing secret "s3cret" to up.
func startGateway(t *testing.T, up string, mod func(*Config)) *Gateway {
	t.Helper()
	auth, err := NewStaticAuth(map[string]string{"s3cret": up})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Auth: auth, DrainTimeout: 2 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	testpeer.ServeGateway(t, g) // g.Addr() is set once it returns
	return g
}

func dialWS(t *testing.T, g *Gateway, path string) net.Conn {
	t.Helper()
	c, br, _, err := ws.Dialer{Timeout: 5 * time.Second}.Dial(context.Background(), "ws://"+g.Addr().String()+path)
	if err != nil {
		t.Fatal(err)
	}
	return testpeer.KeepEarly(c, br)
}

func TestRelayEchoHashes(t *testing.T) {
	g := startGateway(t, testpeer.EchoServer(t), nil)
	c := dialWS(t, g, "/s3cret/tcp")
	defer c.Close()
	data := make([]byte, 8<<20)
	rand.Read(data)
	want := sha256.Sum256(data)
	go func() {
		for p := data; len(p) > 0; {
			n := min(len(p), 16<<10)
			if err := wsutil.WriteClientBinary(c, p[:n]); err != nil {
				return
			}
			p = p[n:]
		}
		// End of our stream: close 1000; the echo upstream then ends too.
		ws.WriteFrame(c, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))))
	}()
	h := sha256.New()
	r := wsutil.Reader{Source: c, State: ws.StateClientSide, CheckUTF8: false}
	total := 0
	for {
		hdr, err := r.NextFrame()
		if err != nil {
			t.Fatalf("after %d bytes: %v", total, err)
		}
		if hdr.OpCode == ws.OpClose {
			body := make([]byte, hdr.Length)
			io.ReadFull(c, body)
			code, _ := ws.ParseCloseFrameData(body)
			if code != ws.StatusNormalClosure {
				t.Fatalf("close code %d", code)
			}
			break
		}
		n, _ := io.Copy(h, &r)
		total += int(n)
	}
	if total != len(data) || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("got %d bytes, hash mismatch=%v", total, !bytes.Equal(h.Sum(nil), want[:]))
	}
}

// TestDecoyIdentical: requests that fail in different ways get the same
// answer (Date apart); bytes that are not HTTP get nginx's 400.
func TestDecoyIdentical(t *testing.T) {
	g := startGateway(t, testpeer.EchoServer(t), nil)
	get := func(req string) []byte {
		c, err := net.Dial("tcp", g.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, req)
		b, _ := io.ReadAll(bufio.NewReader(c))
		return dropDate(b)
	}
	up := "Upgrade: websocket\r\nConnection: Upgrade, close\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	a := get("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	b := get("GET /wrong/tcp HTTP/1.1\r\nHost: x\r\n" + up)
	c := get("GET /s3cret/tcp HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	d := get("\x16\x03\x01garbage\r\n\r\n")
	if len(a) == 0 || !bytes.HasPrefix(a, []byte("HTTP/1.1 404 ")) || !bytes.Equal(a, b) || !bytes.Equal(a, c) {
		t.Fatalf("decoys differ:\n%q\n%q\n%q", a, b, c)
	}
	if !bytes.HasPrefix(d, []byte("HTTP/1.1 400 Bad Request\r\n")) || !bytes.Contains(d, []byte("Connection: close\r\n")) {
		t.Fatalf("garbage: %q, want nginx's 400", d)
	}
}

// dropDate removes the Date header of an answer.
func dropDate(b []byte) []byte {
	i := bytes.Index(b, []byte("\r\nDate: "))
	if i < 0 {
		return b
	}
	j := bytes.Index(b[i+2:], []byte("\r\n"))
	if j < 0 {
		return b
	}
	return append(b[:i:i], b[i+2+j:]...)
}

// byteMetrics counts relayed bytes.
type byteMetrics struct {
	nopMetrics
	up, down atomic.Int64
}

func (m *byteMetrics) BytesUp(n int)   { m.up.Add(int64(n)) }
func (m *byteMetrics) BytesDown(n int) { m.down.Add(int64(n)) }

// TestBytesCountPayload: BytesUp and BytesDown both count payload, not
// wire bytes (regression: BytesUp counted the client's frame headers, and
// on TLS its record overhead), on both paths.
func TestBytesCountPayload(t *testing.T) {
	for _, path := range []string{"tcp", "udp"} {
		t.Run(path, func(t *testing.T) {
			m := &byteMetrics{}
			up := testpeer.EchoServer(t)
			if path == "udp" {
				up = testpeer.UDPEcho(t)
			}
			g := startGateway(t, up, func(c *Config) { c.Metrics = m })
			c := dialWS(t, g, "/s3cret/"+path)
			defer c.Close()
			const frames, size = 50, 1000
			msg := bytes.Repeat([]byte{7}, size)
			got := 0
			for range frames {
				if err := wsutil.WriteClientBinary(c, msg); err != nil {
					t.Fatal(err)
				}
				// One at a time: a datagram is one message, and the
				// echo must not be dropped.
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				b, err := wsutil.ReadServerBinary(c)
				if err != nil {
					t.Fatal(err)
				}
				got += len(b)
			}
			if got != frames*size {
				t.Fatalf("echoed %d bytes, want %d", got, frames*size)
			}
			if u, d := m.up.Load(), m.down.Load(); u != frames*size || d != frames*size {
				t.Fatalf("BytesUp %d, BytesDown %d; want both %d (payload)", u, d, frames*size)
			}
		})
	}
}

// endLog collects the "session end" lines of a gateway's logger, and
// every line's message and err attribute in all.
type endLog struct {
	mu    sync.Mutex
	lines []map[string]string
	all   []string // "LEVEL message: err"
}

func (e *endLog) Enabled(context.Context, slog.Level) bool { return true }
func (e *endLog) WithAttrs([]slog.Attr) slog.Handler       { return e }
func (e *endLog) WithGroup(string) slog.Handler            { return e }
func (e *endLog) Handle(_ context.Context, r slog.Record) error {
	m := map[string]string{}
	r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.String(); return true })
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, r.Level.String()+" "+r.Message+": "+m["err"])
	if r.Message == "session end" && r.Level == slog.LevelDebug {
		e.lines = append(e.lines, m)
	}
	return nil
}

// TestSessionEndLogged: every session end is one debug line with its End
// label and the error behind it (Config.Logger's promise).
func TestSessionEndLogged(t *testing.T) {
	h := &endLog{}
	g := startGateway(t, testpeer.EchoServer(t), func(c *Config) { c.Logger = slog.New(h) })
	// A client that goes without a close frame.
	c := dialWS(t, g, "/s3cret/tcp")
	wsutil.WriteClientBinary(c, []byte("x"))
	wsutil.ReadServerBinary(c)
	c.Close()
	// A client that sends a frame the gateway refuses (text on a data path).
	c = dialWS(t, g, "/s3cret/tcp")
	wsutil.WriteClientText(c, []byte("x"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, err := wsutil.ReadServerBinary(c); err != nil {
			break // our close frame
		}
	}
	c.Close()
	for deadline := time.Now().Add(5 * time.Second); g.Sessions() != 0; {
		if time.Now().After(deadline) {
			t.Fatal("sessions did not end")
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.lines) != 2 {
		t.Fatalf("%d session end lines, want 2: %v", len(h.lines), h.lines)
	}
	got := map[string]string{}
	for _, l := range h.lines {
		got[l["end"]] = l["err"]
	}
	if e := got["client_gone"]; e == "" || e == "<nil>" {
		t.Errorf("client_gone end without its cause: %v", h.lines)
	}
	if e := got["protocol"]; !strings.Contains(e, "codec") {
		t.Errorf("protocol end without the codec error: %v", h.lines)
	}
}
