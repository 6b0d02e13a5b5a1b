package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/internal/testpeer"
)

// upstreamResult is what a scripted upstream received.
type upstreamResult struct {
	sum string
	n   int64
	err error
}

// writeMessages sends b as binary messages of at most size bytes.
func writeMessages(c *testpeer.WSConn, b []byte, size int) error {
	for len(b) > 0 {
		n := min(size, len(b))
		if err := c.WriteMessage(b[:n]); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// readAll reads the WebSocket stream until the server's close frame and
// returns what it carried.
func readAll(c *testpeer.WSConn) ([]byte, error) {
	b, err := io.ReadAll(c) // io.EOF (the close frame) ends it
	return b, err
}

// TestHalfClose checks that close 1000 and FIN each end one direction only.
func TestHalfClose(t *testing.T) {
	t.Run("ClientFirst", testHalfCloseClientFirst)
	t.Run("UpstreamFirst", testHalfCloseUpstreamFirst)
}

// testHalfCloseClientFirst: the client sends its data and close 1000 while
// the upstream is still sending. The upstream must see all client data and
// then EOF; everything it sends afterwards must still reach the client,
// followed by close 1000 once it sends FIN.
func testHalfCloseClientFirst(t *testing.T) {
	up := randomBytes(2<<20 + 3)
	down := randomBytes(6<<20 + 5)
	const early = 1 << 20 // sent before the client's close; the rest after the upstream saw EOF
	res := make(chan upstreamResult, 1)
	addr := testpeer.ListenTCP(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(60 * time.Second))
		got := make(chan upstreamResult, 1)
		go func() {
			h := sha256.New()
			n, err := io.Copy(h, c)
			got <- upstreamResult{hex.EncodeToString(h.Sum(nil)), n, err}
		}()
		if _, err := c.Write(down[:early]); err != nil {
			res <- upstreamResult{err: err}
			return
		}
		r := <-got // the client's whole stream, then EOF (the gateway's shutdown(SHUT_WR))
		res <- r
		if r.err != nil {
			return
		}
		if _, err := c.Write(down[early:]); err != nil {
			return
		}
		c.CloseWrite()
		io.Copy(io.Discard, c)
	})
	const secret = "half-close-client-first"
	m := &countMetrics{}
	_, gw := startGateway(t, gateway.Config{Metrics: m}, map[string]string{secret: addr})
	ws := dialWS(t, wsURL(gw, secret, "tcp"))
	ws.NetConn().SetDeadline(time.Now().Add(60 * time.Second))

	read := make(chan []byte, 1)
	readErr := make(chan error, 1)
	go func() {
		b, err := readAll(ws)
		read <- b
		readErr <- err
	}()
	if err := writeMessages(ws, up, 64<<10); err != nil {
		t.Fatal(err)
	}
	if err := ws.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-res:
		if r.err != nil {
			t.Fatalf("upstream read: %v", r.err)
		}
		if r.n != int64(len(up)) || r.sum != sum(up) {
			t.Fatalf("upstream got %d bytes, want %d (hash match %v)", r.n, len(up), r.sum == sum(up))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("upstream never saw the end of the client's stream (no FIN after close 1000)")
	}
	got := <-read
	if err := <-readErr; err != nil {
		t.Fatalf("client read after %d bytes: %v", len(got), err)
	}
	if len(got) != len(down) || sum(got) != sum(down) {
		t.Fatalf("client got %d bytes, want %d (hash match %v)", len(got), len(down), sum(got) == sum(down))
	}
	if code, _, ok := ws.CloseCode(); !ok || code != 1000 {
		t.Fatalf("close code %d (received %v), want 1000", code, ok)
	}
	if err := ws.WaitEOF(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	waitEnd(t, m, gateway.EndNormal)
}

// testHalfCloseUpstreamFirst: the upstream sends its data and FIN while the
// client is still sending. The client must get all of it and then close 1000,
// and the client data it sends after that close must still reach the
// upstream, followed by EOF when the client sends its own close 1000.
func testHalfCloseUpstreamFirst(t *testing.T) {
	up := randomBytes(3<<20 + 1)
	down := randomBytes(4<<20 + 9)
	half := len(up) / 2
	res := make(chan upstreamResult, 1)
	addr := testpeer.ListenTCP(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(60 * time.Second))
		h := sha256.New()
		// Wait for the first half of the client's data, then send
		// everything and FIN while the client still has more to send.
		if _, err := io.CopyN(h, c, int64(half)); err != nil {
			res <- upstreamResult{err: err}
			return
		}
		if _, err := c.Write(down); err != nil {
			res <- upstreamResult{err: err}
			return
		}
		if err := c.CloseWrite(); err != nil {
			res <- upstreamResult{err: err}
			return
		}
		n, err := io.Copy(h, c)
		res <- upstreamResult{hex.EncodeToString(h.Sum(nil)), int64(half) + n, err}
	})
	const secret = "half-close-upstream-first"
	m := &countMetrics{}
	_, gw := startGateway(t, gateway.Config{Metrics: m}, map[string]string{secret: addr})
	ws := dialWS(t, wsURL(gw, secret, "tcp"))
	ws.NetConn().SetDeadline(time.Now().Add(60 * time.Second))

	if err := writeMessages(ws, up[:half], 32<<10); err != nil {
		t.Fatal(err)
	}
	got, err := readAll(ws)
	if err != nil {
		t.Fatalf("client read after %d bytes: %v", len(got), err)
	}
	if len(got) != len(down) || sum(got) != sum(down) {
		t.Fatalf("client got %d bytes, want %d (hash match %v)", len(got), len(down), sum(got) == sum(down))
	}
	if code, _, ok := ws.CloseCode(); !ok || code != 1000 {
		t.Fatalf("close code %d (received %v), want 1000 after the upstream's FIN", code, ok)
	}
	// The server has closed its side; the client's side is still open.
	if err := writeMessages(ws, up[half:], 32<<10); err != nil {
		t.Fatalf("client data after the server's close 1000: %v", err)
	}
	if err := ws.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-res:
		if r.err != nil && !errors.Is(r.err, io.EOF) {
			t.Fatalf("upstream read: %v", r.err)
		}
		if r.n != int64(len(up)) || r.sum != sum(up) {
			t.Fatalf("upstream got %d bytes, want %d (hash match %v)", r.n, len(up), r.sum == sum(up))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("upstream never saw the end of the client's stream")
	}
	if err := ws.WaitEOF(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	waitEnd(t, m, gateway.EndNormal)
}

// waitEnd waits for one session to end and checks why.
func waitEnd(t *testing.T, m *countMetrics, want gateway.End) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for m.ends[want].Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if m.ends[want].Load() != 1 {
		t.Errorf("session ends:%s, want one %s", m.endsString(), want)
	}
}
