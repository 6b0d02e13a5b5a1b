package gateway

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/cloudwego/netpoll"
	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"

	"github.com/httvps/httvps/bufpool"
	"github.com/httvps/httvps/codec/mux"
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
//
// Ownership. netpoll runs onRequest on one goroutine at a time per
// connection and never runs the close callback (closed) while onRequest
// runs: its closeCallback takes the connection's processing lock, and an
// onRequest that finds the connection closed runs the callbacks itself. So
// the fields not marked otherwise are owned by the handshake goroutine:
// whichever goroutine runs onPrepare, onRequest or closed for this
// connection, each handing over to the next through that lock. Other
// goroutines (the timer's expire, the linger timer, admission on other
// connections' goroutines) use only the atomics, c.Close, and the fields
// guarded by g.adm.mu.
type handshake struct {
	g     *Gateway           // fixed at accept
	c     netpoll.Connection // fixed at accept; Close from any goroutine
	start time.Time          // fixed at accept
	// state is read and changed by any goroutine (atomic); a field the
	// handshake goroutine writes before a state store is seen by expire
	// after its CompareAndSwap (served).
	state atomic.Int32
	// timer fires expire (the request deadline) or, after the decoy, the
	// lingering close. Set at accept; replaced (lingerClose) and stopped
	// (closed) only by the handshake goroutine, so it needs no lock; a
	// timer goroutine never reads it.
	timer   *time.Timer
	handoff bool        // set before detach: the close callback adopts the socket
	once    atomic.Bool // closed runs once

	// Admission (admission.go). addr is set at accept, or for a
	// connection from a trusted PROXY peer (proxied until its header is
	// read) by rebook, under g.adm.mu, to the client's address; prev,
	// next, linked and booked are guarded by g.adm.mu.
	addr       addrKey
	proxied    bool     // a PROXY header is still to be read (proxyproto.go)
	client     net.Addr // the client a PROXY header or forwarded-for header named; nil: the TCP peer
	forwarded  bool     // from a trusted HTTP front: booked once its upgrade request's headers are read (forwarded.go)
	fwd        []byte   // X-Forwarded-For and Forwarded values of that request
	fwdBad     bool     // too long to keep
	prev, next *handshake
	linked     bool
	booked     bool
	// wait is hsBusy while a goroutine works on the connection, hsIdle
	// while it only waits for the client's bytes, hsEvicted once admission
	// closed it to make room (see waitBytes and admission.oldestIdle).
	wait atomic.Int32

	// Filled by the upgrade hooks.
	kind    PathKind
	secret  [maxSecret]byte // the path secret, or the tunnel's bearer token
	secLen  int
	hasTok  bool              // tunnel: an Authorization: Bearer token was read into secret
	hasAuth bool              // tunnel: an Authorization header was seen (a second one is refused)
	hasVer  bool              // tunnel: an httvps.v* subprotocol the gateway speaks was offered
	device  [MaxDeviceID]byte // tunnel: the HTTVPS-Device header's value
	devLen  int               // 0: none sent
	devBad  bool              // tunnel: an invalid or second HTTVPS-Device header
	reject  Reject
	route   Route
	ufd     int              // upstream socket (a TCP connect may be in progress)
	ups     []netip.AddrPort // candidates left after ufd's

	in    bytes.Reader
	out   fixedWriter
	tls   *tlsSession // set by a completed TLS handshake
	plain []byte      // TLS: the request's plaintext so far
	extra []byte      // TLS: plaintext that followed the request

	// The nginx emulation (decoy.go): the request being read, the body of
	// an answered one being dropped, and the requests answered so far.
	p        reqParser
	body     bodySkip
	served   int
	until    time.Time // deadline of the request being read; zero: start + HandshakeTimeout
	plainTLS bool      // plain HTTP sent to the TLS listener

	// Fallback hand-off (fallback.go).
	fb     *net.TCPConn // set by startFallback: closed hands the socket to the fallback relay
	tlsErr error        // why readTLSRequest stopped short of a request, if it did
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

// waitBytes blocks until n bytes are buffered or deadline passes. While it
// waits, the handshake may be evicted (errEvicted).
func (h *handshake) waitBytes(n int, deadline time.Time) error {
	r := h.c.Reader()
	if r.Len() >= n {
		return nil
	}
	left := time.Until(deadline)
	if left <= 0 {
		return errHandshakeTimeout
	}
	h.c.SetReadTimeout(left)
	h.wait.Store(hsIdle)
	_, err := r.Peek(n)
	if !h.wake() {
		return errEvicted
	}
	return err
}

// expire cuts off a connection that did not complete its request in time.
func (h *handshake) expire() {
	if h.state.CompareAndSwap(hsReading, hsDead) {
		if h.served == 0 {
			// A kept-alive decoy connection that ends its wait was
			// counted when it was answered.
			h.g.m.HandshakeRejected(RejectTimeout)
		}
		h.c.Close()
	}
}

// closed is the netpoll close callback: after detach it hands the socket to a
// relay loop, otherwise it releases the handshake's slot.
func (h *handshake) closed(c netpoll.Connection) error {
	if h.once.Swap(true) {
		return nil
	}
	h.timer.Stop()
	g := h.g
	if g.adm.release(h) {
		g.handshakes.Add(-1)
	}
	if h.fb != nil {
		// Handed to the fallback web server (fallback.go).
		h.adoptFallback(c)
		return nil
	}
	if !h.handoff {
		h.abandon()
		return nil
	}
	h.handOff(c)
	return nil
}

// abandon releases what a handshake that ends without a session holds.
func (h *handshake) abandon() {
	h.g.active.Add(-1)
	h.releaseAccount()
	if h.ufd >= 0 {
		unix.Close(h.ufd)
		h.ufd = -1
	}
	if h.tls != nil {
		h.tls.clear()
	}
}

// onRequest runs on a netpoll worker goroutine whenever the connection has
// unread bytes. It blocks until the request is complete (bounded by the
// handshake deadline and MaxRequestSize), then answers it.
func (g *Gateway) onRequest(ctx context.Context, c netpoll.Connection) error {
	h, _ := ctx.Value(hsKey{}).(*handshake)
	if h == nil {
		return c.Close()
	}
	if h.wake(); h.wait.Load() == hsEvicted {
		return nil // admission closed it for a newer connection
	}
	err := g.serve(h, c)
	// A connection kept alive for its next request, or lingering after
	// the decoy, waits for its client again: admission may evict it.
	if st := h.state.Load(); st == hsReading || st == hsLinger {
		h.wait.CompareAndSwap(hsBusy, hsIdle)
	}
	return err
}

// serve is onRequest's work on a connection admission let in.
func (g *Gateway) serve(h *handshake, c netpoll.Connection) error {
	switch h.state.Load() {
	case hsReading:
	case hsLinger:
		return h.discard()
	default:
		return nil
	}
	if h.proxied {
		if !h.readProxy() {
			return nil
		}
		if h.c.Reader().Len() == 0 {
			// The header came alone: netpoll calls again on the
			// client's first bytes, with the deadline still running.
			return h.c.Reader().Release()
		}
	}
	if g.tlsConf != nil && h.tls == nil && !h.plainTLS {
		// nginx takes a first byte that cannot start a TLS record (a
		// handshake record, or SSLv2's high bit) for plain HTTP.
		if b, err := c.Reader().Peek(1); err == nil && b[0] != contentHandshake && b[0] < 0x80 {
			h.plainTLS = true
		}
	}
	if g.tlsConf != nil && !h.plainTLS {
		err := h.serveTLS()
		if err == errDecoySent {
			return nil
		}
		return err
	}
	return h.serveHTTP()
}

// serveHTTP reads requests in the clear and answers them: a request that
// can become a session is upgraded, every other one gets the decoy, and a
// connection the decoy keeps alive goes on with its next request.
func (h *handshake) serveHTTP() error {
	g := h.g
	r := h.c.Reader()
	for {
		n := r.Len()
		if n == 0 {
			return r.Release() // kept alive: netpoll calls again on the next bytes
		}
		buf, err := r.Peek(n)
		if err != nil {
			return nil
		}
		if h.body.active() {
			k, ok := h.body.drop(buf)
			r.Skip(k)
			if !ok || !h.body.active() && h.body.close {
				return h.lingerClose(true)
			}
			continue
		}
		if !h.p.Feed(buf, g.cfg.MaxRequestSize) {
			if err := h.waitBytes(n+1, h.deadline()); err != nil {
				if !errors.Is(err, errEvicted) {
					h.expire()
				}
				return nil
			}
			continue
		}
		if !h.state.CompareAndSwap(hsReading, hsOwned) {
			return nil
		}
		h.timer.Stop()
		req := buf[:h.p.Len()]
		if h.p.Status == 0 && !h.plainTLS {
			err := h.upgrade(req)
			if err == nil {
				r.Skip(len(req))
				return h.detach()
			}
			if err != errDecoySent {
				return err
			}
		} else {
			h.reject = rejectFor(h.p.Status, h.plainTLS)
			if err := h.decoy(); err != nil {
				return err
			}
		}
		if h.state.Load() != hsReading {
			return nil // closing, or handed to the fallback
		}
	}
}

// deadline is when the request being read must be complete.
func (h *handshake) deadline() time.Time {
	if h.until.IsZero() {
		return h.start.Add(h.g.cfg.HandshakeTimeout)
	}
	return h.until
}

// serveTLS runs the TLS handshake, reads requests through the record
// layer and answers them as serveHTTP does. Every read on this path has the
// request's deadline; between kept-alive requests the connection waits in
// netpoll.
func (h *handshake) serveTLS() error {
	g := h.g
	if !h.state.CompareAndSwap(hsReading, hsOwned) {
		return nil
	}
	h.timer.Stop()
	if h.tls == nil {
		if err := h.tlsHandshake(); err != nil {
			if errors.Is(err, errACMEValidation) {
				g.log.Debug("acme validation handshake answered", "remote", h.remote().String())
				h.state.Store(hsDead)
				return h.c.Close()
			}
			if !errors.Is(err, errEvicted) { // counted as evicted already
				g.m.HandshakeRejected(RejectTLS)
			}
			g.log.Debug("tls handshake failed", "remote", h.remote().String(), "err", err)
			h.state.Store(hsDead)
			return h.c.Close()
		}
	}
	for {
		rej, err := h.readTLSRequest()
		switch {
		case rej == RejectTimeout:
			if !errors.Is(err, errEvicted) {
				g.m.HandshakeRejected(rej)
			}
			h.state.Store(hsDead)
			return h.c.Close()
		case err != nil:
			// The record layer failed: nginx's OpenSSL would give up; the
			// decoy answers 400 and closes.
			g.log.Debug("tls request", "err", err)
			h.reject = rej
			h.tlsErr = err // the fallback hand-off needs to know (fallback.go)
			h.p.Decide(400)
			if err := h.decoy(); err != nil {
				return err
			}
		case h.body.close && !h.body.active():
			return h.lingerClose(true)
		case h.p.Status == 0:
			req := h.plain[:h.p.Len()]
			err := h.upgrade(req)
			if err == nil {
				h.extra = h.plain[h.p.Len():]
				return h.detach()
			}
			if err != errDecoySent {
				return err
			}
		default:
			h.reject = rejectFor(h.p.Status, false)
			if err := h.decoy(); err != nil {
				return err
			}
		}
		if h.state.Load() != hsReading {
			return nil // closing, or handed to the fallback
		}
		if h.c.Reader().Len() == 0 && len(h.plain) == 0 {
			return nil // kept alive: netpoll calls again on the next bytes
		}
		if !h.state.CompareAndSwap(hsReading, hsOwned) {
			return nil
		}
		h.timer.Stop()
	}
}

// upgrade answers a complete request: the 101 goes into h.out for the loop
// to send; any failure gets the decoy (and upgrade returns its result).
// A nil error means the connection is to be handed off.
func (h *handshake) upgrade(req []byte) error {
	g := h.g
	h.reject = RejectNotUpgrade
	h.in.Reset(req)
	h.out.n = 0 // a kept-alive connection may try more than once
	h.ups = h.ups[:0]
	h.hasTok, h.hasVer, h.hasAuth = false, false, false
	h.devLen, h.devBad = 0, false
	h.fwd, h.fwdBad = h.fwd[:0], false
	u := ws.Upgrader{
		ReadBufferSize:  g.cfg.MaxRequestSize + 64,
		OnRequest:       h.onURI,
		OnHeader:        h.onHeader,
		ProtocolCustom:  h.onProtocol,
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
		// Authenticated but not upgraded (no upstream could be dialled):
		// give the session slot back now, not at the connection's end.
		h.releaseAccount()
		if !errors.Is(err, errReject) && h.reject == RejectNotUpgrade &&
			(errors.Is(err, ws.ErrMalformedRequest) || errors.Is(err, ws.ErrHandshakeBadProtocol)) {
			h.reject = RejectMalformed
		}
		if path, bearer, ok := h.docPath(req); ok {
			err = h.document(path, bearer) // document.go
		} else {
			err = h.decoy()
		}
		if err != nil {
			return err
		}
		return errDecoySent
	}
	return nil
}

// errDecoySent stops the caller after upgrade answered with the decoy.
var errDecoySent = errors.New("gateway: decoy sent")

// detach hands the connection to a relay loop (see closed and ownFD).
func (h *handshake) detach() error {
	h.handoff = true
	return h.c.Close()
}

// rejectFor is the metric label of an answer the emulation chose.
func rejectFor(status int, plainTLS bool) Reject {
	switch {
	case status == 414 || status == statusHeaderTooLarge:
		return RejectTooLarge
	case status != 0:
		return RejectMalformed
	case plainTLS:
		return RejectTLS
	}
	return RejectNotUpgrade
}

// decoy answers the request just read the way nginx would (decoy.go): every
// connection that is not to become a session ends up here. Then, as nginx
// does, it either keeps the connection for the next request (still a
// handshake, under DecoyKeepAlive) or closes it: FIN after the answer, then
// whatever the client still sends is read and dropped for a moment, so the
// close is never a reset (which would destroy the answer).
func (h *handshake) decoy() error {
	if h.g.fallback != nil && h.startFallback() {
		return nil
	}
	g := h.g
	g.m.HandshakeRejected(h.reject)
	if !h.p.Done() {
		// Not parsed to a verdict (an upstream that failed, say): the
		// default answer.
		h.p = reqParser{}
		h.p.Decide(0)
	}
	a := g.pages.Answer(&h.p, h.served, h.plainTLS)
	if g.cfg.DecoyKeepAlive < 0 {
		a.KeepAlive = false
	}
	h.served++
	discard := a.Status == 0 || a.Status == 413 // nginx drops the body of these
	closing := !a.KeepAlive && !(discard && h.p.HasBody())
	if err := h.writeAnswer(a, closing); err != nil {
		return h.c.Close()
	}
	if closing {
		return h.lingerClose(false) // the close_notify went with the answer
	}
	h.nextRequest(discard, !a.KeepAlive)
	return nil
}

// nextRequest drops the request just answered (its body follows, to be
// discarded when discard; then closed when closeAfter) and waits for the
// next one on the kept-alive connection.
func (h *handshake) nextRequest(discard, closeAfter bool) {
	if h.tls != nil {
		h.plain = h.plain[:copy(h.plain, h.plain[h.p.Len():])]
	} else {
		h.c.Reader().Skip(h.p.Len())
	}
	if discard {
		h.body.start(&h.p, closeAfter)
	}
	h.p = reqParser{}
	wait := h.g.keepAlive
	if h.body.active() {
		wait = nginxLinger
	}
	h.until = time.Now().Add(wait)
	h.state.Store(hsReading)
	h.timer.Reset(wait)
}

// writeAnswer sends the answer on the netpoll connection (see sendAnswer).
func (h *handshake) writeAnswer(a answer, closing bool) error {
	h.c.SetWriteTimeout(time.Second)
	return h.g.sendAnswer(a, h.tls, closing, h.writeOut)
}

// writeOut writes out on the netpoll connection and flushes it.
func (h *handshake) writeOut(out []byte) error {
	w := h.c.Writer()
	m, err := w.Malloc(len(out))
	if err != nil {
		return err
	}
	copy(m, out)
	return w.Flush()
}

// sendAnswer hands write the decoy answer a as it goes on the wire: the page
// (decoy.go), sealed into records on a TLS connection (t non-nil), with
// close_notify after it when closing. Both places that refuse a connection
// use it: the handshake (writeAnswer) and a relay loop whose upstream
// connect failed (connectFailed). The bytes are in pooled buffers, valid
// only during write.
func (g *Gateway) sendAnswer(a answer, t *tlsSession, closing bool, write func([]byte) error) error {
	d := g.pages
	pb := bufpool.Get(d.Size(a))
	defer bufpool.Put(pb)
	return g.sendBytes(d.AppendAnswer((*pb)[:0], a), t, closing, write)
}

// sendBytes hands write the answer out as it goes on the wire: sealed into
// records on a TLS connection (t non-nil), with close_notify after it when
// closing. The bytes passed to write are valid only during the call.
func (g *Gateway) sendBytes(out []byte, t *tlsSession, closing bool, write func([]byte) error) error {
	if t != nil {
		sb := bufpool.Get(sealedLen(len(out)))
		defer bufpool.Put(sb)
		sealed, err := t.sealTo((*sb)[:0], out)
		if err == nil && closing {
			sealed, err = t.rl.sealAlert(sealed, alertCloseNotify)
		}
		if err != nil {
			return err
		}
		out = sealed
	}
	return write(out)
}

// lingerClose closes the way nginx does after its last answer: close_notify
// (TLS, when notify: it did not go with the answer), FIN, then input is read and dropped
// until the client closes or lingerTime passes.
func (h *handshake) lingerClose(notify bool) error {
	c := h.c
	h.state.Store(hsLinger)
	h.timer.Stop()
	if h.tls != nil && notify {
		if b, err := h.tls.rl.sealAlert(nil, alertCloseNotify); err == nil {
			w := c.Writer()
			if m, err := w.Malloc(len(b)); err == nil {
				copy(m, b)
				w.Flush()
			}
		}
	}
	if nc, ok := c.(netpoll.Conn); ok {
		unix.Shutdown(nc.Fd(), unix.SHUT_WR)
	}
	h.timer = time.AfterFunc(lingerTime, func() { c.Close() })
	return h.discard()
}

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
	if string(uri) == tunnelPath {
		h.kind = PathTunnel
		h.reject = RejectNotUpgrade
		return nil
	}
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
// A tunnel dials nothing here: its streams do (tunnel.go).
func (h *handshake) beforeUpgrade() (ws.HandshakeHeader, error) {
	g := h.g
	if h.forwarded && !h.bookForwarded() {
		clear(h.secret[:h.secLen])
		return nil, errReject
	}
	if h.kind == PathTunnel && !h.hasVer {
		clear(h.secret[:h.secLen])
		h.reject = RejectVersion
		return nil, errReject
	}
	if h.kind == PathTunnel && !h.hasTok {
		h.reject = RejectSecret
		return nil, errReject
	}
	if h.devBad {
		clear(h.secret[:h.secLen])
		h.reject = RejectDeviceID
		return nil, errReject
	}
	cl := Client{Addr: addrOf(h.remote())}
	if h.devLen > 0 {
		cl.Device = h.device[:h.devLen]
	}
	route, why, ok := g.cfg.Auth.Authenticate(h.secret[:h.secLen], h.kind, cl)
	clear(h.secret[:h.secLen])
	if !ok {
		h.reject = why
		if g.log.Enabled(context.Background(), slog.LevelDebug) { // a probe flood passes here
			g.log.Debug("session refused", "path", h.kind, "reason", why, "remote", h.remote()) // no secret
		}
		return nil, errReject
	}
	h.route = route
	if h.kind == PathTunnel {
		h.resolveRoute()
		return nil, nil
	}
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

// tunnelPath is the native tunnel's path (docs/03).
const tunnelPath = "/v1/tunnel"

// onHeader takes the tunnel's bearer token from the Authorization header
// (other headers are ignored). value is only valid during the call, so the
// token is copied; a second Authorization header (after any first one), a
// scheme other than Bearer or a token over maxSecret bytes leaves no token
// (the decoy).
func (h *handshake) onHeader(key, value []byte) error {
	if h.forwarded {
		h.onForwarded(key, value)
	}
	if h.kind != PathTunnel {
		return nil
	}
	if bytes.EqualFold(key, []byte(DeviceHeader)) {
		h.onDevice(value)
		return nil
	}
	if !bytes.EqualFold(key, []byte("Authorization")) {
		return nil
	}
	const scheme = "bearer "
	if h.hasAuth {
		// A second Authorization header, whatever the first was: no token
		// for good, and none of the first left in memory.
		h.hasTok = false
		clear(h.secret[:h.secLen])
		h.secLen = 0
		return nil
	}
	h.hasAuth = true
	if len(value) <= len(scheme) || !bytes.EqualFold(value[:len(scheme)], []byte(scheme)) {
		return nil
	}
	tok := bytes.TrimLeft(value[len(scheme):], " ")
	if len(tok) == 0 || len(tok) > maxSecret {
		return nil
	}
	h.secLen = copy(h.secret[:], tok)
	h.hasTok = true
	return nil
}

// tunnelVersions are the httvps.v<N> subprotocols the gateway speaks, newest
// first.
var tunnelVersions = [...]string{mux.Subprotocol}

// onProtocol selects the subprotocol from a Sec-WebSocket-Protocol header:
// on the tunnel path the newest httvps.v<N> offered that the gateway speaks
// (none: the decoy, in beforeUpgrade); on the Outline paths nothing, and the
// header is ignored as it always was.
func (h *handshake) onProtocol(v []byte) (string, bool) {
	if h.kind != PathTunnel {
		return "", true
	}
	for _, want := range tunnelVersions {
		for _, p := range bytes.Split(v, []byte(",")) {
			if string(bytes.TrimSpace(p)) == want {
				h.hasVer = true
				return want, true
			}
		}
	}
	return "", true
}

// resolveRoute resolves the route's members for a tunnel's streams (a name
// would block the relay loop). None usable still makes a tunnel: each of
// its streams is then answered RESET CONNECT (docs/03).
func (h *handshake) resolveRoute() {
	for _, up := range append([]string{h.route.Upstream}, h.route.Fallbacks...) {
		ap, err := resolveUpstream(up)
		if err != nil {
			h.g.m.UpstreamDialError(h.kind)
			h.g.log.Debug("upstream address", "upstream", up, "err", err)
			continue
		}
		h.ups = append(h.ups, ap)
	}
}
