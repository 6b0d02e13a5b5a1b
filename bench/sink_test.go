package bench

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// startSink serves a Sink on a loopback listener for the test's lifetime.
func startSink(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Sink{}
	go s.Serve(ln)
	t.Cleanup(func() { ln.Close(); s.Close() })
	return ln.Addr().String()
}

// startGoCopy serves the gocopy relay in process in front of target.
func startGoCopy(t *testing.T, target string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &GoCopyRelay{Target: target}
	go r.Serve(ln)
	t.Cleanup(func() { ln.Close(); r.Close() })
	return ln.Addr().String()
}

// startWSRelay is a minimal Outline-style WebSocket relay for the client's
// framing: each binary message's payload goes upstream; upstream bytes come
// back as binary messages; close 1000 half-closes upstream, upstream EOF is
// answered with close 1000.
func startWSRelay(t *testing.T, target, path string) string {
	t.Helper()
	return serveLoopback(t, func(c net.Conn) {
		u := ws.Upgrader{OnRequest: func(uri []byte) error {
			if string(uri) != path {
				return ws.RejectConnectionError(ws.RejectionStatus(http.StatusNotFound))
			}
			return nil
		}}
		if _, err := u.Upgrade(c); err != nil {
			return
		}
		up, err := net.Dial("tcp", target)
		if err != nil {
			return
		}
		defer up.Close()
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := up.Read(buf)
				if n > 0 {
					ws.WriteFrame(c, ws.NewBinaryFrame(buf[:n]))
				}
				if err != nil {
					ws.WriteFrame(c, ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, "")))
					return
				}
			}
		}()
		br := bufio.NewReader(c)
		for {
			h, err := ws.ReadHeader(br)
			if err != nil || h.Length > 1<<20 {
				return
			}
			p := make([]byte, h.Length)
			if _, err := io.ReadFull(br, p); err != nil {
				return
			}
			if !h.Masked {
				return // clients must mask
			}
			ws.Cipher(p, h.Mask, 0)
			switch h.OpCode {
			case ws.OpBinary, ws.OpContinuation:
				up.Write(p)
			case ws.OpClose:
				closeWrite(up)
				time.Sleep(time.Second) // let the upstream answer
				return
			}
		}
	})
}

func TestSinkThroughGoCopy(t *testing.T) {
	tr := Transport{Addr: startGoCopy(t, startSink(t))}
	testSinkModes(t, tr)
}

func TestSinkThroughWebSocket(t *testing.T) {
	tr := Transport{Addr: startWSRelay(t, startSink(t), "/s3cret/tcp"), Path: "/s3cret/tcp"}
	testSinkModes(t, tr)

	bad := tr
	bad.Path = "/wrong/tcp"
	if s, err := bad.Dial(context.Background()); err == nil {
		s.Close()
		t.Fatal("dial with a wrong path succeeded")
	}
}

func testSinkModes(t *testing.T, tr Transport) {
	ctx := context.Background()
	for _, tc := range []struct {
		dir     string
		streams int
		total   int64
		msg     int
	}{
		{Upload, 1, 3<<20 + 5, 16 << 10},
		{Upload, 4, 1 << 20, 1000},
		{Download, 1, 3<<20 + 7, 16 << 10},
		{Download, 4, 1 << 20, 16 << 10},
	} {
		res, err := transfer(ctx, tr, tc.dir, tc.streams, tc.total, tc.msg, 20*time.Second)
		if err != nil {
			t.Fatalf("%s x%d: %v", tc.dir, tc.streams, err)
		}
		if want := tc.total / int64(tc.streams) * int64(tc.streams); res.Bytes != want || res.Wall <= 0 {
			t.Fatalf("%s x%d: result %+v", tc.dir, tc.streams, res)
		}
	}

	s, err := openIdle(ctx, tr)
	if err != nil {
		t.Fatalf("idle: %v", err)
	}
	s.Close()

	// Echo: what goes up comes back, then end of stream both ways.
	s, err = tr.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SetDeadline(time.Now().Add(10 * time.Second))
	s.Write(modeHeader(ModeEcho, 0))
	s.Write([]byte("ping-pong"))
	s.CloseWrite()
	got, err := io.ReadAll(s)
	if err != nil || string(got) != "ping-pong" {
		t.Fatalf("echo: %q, %v", got, err)
	}
}

// serveLoopback accepts connections on a loopback listener for the test's
// lifetime and serves each with handle, closing it after.
func serveLoopback(t *testing.T, handle func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// startEditRelay is a TCP relay in front of target that passes the client's
// bytes as they are and each upstream read b, at stream offset at, through
// edit before it goes back to the client.
func startEditRelay(t *testing.T, target string, edit func(b []byte, at int) []byte) string {
	t.Helper()
	return serveLoopback(t, func(c net.Conn) {
		up, err := net.Dial("tcp", target)
		if err != nil {
			return
		}
		defer up.Close()
		go func() { io.Copy(up, c); closeWrite(up) }()
		buf := make([]byte, 4096)
		at := 0
		for {
			n, err := up.Read(buf)
			c.Write(edit(buf[:n], at))
			at += n
			if err != nil {
				closeWrite(c)
				return
			}
		}
	})
}

// startCorruptor is a TCP relay in front of target that flips one bit of
// each upstream connection's bytes, the one at stream offset off (past the
// WebSocket handshake for a WebSocket peer, so the data is what changes).
func startCorruptor(t *testing.T, target string, off int) string {
	t.Helper()
	return startEditRelay(t, target, func(b []byte, at int) []byte {
		if at <= off && off < at+len(b) {
			b[off-at] ^= 1
		}
		return b
	})
}

// A relay that corrupts one byte must produce an error, never a figure.
func TestTransferDetectsCorruption(t *testing.T) {
	_, err := transfer(context.Background(), Transport{Addr: startCorruptor(t, startSink(t), 100)}, Download, 1, 1<<20, 16<<10, 10*time.Second)
	if !errors.Is(err, errIntegrity) {
		t.Fatalf("err = %v, want errIntegrity", err)
	}
}

func TestPatternAt(t *testing.T) {
	p := pattern()
	if len(p) != patternSize {
		t.Fatal("pattern size")
	}
	// A read across the wrap point is split, and equal to the stream.
	if got := patternAt(patternSize-3, 10); len(got) != 3 {
		t.Fatalf("wrap: got %d bytes", len(got))
	}
	var sb strings.Builder
	writePattern(&sb, patternSize+10, 7)
	b := []byte(sb.String())
	if !patternEqual(0, b) || !patternEqual(patternSize-5, b[patternSize-5:]) {
		t.Fatal("patternEqual rejects the stream")
	}
	b[patternSize+2] ^= 0xff
	if patternEqual(0, b) {
		t.Fatal("patternEqual accepts a corrupted stream")
	}
}
