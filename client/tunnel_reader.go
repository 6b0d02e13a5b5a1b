package client

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/httvps/httvps/codec/mux"
	"github.com/httvps/httvps/internal/bytequeue"
)

// errGatewayOpen: in v1 only clients open streams.
var errGatewayOpen = fmt.Errorf("%w: OPEN from the gateway", mux.ErrProtocol)

// tunReader is the state of a session's reader goroutine (owned by it).
type tunReader struct {
	s           *tunSession
	p           mux.Parser
	gotSettings bool
	// The DATA/OPEN frame whose pieces are arriving: its stream (nil if
	// gone), whether it is udp, and whether its pieces count against the
	// session window.
	cur     *tunStream
	curID   uint32
	curUDP  bool
	inFrame bool
	buf     *bytequeue.Buf // what the input given to feed is a slice of
}

// The reader reads the WebSocket into pooled Bufs of rxBufSize and queues
// each DATA payload on its stream as a slice of its Buf (bytequeue.Push),
// copying nothing; it starts a new Buf when the room left is below
// rxMinRead (a TLS record's plaintext, so a read takes one record whole).
const (
	rxBufSize = 64 << 10
	rxMinRead = 16 << 10
)

var rxBufs = bytequeue.NewPool(rxBufSize)

func (s *tunSession) readLoop() {
	r := &tunReader{s: s, p: mux.Parser{MaxFrame: s.t.cfg.MaxFrame}}
	b, pos := rxBufs.Get(), 0
	defer func() { b.Release() }()
	for {
		if len(b.B)-pos < rxMinRead {
			b.Release()
			b, pos = rxBufs.Get(), 0
		}
		n, err := s.ws.Read(b.B[pos:])
		if n > 0 {
			r.buf = b
			perr := r.feed(b.B[pos : pos+n])
			pos += n
			if perr != nil {
				s.close(perr)
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("%w: gateway closed the tunnel", ErrTunnelLost)
			} else {
				err = fmt.Errorf("%w: %w", ErrTunnelLost, err)
			}
			s.close(err)
			return
		}
	}
}

func (r *tunReader) feed(in []byte) error {
	for len(in) > 0 {
		ev, n, err := r.p.Next(in)
		if err != nil {
			return err
		}
		in = in[n:]
		if ev.Kind == mux.EventNone {
			return nil
		}
		if !r.gotSettings && !(ev.Kind == mux.EventFrame && ev.Header.Type == mux.TypeSettings) {
			return mux.ErrSettingsOrder
		}
		switch ev.Kind {
		case mux.EventFrame:
			err = r.frame(ev)
		case mux.EventOpen:
			err = errGatewayOpen
		case mux.EventData:
			err = r.data(ev)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// lookup finds stream id: the stream (nil if it ended) or an error if the
// ID was never opened.
func (r *tunReader) lookup(id uint32) (*tunStream, bool, error) {
	s := r.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if id > s.lastID {
		return nil, false, fmt.Errorf("%w: stream %d", mux.ErrUnknownStream, id)
	}
	_, udp := s.udpClosed[id]
	return s.streams[id], udp, nil
}

func (r *tunReader) frame(ev mux.Event) error {
	s := r.s
	h := ev.Header
	switch h.Type {
	case mux.TypeSettings:
		if r.gotSettings {
			return mux.ErrSettingsOrder
		}
		r.gotSettings = true
		set, err := mux.ParseSettings(ev.Payload)
		if err != nil {
			return err
		}
		s.applySettings(set)
	case mux.TypeReset:
		code, err := mux.ParseReset(ev.Payload)
		if err != nil {
			return err
		}
		st, _, err := r.lookup(h.Stream)
		if err != nil || st == nil {
			return err
		}
		if !code.Known() {
			code = mux.ResetCancel
		}
		s.remove(h.Stream, st.kind)
		st.onReset(s, h.Stream, code)
	case mux.TypeWindow:
		inc, err := mux.ParseWindow(ev.Payload)
		if err != nil {
			return err
		}
		if h.Stream == 0 {
			return s.addSendWin(inc)
		}
		st, _, err := r.lookup(h.Stream)
		if err != nil || st == nil {
			return err
		}
		st.onWindow(s, h.Stream, inc)
	case mux.TypePing:
		id, err := mux.ParsePing(ev.Payload)
		if err != nil {
			return err
		}
		if h.Flags&mux.FlagACK == 0 {
			s.queuePingAck(id)
			return nil
		}
		s.mu.Lock()
		if s.pingOut && id == s.pingID {
			s.pingOut = false
			s.rtt = max(time.Since(s.pingSent), time.Microsecond)
		}
		s.mu.Unlock()
	case mux.TypeGoAway:
		last, code, err := mux.ParseGoAway(ev.Payload)
		if err != nil {
			return err
		}
		s.goAway(last, code)
	}
	return nil
}

// data handles one piece of a DATA payload.
func (r *tunReader) data(ev mux.Event) error {
	s := r.s
	h := ev.Header
	if !r.inFrame {
		st, udp, err := r.lookup(h.Stream)
		if err != nil {
			return err
		}
		r.cur, r.curID, r.inFrame = st, h.Stream, true
		r.curUDP = udp || st != nil && st.kind == mux.KindUDP
	}
	if ev.Last {
		r.inFrame = false
	}
	fin := ev.Last && h.FIN()
	if r.curUDP {
		if r.cur != nil {
			r.cur.onPacketPiece(s, r.curID, ev.Payload, ev.Last, fin)
		}
		return nil
	}
	if n := int64(len(ev.Payload)); n > 0 {
		s.mu.Lock()
		s.recvWin -= n
		over := s.recvWin < 0
		s.mu.Unlock()
		if over {
			return mux.ErrSessionWindow
		}
	}
	if r.cur == nil {
		s.consumed(len(ev.Payload)) // a stream that ended: credit it back at once
		return nil
	}
	r.cur.onData(s, r.curID, r.buf, ev.Payload, fin)
	return nil
}

// applySettings takes the gateway's SETTINGS: the windows it grants change
// by the difference from the defaults assumed until now.
func (s *tunSession) applySettings(set mux.Settings) {
	s.mu.Lock()
	dStream := int64(set.StreamWindow) - int64(s.peer.StreamWindow)
	s.sendWin += int64(set.SessionWindow) - int64(s.peer.SessionWindow)
	s.peer, s.gotPeer = set, true
	streams := make([]*tunStream, 0, len(s.streams))
	for _, st := range s.streams {
		streams = append(streams, st)
	}
	waiters := s.takeWaitersLocked()
	s.mu.Unlock()
	for _, st := range streams {
		st.addSendWin(s, dStream)
	}
	for _, st := range waiters {
		st.wake()
	}
	s.t.poke() // MAX_STREAMS may have changed: wake waiters
}

func (s *tunSession) addSendWin(inc uint32) error {
	s.mu.Lock()
	if s.sendWin+int64(inc) > mux.MaxWindow {
		s.mu.Unlock()
		return mux.ErrWindowOverflow
	}
	s.sendWin += int64(inc)
	waiters := s.takeWaitersLocked()
	s.mu.Unlock()
	for _, st := range waiters {
		st.wake()
	}
	return nil
}

// goAway: no new streams here; streams above last were not processed
// (like REFUSED).
func (s *tunSession) goAway(last uint32, code mux.GoAwayCode) {
	s.mu.Lock()
	s.goaway = true
	var refused []*tunStream
	var ids []uint32
	for id, st := range s.streams {
		if id > last {
			refused = append(refused, st)
			ids = append(ids, id)
		}
	}
	s.mu.Unlock()
	s.t.log.Info("tunnel: gateway going away", "gateway", s.gw.Addr, "code", code.String(), "last", last)
	s.t.poke()
	for i, st := range refused {
		s.remove(ids[i], st.kind)
		st.onReset(s, ids[i], mux.ResetRefused)
	}
	s.closeIfDrained()
}
