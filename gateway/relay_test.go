package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(ln)
	for g.Addr() == nil {
		time.Sleep(time.Millisecond)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		g.Shutdown(ctx)
	})
	return g
}

// echoServer accepts TCP connections and echoes until EOF, then closes.
func echoServer(t *testing.T) string {
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
				io.Copy(c, c)
				c.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

func dialWS(t *testing.T, g *Gateway, path string) net.Conn {
	t.Helper()
	c, _, _, err := ws.Dialer{Timeout: 5 * time.Second}.Dial(context.Background(), "ws://"+g.Addr().String()+path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRelayEchoHashes(t *testing.T) {
	g := startGateway(t, echoServer(t), nil)
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
	g := startGateway(t, echoServer(t), nil)
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
