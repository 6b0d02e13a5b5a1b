package client

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// The client's frame rules, against a raw WebSocket server on loopback that
// sends exactly the frames a case names (the real gateway never breaks
// these rules, so it cannot show them).

type rawServer struct {
	conn net.Conn
}

// startRawServer accepts one WebSocket and hands it to serve.
func startRawServer(t *testing.T, serve func(s *rawServer)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(waitLong))
		if _, err := (ws.Upgrader{}).Upgrade(c); err != nil {
			return
		}
		serve(&rawServer{conn: c})
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

func (s *rawServer) frame(fin bool, op ws.OpCode, p []byte) {
	ws.WriteFrame(s.conn, ws.Frame{Header: ws.Header{Fin: fin, OpCode: op, Length: int64(len(p))}, Payload: p})
}

// read returns the client's next frame, unmasked; it fails the frame if it
// was not masked.
func (s *rawServer) read() (ws.Header, []byte, error) {
	h, err := ws.ReadHeader(s.conn)
	if err != nil {
		return h, nil, err
	}
	if !h.Masked {
		return h, nil, errors.New("client frame not masked")
	}
	if h.Length > 1<<20 {
		return h, nil, errors.New("client frame too long")
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(s.conn, p); err != nil {
		return h, nil, err
	}
	ws.Cipher(p, h.Mask, 0)
	return h, p, nil
}

// closeCode reads client frames until a close and returns its code.
func (s *rawServer) closeCode() uint16 {
	for {
		h, p, err := s.read()
		if err != nil {
			return 0
		}
		if h.OpCode == ws.OpClose && len(p) >= 2 {
			return binary.BigEndian.Uint16(p)
		}
	}
}

func closePayload(code uint16, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, code), reason...)
}

func TestWSFrameRules(t *testing.T) {
	big := make([]byte, 2000)
	tests := []struct {
		name      string
		send      func(s *rawServer)
		message   bool   // read with ReadMessage (else Read)
		want      string // the bytes read before the end
		err       error  // the end: errors.Is target
		closeErr  uint16 // a *CloseError with this code
		wantClose uint16 // the close code the client must send (0: none checked)
	}{
		{name: "close 1000 is EOF", send: func(s *rawServer) {
			s.frame(true, ws.OpBinary, []byte("abc"))
			s.frame(true, ws.OpClose, closePayload(1000, ""))
		}, want: "abc", err: io.EOF},
		{name: "close without code is EOF", send: func(s *rawServer) {
			s.frame(true, ws.OpClose, nil)
		}, err: io.EOF},
		{name: "close 1001 is a CloseError, echoed", send: func(s *rawServer) {
			s.frame(true, ws.OpClose, closePayload(1001, "drain"))
		}, closeErr: 1001, wantClose: 1001},
		{name: "fragments and empty frames concatenate", send: func(s *rawServer) {
			s.frame(false, ws.OpBinary, []byte("ab"))
			s.frame(false, ws.OpContinuation, nil)
			s.frame(true, ws.OpContinuation, []byte("c"))
			s.frame(true, ws.OpBinary, nil)
			s.frame(true, ws.OpBinary, []byte("d"))
			s.frame(true, ws.OpClose, closePayload(1000, ""))
		}, want: "abcd", err: io.EOF},
		{name: "fragmented message read whole", message: true, send: func(s *rawServer) {
			s.frame(false, ws.OpBinary, []byte("ab"))
			s.frame(true, ws.OpPing, []byte("between"))
			s.frame(true, ws.OpContinuation, []byte("cd"))
		}, want: "abcd"},
		{name: "frame over the message bound", send: func(s *rawServer) {
			s.frame(true, ws.OpBinary, big)
		}, err: ErrWSTooLarge, wantClose: 1009},
		{name: "fragments over the message bound", send: func(s *rawServer) {
			s.frame(false, ws.OpBinary, big[:600])
			s.frame(false, ws.OpContinuation, big[:600])
			s.frame(true, ws.OpContinuation, big[:600])
		}, want: string(big[:1200]), err: ErrWSTooLarge, wantClose: 1009},
		{name: "text message", send: func(s *rawServer) {
			s.frame(true, ws.OpText, []byte("hi"))
		}, err: ErrWSProtocol, wantClose: 1003},
		{name: "masked server frame", send: func(s *rawServer) {
			ws.WriteFrame(s.conn, ws.MaskFrame(ws.NewBinaryFrame([]byte("x"))))
		}, err: ErrWSProtocol, wantClose: 1002},
		{name: "continuation without a message", send: func(s *rawServer) {
			s.frame(true, ws.OpContinuation, []byte("x"))
		}, err: ErrWSProtocol, wantClose: 1002},
		{name: "new message inside a fragmented one", send: func(s *rawServer) {
			s.frame(false, ws.OpBinary, []byte("x"))
			s.frame(true, ws.OpBinary, []byte("y"))
		}, want: "x", err: ErrWSProtocol, wantClose: 1002},
		{name: "fragmented ping", send: func(s *rawServer) {
			s.frame(false, ws.OpPing, []byte("x"))
		}, err: ErrWSProtocol, wantClose: 1002},
		{name: "reserved opcode", send: func(s *rawServer) {
			s.frame(true, ws.OpCode(3), nil)
		}, err: ErrWSProtocol, wantClose: 1002},
		{name: "TCP end without close", send: func(s *rawServer) {
			s.frame(true, ws.OpBinary, []byte("partial"))
		}, want: "partial", err: io.ErrUnexpectedEOF},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gotClose := make(chan uint16, 1)
			addr := startRawServer(t, func(s *rawServer) {
				tc.send(s)
				if tc.wantClose != 0 {
					gotClose <- s.closeCode()
				}
			})
			c, _, err := DialWS(dialCtx(t), Gateway{Addr: addr}, "/x", WSOptions{MaxMessage: 1500})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var got []byte
			buf := make([]byte, 7) // small reads: frames span them
			for {
				var n int
				if tc.message {
					msg := make([]byte, 100)
					if n, err = c.ReadMessage(msg); err == nil {
						got = msg[:n]
						break
					}
				} else {
					n, err = c.Read(buf)
				}
				got = append(got, buf[:n]...)
				if err != nil {
					break
				}
			}
			if string(got) != tc.want {
				t.Fatalf("read %q, want %q", got, tc.want)
			}
			var ce *CloseError
			switch {
			case tc.closeErr != 0:
				if !errors.As(err, &ce) || ce.Code != tc.closeErr {
					t.Fatalf("end %v, want CloseError %d", err, tc.closeErr)
				}
			case tc.err == nil:
				if err != nil {
					t.Fatal(err)
				}
			case !errors.Is(err, tc.err):
				t.Fatalf("end %v, want %v", err, tc.err)
			}
			if tc.wantClose != 0 {
				select {
				case code := <-gotClose:
					if code != tc.wantClose {
						t.Fatalf("client sent close %d, want %d", code, tc.wantClose)
					}
				case <-time.After(waitLong):
					t.Fatal("no close from the client")
				}
			}
		})
	}
}

// TestWSPingPong: a ping is answered with a masked pong carrying its
// payload while the client reads; frames sent together with the 101 are
// not lost.
func TestWSPingPong(t *testing.T) {
	pong := make(chan []byte, 1)
	addr := startRawServer(t, func(s *rawServer) {
		s.frame(true, ws.OpPing, []byte("are you there"))
		s.frame(true, ws.OpBinary, []byte("data"))
		h, p, err := s.read()
		if err != nil || h.OpCode != ws.OpPong {
			pong <- nil
			return
		}
		pong <- p
		s.closeCode()
	})
	c, _, err := DialWS(dialCtx(t), Gateway{Addr: addr}, "/x", WSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 10)
	n, err := io.ReadFull(c, buf[:4])
	if err != nil || string(buf[:n]) != "data" {
		t.Fatalf("read %q %v", buf[:n], err)
	}
	if p := <-pong; !bytes.Equal(p, []byte("are you there")) {
		t.Fatalf("pong payload %q", p)
	}
}

// TestWSEarlyFrames: frames the server sends in the same write as its 101
// reach the client.
func TestWSEarlyFrames(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		// Read the request by hand, answer 101 and a frame in one write.
		var req []byte
		b := make([]byte, 4096)
		for !bytes.Contains(req, []byte("\r\n\r\n")) {
			n, err := c.Read(b)
			if err != nil {
				return
			}
			req = append(req, b[:n]...)
		}
		i := bytes.Index(req, []byte("Sec-WebSocket-Key: "))
		key := req[i+19 : i+19+24]
		var resp bytes.Buffer
		resp.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ")
		resp.WriteString(wsAccept(key))
		resp.WriteString("\r\n\r\n")
		ws.WriteFrame(&resp, ws.NewBinaryFrame([]byte("early bytes")))
		c.Write(resp.Bytes())
		io.Copy(io.Discard, c)
	}()
	c, _, err := DialWS(dialCtx(t), Gateway{Addr: ln.Addr().String()}, "/x", WSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 11)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "early bytes" {
		t.Fatalf("read %q %v", buf, err)
	}
}

func wsAccept(key []byte) string {
	h := sha1.Sum(append(append([]byte(nil), key...), "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"...))
	return base64.StdEncoding.EncodeToString(h[:])
}

// TestWSRequest: the upgrade carries the extra headers and subprotocols,
// and the Host header names the SNI when one is set.
func TestWSRequest(t *testing.T) {
	type seen struct{ host, auth, proto string }
	got := make(chan seen, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		var s seen
		u := ws.Upgrader{
			OnHost: func(h []byte) error { s.host = string(h); return nil },
			OnHeader: func(k, v []byte) error {
				if string(k) == "Authorization" {
					s.auth = string(v)
				}
				return nil
			},
			Protocol: func(p []byte) bool { s.proto += string(p) + ";"; return string(p) == "b.v1" },
		}
		if _, err := u.Upgrade(c); err != nil {
			return
		}
		got <- s
		io.Copy(io.Discard, c)
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	c, proto, err := DialWS(dialCtx(t), Gateway{Addr: ln.Addr().String(), SNI: "gw.example"}, "/x",
		WSOptions{Header: map[string][]string{"Authorization": {"Bearer tok"}}, Protocols: []string{"a.v2", "b.v1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := <-got
	if proto != "b.v1" || s.host != "gw.example:"+port || s.auth != "Bearer tok" || s.proto != "a.v2;b.v1;" {
		t.Fatalf("chosen %q, server saw %+v", proto, s)
	}
}

// TestWSReadDeadline: a read deadline, even in the middle of a frame
// header, ends that Read only; with the deadline lifted, reading goes on
// (streams and messages).
func TestWSReadDeadline(t *testing.T) {
	for _, message := range []bool{false, true} {
		t.Run(map[bool]string{false: "stream", true: "message"}[message], func(t *testing.T) {
			step := make(chan struct{})
			addr := startRawServer(t, func(s *rawServer) {
				var frame bytes.Buffer
				ws.WriteFrame(&frame, ws.NewBinaryFrame(bytes.Repeat([]byte("d"), 300))) // a 4-byte header
				s.frame(true, ws.OpBinary, []byte("abc"))
				<-step
				s.conn.Write(frame.Bytes()[:1]) // half a header
				<-step
				s.conn.Write(frame.Bytes()[1:])
				s.frame(true, ws.OpClose, closePayload(1000, ""))
				s.closeCode()
			})
			c, _, err := DialWS(dialCtx(t), Gateway{Addr: addr}, "/x", WSOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			read := func(p []byte) (int, error) {
				if message {
					return c.ReadMessage(p)
				}
				return c.Read(p)
			}
			buf := make([]byte, 1000)
			if n, err := read(buf); err != nil || string(buf[:n]) != "abc" {
				t.Fatalf("first read %q %v", buf[:n], err)
			}
			for range 2 {
				c.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
				if _, err := read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("read past the deadline: %v", err)
				}
				step <- struct{}{}
			}
			c.SetReadDeadline(time.Time{})
			var got []byte
			for len(got) < 300 {
				n, err := read(buf)
				if err != nil {
					t.Fatalf("after the deadline: %v (read %d)", err, len(got))
				}
				got = append(got, buf[:n]...)
			}
			if string(got) != strings.Repeat("d", 300) {
				t.Fatalf("read %q", got)
			}
			if _, err := read(buf); err != io.EOF {
				t.Fatalf("end %v, want EOF", err)
			}
		})
	}
}
