package gateway

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/cloudwego/netpoll"
	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"
)

// maxSecret bounds the secret segment of an Outline path.
const maxSecret = 256

// Handshake states.
const (
	hsReading int32 = iota // waiting for the request; the timer may fire
	hsOwned                // the request is complete and being answered
	hsLinger               // answered with the decoy; input is drained until close
	hsDead                 // timed out; the connection is closed
)

var errReject = errors.New("gateway: rejected")

// handshake is the per-connection state from accept to the 101. It lives on
// the netpoll connection's context and is dropped at hand-off.
type handshake struct {
	g       *Gateway
	c       netpoll.Connection
	state   atomic.Int32
	timer   *time.Timer
	start   time.Time
	handoff bool // set before Detach: the close callback adopts the socket
	once    atomic.Bool

	// Filled by the upgrade hooks.
	kind   PathKind
	secret [maxSecret]byte
	secLen int
	reject Reject
	route  Route
	ufd    int              // upstream socket (a TCP connect may be in progress)
	ups    []netip.AddrPort // candidates left after ufd's

	in    bytes.Reader
	out   fixedWriter
	tls   *tlsSession // set by a completed TLS handshake
	plain []byte      // TLS: the request's plaintext so far
	extra []byte      // TLS: plaintext that followed the request
	scan  int         // bytes of the request already searched for its end
}

type hsKey struct{}

// fixedWriter collects the upgrade response without allocating.
type fixedWriter struct {
	buf [512]byte
	n   int
}

func (w *fixedWriter) Write(p []byte) (int, error) {
	if w.n+len(p) > len(w.buf) {
		return 0, errors.New("gateway: upgrade response too long")
	}
	w.n += copy(w.buf[w.n:], p)
	return len(p), nil
}

// onPrepare runs at accept, before any byte is read.
func (g *Gateway) onPrepare(c netpoll.Connection) context.Context {
	ctx := context.Background()
	if g.draining.Load() {
		g.m.HandshakeRejected(RejectShutdown)
		c.Close()
		return ctx
	}
	if g.active.Load() >= int64(g.cfg.MaxSessions) || g.handshakes.Load() >= int64(g.cfg.MaxHandshakes) {
		g.m.HandshakeRejected(RejectCapacity)
		c.Close()
		return ctx
	}
	g.active.Add(1)
	g.handshakes.Add(1)
	h := &handshake{g: g, c: c, start: time.Now(), ufd: -1}
	h.timer = time.AfterFunc(g.cfg.HandshakeTimeout, h.expire)
	c.AddCloseCallback(h.closed)
	return context.WithValue(ctx, hsKey{}, h)
}

// expire cuts off a connection that did not complete its request in time.
func (h *handshake) expire() {
	if h.state.CompareAndSwap(hsReading, hsDead) {
		h.g.m.HandshakeRejected(RejectTimeout)
		h.c.Close()
	}
}

// closed is the netpoll close callback: after Detach it hands the socket to a
// relay loop, otherwise it releases the handshake's slot.
func (h *handshake) closed(c netpoll.Connection) error {
	if h.once.Swap(true) {
		return nil
	}
	h.timer.Stop()
	g := h.g
	g.handshakes.Add(-1)
	if !h.handoff {
		g.active.Add(-1)
		h.releaseAccount()
		if h.ufd >= 0 {
			unix.Close(h.ufd)
		}
		if h.tls != nil {
			h.tls.clear()
		}
		return nil
	}
	// RFC 6455 §4.1 has a client wait for the 101 before it sends, but bytes
	// that came early (raw, and for TLS plaintext past the request) are
	// carried over rather than lost: losing a TLS record would desynchronise
	// the record sequence numbers.
	a := &adoption{cfd: c.(netpoll.Conn).Fd(), ufd: h.ufd, kind: h.kind, tls: h.tls, acct: h.route.Account, ups: h.ups}
	a.resp = append([]byte(nil), h.out.buf[:h.out.n]...)
	r := c.Reader()
	if n := r.Len(); n > 0 {
		if n > maxEarly {
			g.m.Dropped(DropEarlyData, n)
		} else if b, err := r.Next(n); err == nil {
			a.early = append([]byte(nil), b...)
		}
	}
	if len(h.extra) > 0 {
		a.earlyPlain = append([]byte(nil), h.extra...)
	}
	l := g.pickLoop()
	l.post(func() { l.adopt(a) })
	return nil
}

// maxEarly bounds the early bytes carried into a session.
const maxEarly = 64 << 10

// adoption is what a finished handshake hands to a relay loop.
type adoption struct {
	cfd, ufd   int
	kind       PathKind
	resp       []byte // the 101, plaintext
	tls        *tlsSession
	acct       Account
	ups        []netip.AddrPort // further upstreams if the connect fails
	early      []byte           // bytes read from the socket after the request
	earlyPlain []byte           // TLS: plaintext after the request in its record
}

// onRequest runs on a netpoll worker goroutine whenever the connection has
// unread bytes. It blocks until the request is complete (bounded by the
// handshake deadline and MaxRequestSize), then answers it.
func (g *Gateway) onRequest(ctx context.Context, c netpoll.Connection) error {
	h, _ := ctx.Value(hsKey{}).(*handshake)
	if h == nil {
		return c.Close()
	}
	switch h.state.Load() {
	case hsReading:
	case hsLinger:
		return h.discard()
	default:
		return nil
	}
	if g.tlsConf != nil {
		err := h.serveTLS()
		if err == errDecoySent {
			return nil
		}
		return err
	}
	r := c.Reader()
	var req []byte
	for {
		n := r.Len()
		buf, err := r.Peek(n)
		if err != nil {
			return nil
		}
		from := max(h.scan-3, 0)
		if i := bytes.Index(buf[from:], crlfcrlf); i >= 0 {
			req = buf[:from+i+4]
			break
		}
		h.scan = n
		if !plausibleRequest(buf) {
			return h.fail(RejectMalformed)
		}
		if n >= g.cfg.MaxRequestSize {
			return h.fail(RejectTooLarge)
		}
		left := time.Until(h.start.Add(g.cfg.HandshakeTimeout))
		if left <= 0 {
			h.expire()
			return nil
		}
		c.SetReadTimeout(left)
		if _, err := r.Peek(n + 1); err != nil {
			h.expire()
			return nil
		}
	}
	if len(req) > g.cfg.MaxRequestSize {
		return h.fail(RejectTooLarge)
	}
	if !h.state.CompareAndSwap(hsReading, hsOwned) {
		return nil
	}
	h.timer.Stop()
	if err := h.upgrade(req); err != nil {
		return err
	}
	r.Skip(len(req))
	return h.detach()
}

// serveTLS runs the TLS handshake, reads the request through the record
// layer and answers it. Every read on this path has the handshake deadline.
func (h *handshake) serveTLS() error {
	g := h.g
	if !h.state.CompareAndSwap(hsReading, hsOwned) {
		return nil
	}
	h.timer.Stop()
	if err := h.tlsHandshake(); err != nil {
		g.m.HandshakeRejected(RejectTLS)
		g.log.Debug("tls handshake failed", "remote", h.c.RemoteAddr().String(), "err", err)
		h.state.Store(hsDead)
		return h.c.Close()
	}
	req, rej, err := h.readTLSRequest()
	if req == nil {
		if rej == RejectTimeout {
			g.m.HandshakeRejected(rej)
			h.state.Store(hsDead)
			return h.c.Close()
		}
		if err != nil {
			g.log.Debug("tls request", "err", err)
		}
		h.reject = rej
		return h.decoy()
	}
	if err := h.upgrade(req); err != nil {
		return err
	}
	return h.detach()
}

// upgrade answers a complete request: the 101 goes into h.out for the loop
// to send; any failure gets the decoy (and upgrade returns its result).
// A nil error means the connection is to be handed off.
func (h *handshake) upgrade(req []byte) error {
	g := h.g
	h.reject = RejectNotUpgrade
	h.in.Reset(req)
	u := ws.Upgrader{
		ReadBufferSize:  g.cfg.MaxRequestSize + 64,
		OnRequest:       h.onURI,
		OnBeforeUpgrade: h.beforeUpgrade,
	}
	_, err := u.Upgrade(struct {
		*bytes.Reader
		*fixedWriter
	}{&h.in, &h.out})
	if err != nil {
		if h.ufd >= 0 {
			unix.Close(h.ufd)
			h.ufd = -1
		}
		if !errors.Is(err, errReject) && h.reject == RejectNotUpgrade &&
			(errors.Is(err, ws.ErrMalformedRequest) || errors.Is(err, ws.ErrHandshakeBadProtocol)) {
			h.reject = RejectMalformed
		}
		if err := h.decoy(); err != nil {
			return err
		}
		return errDecoySent
	}
	return nil
}

// errDecoySent stops the caller after upgrade answered with the decoy.
var errDecoySent = errors.New("gateway: decoy sent")

// detach hands the connection to a relay loop (see closed).
func (h *handshake) detach() error {
	h.handoff = true
	return h.c.(interface{ Detach() error }).Detach()
}

var crlfcrlf = []byte("\r\n\r\n")

// plausibleRequest rejects early what cannot become an HTTP request line, so
// random bytes get their answer at once instead of at the deadline.
func plausibleRequest(b []byte) bool {
	for i, ch := range b {
		if ch == ' ' {
			return i > 0
		}
		if ch < 'A' || ch > 'Z' || i >= 16 {
			return false
		}
	}
	return true
}

// fail answers with the decoy for a request that never got complete.
func (h *handshake) fail(r Reject) error {
	if !h.state.CompareAndSwap(hsReading, hsOwned) {
		return nil
	}
	h.timer.Stop()
	h.reject = r
	return h.decoy()
}

// decoy sends the one answer every failure gets, then closes the way a web
// server does: FIN after the answer, then whatever the client still sends
// is read and dropped for a moment, so the close is never a reset (which
// would both tell failures apart and could destroy the answer).
func (h *handshake) decoy() error {
	h.g.m.HandshakeRejected(h.reject)
	h.state.Store(hsLinger)
	c := h.c
	c.SetWriteTimeout(time.Second)
	w := c.Writer()
	answer := h.g.decoy
	if h.tls != nil {
		var err error
		if answer, err = h.sealDecoy(); err != nil {
			return c.Close()
		}
	}
	w.WriteBinary(answer)
	if err := w.Flush(); err != nil {
		return c.Close()
	}
	if nc, ok := c.(netpoll.Conn); ok {
		unix.Shutdown(nc.Fd(), unix.SHUT_WR)
	}
	h.timer = time.AfterFunc(decoyLinger, func() { c.Close() })
	return h.discard()
}

// decoyLinger is how long input is drained after the decoy answer.
const decoyLinger = 2 * time.Second

// discard drops everything buffered on a lingering connection.
func (h *handshake) discard() error {
	r := h.c.Reader()
	if n := r.Len(); n > 0 {
		r.Skip(n)
	}
	return r.Release()
}

// onURI parses "/<secret>/tcp" or "/<secret>/udp" (a query string is
// ignored). uri is only valid during the call, so the secret is copied.
func (h *handshake) onURI(uri []byte) error {
	if i := bytes.IndexByte(uri, '?'); i >= 0 {
		uri = uri[:i]
	}
	h.reject = RejectPath
	if len(uri) < len("/x/tcp") || uri[0] != '/' {
		return errReject
	}
	switch string(uri[len(uri)-4:]) {
	case "/tcp":
		h.kind = PathTCP
	case "/udp":
		h.kind = PathUDP
	default:
		return errReject
	}
	secret := uri[1 : len(uri)-4]
	if len(secret) == 0 || len(secret) > maxSecret {
		return errReject
	}
	h.secLen = copy(h.secret[:], secret)
	h.reject = RejectNotUpgrade
	return nil
}

// beforeUpgrade runs once the request is a valid WebSocket upgrade: it
// authenticates and dials the upstream, so the 101 means a working session.
func (h *handshake) beforeUpgrade() (ws.HandshakeHeader, error) {
	g := h.g
	route, ok := g.cfg.Auth.Authenticate(h.secret[:h.secLen], h.kind)
	clear(h.secret[:h.secLen])
	if !ok {
		h.reject = RejectSecret
		return nil, errReject
	}
	h.route = route
	// Resolve every candidate here (a name would block the relay loop),
	// then start the first connect; the relay loop completes it and moves
	// on to the next candidate if it fails.
	for _, up := range append([]string{route.Upstream}, route.Fallbacks...) {
		ap, err := resolveUpstream(up)
		if err != nil {
			g.m.UpstreamDialError(h.kind)
			g.log.Debug("upstream address", "upstream", up, "err", err)
			continue
		}
		h.ups = append(h.ups, ap)
	}
	for len(h.ups) > 0 {
		ap := h.ups[0]
		h.ups = h.ups[1:]
		var fd int
		var err error
		if h.kind == PathUDP {
			fd, err = dialUDP(ap)
		} else {
			fd, err = connectTCP(ap)
		}
		if err == nil {
			h.ufd = fd
			return nil, nil
		}
		g.m.UpstreamDialError(h.kind)
		g.log.Debug("upstream dial failed", "path", h.kind.String(), "upstream", ap.String(), "err", err)
	}
	h.reject = RejectUpstream
	return nil, errReject
}

// releaseAccount gives back the session slot Authenticate granted, for a
// handshake that did not become a session.
func (h *handshake) releaseAccount() {
	if a := h.route.Account; a != nil {
		h.route.Account = nil
		a.Release()
	}
}

// adopt registers an upgraded connection and its upstream on the loop and
// sends the 101.
func (l *loop) adopt(a *adoption) {
	g := l.g
	cfd, ufd, kind := a.cfd, a.ufd, a.kind
	s := &session{l: l, kind: kind, cfd: cfd, ufd: ufd, last: l.now, tls: a.tls, acct: a.acct}
	if s.last == 0 {
		s.last = time.Now().UnixNano()
	}
	s.upMark, s.downMark = s.last, s.last
	lim := g.limits
	if kind == PathUDP {
		lim = g.udpLimits
	}
	s.rd.Init(lim)
	s.cev, s.uev = evIn|evRDHUP, evIn|evRDHUP
	if kind == PathTCP {
		// Until the upstream connect completes only errors from the
		// client matter.
		s.cev, s.uev = 0, evOut
	}
	fail := func() {
		g.active.Add(-1)
		if a.acct != nil {
			a.acct.Release()
		}
		if a.tls != nil {
			a.tls.clear()
		}
	}
	if l.draining || l.stopping {
		unix.Close(cfd)
		unix.Close(ufd)
		g.m.HandshakeRejected(RejectShutdown)
		fail()
		return
	}
	if err := l.register(cfd, s, s.cev); err != nil {
		unix.Close(cfd)
		unix.Close(ufd)
		fail()
		return
	}
	if err := l.register(ufd, s, s.uev); err != nil {
		l.forget(cfd)
		unix.Close(ufd)
		fail()
		return
	}
	l.link(s)
	s.pend = &pending{resp: a.resp, early: a.early, earlyPlain: a.earlyPlain, ups: a.ups}
	if kind == PathUDP {
		s.connected()
		return
	}
	s.deadline = l.now + int64(g.cfg.DialTimeout)
}
