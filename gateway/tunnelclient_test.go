package gateway

// A small goroutine-based native-tunnel client for the tests, on codec/mux
// and gobwas/ws: one reader goroutine decodes the gateway's frames and
// dispatches them to streams, writes go out under a mutex, each call one
// masked binary message. It keeps the client's side of flow control (it
// never sends beyond its windows unless told to, and credits what the
// application reads) and records what the gateway did that a test checks:
// resets, GOAWAY, the close code, and any window the gateway overran.

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/httvps/httvps/codec/mux"
)

type tunClient struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
	wmu  sync.Mutex // guards writes on conn

	mu       sync.Mutex // guards everything below
	cond     *sync.Cond
	streams  map[uint32]*tunStream
	nextID   uint32
	settings *mux.Settings // the gateway's, once received
	sendWin  int64         // session window toward the gateway
	recvUsed int64         // bytes the application read, not yet credited (session)
	recvWin  int64         // what the gateway may still send on the session (our grant)
	resets   map[uint32]mux.ResetCode
	goAway   int64 // last stream id of the gateway's GOAWAY; -1: none
	closed   bool
	code     ws.StatusCode // the gateway's close code, once closed
	overrun  error         // the gateway sent beyond a window
	pongs    int
	frames   int // frames received
}

type tunStream struct {
	c       *tunClient
	id      uint32
	buf     []byte // received, not yet read
	fin     bool   // the gateway's FIN arrived
	reset   mux.ResetCode
	sendWin int64 // window toward the gateway
	recvWin int64 // what the gateway may still send (our grant)
	used    int64 // read by the application, not yet credited
	udp     bool
	pkts    int   // udp: packets received (their bytes are in buf, in order)
	total   int64 // bytes received
}

// dialTunnel opens a tunnel with the token and sends the client's SETTINGS.
func dialTunnel(t *testing.T, g *Gateway, token string) *tunClient {
	t.Helper()
	return dialTunnelOpt(t, g, token, true)
}

// dialTunnelOpt is dialTunnel, without the client's SETTINGS unless settings.
func dialTunnelOpt(t *testing.T, g *Gateway, token string, settings bool) *tunClient {
	t.Helper()
	c, err := tryTunnelOpt(g, token, settings, nil, mux.Subprotocol)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.conn.Close() })
	c.t = t
	return c
}

func tryTunnel(g *Gateway, token string, protocols ...string) (*tunClient, error) {
	return tryTunnelOpt(g, token, true, nil, protocols...)
}

// tryTunnelOpt dials the tunnel, over TLS when pool (the gateway's
// certificate) is set, and sends the client's SETTINGS if settings.
func tryTunnelOpt(g *Gateway, token string, settings bool, pool *x509.CertPool, protocols ...string) (*tunClient, error) {
	h := http.Header{}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	d := ws.Dialer{Timeout: 5 * time.Second, Protocols: protocols, Header: ws.HandshakeHeaderHTTP(h)}
	scheme := "ws://"
	if pool != nil {
		scheme = "wss://"
		d.TLSConfig = &tls.Config{RootCAs: pool, ServerName: "localhost"}
	}
	conn, br, hs, err := d.Dial(context.Background(), scheme+g.Addr().String()+tunnelPath)
	if err != nil {
		return nil, err
	}
	if hs.Protocol != mux.Subprotocol {
		conn.Close()
		return nil, fmt.Errorf("subprotocol %q", hs.Protocol)
	}
	if br == nil {
		br = bufio.NewReader(conn)
	}
	c := &tunClient{conn: conn, br: br, streams: map[uint32]*tunStream{}, nextID: 1,
		sendWin: mux.DefaultSessionWindow, recvWin: mux.DefaultSessionWindow, resets: map[uint32]mux.ResetCode{}, goAway: -1}
	c.cond = sync.NewCond(&c.mu)
	if settings {
		set := mux.DefaultSettings()
		set.MaxStreams = 0
		c.send(mux.AppendSettings(nil, set))
	}
	go c.readLoop()
	return c, nil
}

// send writes frames as masked binary messages of at most 256 KiB (message
// boundaries carry no meaning; the gateway's WebSocket frame limit does).
func (c *tunClient) send(frames []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.conn.SetWriteDeadline(time.Now().Add(20 * time.Second))
	for len(frames) > 0 {
		n := min(len(frames), 256<<10)
		if err := wsutil.WriteClientMessage(c.conn, ws.OpBinary, frames[:n]); err != nil {
			return err
		}
		frames = frames[n:]
	}
	return nil
}

func (c *tunClient) readLoop() {
	var p mux.Parser
	var cur *tunStream
	defer func() {
		c.mu.Lock()
		c.closed = true
		c.cond.Broadcast()
		c.mu.Unlock()
	}()
	for {
		hdr, err := ws.ReadHeader(c.br)
		if err != nil {
			return
		}
		payload := make([]byte, hdr.Length)
		if _, err := io.ReadFull(c.br, payload); err != nil {
			return
		}
		switch hdr.OpCode {
		case ws.OpClose:
			code := ws.StatusNoStatusRcvd
			if len(payload) >= 2 {
				code = ws.StatusCode(uint16(payload[0])<<8 | uint16(payload[1]))
			}
			c.mu.Lock()
			c.code = code
			c.mu.Unlock()
			// Answer the close as a client does, then stop.
			c.wmu.Lock()
			wsutil.WriteClientMessage(c.conn, ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
			c.wmu.Unlock()
			return
		case ws.OpPing:
			c.wmu.Lock()
			wsutil.WriteClientMessage(c.conn, ws.OpPong, payload)
			c.wmu.Unlock()
			continue
		case ws.OpBinary, ws.OpContinuation:
		default:
			continue
		}
		for in := payload; len(in) > 0; {
			ev, n, err := p.Next(in)
			in = in[n:]
			if err != nil {
				c.fail(fmt.Errorf("gateway frame: %w", err))
				return
			}
			c.mu.Lock()
			switch ev.Kind {
			case mux.EventFrame:
				c.frames++
				c.control(ev)
			case mux.EventData:
				if ev.Header.Type != mux.TypeData {
					c.overrun = errors.New("gateway sent OPEN")
				}
				if cur == nil {
					c.frames++
					cur = c.streams[ev.Header.Stream]
					if cur != nil && !cur.udp {
						n := int64(ev.Header.Length)
						cur.recvWin -= n
						c.recvWin -= n
						if cur.recvWin < 0 && c.overrun == nil {
							c.overrun = fmt.Errorf("stream %d: gateway overran the stream window", cur.id)
						}
						if c.recvWin < 0 && c.overrun == nil {
							c.overrun = errors.New("gateway overran the session window")
						}
					}
					if cur != nil && cur.udp && ev.Last {
						cur.pkts++
					}
				}
				if cur != nil {
					cur.buf = append(cur.buf, ev.Payload...)
					cur.total += int64(len(ev.Payload))
					if ev.Last && ev.Header.FIN() {
						cur.fin = true
					}
				}
				if ev.Last {
					cur = nil
				}
				c.cond.Broadcast()
			}
			c.mu.Unlock()
		}
	}
}

// control handles a gateway frame other than DATA (c.mu held).
func (c *tunClient) control(ev mux.Event) {
	h := ev.Header
	switch h.Type {
	case mux.TypeSettings:
		s, err := mux.ParseSettings(ev.Payload)
		if err != nil {
			c.overrun = err
			return
		}
		c.settings = &s
		// The gateway's windows are the defaults (it never announces
		// less), so nothing to adjust.
	case mux.TypeWindow:
		inc, _ := mux.ParseWindow(ev.Payload)
		if h.Stream == 0 {
			c.sendWin += int64(inc)
		} else if s := c.streams[h.Stream]; s != nil {
			s.sendWin += int64(inc)
		}
	case mux.TypeReset:
		code, _ := mux.ParseReset(ev.Payload)
		c.resets[h.Stream] = code
		if s := c.streams[h.Stream]; s != nil {
			s.reset = code
		}
	case mux.TypePing:
		if h.Flags&mux.FlagACK != 0 {
			c.pongs++
		}
	case mux.TypeGoAway:
		last, _, _ := mux.ParseGoAway(ev.Payload)
		c.goAway = int64(last)
	}
	c.cond.Broadcast()
}

func (c *tunClient) fail(err error) {
	c.mu.Lock()
	c.overrun = err
	c.mu.Unlock()
}

// open opens a stream of kind k with optional first data (within the
// windows: at most one frame).
func (c *tunClient) open(k mux.Kind, data []byte) *tunStream {
	// IDs must reach the gateway in increasing order: take one and send
	// its OPEN under the write lock.
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	s := &tunStream{c: c, id: c.nextID, udp: k == mux.KindUDP, sendWin: mux.DefaultStreamWindow, recvWin: mux.DefaultStreamWindow}
	c.nextID += 2
	c.streams[s.id] = s
	if k == mux.KindTCP {
		s.sendWin -= int64(len(data))
		c.sendWin -= int64(len(data))
	}
	c.mu.Unlock()
	c.conn.SetWriteDeadline(time.Now().Add(20 * time.Second))
	wsutil.WriteClientMessage(c.conn, ws.OpBinary, mux.AppendOpen(nil, s.id, k, false, data))
	return s
}

// wait blocks until cond holds (c.mu held by the caller) or the deadline.
func (c *tunClient) wait(what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	timer := time.AfterFunc(20*time.Second, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer timer.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			c.mu.Unlock()
			c.t.Fatalf("timed out waiting for %s", what)
		}
		c.cond.Wait()
	}
}

// Write sends p on the stream within its windows, in frames of at most the
// gateway's MAX_FRAME.
func (s *tunStream) Write(p []byte) error {
	c := s.c
	for len(p) > 0 {
		c.mu.Lock()
		for (s.sendWin <= 0 || c.sendWin <= 0) && s.reset == 0 && !c.closed {
			c.cond.Wait()
		}
		if s.reset != 0 || c.closed {
			c.mu.Unlock()
			return fmt.Errorf("stream %d: reset %v / closed", s.id, s.reset)
		}
		n := int(min(int64(len(p)), s.sendWin, c.sendWin, mux.DefaultMaxFrame))
		s.sendWin -= int64(n)
		c.sendWin -= int64(n)
		c.mu.Unlock()
		if err := c.send(mux.AppendData(nil, s.id, false, p[:n])); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// CloseWrite sends FIN.
func (s *tunStream) CloseWrite() error { return s.c.send(mux.AppendData(nil, s.id, true, nil)) }

// Read returns received bytes, io.EOF after the gateway's FIN, an error
// after a RESET; it credits what it returns back to the gateway.
func (s *tunStream) Read(p []byte) (int, error) {
	c := s.c
	c.mu.Lock()
	for len(s.buf) == 0 && !s.fin && s.reset == 0 && !c.closed {
		c.cond.Wait()
	}
	if len(s.buf) == 0 {
		defer c.mu.Unlock()
		switch {
		case s.fin:
			return 0, io.EOF
		case s.reset != 0:
			return 0, fmt.Errorf("stream %d: reset %v", s.id, s.reset)
		}
		return 0, fmt.Errorf("tunnel closed (%d)", c.code)
	}
	n := copy(p, s.buf)
	s.buf = s.buf[n:]
	var frames []byte
	if s.udp {
		c.mu.Unlock()
		return n, nil
	}
	s.used += int64(n)
	c.recvUsed += int64(n)
	if s.used >= mux.DefaultStreamWindow/2 {
		frames = mux.AppendWindow(frames, s.id, uint32(s.used))
		s.recvWin += s.used
		s.used = 0
	}
	if c.recvUsed >= mux.DefaultSessionWindow/2 {
		frames = mux.AppendWindow(frames, 0, uint32(c.recvUsed))
		c.recvWin += c.recvUsed
		c.recvUsed = 0
	}
	c.mu.Unlock()
	if frames != nil {
		c.send(frames)
	}
	return n, nil
}

// waitReset waits for a RESET on stream id and returns its code.
func (c *tunClient) waitReset(id uint32) mux.ResetCode {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wait(fmt.Sprintf("RESET on stream %d", id), func() bool { return c.resets[id] != 0 || c.closed })
	return c.resets[id]
}

// waitClose waits for the gateway's close and returns its code.
func (c *tunClient) waitClose() ws.StatusCode {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wait("the tunnel's close", func() bool { return c.closed })
	return c.code
}

// check fails the test if the gateway overran a window or sent bad frames.
func (c *tunClient) check() {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.overrun != nil {
		c.t.Fatal(c.overrun)
	}
}
