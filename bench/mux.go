package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/httvps/httvps/codec/mux"
	"github.com/httvps/httvps/internal/bytequeue"
)

// muxClient is the harness's client of the HTTVPS native tunnel: Dial opens
// a stream on a shared tunnel (WebSocket on /v1/tunnel), dialled on first
// use and again after it failed or was told to go away; when every tunnel
// has the gateway's MAX_STREAMS open, another tunnel is dialled, as a
// client pool does. It is the harness's own small implementation on
// codec/mux (goroutine per tunnel, windows honoured both ways), so that
// peers are measured with clients of the same make; the reference client is
// measured separately.
type muxClient struct {
	tr    Transport // how to reach the gateway; Path is /v1/tunnel
	token string

	mu   sync.Mutex
	tuns []*muxTunnel
}

// muxPath is the native tunnel's WebSocket path.
const muxPath = "/v1/tunnel"

func newMuxClient(tr Transport, token string) *muxClient {
	tr.Path = muxPath
	tr.Protocols = []string{mux.Subprotocol}
	tr.Header = http.Header{"Authorization": {"Bearer " + token}}
	return &muxClient{tr: tr, token: token}
}

var (
	errMuxClosed = errors.New("bench: tunnel closed")
	errMuxReset  = errors.New("bench: stream reset")
	errTimeout   = errors.New("bench: i/o timeout")
)

// openStream opens a stream on a live tunnel with room for it, dialling a
// tunnel if there is none. The choice and the open are one step under m.mu,
// so concurrent opens never overfill a tunnel.
func (m *muxClient) openStream(ctx context.Context) (*muxStream, dialTimes, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, dt, err := m.tunnelLocked(ctx)
	if err != nil {
		return nil, dt, err
	}
	s, err := t.open()
	return s, dt, err
}

// tunnelLocked returns a live tunnel with room for a stream, dialling one if
// there is none; m.mu held.
func (m *muxClient) tunnelLocked(ctx context.Context) (*muxTunnel, dialTimes, error) {
	live := m.tuns[:0]
	for _, t := range m.tuns {
		if t.usable() {
			live = append(live, t)
		}
	}
	clear(m.tuns[len(live):])
	m.tuns = live
	for _, t := range m.tuns {
		if t.hasRoom() {
			return t, dialTimes{}, nil
		}
	}
	tr := m.tr
	tr.mux, tr.ss = nil, nil
	s, dt, err := tr.dial(ctx)
	if err != nil {
		return nil, dt, err
	}
	t := newMuxTunnel(s)
	if err := t.start(); err != nil {
		s.Close()
		return nil, dt, err
	}
	m.tuns = append(m.tuns, t)
	return t, dt, nil
}

// fresh is a client of the same gateway with tunnels of its own: a cell
// that opens many streams at once starts on empty tunnels, not on ones whose
// closed streams the gateway may still be releasing (it would refuse OPENs
// over MAX_STREAMS).
func (m *muxClient) fresh() *muxClient { return &muxClient{tr: m.tr, token: m.token} }

// close ends the tunnels in use, if any.
func (m *muxClient) close() {
	m.mu.Lock()
	ts := m.tuns
	m.tuns = nil
	m.mu.Unlock()
	for _, t := range ts {
		t.fail(errMuxClosed)
	}
}

// muxTunnel is one tunnel: a reader goroutine dispatches frames to streams.
// Writers append their frames to a shared pending buffer under wmu; the
// first writer to find no write in progress sends what is pending as one
// WebSocket message, and again while more was appended meanwhile (group
// commit), so 64 streams' frames cost a few large writes, not 64 small ones
// in a line behind one lock, and the copy into the buffer overlaps the
// write in progress. Pending bytes are bounded (maxPending): a writer waits
// for the write in progress beyond it.
type muxTunnel struct {
	ws Stream // the WebSocket: Write sends one message, Read returns payload bytes

	wmu      sync.Mutex
	wcond    *sync.Cond // on wmu: a write finished
	pend     []byte     // wsRoom bytes of room, then the frames not yet written, in order
	spare    []byte     // the buffer of the write in progress, reused
	flushing bool       // a writer is sending; others only append
	werr     error      // the first write error: every later write fails

	mu       sync.Mutex
	streams  map[uint32]*muxStream
	waiting  map[*muxStream]struct{} // opened, no ID yet: woken by tunnel-wide changes too
	next     uint32
	peer     mux.Settings // the gateway's SETTINGS (defaults until they come)
	sendWin  int64        // session window for our DATA
	recvUsed int64        // bytes read by streams, not yet credited to the session
	goaway   bool
	err      error
	udpIDs   map[uint32]bool // every udp stream's ID: their DATA is never credited
}

// What the harness announces for the gateway's DATA: windows and frames
// larger than the defaults, as a client built for throughput does (the
// gateway then reads a member in pieces as large as on the Outline paths).
const (
	muxStreamWindow  = 1 << 20
	muxSessionWindow = 16 << 20
	muxMaxFrame      = 256 << 10
)

func newMuxTunnel(ws Stream) *muxTunnel {
	t := &muxTunnel{ws: ws, streams: make(map[uint32]*muxStream), waiting: make(map[*muxStream]struct{}), next: 1, peer: mux.DefaultSettings()}
	t.wcond = sync.NewCond(&t.wmu)
	t.sendWin = int64(t.peer.SessionWindow)
	return t
}

func (t *muxTunnel) start() error {
	s := mux.DefaultSettings()
	s.MaxStreams = 0
	s.StreamWindow, s.SessionWindow, s.MaxFrame = muxStreamWindow, muxSessionWindow, muxMaxFrame
	if err := t.write(mux.AppendSettings(nil, s)); err != nil {
		return err
	}
	go t.readLoop()
	return nil
}

// hasRoom reports whether another stream stays within the gateway's
// MAX_STREAMS (streams not yet closed here count, as they may be open there).
func (t *muxTunnel) hasRoom() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return uint32(len(t.streams)+len(t.waiting)) < t.peer.MaxStreams
}

func (t *muxTunnel) usable() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err == nil && !t.goaway && t.next < 1<<30
}

// maxPending bounds the frames appended while a write is in progress.
const maxPending = 512 << 10

// write sends frames (appended to the pending ones, written by this or the
// writer in progress).
func (t *muxTunnel) write(frames []byte) error {
	return t.appendFrames(func(b []byte) []byte { return append(b, frames...) })
}

// appendFrames appends what add writes to the pending frames and sends
// them unless another writer is at it; add runs under wmu, so frames keep
// the order in which writers got there.
func (t *muxTunnel) appendFrames(add func([]byte) []byte) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	return t.appendLocked(add)
}

func (t *muxTunnel) appendLocked(add func([]byte) []byte) error {
	if err := t.roomLocked(); err != nil {
		return err
	}
	return t.appendNowLocked(add)
}

// roomLocked waits until the pending frames are below maxPending.
func (t *muxTunnel) roomLocked() error {
	for t.werr == nil && t.flushing && len(t.pend) >= wsRoom+maxPending {
		t.wcond.Wait()
	}
	return t.werr
}

// appendNowLocked appends without waiting (after roomLocked), then sends
// unless a write is in progress.
func (t *muxTunnel) appendNowLocked(add func([]byte) []byte) error {
	if t.werr != nil {
		return t.werr
	}
	if len(t.pend) < wsRoom {
		t.pend = make([]byte, wsRoom, 64<<10)
	}
	t.pend = add(t.pend)
	if t.flushing {
		return nil
	}
	t.flushing = true
	for len(t.pend) > wsRoom && t.werr == nil {
		buf := t.pend
		t.pend = t.spare[:min(wsRoom, cap(t.spare))]
		t.wmu.Unlock()
		var err error
		if fw, ok := t.ws.(interface{ writeFramed([]byte) error }); ok {
			err = fw.writeFramed(buf)
		} else {
			_, err = t.ws.Write(buf[wsRoom:])
		}
		t.wmu.Lock()
		t.spare = buf
		if err != nil {
			t.werr = err
		}
		t.wcond.Broadcast()
	}
	t.flushing = false
	t.wcond.Broadcast()
	return t.werr
}

func (t *muxTunnel) fail(err error) {
	t.mu.Lock()
	if t.err == nil {
		t.err = err
	}
	t.wakeAllLocked()
	t.mu.Unlock()
	t.ws.Close()
}

func (t *muxTunnel) readLoop() {
	p := mux.Parser{MaxFrame: muxMaxFrame}
	c, pos := rxBufs.Get(), 0
	defer func() { c.Release() }()
	for {
		if len(c.B)-pos < rxMinRead {
			c.Release()
			c, pos = rxBufs.Get(), 0
		}
		n, err := t.ws.Read(c.B[pos:])
		in := c.B[pos : pos+n]
		pos += n
		for len(in) > 0 {
			ev, k, perr := p.Next(in)
			in = in[k:]
			if perr != nil {
				t.fail(fmt.Errorf("bench: gateway frames: %w", perr))
				return
			}
			if ev.Kind == mux.EventNone {
				break
			}
			if err := t.event(c, ev); err != nil {
				t.fail(err)
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errMuxClosed
			}
			t.fail(err)
			return
		}
	}
}

// event handles one decoded frame (or piece of one) from the gateway; a
// DATA payload is a slice of c.
func (t *muxTunnel) event(c *bytequeue.Buf, ev mux.Event) error {
	h := ev.Header
	switch ev.Kind {
	case mux.EventOpen:
		return fmt.Errorf("bench: gateway opened stream %d", h.Stream)
	case mux.EventData:
		t.mu.Lock()
		defer t.mu.Unlock()
		s := t.streams[h.Stream]
		if s == nil {
			if t.udpIDs[h.Stream] {
				return nil // udp DATA never counts
			}
			// Reset or closed by us: still credit the session.
			t.recvUsed += int64(len(ev.Payload))
			return t.creditLocked()
		}
		if s.udp {
			// One frame, one packet.
			s.part = append(s.part, ev.Payload...)
			if ev.Last {
				if len(s.part) > 0 {
					s.pkts = append(s.pkts, s.part)
					s.part = nil
				}
				if h.FIN() {
					s.eof = true
				}
				s.cond.Broadcast()
			}
			return nil
		}
		if len(ev.Payload) > 0 {
			s.in.Push(c, ev.Payload)
		}
		if ev.Last && h.FIN() {
			s.eof = true
		}
		s.cond.Broadcast()
		return nil
	case mux.EventFrame:
	default:
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch h.Type {
	case mux.TypeSettings:
		st, err := mux.ParseSettings(ev.Payload)
		if err != nil {
			return err
		}
		t.sendWin += int64(st.SessionWindow) - int64(t.peer.SessionWindow)
		for _, s := range t.streams {
			s.sendWin += int64(st.StreamWindow) - int64(t.peer.StreamWindow)
		}
		t.peer = st
	case mux.TypeWindow:
		inc, err := mux.ParseWindow(ev.Payload)
		if err != nil {
			return err
		}
		if h.Stream == 0 {
			t.sendWin += int64(inc)
			t.wakeAllLocked()
		} else if s := t.streams[h.Stream]; s != nil {
			s.sendWin += int64(inc)
			s.cond.Broadcast()
		}
		return nil
	case mux.TypeReset:
		c, err := mux.ParseReset(ev.Payload)
		if err != nil {
			return err
		}
		if s := t.streams[h.Stream]; s != nil {
			s.reset = fmt.Errorf("%w: %v", errMuxReset, c)
			delete(t.streams, h.Stream)
			s.cond.Broadcast()
		}
		return nil
	case mux.TypePing:
		id, err := mux.ParsePing(ev.Payload)
		if err != nil {
			return err
		}
		if h.Flags&mux.FlagACK == 0 {
			go t.write(mux.AppendPing(nil, id, true))
		}
	case mux.TypeGoAway:
		t.goaway = true
	}
	t.wakeAllLocked()
	return nil
}

// wakeAllLocked wakes every stream's waiters (a tunnel-wide change).
func (t *muxTunnel) wakeAllLocked() {
	for _, s := range t.streams {
		s.cond.Broadcast()
	}
	for s := range t.waiting {
		s.cond.Broadcast()
	}
}

// creditLocked sends the session credit once half the window was used.
func (t *muxTunnel) creditLocked() error {
	if t.recvUsed < muxSessionWindow/8 {
		return nil
	}
	inc := uint32(t.recvUsed)
	t.recvUsed = 0
	go t.write(mux.AppendWindow(nil, 0, inc))
	return nil
}

// open starts a stream. Its ID is taken, and its OPEN sent, with the first
// Write (or CloseWrite), so a request and its stream cost one frame and
// OPENs go out in ID order however streams race.
func (t *muxTunnel) open() (*muxStream, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err != nil {
		return nil, t.err
	}
	if t.goaway {
		return nil, errMuxClosed
	}
	s := &muxStream{t: t, sendWin: int64(t.peer.StreamWindow)}
	s.cond = sync.NewCond(&t.mu)
	t.waiting[s] = struct{}{}
	return s, nil
}

// sendOpen gives s its ID and appends its OPEN (with data and fin) in one
// hold of the write lock, with no wait between the two, so OPENs go out in
// ID order.
func (t *muxTunnel) sendOpen(s *muxStream, fin bool, data []byte) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	if err := t.roomLocked(); err != nil {
		return err
	}
	t.mu.Lock()
	if t.err != nil {
		t.mu.Unlock()
		return t.err
	}
	s.id = t.next
	t.next++
	t.streams[s.id] = s
	delete(t.waiting, s)
	kind := mux.KindTCP
	if s.udp {
		kind = mux.KindUDP
		if t.udpIDs == nil {
			t.udpIDs = map[uint32]bool{}
		}
		t.udpIDs[s.id] = true
	}
	t.mu.Unlock()
	return t.appendNowLocked(func(b []byte) []byte { return mux.AppendOpen(b, s.id, kind, fin, data) })
}

// muxStream is one stream of a tunnel; it implements Stream.
type muxStream struct {
	t    *muxTunnel
	id   uint32     // 0 until the OPEN is sent
	cond *sync.Cond // on t.mu: this stream's data, window or end, or a tunnel-wide change

	// Guarded by t.mu.
	opened   bool
	finSent  bool
	eof      bool
	reset    error
	in       bytequeue.Queue // received, not yet read
	used     int64           // read, not yet credited
	sendWin  int64
	deadline time.Time
	timer    *time.Timer

	// udp streams: received packets, whole, and the frame being received.
	udp  bool
	pkts [][]byte
	part []byte
}

// openPacket opens a udp stream (a Shadowsocks UDP association) on a live
// tunnel; its OPEN goes at once, carrying no packet.
func (m *muxClient) openPacket(ctx context.Context) (*muxStream, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, _, err := m.tunnelLocked(ctx)
	if err != nil {
		return nil, err
	}
	s, err := t.open()
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	s.udp, s.opened = true, true
	t.mu.Unlock()
	if err := t.sendOpen(s, false, nil); err != nil {
		return nil, err
	}
	return s, nil
}

// WritePacket sends one packet as one DATA frame (udp streams are not
// flow-controlled).
func (s *muxStream) WritePacket(p []byte) error {
	t := s.t
	t.mu.Lock()
	err := s.errLocked()
	max := int(t.peer.MaxFrame)
	t.mu.Unlock()
	if err != nil {
		return err
	}
	if len(p) > max {
		return fmt.Errorf("bench: %d-byte packet over the gateway's MAX_FRAME %d", len(p), max)
	}
	return t.write(mux.AppendData(make([]byte, 0, mux.HeaderLen+len(p)), s.id, false, p))
}

// ReadPacket returns the next received packet of a udp stream.
func (s *muxStream) ReadPacket(buf []byte) (int, error) {
	t := s.t
	t.mu.Lock()
	defer t.mu.Unlock()
	for len(s.pkts) == 0 && !s.eof && s.reset == nil && t.err == nil {
		if err := s.wait(); err != nil {
			return 0, err
		}
	}
	if len(s.pkts) == 0 {
		switch {
		case s.reset != nil:
			return 0, s.reset
		case s.eof:
			return 0, io.EOF
		}
		return 0, t.err
	}
	p := s.pkts[0]
	s.pkts[0] = nil
	s.pkts = s.pkts[1:]
	if len(p) > len(buf) {
		return 0, fmt.Errorf("%w: %d-byte packet", errServerFrame, len(p))
	}
	return copy(buf, p), nil
}

// wait blocks on the tunnel's condition until the deadline; t.mu held.
func (s *muxStream) wait() error {
	if !s.deadline.IsZero() {
		if !time.Now().Before(s.deadline) {
			return errTimeout
		}
		if s.timer == nil {
			s.timer = time.AfterFunc(time.Until(s.deadline), func() {
				s.t.mu.Lock()
				s.cond.Broadcast()
				s.t.mu.Unlock()
			})
		}
	}
	s.cond.Wait()
	return nil
}

func (s *muxStream) Write(p []byte) (int, error) {
	t := s.t
	done := 0
	for len(p) > 0 || !s.opened {
		t.mu.Lock()
		for t.err == nil && s.reset == nil && (s.sendWin <= 0 || t.sendWin <= 0) && len(p) > 0 {
			if err := s.wait(); err != nil {
				t.mu.Unlock()
				return done, err
			}
		}
		if err := s.errLocked(); err != nil {
			t.mu.Unlock()
			return done, err
		}
		n := min(int64(len(p)), s.sendWin, t.sendWin, int64(t.peer.MaxFrame))
		s.sendWin -= n
		t.sendWin -= n
		first := !s.opened
		s.opened = true
		t.mu.Unlock()
		var err error
		if first {
			err = t.sendOpen(s, false, p[:n])
		} else {
			data := p[:n]
			err = t.appendFrames(func(b []byte) []byte { return mux.AppendData(b, s.id, false, data) })
		}
		if err != nil {
			return done, err
		}
		done += int(n)
		p = p[n:]
	}
	return done, nil
}

func (s *muxStream) errLocked() error {
	if s.reset != nil {
		return s.reset
	}
	if s.t.err != nil {
		return s.t.err
	}
	if s.finSent {
		return errMuxClosed
	}
	return nil
}

func (s *muxStream) Read(p []byte) (int, error) {
	t := s.t
	t.mu.Lock()
	if err := s.waitDataLocked(); err != nil {
		t.mu.Unlock()
		return 0, err
	}
	n := s.in.Read(p)
	return n, s.consumedUnlock(n)
}

// readChunks consumes at most limit of the stream's bytes without copying
// them: fn gets each received chunk in turn (outside the tunnel's lock),
// as a download's hash does. It returns how many bytes fn got, and
// io.EOF once the stream ended with nothing left.
func (s *muxStream) readChunks(limit int64, fn func([]byte)) (int64, error) {
	var done int64
	buf := make([]byte, 0, 4096)
	for done < limit {
		t := s.t
		t.mu.Lock()
		if err := s.waitDataLocked(); err != nil {
			t.mu.Unlock()
			return done, err
		}
		if int64(s.in.Len()) > limit-done {
			// More than asked for (the peer sent past the end): copy only
			// what was asked.
			n := s.in.Read(buf[:min(int64(cap(buf)), limit-done)])
			err := s.consumedUnlock(n)
			fn(buf[:n])
			done += int64(n)
			if err != nil {
				return done, err
			}
			continue
		}
		seg, b := s.in.Take()
		err := s.consumedUnlock(len(seg))
		fn(seg)
		b.Release()
		done += int64(len(seg))
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// waitDataLocked waits until the stream has bytes to read; with none, and
// the stream over, it returns io.EOF, the reset or the tunnel's error.
func (s *muxStream) waitDataLocked() error {
	t := s.t
	for s.in.Len() == 0 && !s.eof && s.reset == nil && t.err == nil {
		if err := s.wait(); err != nil {
			return err
		}
	}
	if s.in.Len() == 0 {
		err := io.EOF
		if s.reset != nil {
			err = s.reset
		} else if !s.eof {
			err = t.err
		}
		return err
	}
	return nil
}

// consumedUnlock books n bytes read, unlocks t.mu and sends the credit
// that is due.
func (s *muxStream) consumedUnlock(n int) error {
	t := s.t
	s.used += int64(n)
	t.recvUsed += int64(n)
	var frames []byte
	if s.used >= muxStreamWindow/8 && !s.eof {
		frames = mux.AppendWindow(frames, s.id, uint32(s.used))
		s.used = 0
	}
	if t.recvUsed >= muxSessionWindow/8 {
		frames = mux.AppendWindow(frames, 0, uint32(t.recvUsed))
		t.recvUsed = 0
	}
	t.mu.Unlock()
	if frames != nil {
		return t.write(frames)
	}
	return nil
}

// CloseWrite sends FIN (with the OPEN if nothing was written yet).
func (s *muxStream) CloseWrite() error {
	t := s.t
	t.mu.Lock()
	if err := s.errLocked(); err != nil {
		t.mu.Unlock()
		return err
	}
	first := !s.opened
	s.opened, s.finSent = true, true
	t.mu.Unlock()
	if first {
		return t.sendOpen(s, true, nil)
	}
	return t.appendFrames(func(b []byte) []byte { return mux.AppendData(b, s.id, true, nil) })
}

// Close resets the stream unless both directions already ended.
func (s *muxStream) Close() error {
	t := s.t
	t.mu.Lock()
	_, live := t.streams[s.id]
	if live {
		delete(t.streams, s.id)
	}
	delete(t.waiting, s)
	done := s.finSent && s.eof
	opened := s.opened
	if s.timer != nil {
		s.timer.Stop()
	}
	// What was received and not read still counts for the session.
	t.recvUsed += int64(s.in.Reset())
	err := t.err
	t.mu.Unlock()
	if !live || done || !opened || err != nil {
		return nil
	}
	return t.write(mux.AppendReset(nil, s.id, mux.ResetCancel))
}

func (s *muxStream) SetDeadline(d time.Time) error {
	s.t.mu.Lock()
	s.deadline = d
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	s.cond.Broadcast()
	s.t.mu.Unlock()
	return nil
}
