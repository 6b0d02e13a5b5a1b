package client

import (
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/httvps/httvps/codec/mux"
)

// tunSession is one tunnel: a WebSocket to /v1/tunnel carrying streams. Its
// reader goroutine owns the Parser and dispatches frames; its writer
// goroutine sends the queued control frames (WINDOW, PING, RESET) and the
// PINGs; streams write their OPEN and DATA frames themselves (WSConn
// serialises the writes).
//
// Lock order: tunStream.mu, then tunSession.mu (never the reverse);
// tunStream.mu, then tunSession.ctlMu; Tunnel.mu, then tunSession.mu.
type tunSession struct {
	t      *Tunnel
	gw     Gateway
	ws     *WSConn
	done   chan struct{}
	opened time.Time

	// openMu orders OPENs on the wire by ID (docs/03: IDs must increase),
	// and control frames after the OPEN of their stream.
	openMu sync.Mutex

	ctlMu  sync.Mutex
	ctl    ctlQueue // queued control frames (tunnel_ctl.go)
	ctlSig chan struct{}

	mu         sync.Mutex // guards the fields below
	streams    map[uint32]*tunStream
	reserved   int    // slots taken by streams about to open here
	lastID     uint32 // highest stream ID opened
	peer       mux.Settings
	gotPeer    bool  // the gateway's SETTINGS arrived: only then is MAX_STREAMS known
	sendWin    int64 // session window for what we send (tcp payload)
	winWaiters map[*tunStream]struct{}
	recvWin    int64 // what the gateway may still send (tcp payload)
	recvCredit int64 // consumed, not yet given back with WINDOW 0
	udpClosed  map[uint32]struct{}
	goaway     bool
	dead       error
	rtt        time.Duration
	pingID     [8]byte
	pingSent   time.Time
	pingOut    bool
	closeOnce  sync.Once
}

func newTunSession(t *Tunnel, gw Gateway, c *WSConn) *tunSession {
	return &tunSession{
		t:          t,
		gw:         gw,
		ws:         c,
		done:       make(chan struct{}),
		opened:     time.Now(),
		ctlSig:     make(chan struct{}, 1),
		streams:    make(map[uint32]*tunStream),
		peer:       mux.DefaultSettings(),
		sendWin:    mux.DefaultSessionWindow,
		winWaiters: make(map[*tunStream]struct{}),
		recvWin:    int64(t.cfg.SessionWindow),
		udpClosed:  make(map[uint32]struct{}),
	}
}

func (s *tunSession) sendSettings() error {
	b := make([]byte, wsHeaderRoom, wsHeaderRoom+mux.HeaderLen+30)
	b = mux.AppendSettings(b, mux.Settings{
		Version:       mux.Version,
		MaxStreams:    0, // v1: only clients open streams
		StreamWindow:  s.t.cfg.StreamWindow,
		SessionWindow: s.t.cfg.SessionWindow,
		MaxFrame:      s.t.cfg.MaxFrame,
	})
	return s.ws.writeReserved(b)
}

func (s *tunSession) start() {
	go s.readLoop()
	go s.writeLoop()
}

// usable: connected and not going away.
func (s *tunSession) usable() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dead == nil && !s.goaway
}

// room returns the streams open or about to open here and whether another fits.
func (s *tunSession) room() (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	load := len(s.streams) + s.reserved
	return load, s.gotPeer && s.dead == nil && !s.goaway && uint32(load) < s.peer.MaxStreams
}

func (s *tunSession) reserve() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.gotPeer || s.dead != nil || s.goaway || uint32(len(s.streams)+s.reserved) >= s.peer.MaxStreams {
		return false
	}
	s.reserved++
	return true
}

func (s *tunSession) unreserve() {
	s.mu.Lock()
	s.reserved--
	s.mu.Unlock()
	s.t.poke() // a slot is free: wake waiters
}

func (s *tunSession) lastRTT() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rtt
}

// testHookOpened, set by tests only, runs in open once the stream has its
// ID and st.mu is released, before the OPEN is written.
var testHookOpened func(*tunStream)

// errSessionUnusable: the session died or is going away; open elsewhere.
var errSessionUnusable = errors.New("client: tunnel going away")

// open registers st under the next ID and sends its OPEN with as much of
// first as the windows and MAX_FRAME allow (udp: all of it, or
// ErrPacketTooLarge), FIN if fin and all of first went. It returns how many
// bytes of first went. st.mu must not be held; the caller holds st.wmu.
func (s *tunSession) open(st *tunStream, first []byte, fin bool) (int, error) {
	s.openMu.Lock()
	defer s.openMu.Unlock()
	st.mu.Lock()
	s.mu.Lock()
	if st.reserved == s {
		s.reserved--
		st.reserved = nil
	}
	if err := st.stateErrLocked(); err != nil {
		s.mu.Unlock()
		st.mu.Unlock()
		s.t.poke() // the reserved slot is free
		return 0, err
	}
	if s.dead != nil || s.goaway {
		s.mu.Unlock()
		st.mu.Unlock()
		return 0, errSessionUnusable
	}
	k := len(first)
	if st.kind == mux.KindTCP {
		k = int(max(0, min(int64(k), int64(s.dataMaxLocked()-1), s.sendWin, int64(s.peer.StreamWindow))))
		s.sendWin -= int64(k)
	} else if k > int(s.peer.MaxFrame-1) || k > mux.MaxUDPPacket {
		s.mu.Unlock()
		st.mu.Unlock()
		return 0, ErrPacketTooLarge
	}
	s.lastID++
	id := s.lastID
	s.streams[id] = st
	st.sess, st.id = s, id
	st.sendWin = int64(s.peer.StreamWindow) - int64(k)
	st.recvWin, st.recvCredit = int64(s.t.cfg.StreamWindow), 0
	s.mu.Unlock()
	fin = fin && k == len(first)
	if fin {
		st.finSent = true
	}
	st.noteSentLocked(first[:k])
	// Queued control frames go first, in the same message: a RESET of a
	// closed stream then reaches the gateway before this OPEN takes the
	// slot it freed. They are taken while st.mu is still held: a Close of
	// st once st.mu is released queues its RESET after this snapshot, and
	// the writer sends it only after this OPEN (openMu); taken later, the
	// RESET could ride in front of its own OPEN (the gateway closes the
	// tunnel with 1002).
	s.ctlMu.Lock()
	pending := s.ctl.size()
	b := make([]byte, wsHeaderRoom, wsHeaderRoom+pending+mux.HeaderLen+1+k)
	b = s.ctl.take(b)
	pending = len(b) - wsHeaderRoom
	s.ctlMu.Unlock()
	st.mu.Unlock()
	if h := testHookOpened; h != nil {
		h(st)
	}
	var err error
	if pending > 0 && pending+mux.HeaderLen+1+k > wsMaxFramePayload {
		// Both in one message would pass the gateway's WebSocket frame
		// bound: the control frames go first on their own (still under
		// openMu, so still ahead of the OPEN).
		err = s.ws.writeReserved(b)
		b = b[:wsHeaderRoom]
	}
	b = mux.AppendOpen(b, id, st.kind, fin, first[:k])
	if err == nil {
		err = s.ws.writeReserved(b)
	}
	if err != nil {
		// The tunnel broke under the OPEN: nothing of the stream can have
		// been answered, so it opens on another tunnel.
		retry := st.retryOpen(s, id, k, fin)
		s.close(fmt.Errorf("%w: %w", ErrTunnelLost, err))
		if retry {
			return 0, errSessionUnusable
		}
		return 0, fmt.Errorf("%w: %w", ErrTunnelLost, err)
	}
	return k, nil
}

// takeSendWin takes up to n bytes of the session window for st (and
// returns the largest DATA payload); with none left it registers st to be
// woken when WINDOW 0 arrives.
func (s *tunSession) takeSendWin(st *tunStream, n int64) (int64, uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	mf := s.dataMaxLocked()
	k := min(n, s.sendWin)
	if k <= 0 {
		s.winWaiters[st] = struct{}{}
		return 0, mf
	}
	s.sendWin -= k
	return k, mf
}

// wsMaxFramePayload is the largest WebSocket frame payload the gateway
// takes (its MaxFrameSize); a frame over it closes the tunnel with 1009.
const wsMaxFramePayload = 1 << 20

// maxDataPayload is the largest DATA payload that, with its mux header,
// fits one such WebSocket frame (the header room kept to spare).
const maxDataPayload = wsMaxFramePayload - mux.HeaderLen - wsHeaderRoom

// dataMaxLocked is the largest DATA payload to send: the gateway's
// MAX_FRAME (up to 16 MiB by docs/03), but never past one WebSocket frame
// of the gateway's bound, since a DATA frame goes in one WebSocket frame.
func (s *tunSession) dataMaxLocked() uint32 {
	return min(s.peer.MaxFrame, maxDataPayload)
}

// maxFrame is the largest DATA payload the gateway accepts.
func (s *tunSession) maxFrame() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int(s.dataMaxLocked())
}

func (s *tunSession) send(b []byte) error {
	if err := s.ws.writeReserved(b); err != nil {
		s.close(err)
		return err
	}
	return nil
}

// consumed gives back n bytes of the session window once half of it has
// been consumed (taken into a stream's buffer, or dropped).
func (s *tunSession) consumed(n int) {
	if n == 0 {
		return
	}
	s.mu.Lock()
	s.recvCredit += int64(n)
	var inc int64
	if s.recvCredit >= int64(s.t.cfg.SessionWindow)/2 {
		inc, s.recvCredit = s.recvCredit, 0
		s.recvWin += inc
	}
	s.mu.Unlock()
	if inc > 0 {
		s.queueWindow(0, uint32(inc))
	}
}

// remove drops a finished or reset stream. DATA for its ID is ignored from
// now on (and credited back).
func (s *tunSession) remove(id uint32, kind mux.Kind) {
	s.mu.Lock()
	if _, ok := s.streams[id]; ok {
		delete(s.streams, id)
		if kind == mux.KindUDP {
			if len(s.udpClosed) > 4096 {
				clear(s.udpClosed) // bounded: an old udp stream's late packets then count as tcp
			}
			s.udpClosed[id] = struct{}{}
		}
	}
	s.mu.Unlock()
	s.t.poke() // a slot is free
	s.closeIfDrained()
}

// drain is our own GOAWAY (the gateway was dropped from the list): no new
// streams here, and the tunnel closes when its last stream ends.
func (s *tunSession) drain() {
	s.mu.Lock()
	s.goaway = true
	s.mu.Unlock()
	s.t.poke()
	s.closeIfDrained()
}

// closeIfDrained closes a tunnel going away once no stream is open on it
// (a stream holding only a reservation opens elsewhere when it finds the
// tunnel gone).
func (s *tunSession) closeIfDrained() {
	s.mu.Lock()
	empty := s.goaway && s.dead == nil && len(s.streams) == 0
	s.mu.Unlock()
	if empty {
		s.close(fmt.Errorf("%w: drained", ErrTunnelLost))
	}
}

func (s *tunSession) writeLoop() {
	tick := time.NewTicker(s.t.cfg.PingInterval)
	defer tick.Stop()
	s.ping()
	spare := make([]byte, wsHeaderRoom, wsHeaderRoom+512)
	for {
		select {
		case <-s.ctlSig:
		case <-tick.C:
			if !s.ping() {
				return
			}
			continue
		case <-s.done:
			return
		}
		// Under openMu: frames about a stream follow its OPEN, and frames
		// queued before an OPEN precede it (open takes them along).
		s.openMu.Lock()
		s.ctlMu.Lock()
		b := s.ctl.take(spare[:wsHeaderRoom])
		s.ctlMu.Unlock()
		var err error
		if len(b) > wsHeaderRoom {
			err = s.ws.writeReserved(b)
		}
		s.openMu.Unlock()
		if err != nil {
			s.close(err)
			return
		}
		if cap(b) <= wsHeaderRoom+4096 {
			spare = b // a burst's large buffer is not kept
		}
	}
}

// ping sends a PING unless one is out; one out for PingTimeout ends the
// tunnel. It reports whether the tunnel is still alive.
func (s *tunSession) ping() bool {
	s.mu.Lock()
	if s.pingOut {
		late := time.Since(s.pingSent) >= s.t.cfg.PingTimeout
		s.mu.Unlock()
		if late {
			s.close(ErrTunnelTimeout)
			return false
		}
		return true
	}
	rand.Read(s.pingID[:])
	id := s.pingID
	s.pingOut, s.pingSent = true, time.Now()
	s.mu.Unlock()
	s.queue(func(b []byte) []byte { return mux.AppendPing(b, id, false) })
	return true
}

// close ends the session: the WebSocket (with err's close code), then every
// stream on it.
func (s *tunSession) close(err error) {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.dead = err
		streams := make([]*tunStream, 0, len(s.streams))
		for _, st := range s.streams {
			streams = append(streams, st)
		}
		clear(s.streams)
		waiters := s.takeWaitersLocked()
		s.mu.Unlock()
		close(s.done)
		code := mux.CloseCode(err)
		switch {
		case errors.Is(err, ErrTunnelClosed), errors.Is(err, ErrTunnelLost):
			code = mux.CloseNormal
		case code == mux.CloseInternal:
			code = mux.CloseGoingAway // our side's failure (write error, PING timeout)
		}
		s.ws.abort(code)
		for _, st := range streams {
			st.onSessionDead(s, err)
		}
		for _, st := range waiters {
			st.wake()
		}
		s.t.sessionEnded(s)
		if !errors.Is(err, ErrTunnelClosed) {
			s.t.log.Info("tunnel: ended", "gateway", s.gw.Addr, "err", err)
		}
	})
}

func (s *tunSession) takeWaitersLocked() []*tunStream {
	ws := make([]*tunStream, 0, len(s.winWaiters))
	for st := range s.winWaiters {
		ws = append(ws, st)
	}
	clear(s.winWaiters)
	return ws
}
