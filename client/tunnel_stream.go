package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/httvps/httvps/codec/mux"
	"github.com/httvps/httvps/internal/bytequeue"
)

// ErrStreamWriteClosed: a write after CloseWrite.
var ErrStreamWriteClosed = errors.New("client: write after CloseWrite")

// replayMax bounds the bytes a stream keeps for a retry after REFUSED
// (sent, the gateway not having answered anything yet); past it the stream
// is not retried. Until the gateway answers, a stream cannot send more than
// its initial window (256 KiB by default), so this bound is seldom reached.
const replayMax = 1 << 20

// maxRetries bounds how often one stream is opened again after REFUSED.
const maxRetries = 5

// tunStream is one stream of a Tunnel (tcp, or udp behind tunPacket). It
// opens lazily: the OPEN carries the first Write's bytes.
type tunStream struct {
	t    *Tunnel
	kind mux.Kind
	wmu  sync.Mutex // one writer at a time; held while (re)opening

	mu   sync.Mutex // guards the fields below
	cond sync.Cond  // on mu: data, window, state changes, deadlines
	sess *tunSession
	id   uint32 // 0: not open on sess
	// reserved is the session holding a stream slot for this stream's OPEN
	// (taken by acquire, given back by the OPEN or by Close).
	reserved *tunSession
	// avoid is the session that refused the stream last.
	avoid      *tunSession
	reopen     bool // refused: open again (with replay) before anything else
	kicked     bool // a Read asked for the OPEN
	accepted   bool // the gateway sent something for the stream: no retry from here on
	replay     []byte
	replayLost bool
	retries    int
	sendWin    int64
	finQueued  bool // CloseWrite called
	finSent    bool // FIN sent on the current session
	remoteFin  bool
	err        error // terminal (reset, tunnel lost)
	closed     bool
	readClosed bool
	uncounted  bool
	rq         bytequeue.Queue // tcp: received, unread
	recvWin    int64           // tcp: what the gateway may still send on the stream
	recvCredit int64           // tcp: read, not yet given back with WINDOW
	pkts       [][]byte
	pktBytes   int
	pkt        []byte // udp: the packet being received
	pktDrop    bool   // udp: the packet being received is over the limit
	rdl, wdl   time.Time
}

func newTunStream(t *Tunnel, k mux.Kind, s *tunSession) *tunStream {
	st := &tunStream{t: t, kind: k, sess: s, reserved: s}
	st.cond.L = &st.mu
	return st
}

func (st *tunStream) wake() {
	st.mu.Lock()
	st.cond.Broadcast()
	st.mu.Unlock()
}

// wait blocks on cond until woken or dl passes (os.ErrDeadlineExceeded).
// Called with mu held.
func (st *tunStream) wait(dl time.Time) error {
	if !dl.IsZero() {
		d := time.Until(dl)
		if d <= 0 {
			return os.ErrDeadlineExceeded
		}
		tm := time.AfterFunc(d, st.wake)
		defer tm.Stop()
	}
	st.cond.Wait()
	if !dl.IsZero() && !time.Now().Before(dl) {
		return os.ErrDeadlineExceeded
	}
	return nil
}

// noteSentLocked keeps sent bytes for a retry while the gateway has not
// answered (tcp only: a lost udp packet is just lost).
func (st *tunStream) noteSentLocked(p []byte) {
	if st.kind != mux.KindTCP || st.accepted || st.replayLost {
		return
	}
	if len(st.replay)+len(p) > replayMax {
		st.replay, st.replayLost = nil, true
		return
	}
	st.replay = append(st.replay, p...)
}

// openLocked opens the stream on a usable session (acquiring one if its
// own is gone) with first data; it returns how much of first went. The
// caller holds wmu, not mu.
func (st *tunStream) openLocked(first []byte, fin bool) (int, error) {
	for {
		st.mu.Lock()
		if err := st.stateErrLocked(); err != nil {
			st.mu.Unlock()
			return 0, err
		}
		s, avoid := st.sess, st.avoid
		st.mu.Unlock()
		if s == nil {
			ctx, cancel := context.WithTimeout(context.Background(), st.t.cfg.DialTimeout)
			var err error
			s, err = st.t.acquire(ctx, avoid)
			cancel()
			if err != nil {
				st.fail(err)
				return 0, err
			}
			st.mu.Lock()
			if err := st.stateErrLocked(); err != nil {
				st.mu.Unlock()
				s.unreserve()
				return 0, err
			}
			st.sess, st.reserved = s, s
			st.mu.Unlock()
		}
		k, err := s.open(st, first, fin)
		if errors.Is(err, errSessionUnusable) {
			st.mu.Lock()
			if st.sess == s && st.id == 0 {
				st.sess = nil
			}
			st.mu.Unlock()
			continue
		}
		return k, err
	}
}

func (st *tunStream) stateErrLocked() error {
	switch {
	case st.closed:
		return ErrStreamClosed
	case st.err != nil:
		return st.err
	}
	return nil
}

// fail ends the stream with err (the caller has not got mu).
func (st *tunStream) fail(err error) {
	st.mu.Lock()
	if st.err == nil {
		st.err = err
	}
	st.cond.Broadcast()
	st.mu.Unlock()
	st.uncount()
}

// reopenLocked opens a refused stream again and sends what it had sent,
// and its FIN. The caller holds wmu, not mu.
func (st *tunStream) reopenLocked() error {
	st.mu.Lock()
	if !st.reopen {
		st.mu.Unlock()
		return nil
	}
	data, fin := st.replay, st.finSent
	st.replay, st.finSent, st.reopen = nil, false, false
	st.mu.Unlock()
	for {
		n, err := st.sendSome(data, fin)
		if err != nil {
			return err
		}
		data = data[n:]
		if len(data) == 0 {
			st.mu.Lock()
			done := !fin || st.finSent
			st.mu.Unlock()
			if done {
				return nil
			}
		}
	}
}

// sendSome sends one frame of p (the OPEN if the stream is not open yet),
// as much as the windows allow, waiting for credit; fin is set on the
// frame that carries the end of p. It returns the bytes of p sent. The
// caller holds wmu.
func (st *tunStream) sendSome(p []byte, fin bool) (int, error) {
	whole := len(p)
	mf := 0 // the gateway's MAX_FRAME (tcp)
	st.mu.Lock()
	for {
		if err := st.stateErrLocked(); err != nil {
			st.mu.Unlock()
			return 0, err
		}
		if st.reopen {
			st.mu.Unlock()
			if err := st.reopenLocked(); err != nil {
				return 0, err
			}
			st.mu.Lock()
			continue
		}
		if st.id == 0 {
			st.mu.Unlock()
			n, err := st.openLocked(p, fin)
			if err == nil {
				st.t.up.Add(int64(n))
			}
			return n, err
		}
		if st.kind == mux.KindUDP {
			if len(p) > st.sess.maxFrame() {
				st.mu.Unlock()
				return 0, ErrPacketTooLarge
			}
			break
		}
		if len(p) == 0 {
			break
		}
		if st.sendWin > 0 {
			k, maxFrame := st.sess.takeSendWin(st, min(int64(len(p)), st.sendWin, dataBatchMax))
			if k > 0 {
				p, mf = p[:k], int(maxFrame)
				break
			}
		}
		if err := st.wait(st.wdl); err != nil {
			st.mu.Unlock()
			return 0, err
		}
	}
	// p is now what goes in this frame.
	fin = fin && len(p) == whole
	if st.kind == mux.KindTCP {
		st.sendWin -= int64(len(p))
	}
	if fin {
		st.finSent = true
	}
	st.noteSentLocked(p)
	s, id := st.sess, st.id
	st.mu.Unlock()
	// Up to dataBatchMax bytes go as DATA frames of at most MAX_FRAME in
	// one WebSocket message: one write (and one TLS batch) for them all.
	frames := 1
	if mf > 0 && len(p) > mf {
		frames = (len(p) + mf - 1) / mf
	}
	bp := getFrameBuf(len(p) + (frames-1)*mux.HeaderLen)
	b := (*bp)[:wsHeaderRoom]
	for off := 0; ; {
		k := len(p) - off
		if frames > 1 {
			k = min(k, mf)
		}
		last := off+k == len(p)
		b = mux.AppendData(b, id, fin && last, p[off:off+k])
		off += k
		if last {
			break
		}
	}
	err := s.send(b)
	*bp = b
	putFrameBuf(bp)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrTunnelLost, err)
	}
	st.t.up.Add(int64(len(p)))
	st.doneIfBothEnded(s, id)
	return len(p), nil
}

func (st *tunStream) Write(p []byte) (int, error) {
	st.wmu.Lock()
	defer st.wmu.Unlock()
	st.mu.Lock()
	if st.finQueued {
		st.mu.Unlock()
		return 0, ErrStreamWriteClosed
	}
	st.mu.Unlock()
	n := 0
	for n < len(p) {
		k, err := st.sendSome(p[n:], false)
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// CloseWrite sends FIN: the gateway shuts down the member connection's
// write side; reading goes on.
func (st *tunStream) CloseWrite() error {
	st.wmu.Lock()
	defer st.wmu.Unlock()
	st.mu.Lock()
	if st.finQueued {
		st.mu.Unlock()
		return nil
	}
	st.finQueued = true
	st.mu.Unlock()
	_, err := st.sendSome(nil, true)
	return err
}

// ensureOpen sends the OPEN for a Read that came before any Write, or the
// retry of a refused stream that no writer is sending.
func (st *tunStream) ensureOpen() {
	st.wmu.Lock()
	defer st.wmu.Unlock()
	st.mu.Lock()
	reopen, open := st.reopen, st.id != 0
	st.mu.Unlock()
	switch {
	case reopen:
		st.reopenLocked()
	case !open:
		st.sendSome(nil, false)
	}
}

func (st *tunStream) Read(p []byte) (int, error) {
	st.mu.Lock()
	for {
		if st.rq.Len() > 0 {
			if len(p) == 0 {
				st.mu.Unlock()
				return 0, nil
			}
			k := st.rq.Read(p) // a drained queue holds no buffer
			st.creditLocked(k)
			st.mu.Unlock()
			st.t.down.Add(int64(k))
			return k, nil
		}
		switch {
		case st.remoteFin || st.readClosed:
			st.mu.Unlock()
			return 0, io.EOF
		case st.closed:
			st.mu.Unlock()
			return 0, ErrStreamClosed
		case st.err != nil:
			err := st.err
			st.mu.Unlock()
			return 0, err
		}
		if st.id == 0 && !st.kicked && !st.reopen {
			st.kicked = true
			go st.ensureOpen()
		}
		if err := st.wait(st.rdl); err != nil {
			st.mu.Unlock()
			return 0, err
		}
	}
}

// readable waits (within the read deadline) until the stream holds bytes
// to read or its read side has ended, so a reader can wait holding no
// buffer; what ended it, Read reports.
func (st *tunStream) readable() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	for st.rq.Len() == 0 {
		if st.remoteFin || st.readClosed || st.closed || st.err != nil {
			return nil
		}
		if st.id == 0 && !st.kicked && !st.reopen {
			st.kicked = true
			go st.ensureOpen()
		}
		if err := st.wait(st.rdl); err != nil {
			return err
		}
	}
	return nil
}

// buffered is how many received bytes wait to be read.
func (st *tunStream) buffered() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.rq.Len()
}

// creditLocked gives back n read (or dropped) bytes to the stream: WINDOW
// on it at half its window. The session's share went back on arrival.
func (st *tunStream) creditLocked(n int) {
	s := st.sess
	if s == nil || st.kind != mux.KindTCP {
		return
	}
	st.recvCredit += int64(n)
	if st.recvCredit >= int64(st.t.cfg.StreamWindow)/2 && !st.remoteFin && st.err == nil && st.id != 0 {
		inc, id := st.recvCredit, st.id
		st.recvCredit = 0
		st.recvWin += inc
		s.queueWindow(id, uint32(inc))
	}
}

// onData: a piece of DATA for the stream (reader goroutine); p is a slice
// of b, the reader's Buf.
func (st *tunStream) onData(s *tunSession, id uint32, b *bytequeue.Buf, p []byte, fin bool) {
	st.mu.Lock()
	if st.sess != s || st.id != id {
		st.mu.Unlock()
		s.consumed(len(p))
		return
	}
	st.accepted, st.replay = true, nil
	if st.err != nil || st.closed || st.readClosed {
		st.mu.Unlock()
		s.consumed(len(p))
		return
	}
	st.recvWin -= int64(len(p))
	code := mux.ResetCode(0)
	switch {
	case st.recvWin < 0:
		code = mux.ResetFlowControl
	case st.remoteFin:
		code = mux.ResetProtocol // DATA after FIN
	}
	if code != 0 {
		st.err = &StreamResetError{Code: code}
		st.cond.Broadcast()
		st.mu.Unlock()
		s.consumed(len(p))
		s.queue(func(b []byte) []byte { return mux.AppendReset(b, id, code) })
		s.remove(id, st.kind)
		st.uncount()
		return
	}
	st.rq.Push(b, p)
	if fin {
		st.remoteFin = true
	}
	st.cond.Broadcast()
	st.mu.Unlock()
	// The session is credited on arrival, not on the application's read:
	// rq is bounded by the stream window (recvWin above), so memory stays
	// bounded by streams × (stream window + the MaxShared reader Bufs a
	// queue may pin, 1 MiB), and ~16 streams nobody reads
	// (the session window is 16 stream windows) cannot starve the others.
	s.consumed(len(p))
	if fin {
		st.doneIfBothEnded(s, id)
	}
}

// doneIfBothEnded frees the session's slot once FIN went both ways.
func (st *tunStream) doneIfBothEnded(s *tunSession, id uint32) {
	st.mu.Lock()
	done := st.sess == s && st.id == id && st.finSent && st.remoteFin
	st.mu.Unlock()
	if done {
		s.remove(id, st.kind)
	}
}

func (st *tunStream) onWindow(s *tunSession, id uint32, inc uint32) {
	st.mu.Lock()
	if st.sess != s || st.id != id {
		st.mu.Unlock()
		return
	}
	st.accepted, st.replay = true, nil
	if st.sendWin+int64(inc) > mux.MaxWindow {
		st.err = &StreamResetError{Code: mux.ResetFlowControl}
		st.cond.Broadcast()
		st.mu.Unlock()
		s.queue(func(b []byte) []byte { return mux.AppendReset(b, id, mux.ResetFlowControl) })
		s.remove(id, st.kind)
		st.uncount()
		return
	}
	st.sendWin += int64(inc)
	st.cond.Broadcast()
	st.mu.Unlock()
}

// addSendWin applies a SETTINGS change of the stream window.
func (st *tunStream) addSendWin(s *tunSession, d int64) {
	st.mu.Lock()
	if st.sess == s {
		st.sendWin += d
		st.cond.Broadcast()
	}
	st.mu.Unlock()
}

// onReset: the gateway reset the stream (or GOAWAY left it out). REFUSED
// before the gateway answered anything opens it again elsewhere.
func (st *tunStream) onReset(s *tunSession, id uint32, code mux.ResetCode) {
	st.mu.Lock()
	if st.sess != s || st.id != id {
		st.mu.Unlock()
		return
	}
	if code == mux.ResetRefused {
		st.t.refused.Add(1)
	}
	retry := code == mux.ResetRefused && !st.accepted && !st.replayLost && st.retries < maxRetries && !st.closed
	if retry {
		st.retries++
		st.sess, st.id, st.avoid, st.reopen = nil, 0, s, true
		st.sendWin = 0
		st.cond.Broadcast()
		st.mu.Unlock()
		s.t.log.Debug("tunnel: stream refused, opening it again", "gateway", s.gw.Addr, "stream", id)
		go st.ensureOpen()
		return
	}
	if st.err == nil {
		st.err = &StreamResetError{Code: code}
	}
	st.cond.Broadcast()
	st.mu.Unlock()
	st.uncount()
}

// retryOpen takes back an OPEN whose write failed (its k bytes of data and
// its FIN) so the stream opens elsewhere; false if it may not be retried.
func (st *tunStream) retryOpen(s *tunSession, id uint32, k int, fin bool) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.sess != s || st.id != id || st.accepted || st.replayLost || st.retries >= maxRetries {
		return false
	}
	st.retries++
	if st.kind == mux.KindTCP {
		st.replay = st.replay[:len(st.replay)-k]
	}
	if fin {
		st.finSent = false
	}
	st.sess, st.id, st.avoid = nil, 0, s
	return true
}

// onSessionDead: the stream's tunnel ended. A stream not yet open there
// opens on another; an open one ends (the member may have seen its bytes).
func (st *tunStream) onSessionDead(s *tunSession, err error) {
	st.mu.Lock()
	if st.sess != s {
		st.mu.Unlock()
		return
	}
	if st.id == 0 {
		st.sess = nil
		st.cond.Broadcast()
		st.mu.Unlock()
		return
	}
	if st.err == nil && !(st.finSent && st.remoteFin) {
		st.err = fmt.Errorf("%w: %w", ErrTunnelLost, err)
	}
	st.cond.Broadcast()
	st.mu.Unlock()
	st.uncount()
}

// uncount takes the stream out of Status.Streams, once.
func (st *tunStream) uncount() {
	st.mu.Lock()
	done := st.uncounted
	st.uncounted = true
	st.mu.Unlock()
	if !done {
		st.t.streams.Add(-1)
	}
}

// Close ends both directions: RESET CANCEL unless FIN went both ways.
func (st *tunStream) Close() error {
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return nil
	}
	st.closed = true
	s, id, reserved := st.sess, st.id, st.reserved
	reset := id != 0 && st.err == nil && !(st.finSent && st.remoteFin)
	st.reserved = nil
	// Unread bytes were credited to the session on arrival (onData), so
	// dropping them takes nothing from the tunnel's other streams.
	st.rq.Reset()
	st.pkts, st.replay = nil, nil
	st.cond.Broadcast()
	st.mu.Unlock()
	switch {
	case reset:
		s.queue(func(b []byte) []byte { return mux.AppendReset(b, id, mux.ResetCancel) })
		s.remove(id, st.kind)
	case reserved != nil:
		reserved.unreserve()
	}
	st.uncount()
	return nil
}

// CloseRead drops what arrives from now on (credited back at once).
func (st *tunStream) CloseRead() error {
	st.mu.Lock()
	st.readClosed = true
	if n := st.rq.Reset(); n > 0 {
		st.creditLocked(n)
	}
	st.cond.Broadcast()
	st.mu.Unlock()
	return nil
}

func (st *tunStream) SetDeadline(t time.Time) error {
	st.mu.Lock()
	st.rdl, st.wdl = t, t
	st.cond.Broadcast()
	st.mu.Unlock()
	return nil
}

func (st *tunStream) SetReadDeadline(t time.Time) error {
	st.mu.Lock()
	st.rdl = t
	st.cond.Broadcast()
	st.mu.Unlock()
	return nil
}

func (st *tunStream) SetWriteDeadline(t time.Time) error {
	st.mu.Lock()
	st.wdl = t
	st.cond.Broadcast()
	st.mu.Unlock()
	return nil
}

// dataBatchMax is the most payload one sendSome sends: DATA frames of at
// most MAX_FRAME each, in one WebSocket message (so one TLS batch, which
// takes batchMax).
const dataBatchMax = 240 << 10

// frameBufs holds DATA frame buffers (room for the WebSocket header, the
// mux header and a default-size payload); batchBufs those of a batch of
// frames; larger ones are not kept.
var (
	frameBufs = sync.Pool{New: func() any {
		b := make([]byte, 0, wsHeaderRoom+mux.HeaderLen+mux.DefaultMaxFrame)
		return &b
	}}
	frameBatchBufs = sync.Pool{New: func() any {
		b := make([]byte, 0, frameBatchCap)
		return &b
	}}
)

// frameBatchCap holds dataBatchMax bytes in frames of 16 KiB or more.
const frameBatchCap = wsHeaderRoom + mux.HeaderLen*16 + dataBatchMax

// getFrameBuf returns a buffer for n bytes of payload (their frame
// headers counted in n, but one).
func getFrameBuf(n int) *[]byte {
	switch {
	case n <= mux.DefaultMaxFrame:
		return frameBufs.Get().(*[]byte)
	case wsHeaderRoom+mux.HeaderLen+n <= frameBatchCap:
		return frameBatchBufs.Get().(*[]byte)
	}
	b := make([]byte, 0, wsHeaderRoom+mux.HeaderLen+n)
	return &b
}

func putFrameBuf(bp *[]byte) {
	switch cap(*bp) {
	case wsHeaderRoom + mux.HeaderLen + mux.DefaultMaxFrame:
		frameBufs.Put(bp)
	case frameBatchCap:
		frameBatchBufs.Put(bp)
	}
}

// tunAddr names a stream's end: the tunnel's gateway.
type tunAddr string

func (a tunAddr) Network() string { return "httvps" }
func (a tunAddr) String() string  { return string(a) }

func (st *tunStream) LocalAddr() net.Addr { return tunAddr("client") }
func (st *tunStream) RemoteAddr() net.Addr {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.sess != nil {
		return tunAddr(st.sess.gw.Addr)
	}
	return tunAddr("")
}
