package client

// tunServer is a small native-tunnel server for the client's tests, built on
// codec/mux and the project's WebSocket frame reader, one goroutine per
// direction of each stream. It stands in for the real gateway where a test
// needs what the gateway does not do on demand (refuse OPENs, GOAWAY at a
// chosen moment, a kill, silence to PINGs, checks of the client's windows);
// tunnel_gateway_test.go runs the client against the real gateway. It
// forwards each tcp stream to a loopback TCP upstream and each udp stream
// to a UDP one, with the windows of docs/03 in both directions.

import (
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/httvps/httvps/codec"
	"github.com/httvps/httvps/codec/mux"
)

type tunServer struct {
	ln         net.Listener
	token      string
	tcpUp      string
	udpUp      string
	settings   mux.Settings // what it announces
	refuse     atomic.Int32 // OPENs still to answer with REFUSED
	opened     atomic.Int64 // streams accepted
	accepted   atomic.Int64 // tunnels upgraded
	noPong     atomic.Bool  // ignore PINGs (a tunnel gone silent)
	violations atomic.Int64 // client data beyond the windows this server granted
	// clientViolations counts data this server sent beyond the client's
	// windows (a bug here, not in the client).
	clientViolations atomic.Int64
	upBytes          atomic.Int64 // client → upstream bytes written
	maxSendWin       atomic.Int64 // high-water mark of bytes in flight to one stream's upstream queue
	mu               sync.Mutex
	conns            map[*srvConn]struct{}
	wg               sync.WaitGroup
}

func startTunServer(t testing.TB, token, tcpUp, udpUp string, set mux.Settings) *tunServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &tunServer{ln: ln, token: token, tcpUp: tcpUp, udpUp: udpUp, settings: set, conns: map[*srvConn]struct{}{}}
	srv.wg.Add(1)
	go srv.accept()
	t.Cleanup(func() {
		if v := srv.violations.Load(); v > 0 {
			t.Errorf("the client sent beyond the granted windows %d times", v)
		}
	})
	t.Cleanup(srv.Kill)
	return srv
}

func (srv *tunServer) Addr() string { return srv.ln.Addr().String() }

func (srv *tunServer) accept() {
	defer srv.wg.Done()
	for {
		c, err := srv.ln.Accept()
		if err != nil {
			return
		}
		srv.wg.Add(1)
		go func() {
			defer srv.wg.Done()
			srv.serve(c)
		}()
	}
}

// Kill closes the listener and every connection at once (no close frames).
func (srv *tunServer) Kill() {
	srv.ln.Close()
	srv.mu.Lock()
	for sc := range srv.conns {
		sc.c.Close()
	}
	srv.mu.Unlock()
	srv.wg.Wait()
}

// GoAway sends GOAWAY (last = the highest stream accepted) on every tunnel;
// each closes with 1001 once its streams have ended.
func (srv *tunServer) GoAway() {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	for sc := range srv.conns {
		sc.goAway()
	}
}

// Revoke refuses the token from now on and closes its tunnels with 1008,
// as the gateway does for a revoked token.
func (srv *tunServer) Revoke() {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	srv.token = "revoked:" + srv.token
	for sc := range srv.conns {
		sc.closeWS(1008)
	}
}

func (srv *tunServer) serve(c net.Conn) {
	defer c.Close()
	authOK := false
	u := ws.Upgrader{
		Protocol: func(p []byte) bool { return string(p) == mux.Subprotocol },
		OnHeader: func(k, v []byte) error {
			srv.mu.Lock()
			tok := srv.token
			srv.mu.Unlock()
			if strings.EqualFold(string(k), "Authorization") && string(v) == "Bearer "+tok {
				authOK = true
			}
			return nil
		},
		OnBeforeUpgrade: func() (ws.HandshakeHeader, error) {
			if !authOK {
				return nil, ws.RejectConnectionError(ws.RejectionStatus(404))
			}
			return nil, nil
		},
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := u.Upgrade(c); err != nil {
		return
	}
	c.SetDeadline(time.Time{})
	srv.accepted.Add(1)
	sc := &srvConn{srv: srv, c: c, streams: map[uint32]*srvStream{}, peer: mux.DefaultSettings(),
		sendSess: mux.DefaultSessionWindow, done: make(chan struct{})}
	sc.cond.L = &sc.mu
	srv.mu.Lock()
	srv.conns[sc] = struct{}{}
	srv.mu.Unlock()
	defer func() {
		srv.mu.Lock()
		delete(srv.conns, sc)
		srv.mu.Unlock()
	}()
	sc.write(mux.AppendSettings(nil, srv.settings))
	sc.readLoop()
	sc.shutdown()
}

type srvConn struct {
	srv  *tunServer
	c    net.Conn
	wmu  sync.Mutex
	done chan struct{}

	mu         sync.Mutex
	cond       sync.Cond
	streams    map[uint32]*srvStream
	lastID     uint32
	goaway     bool
	peer       mux.Settings // the client's
	sendSess   int64
	recvCredit int64
	recvUsed   int64 // client data received and not yet credited back
	closed     bool
}

type srvStream struct {
	sc   *srvConn
	id   uint32
	kind mux.Kind
	tcp  *net.TCPConn
	udp  net.Conn

	// Guarded by sc.mu.
	sendWin    int64
	queue      [][]byte // client data for the upstream
	queued     int64
	clientFin  bool
	upFin      bool // FIN sent to the client
	reset      bool
	recvCredit int64
	recvUsed   int64
	pkt        []byte // udp: the packet being received (reader goroutine)
}

func (sc *srvConn) write(frames []byte) error {
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	_, err := sc.c.Write(codec.AppendServerFrame(nil, ws.OpBinary, frames))
	return err
}

func (sc *srvConn) goAway() {
	sc.mu.Lock()
	sc.goaway = true
	last := sc.lastID
	empty := len(sc.streams) == 0
	sc.mu.Unlock()
	sc.write(mux.AppendGoAway(nil, last, mux.GoAwayNoError))
	if empty {
		sc.closeWS(1001)
	}
}

// closeWS sends a close frame and ends the connection as a real server
// does: a FIN, then reading on (readLoop, which closes the socket on EOF or
// after the deadline). Closing at once with the client's WINDOW frames
// unread would make the kernel send a RST, which drops whatever the client
// had received but not yet read (TestTunnelGoAway once lost the last 45 KiB
// of a stream that way on a busy machine).
func (sc *srvConn) closeWS(code ws.StatusCode) {
	sc.wmu.Lock()
	sc.c.Write(codec.AppendClose(nil, code, ""))
	sc.wmu.Unlock()
	if tc, ok := sc.c.(*net.TCPConn); ok {
		tc.CloseWrite()
		tc.SetReadDeadline(time.Now().Add(5 * time.Second))
		return
	}
	sc.c.Close()
}

func (sc *srvConn) shutdown() {
	sc.mu.Lock()
	sc.closed = true
	for _, st := range sc.streams {
		st.closeUp()
	}
	sc.cond.Broadcast()
	sc.mu.Unlock()
}

func (st *srvStream) closeUp() {
	if st.tcp != nil {
		st.tcp.Close()
	}
	if st.udp != nil {
		st.udp.Close()
	}
}

func (sc *srvConn) readLoop() {
	var r codec.Reader
	r.Init(codec.Limits{MaxFrame: 1 << 20, MaxMessage: 1 << 20, RejectText: true})
	p := mux.Parser{MaxFrame: sc.srv.settings.MaxFrame}
	buf := make([]byte, 64<<10)
	gotSettings := false
	var cur *srvStream
	for {
		n, err := sc.c.Read(buf)
		in := buf[:n]
		for len(in) > 0 {
			ev, k, rerr := r.Next(in)
			if rerr != nil {
				return
			}
			in = in[k:]
			switch ev.Kind {
			case codec.EventControl:
				if ev.Op == ws.OpClose {
					sc.closeWS(1000)
					return
				}
				continue
			case codec.EventNone:
				continue
			}
			for data := ev.Payload; len(data) > 0; {
				mev, m, perr := p.Next(data)
				if perr != nil {
					sc.closeWS(ws.StatusCode(mux.CloseCode(perr)))
					return
				}
				data = data[m:]
				if mev.Kind == mux.EventNone {
					break
				}
				if !gotSettings && mev.Header.Type != mux.TypeSettings {
					sc.closeWS(1002)
					return
				}
				switch mev.Kind {
				case mux.EventFrame:
					if mev.Header.Type == mux.TypeSettings {
						if gotSettings {
							sc.closeWS(1002)
							return
						}
						gotSettings = true
					}
					if !sc.frame(mev) {
						return
					}
				case mux.EventOpen:
					cur = sc.open(mev.Header, mev.Open)
					if mev.Last && mev.Header.FIN() && cur != nil {
						sc.clientData(cur, nil, false, true)
					}
				case mux.EventData:
					if mev.Header.Type == mux.TypeData {
						sc.mu.Lock()
						cur = sc.streams[mev.Header.Stream]
						sc.mu.Unlock()
					}
					if cur != nil {
						sc.clientData(cur, mev.Payload, mev.Last, mev.Last && mev.Header.FIN())
					} else if mev.Header.Type == mux.TypeData {
						sc.mu.Lock()
						sc.used(nil, len(mev.Payload))
						sc.mu.Unlock()
						sc.credit(nil, len(mev.Payload))
					}
				}
			}
		}
		if err != nil {
			return
		}
	}
}

func (sc *srvConn) frame(ev mux.Event) bool {
	switch ev.Header.Type {
	case mux.TypeSettings:
		s, err := mux.ParseSettings(ev.Payload)
		if err != nil {
			sc.closeWS(1002)
			return false
		}
		sc.mu.Lock()
		d := int64(s.StreamWindow) - int64(sc.peer.StreamWindow)
		sc.sendSess += int64(s.SessionWindow) - int64(sc.peer.SessionWindow)
		sc.peer = s
		for _, st := range sc.streams {
			st.sendWin += d
		}
		sc.cond.Broadcast()
		sc.mu.Unlock()
	case mux.TypeWindow:
		inc, err := mux.ParseWindow(ev.Payload)
		if err != nil {
			sc.closeWS(1002)
			return false
		}
		sc.mu.Lock()
		if ev.Header.Stream == 0 {
			sc.sendSess += int64(inc)
		} else if st := sc.streams[ev.Header.Stream]; st != nil {
			st.sendWin += int64(inc)
		}
		sc.cond.Broadcast()
		sc.mu.Unlock()
	case mux.TypeReset:
		sc.mu.Lock()
		if st := sc.streams[ev.Header.Stream]; st != nil {
			st.reset = true
			st.closeUp()
			delete(sc.streams, st.id)
		}
		sc.cond.Broadcast()
		sc.mu.Unlock()
	case mux.TypePing:
		if ev.Header.Flags&mux.FlagACK == 0 && !sc.srv.noPong.Load() {
			id, _ := mux.ParsePing(ev.Payload)
			sc.write(mux.AppendPing(nil, id, true))
		}
	}
	return true
}

// open accepts or refuses an OPEN and starts the stream's goroutines.
func (sc *srvConn) open(h mux.Header, k mux.Kind) *srvStream {
	sc.mu.Lock()
	if h.Stream <= sc.lastID {
		sc.mu.Unlock()
		sc.closeWS(1002)
		return nil
	}
	sc.lastID = h.Stream
	refuse := sc.goaway || uint32(len(sc.streams)) >= sc.srv.settings.MaxStreams
	sc.mu.Unlock()
	if !refuse && sc.srv.refuse.Load() > 0 && sc.srv.refuse.Add(-1) >= 0 {
		refuse = true
	}
	if refuse {
		sc.write(mux.AppendReset(nil, h.Stream, mux.ResetRefused))
		return nil
	}
	st := &srvStream{sc: sc, id: h.Stream, kind: k}
	var err error
	if k == mux.KindUDP {
		st.udp, err = net.Dial("udp", sc.srv.udpUp)
	} else {
		var c net.Conn
		c, err = net.Dial("tcp", sc.srv.tcpUp)
		if err == nil {
			st.tcp = c.(*net.TCPConn)
		}
	}
	if err != nil {
		sc.write(mux.AppendReset(nil, h.Stream, mux.ResetConnect))
		return nil
	}
	sc.mu.Lock()
	st.sendWin = int64(sc.peer.StreamWindow)
	sc.streams[st.id] = st
	sc.mu.Unlock()
	sc.srv.opened.Add(1)
	go st.toUpstream()
	go st.toClient()
	return st
}

// clientData queues a piece for the upstream (a udp packet once whole).
func (sc *srvConn) clientData(st *srvStream, p []byte, last, fin bool) {
	if st.kind == mux.KindUDP {
		st.pkt = append(st.pkt, p...) // owned by the reader goroutine
		if last && len(st.pkt) > 0 {
			st.udp.Write(st.pkt)
			st.pkt = st.pkt[:0]
		}
		return
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.used(st, len(p))
	if len(p) > 0 {
		st.queue = append(st.queue, append([]byte(nil), p...))
		st.queued += int64(len(p))
		for {
			old := sc.srv.maxSendWin.Load()
			if st.queued <= old || sc.srv.maxSendWin.CompareAndSwap(old, st.queued) {
				break
			}
		}
	}
	if fin {
		st.clientFin = true
	}
	sc.cond.Broadcast()
}

// credit gives back n bytes written upstream: the stream's and the
// session's window at half.
func (sc *srvConn) credit(st *srvStream, n int) {
	var frames []byte
	sc.mu.Lock()
	if st != nil {
		st.recvCredit += int64(n)
		if st.recvCredit >= int64(sc.srv.settings.StreamWindow)/2 && !st.clientFin {
			frames = mux.AppendWindow(frames, st.id, uint32(st.recvCredit))
			st.recvUsed -= st.recvCredit
			st.recvCredit = 0
		}
	}
	sc.recvCredit += int64(n)
	if sc.recvCredit >= int64(sc.srv.settings.SessionWindow)/2 {
		frames = mux.AppendWindow(frames, 0, uint32(sc.recvCredit))
		sc.recvUsed -= sc.recvCredit
		sc.recvCredit = 0
	}
	sc.mu.Unlock()
	if frames != nil {
		sc.write(frames)
	}
}

// used counts n bytes of client data against the windows granted and
// records a violation past them. Called with sc.mu held.
func (sc *srvConn) used(st *srvStream, n int) {
	sc.recvUsed += int64(n)
	if sc.recvUsed > int64(sc.srv.settings.SessionWindow) {
		sc.srv.violations.Add(1)
	}
	if st != nil {
		st.recvUsed += int64(n)
		if st.recvUsed > int64(sc.srv.settings.StreamWindow) {
			sc.srv.violations.Add(1)
		}
	}
}

func (st *srvStream) toUpstream() {
	sc := st.sc
	if st.kind == mux.KindUDP {
		return // udp packets go out as their frames end (clientData)
	}
	for {
		sc.mu.Lock()
		for len(st.queue) == 0 && !st.clientFin && !st.reset && !sc.closed {
			sc.cond.Wait()
		}
		if st.reset || sc.closed {
			sc.mu.Unlock()
			return
		}
		if len(st.queue) == 0 { // client FIN, all written
			sc.mu.Unlock()
			st.tcp.CloseWrite()
			st.maybeDone()
			return
		}
		p := st.queue[0]
		st.queue = st.queue[1:]
		st.queued -= int64(len(p))
		sc.mu.Unlock()
		if _, err := st.tcp.Write(p); err != nil {
			return
		}
		sc.srv.upBytes.Add(int64(len(p)))
		sc.credit(st, len(p))
	}
}

func (st *srvStream) toClient() {
	sc := st.sc
	buf := make([]byte, 64<<10)
	if st.kind == mux.KindUDP {
		for {
			n, err := st.udp.Read(buf)
			if err != nil {
				return
			}
			if sc.write(mux.AppendData(nil, st.id, false, buf[:n])) != nil {
				return
			}
		}
	}
	for {
		sc.mu.Lock()
		for (st.sendWin <= 0 || sc.sendSess <= 0) && !st.reset && !sc.closed {
			sc.cond.Wait()
		}
		if st.reset || sc.closed {
			sc.mu.Unlock()
			return
		}
		// Take the credit before reading (other streams share the
		// session window), give back what the read did not use.
		n := min(int64(len(buf)), st.sendWin, sc.sendSess, int64(sc.peer.MaxFrame))
		st.sendWin -= n
		sc.sendSess -= n
		if st.sendWin < 0 || sc.sendSess < 0 {
			sc.srv.clientViolations.Add(1)
		}
		sc.mu.Unlock()
		k, err := st.tcp.Read(buf[:n])
		sc.mu.Lock()
		st.sendWin += n - int64(k)
		sc.sendSess += n - int64(k)
		sc.cond.Broadcast()
		sc.mu.Unlock()
		if k > 0 {
			if sc.write(mux.AppendData(nil, st.id, false, buf[:k])) != nil {
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				sc.mu.Lock()
				st.upFin = true
				sc.mu.Unlock()
				sc.write(mux.AppendData(nil, st.id, true, nil))
				st.maybeDone()
			} else {
				sc.write(mux.AppendReset(nil, st.id, mux.ResetUpstream))
			}
			return
		}
	}
}

// maybeDone ends a stream once FIN went both ways; a tunnel going away
// closes with 1001 after its last stream.
func (st *srvStream) maybeDone() {
	sc := st.sc
	sc.mu.Lock()
	done := st.upFin && st.clientFin && len(st.queue) == 0
	if done {
		delete(sc.streams, st.id)
		st.tcp.Close()
	}
	closeNow := done && sc.goaway && len(sc.streams) == 0
	sc.mu.Unlock()
	if closeNow {
		sc.closeWS(1001)
	}
}
