package gateway

import (
	"crypto/tls"
	"errors"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/httvps/httvps/bufpool"
	"github.com/httvps/httvps/codec/tls12"
	"github.com/httvps/httvps/codec/tls13"
	"github.com/httvps/httvps/internal/rawio"
)

// After the handshake the gateway runs the TLS record layer itself, on the
// relay loop (docs/04-gateway-design.md, "TLS"): records from the client are
// decrypted in place in the loop's scratch buffer and fed to the frame
// parser; frames for the client are sealed straight into the loop's output
// buffer. A session holds only its keys; a record split across reads is the
// one thing kept between reads, in a pooled buffer released when completed.

const (
	alertCloseNotify = 0

	contentAlert     = 21
	contentHandshake = 22
	contentAppData   = 23

	// maxTLSRecord bounds a record a client may send (TLS 1.2 allows 2048
	// bytes of expansion, TLS 1.3 256).
	maxTLSRecord = 5 + 1<<14 + 2048
	// maxTLSPlain is the largest plaintext we put in one record.
	maxTLSPlain = 1 << 14
	// maxRecordOverhead bounds what sealing adds to a record's plaintext:
	// header 5, explicit nonce 8 (TLS 1.2) or inner type 1 (TLS 1.3), tag
	// 16, with room to spare.
	maxRecordOverhead = 64
	// keyUpdateAfter is our write sequence number at which we move to the
	// next traffic secret ourselves (TLS 1.3), far inside the AES-GCM limit
	// of RFC 8446 §5.5.
	keyUpdateAfter = 1 << 24
)

// recordLayer is one TLS version's record protection for a server.
type recordLayer interface {
	recordLen(hdr []byte) (int, error)
	open(rec []byte) (plain []byte, ct uint8, err error)
	// post is given every opened record in order; it handles what is not
	// application data. It returns errCloseNotify for a clean end, and
	// reports whether a KeyUpdate must be sent in reply.
	post(ct uint8, content []byte) (reply bool, err error)
	seal(dst []byte, ct uint8, payload []byte) ([]byte, error)
	// sealAlert appends an alert record at the level its version uses.
	sealAlert(dst []byte, desc uint8) ([]byte, error)
	// sealKeyUpdate appends a KeyUpdate and switches our key (TLS 1.3).
	sealKeyUpdate(dst []byte) ([]byte, error)
	needKeyUpdate() bool
	alertFor(err error) (uint8, bool)
	// park lets go of both directions' expanded AEAD state while the
	// session is idle; the next record rebuilds it (see tlsParkAfter). It
	// reports whether anything was dropped.
	park() bool
	clear()
}

// tlsParkAfter is how long a TLS session must go without traffic before its
// AEAD key schedules (about 1.4 KiB with AES-GCM, both directions) are
// dropped; they are rebuilt from the kept keys, in about a microsecond, by
// the next record. Most sessions of a busy edge node are idle most of the
// time, so this is most of a TLS session's memory beyond the plaintext one.
const tlsParkAfter = 2 * time.Second

var errCloseNotify = errors.New("gateway: tls close_notify")

// tlsSession is the TLS state of one connection: owned by the handshake
// goroutine until the hand-off, then by the session's loop goroutine (or,
// for a connection handed to the fallback, split between its two
// goroutines: fallbackConn says which side each uses).
type tlsSession struct {
	rl     recordLayer
	rin    *[]byte // partial record carried to the next read
	rinLen int
	// replyKU: a KeyUpdate reply is due before our next record. Atomic
	// because the fallback's reading goroutine sets it and its writing
	// goroutine takes it; on a relay loop both are the loop.
	replyKU  atomic.Bool
	parked   bool  // counted in Gateway.reclaim.parked
	parkedAt int64 // loop clock when parked
}

// parkIdle parks the keys of a session idle since last for tlsParkAfter,
// and keeps the gateway's count of parked sessions: a session that had
// traffic since it was parked (its keys were rebuilt) no longer counts.
func (t *tlsSession) parkIdle(g *Gateway, now, last int64) {
	if t.parked && last > t.parkedAt {
		t.unpark(g)
	}
	if !t.parked && now-last > int64(tlsParkAfter) && t.rl.park() {
		t.parked, t.parkedAt = true, now
		g.reclaim.parked.Add(1)
	}
}

// unpark takes the session out of the parked count.
func (t *tlsSession) unpark(g *Gateway) {
	if t.parked {
		t.parked = false
		g.reclaim.parked.Add(-1)
	}
}

// release drops a carried partial record; it returns the bytes dropped.
func (t *tlsSession) release() int {
	if t.rin == nil {
		return 0
	}
	n := t.rinLen
	bufpool.Put(t.rin)
	t.rin, t.rinLen = nil, 0
	return n
}

func (t *tlsSession) clear() { t.rl.clear() }

// seal protects p into application data records in the loop's output buffer.
// The result is valid until the next seal on this loop.
func (t *tlsSession) seal(l *loop, p []byte) ([]byte, error) {
	return t.sealTo(l.out[:0], p)
}

// sealTo appends p to dst as application data records of at most
// maxTLSPlain bytes each, after a KeyUpdate when one is due (the client
// asked for one, RFC 8446 §4.6.3, or our sequence number is at
// keyUpdateAfter). It is the one record-sealing loop: relay frames (seal) and
// decoy answers (Gateway.sendAnswer) both go through it. dst needs room for
// sealedLen(len(p)) bytes or it grows.
func (t *tlsSession) sealTo(dst, p []byte) ([]byte, error) {
	var err error
	// Load before Swap: every record passes here, and a plain load costs
	// no locked instruction when no KeyUpdate is due (almost always).
	if (t.replyKU.Load() && t.replyKU.Swap(false)) || t.rl.needKeyUpdate() {
		if dst, err = t.rl.sealKeyUpdate(dst); err != nil {
			return nil, err
		}
	}
	for len(p) > 0 {
		k := min(len(p), maxTLSPlain)
		if dst, err = t.rl.seal(dst, contentAppData, p[:k]); err != nil {
			return nil, err
		}
		p = p[k:]
	}
	return dst, nil
}

// open opens one complete record in place and gives it to the record
// layer's post: a KeyUpdate the client asks to be answered becomes due
// (sealTo sends it), the client's close_notify is errCloseNotify. It is the
// one record-opening step: the handshake's request (readTLSRequest), the
// relay (session.openRecords) and the fallback (fallbackConn.openRecords)
// all open through it.
func (t *tlsSession) open(rec []byte) (plain []byte, ct uint8, err error) {
	if plain, ct, err = t.rl.open(rec); err != nil {
		return nil, 0, err
	}
	reply, err := t.rl.post(ct, plain)
	if reply {
		t.replyKU.Store(true)
	}
	return plain, ct, err
}

// sealedLen bounds the records sealTo makes of n plaintext bytes, with a
// KeyUpdate and an alert: each record adds at most maxRecordOverhead.
func sealedLen(n int) int { return n + (n/maxTLSPlain+3)*maxRecordOverhead }

// sealControl is seal for a small frame (a control frame, at most 2+125
// bytes) that the caller keeps on its stack: the record layer is an
// interface, so seal's argument escapes; the frame is copied to the far end
// of the loop's output buffer, which the record sealed from it never reaches.
func (t *tlsSession) sealControl(l *loop, frame []byte) ([]byte, error) {
	tail := l.out[cap(l.out)-len(frame) : cap(l.out)]
	copy(tail, frame)
	return t.seal(l, tail)
}

// alert seals one alert record into the loop's output buffer.
func (t *tlsSession) alert(l *loop, desc uint8) ([]byte, error) {
	return t.rl.sealAlert(l.out[:0], desc)
}

// readClientTLS reads ciphertext, opens every complete record in place and
// relays the plaintext frames; a trailing partial record is kept.
func (s *session) readClientTLS() {
	l, t := s.l, s.tls
	size := s.clientReadSize()
	if size == 0 {
		return // out of credit: setInterest leaves the client out of epoll
	}
	off := 0
	if t.rin != nil {
		off = copy(l.scratch, (*t.rin)[:t.rinLen])
		l.g.m.Buffered(-t.release())
	}
	n, err := rawio.Read(int(s.cfd), l.scratch[off:off+size])
	if n <= 0 {
		if (err == unix.EAGAIN || err == unix.EINTR) && off > 0 {
			s.keepPartial(l.scratch[:off])
		}
		s.clientEOF(err)
		return
	}
	if !s.clientBytes(n) {
		return
	}
	s.openRecords(l.scratch[:off+n])
}

// openRecords opens every complete record in data (in place), relays the
// application data, answers the last ping of all its records at once
// and keeps a trailing partial record.
func (s *session) openRecords(data []byte) {
	l, t := s.l, s.tls
	iov := l.iov[:0]
	var pg pong
	for len(data) >= 5 {
		rlen, err := t.rl.recordLen(data)
		if err != nil {
			s.flushPieces(iov)
			s.tlsFail(err)
			return
		}
		if len(data) < rlen {
			break
		}
		plain, ct, err := t.open(data[:rlen])
		data = data[rlen:]
		if err != nil {
			if !s.flushPieces(iov) {
				return
			}
			if errors.Is(err, errCloseNotify) {
				// The client's TLS stream ended: like TCP EOF.
				s.answer(&pg)
				s.clientEOF(nil)
				if !s.dead() {
					s.setInterest()
				}
				return
			}
			s.tlsFail(err)
			return
		}
		if ct != contentAppData || s.clientClosed() || len(plain) == 0 {
			continue
		}
		var ok bool
		if iov, ok = s.frames(plain, iov, &pg); !ok {
			return
		}
	}
	if !s.flushPieces(iov) {
		return
	}
	s.answer(&pg)
	if len(data) > 0 && !s.dead() {
		s.keepPartial(data)
	}
}

func (s *session) keepPartial(p []byte) {
	t := s.tls
	t.rin = bufpool.Get(len(p))
	t.rinLen = copy(*t.rin, p)
	s.l.g.m.Buffered(t.rinLen)
}

// tlsFail ends a session whose record layer failed: send the alert RFC 8446
// §6 names for the error (none after the peer's own error alert), then close.
// err is the session's cause, logged by finish with its end.
func (s *session) tlsFail(err error) {
	if desc, send := s.tls.rl.alertFor(err); send && !s.closeSent() {
		if out, aerr := s.tls.alert(s.l, desc); aerr == nil {
			s.writeRaw(out)
		}
	}
	if s.dead() {
		return
	}
	s.end, s.cause = EndProtocol, err
	s.stopRelaying()
}

// tls13Layer is the TLS 1.3 record layer (RFC 8446 §5).
type tls13Layer struct {
	in  *tls13.Opener
	out *tls13.Sealer
	hs  tls13.HandshakeReader
}

func newTLS13(suite uint16, clientSecret, serverSecret []byte) (*tls13Layer, error) {
	in, err := tls13.NewOpener(suite, clientSecret)
	if err != nil {
		return nil, err
	}
	out, err := tls13.NewSealer(suite, serverSecret)
	if err != nil {
		in.Clear()
		return nil, err
	}
	return &tls13Layer{in: in, out: out}, nil
}

func (t *tls13Layer) recordLen(hdr []byte) (int, error) { return tls13.RecordLen(hdr) }

func (t *tls13Layer) open(rec []byte) ([]byte, uint8, error) { return t.in.Open(rec) }

func (t *tls13Layer) post(ct uint8, content []byte) (bool, error) {
	ku, err := t.hs.Record(ct, content)
	if err != nil {
		return false, err
	}
	switch ku {
	case tls13.KeyUpdateNotRequested:
		return false, t.in.Update()
	case tls13.KeyUpdateRequested:
		return true, t.in.Update()
	}
	if ct == contentAlert {
		if err := tls13.ParseAlert(content); err != nil {
			if errors.Is(err, tls13.ErrCloseNotify) {
				return false, errCloseNotify
			}
			return false, err
		}
	}
	return false, nil
}

func (t *tls13Layer) seal(dst []byte, ct uint8, p []byte) ([]byte, error) {
	return t.out.Seal(dst, ct, p)
}

func (t *tls13Layer) sealAlert(dst []byte, desc uint8) ([]byte, error) {
	return t.out.SealAlert(dst, desc)
}

func (t *tls13Layer) sealKeyUpdate(dst []byte) ([]byte, error) {
	return t.out.SealKeyUpdate(dst, false)
}

func (t *tls13Layer) needKeyUpdate() bool { return t.out.Seq() >= keyUpdateAfter }

func (t *tls13Layer) alertFor(err error) (uint8, bool) {
	if errors.Is(err, tls13.ErrAlert) {
		return 0, false
	}
	return tls13.AlertFor(err), true
}

func (t *tls13Layer) park() bool {
	in := t.in.Park()
	return t.out.Park() || in
}

func (t *tls13Layer) clear() {
	t.in.Clear()
	t.out.Clear()
}

// tlsVersionName is the label of the TLS version metric.
func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS12:
		return "1.2"
	case tls.VersionTLS13:
		return "1.3"
	}
	return "other"
}

// tls12Layer is the TLS 1.2 AEAD record layer (RFC 5246, 5288, 7905). It
// has no KeyUpdate; a post-handshake handshake message is renegotiation or
// worse, and Open refuses it.
type tls12Layer struct {
	in  *tls12.Opener
	out *tls12.Sealer
}

// newTLS12 derives the TLS 1.2 keys; records after the handshake start at
// sequence number 1 (each side's Finished used 0).
func newTLS12(suite uint16, master, clientRandom, serverRandom []byte) (recordLayer, error) {
	ck, civ, sk, siv, err := tls12.Keys(suite, master, clientRandom, serverRandom)
	if err != nil {
		return nil, err
	}
	defer func() { clear(ck); clear(civ); clear(sk); clear(siv) }()
	in, err := tls12.NewOpener(suite, ck, civ, 1)
	if err != nil {
		return nil, err
	}
	out, err := tls12.NewSealer(suite, sk, siv, 1)
	if err != nil {
		in.Clear()
		return nil, err
	}
	return &tls12Layer{in: in, out: out}, nil
}

func (t *tls12Layer) recordLen(hdr []byte) (int, error) { return tls12.RecordLen(hdr) }

func (t *tls12Layer) open(rec []byte) ([]byte, uint8, error) { return t.in.Open(rec) }

func (t *tls12Layer) post(ct uint8, content []byte) (bool, error) {
	if ct == contentAlert {
		if err := tls12.ParseAlert(content); err != nil {
			if errors.Is(err, tls12.ErrCloseNotify) {
				return false, errCloseNotify
			}
			return false, err
		}
	}
	return false, nil
}

func (t *tls12Layer) seal(dst []byte, ct uint8, p []byte) ([]byte, error) {
	return t.out.Seal(dst, ct, p)
}

func (t *tls12Layer) sealAlert(dst []byte, desc uint8) ([]byte, error) {
	return t.out.SealAlert(dst, desc)
}

func (t *tls12Layer) sealKeyUpdate(dst []byte) ([]byte, error) { return dst, nil }

func (t *tls12Layer) needKeyUpdate() bool { return false }

func (t *tls12Layer) alertFor(err error) (uint8, bool) {
	if errors.Is(err, tls12.ErrAlert) {
		return 0, false
	}
	return tls12.AlertFor(err), true
}

func (t *tls12Layer) park() bool {
	in := t.in.Park()
	return t.out.Park() || in
}

func (t *tls12Layer) clear() {
	t.in.Clear()
	t.out.Clear()
}
