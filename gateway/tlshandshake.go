package gateway

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudwego/netpoll"
)

// TLSConfig turns the listener into a TLS-only one.
type TLSConfig struct {
	// GetCertificate picks the certificate for a ClientHello (SNI). Required.
	// It is called on the handshake goroutine and may be swapped underneath
	// (reload) without affecting established sessions.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// MinVersion is tls.VersionTLS12 (the default) or tls.VersionTLS13.
	MinVersion uint16
	// ACMEChallenge answers ACME TLS-ALPN-01 validation handshakes (RFC
	// 8737): for a ClientHello offering only "acme-tls/1" it returns the
	// validation certificate while a validation of that name is pending.
	// Such a handshake negotiates acme-tls/1 and the connection is closed
	// after it, as the RFC asks. nil, or false for a hello, leaves the
	// hello to the ordinary handshake, which answers a client offering
	// only acme-tls/1 with alert 120, as nginx does: what a prober sees
	// does not change.
	ACMEChallenge func(*tls.ClientHelloInfo) (*tls.Certificate, bool)
	// HandshakeCPU bounds handshakes doing cryptographic work at once, so a
	// handshake flood cannot starve the relay loops of CPU. A handshake
	// waiting for the network does not hold a slot. 0 means half the
	// cores the process may run on: max(1, min(GOMAXPROCS, NumCPU)/2).
	HandshakeCPU int
}

// defaultHandshakeCPU is HandshakeCPU's default. It counts cores, not Ps:
// a GOMAXPROCS above the core count (which shortens netpoll's and the
// handshakes' waits for a P on a busy machine; docs/04, "Cost of a new TLS
// session") must not hand the whole machine to a handshake flood.
func defaultHandshakeCPU() int {
	return max(1, min(runtime.GOMAXPROCS(0), runtime.NumCPU())/2)
}

// tls12Suites are the only TLS 1.2 suites offered: ECDHE with an AEAD.
// (TLS 1.3 suites are all AEAD and not configurable in crypto/tls.)
var tls12Suites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// buildTLS returns the crypto/tls configuration the handshake runs under.
// Each handshake runs on a clone of it made by GetConfigForClient (see
// tlsKeys.configFor), which carries that connection's own key-log writer.
func buildTLS(c *TLSConfig, tk *tlsKeys) (*tls.Config, error) {
	if c.GetCertificate == nil {
		return nil, errors.New("gateway: TLSConfig.GetCertificate is required")
	}
	minV := c.MinVersion
	if minV == 0 {
		minV = tls.VersionTLS12
	}
	if minV != tls.VersionTLS12 && minV != tls.VersionTLS13 {
		return nil, errors.New("gateway: TLS MinVersion must be 1.2 or 1.3")
	}
	base := &tls.Config{
		GetCertificate: c.GetCertificate,
		MinVersion:     minV,
		MaxVersion:     tls.VersionTLS13,
		CipherSuites:   tls12Suites,
		// nginx's list without http2 (NGX_HTTP_ALPN_PROTOS), in its
		// preference order: a client whose list has none of them gets
		// alert 120 (no_application_protocol), as nginx ≥ 1.21.4 answers.
		// e2e/TestALPNMatchesNginx holds it against a real nginx.
		NextProtos: []string{"http/1.1", "http/1.0", "http/0.9"},
		// OpenSSL 3.0's default groups in its order (x448 apart, which
		// crypto/tls lacks), as nginx on Debian 12 uses them: offered
		// X25519MLKEM768 and X25519, it picks X25519, where crypto/tls's
		// default would pick the hybrid and send a 1,120-byte key share
		// (a ServerHello nginx never sends, and more CPU per handshake).
		CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256, tls.CurveP521, tls.CurveP384},
	}
	tk.base = base
	tk.challenge = c.ACMEChallenge
	if err := tk.rotate(time.Now()); err != nil {
		return nil, err
	}
	base.GetConfigForClient = tk.configFor
	return base, nil
}

// Session tickets (RFC 8446 §4.6.1): TLS 1.3 clients get one, as from any
// web server, and a client that comes back with it resumes without the
// certificate signature. The ticket keys are random per process, made anew
// every ticketKeyPeriod with the previous key kept for decryption, and never
// leave memory; a ticket from another gateway of a fleet is simply not
// accepted (a full handshake follows). TLS 1.2 gets no tickets: crypto/tls
// does not log the master secret of a resumed 1.2 session, which the relay
// needs.
const ticketKeyPeriod = 24 * time.Hour

// tlsKeys holds the base configuration and its ticket keys. Every
// handshake goroutine reaches it (configFor): base is fixed at buildTLS (its
// ticket keys change under crypto/tls's own lock), rotateAt is atomic, keys
// is guarded by mu.
type tlsKeys struct {
	base     *tls.Config
	rotateAt atomic.Int64 // unix ns
	mu       sync.Mutex
	keys     [][32]byte // newest first; guarded by mu
	// challenge is TLSConfig.ACMEChallenge, fixed at buildTLS.
	challenge func(*tls.ClientHelloInfo) (*tls.Certificate, bool)
}

// acmeALPN is the protocol of ACME TLS-ALPN-01 validation (RFC 8737).
const acmeALPN = "acme-tls/1"

// errACMEValidation ends a connection whose handshake answered an ACME
// validation: nothing follows it.
var errACMEValidation = errors.New("gateway: ACME TLS-ALPN-01 validation handshake")

func (tk *tlsKeys) rotate(now time.Time) error {
	tk.mu.Lock()
	defer tk.mu.Unlock()
	if now.UnixNano() < tk.rotateAt.Load() {
		return nil
	}
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		return fmt.Errorf("gateway: session ticket key: %w", err)
	}
	keys := [][32]byte{k}
	if len(tk.keys) > 0 {
		keys = append(keys, tk.keys[0])
	}
	for i := range tk.keys[min(1, len(tk.keys)):] {
		clear(tk.keys[1+i][:])
	}
	tk.keys = keys
	tk.base.SetSessionTicketKeys(keys)
	tk.rotateAt.Store(now.Add(ticketKeyPeriod).UnixNano())
	return nil
}

// configFor is the base configuration's GetConfigForClient: a clone whose
// key log goes to this connection's hsConn, so secrets never pass through
// shared state and are found whatever the shape of the ClientHello.
func (tk *tlsKeys) configFor(hi *tls.ClientHelloInfo) (*tls.Config, error) {
	a, ok := hi.Conn.(*hsConn)
	if !ok {
		return nil, errors.New("gateway: handshake on an unknown connection")
	}
	if time.Now().UnixNano() >= tk.rotateAt.Load() {
		if err := tk.rotate(time.Now()); err != nil {
			return nil, err
		}
	}
	c := tk.base.Clone()
	c.GetConfigForClient = nil
	if tk.challenge != nil {
		if cert, ok := tk.challenge(hi); ok {
			c.NextProtos = []string{acmeALPN}
			c.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert, nil }
			c.SessionTicketsDisabled = true
			return c, nil
		}
	}
	if !slices.Contains(hi.SupportedVersions, tls.VersionTLS13) && len(hi.SupportedCurves) > 0 {
		if curve, ok := certCurve(c, hi); ok && !slices.Contains(hi.SupportedCurves, curve) {
			// In TLS 1.2 OpenSSL serves an ECDSA certificate only to a
			// client that lists its curve among its groups (RFC 8422
			// §5.1) and answers anyone else handshake_failure; a group
			// list with nothing in common gets crypto/tls to send the
			// same alert.
			c.CurvePreferences = []tls.CurveID{curve}
		}
	}
	c.KeyLogWriter = &a.keys
	if !slices.Contains(hi.SupportedVersions, tls.VersionTLS13) {
		c.SessionTicketsDisabled = true
	} else {
		c.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
			a.tickets++
			return c.EncryptTicket(cs, ss)
		}
	}
	return c, nil
}

// certCurve is the curve of the ECDSA certificate c would serve hi, if it
// is one.
func certCurve(c *tls.Config, hi *tls.ClientHelloInfo) (tls.CurveID, bool) {
	cert, err := c.GetCertificate(hi)
	if err != nil || cert == nil {
		return 0, false
	}
	signer, ok := cert.PrivateKey.(crypto.Signer)
	if !ok {
		return 0, false
	}
	pub, ok := signer.Public().(*ecdsa.PublicKey)
	if !ok {
		return 0, false
	}
	switch pub.Curve {
	case elliptic.P256():
		return tls.CurveP256, true
	case elliptic.P384():
		return tls.CurveP384, true
	case elliptic.P521():
		return tls.CurveP521, true
	}
	return 0, false
}

// connKeys receives crypto/tls's key log lines for one connection and keeps
// what the relay needs. Only the handshake goroutine touches it.
type connKeys struct {
	client, server []byte   // TLS 1.3 application traffic secrets
	master         []byte   // TLS 1.2 master secret
	cr             [32]byte // client random, from the lines themselves
	gotCR          bool
}

func (k *connKeys) Write(line []byte) (int, error) {
	n := len(line)
	defer clear(line) // crypto/tls builds each line afresh; no secret stays in it
	f := bytes.Fields(line)
	if len(f) != 3 || len(f[1]) != 64 || len(f[2]) > 2*maxSecretLen {
		return n, nil
	}
	var dst *[]byte
	switch string(f[0]) {
	case "CLIENT_TRAFFIC_SECRET_0":
		dst = &k.client
	case "SERVER_TRAFFIC_SECRET_0":
		dst = &k.server
	case "CLIENT_RANDOM":
		dst = &k.master
	default:
		return n, nil
	}
	if _, err := hex.Decode(k.cr[:], f[1]); err != nil {
		return n, nil
	}
	k.gotCR = true
	clear(*dst)
	*dst = make([]byte, hex.DecodedLen(len(f[2])))
	hex.Decode(*dst, f[2])
	clear(f[2])
	return n, nil
}

// maxSecretLen bounds a logged secret (SHA-384 is the longest hash).
const maxSecretLen = 48

func (k *connKeys) wipe() {
	clear(k.client)
	clear(k.server)
	clear(k.master)
	k.client, k.server, k.master = nil, nil, nil
}

// hsConn is the net.Conn crypto/tls handshakes over: the netpoll connection,
// read one TLS record at a time so that nothing past the client's Finished
// is consumed (the next record is the relay's first, sequence number 0).
//
// The handshake CPU slot (Gateway.hsCPU) is held only while crypto/tls has
// bytes to work on: it is taken when Read has something to return and given
// back before any wait for the network, and before Write flushes. The whole
// ClientHello is buffered (waitHello) before crypto/tls starts, so a client
// that stalls mid-hello never reaches the CPU.
//
// Owned by the handshake goroutine running tlsHandshake (crypto/tls calls
// Read, Write and the key log on it); it does not outlive that call.
type hsConn struct {
	h        *handshake
	c        netpoll.Connection
	deadline time.Time

	hello []byte // the ClientHello's records, read by waitHello, served first

	hdr    [5]byte
	hn     int
	remain int

	keys    connKeys
	gotSR   bool
	sr      [32]byte
	tickets int  // session tickets crypto/tls sealed (see tlsKeys.configFor)
	slot    bool // holds a handshake CPU slot
	flushed bool // our first flight is out (see inputLimit)
}

var errHandshakeInput = errors.New("gateway: handshake input too large")

// maxHello bounds the ClientHello's records (post-quantum key shares make
// hellos of ~2 KiB; 16 KiB is the most a server must accept in one record).
const maxHello = 16 << 10

// waitHello reads the ClientHello's records, holding no CPU slot, until the
// handshake message is complete, however it is split across records (the
// first byte is already known to be a handshake record). Anything that is
// not a handshake record ends the wait early; crypto/tls then refuses it.
func (a *hsConn) waitHello() error {
	r := a.c.Reader()
	hsLen := -1 // length of the ClientHello message, once its header is in
	got := 0    // handshake bytes so far
	for {
		if err := a.h.waitBytes(5, a.deadline); err != nil {
			return err
		}
		hdr, err := r.Peek(5)
		if err != nil {
			return err
		}
		n := int(hdr[3])<<8 | int(hdr[4])
		if hdr[0] != contentHandshake || n == 0 || n > maxTLSPlain || len(a.hello)+5+n > maxHello {
			return nil
		}
		if err := a.h.waitBytes(5+n, a.deadline); err != nil {
			return err
		}
		rec, err := r.Next(5 + n)
		if err != nil {
			return err
		}
		a.hello = append(a.hello, rec...)
		r.Release()
		if hsLen < 0 {
			got += n
			if got >= 4 {
				// The handshake header: type, then a 24-bit length.
				b := a.hello[5:]
				if len(a.hello) > 5+n { // header spans records; collect it
					b = a.handshakeBytes(4)
				}
				hsLen = int(b[1])<<16 | int(b[2])<<8 | int(b[3])
				if b[0] != 1 || 4+hsLen > maxHello {
					return nil
				}
			}
		} else {
			got += n
		}
		if hsLen >= 0 && got >= 4+hsLen {
			return nil
		}
	}
}

// handshakeBytes returns the first n bytes of handshake data in a.hello,
// skipping record headers.
func (a *hsConn) handshakeBytes(n int) []byte {
	out := make([]byte, 0, n)
	for b := a.hello; len(b) >= 5 && len(out) < n; {
		l := int(b[3])<<8 | int(b[4])
		out = append(out, b[5:5+l]...)
		b = b[5+l:]
	}
	return out[:n]
}

func (a *hsConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(a.hello) > 0 {
		if err := a.acquire(); err != nil {
			return 0, err
		}
		n := copy(p, a.hello)
		if a.hello = a.hello[n:]; len(a.hello) == 0 {
			a.hello = nil
		}
		return n, nil
	}
	r := a.c.Reader()
	if r.Len() > a.inputLimit() {
		return 0, errHandshakeInput
	}
	if r.Len() == 0 {
		a.release()
		if err := a.h.waitBytes(1, a.deadline); err != nil {
			return 0, err
		}
	}
	if err := a.acquire(); err != nil {
		return 0, err
	}
	if a.remain == 0 {
		want := min(len(p), 5-a.hn, r.Len())
		b, err := r.Next(want)
		if err != nil {
			return 0, err
		}
		copy(p, b)
		copy(a.hdr[a.hn:], b)
		a.hn += want
		if a.hn == 5 {
			a.hn = 0
			a.remain = int(a.hdr[3])<<8 | int(a.hdr[4])
		}
		r.Release()
		return want, nil
	}
	want := min(len(p), a.remain, r.Len())
	b, err := r.Next(want)
	if err != nil {
		return 0, err
	}
	copy(p, b)
	a.remain -= want
	r.Release()
	return want, nil
}

var errHandshakeTimeout = errors.New("gateway: handshake timeout")

func (a *hsConn) acquire() error {
	if a.slot {
		return nil
	}
	g := a.h.g
	select {
	case g.hsCPU <- struct{}{}:
		a.slot = true
		return nil
	default:
	}
	t := time.NewTimer(time.Until(a.deadline))
	defer t.Stop()
	// netpoll keeps reading the client while we wait: bound what it holds.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case g.hsCPU <- struct{}{}:
			a.slot = true
			return nil
		case <-tick.C:
			if a.c.Reader().Len() > a.inputLimit() {
				return errHandshakeInput
			}
		case <-t.C:
			return errHandshakeTimeout
		}
	}
}

func (a *hsConn) release() {
	if a.slot {
		a.slot = false
		<-a.h.g.hsCPU
	}
}

func (a *hsConn) Write(p []byte) (int, error) {
	if len(p) >= 43 && p[0] == contentHandshake && p[5] == 2 {
		copy(a.sr[:], p[11:43]) // ServerHello random
		a.gotSR = true
	}
	w := a.c.Writer()
	buf, err := w.Malloc(len(p))
	if err != nil {
		return 0, err
	}
	copy(buf, p)
	// A client that does not read could hold the flush: not with a slot.
	a.release()
	if err := w.Flush(); err != nil {
		return 0, err
	}
	a.flushed = true
	return len(p), nil
}

// Bounds on what netpoll, which reads eagerly, may hold during the
// handshake. Until our flight is out a client has nothing to send but its
// hello (a few KiB). After it, a TLS 1.3 client may send its Finished and
// then application data at once (a POST upload for the fallback web
// server), and all of it lands while the handshake goroutine waits to be
// scheduled: on a busy machine that is megabytes, so the bound is the
// fallback's carry bound.
const (
	maxHelloFlight = 64 << 10
	maxAfterFlight = maxFallbackCarry
)

func (a *hsConn) inputLimit() int {
	if a.flushed {
		return maxAfterFlight
	}
	return maxHelloFlight
}

func (a *hsConn) Close() error                       { return nil }
func (a *hsConn) LocalAddr() net.Addr                { return a.c.LocalAddr() }
func (a *hsConn) RemoteAddr() net.Addr               { return a.c.RemoteAddr() }
func (a *hsConn) SetDeadline(t time.Time) error      { return nil }
func (a *hsConn) SetReadDeadline(t time.Time) error  { return nil }
func (a *hsConn) SetWriteDeadline(t time.Time) error { return nil }

// handshakeStack is the frame growStack puts on the stack: the runtime then
// gives the goroutine a 16 KiB stack, which crypto/tls's server handshake
// (X25519, an ECDSA or RSA signature) fits in (perf of tls-connect shows
// no more growth there with a 16 or 32 KiB frame than with this one, and a
// 32 KiB stack is no longer a pooled one).
const handshakeStack = 8 << 10

// growStack grows the goroutine's stack in one step while it is still
// shallow. A handshake goroutine is new (netpoll starts one per task) and
// its stack would otherwise double two or three times deep inside
// crypto/tls, each time copying and adjusting every frame: 4.2% of the
// gateway's CPU in tls-connect, 1.7% after this (2026-12-02). Called only
// once the ClientHello is complete, so a client that stalls before it does
// not pin a grown stack.
//
//go:noinline
func growStack(i int) byte {
	var b [handshakeStack]byte
	return b[i]
}

// tlsHandshake runs the TLS handshake on the handshake goroutine and sets up
// the record layer the rest of the connection uses. The connection's
// secrets are wiped on every way out.
func (h *handshake) tlsHandshake() error {
	g := h.g
	a := &hsConn{h: h, c: h.c, deadline: h.start.Add(g.cfg.HandshakeTimeout)}
	defer a.release()
	defer a.keys.wipe()
	h.c.SetWriteTimeout(time.Until(a.deadline))
	if err := a.waitHello(); err != nil {
		return err
	}
	growStack(0)
	tc := tls.Server(a, g.tlsConf)
	ctx, cancel := context.WithDeadline(context.Background(), a.deadline)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		return err
	}
	k := &a.keys
	st := tc.ConnectionState()
	if st.NegotiatedProtocol == acmeALPN {
		return errACMEValidation
	}
	var rl recordLayer
	switch st.Version {
	case tls.VersionTLS13:
		if k.client == nil || k.server == nil {
			return errors.New("gateway: no TLS secrets for this handshake")
		}
		var l *tls13Layer
		if l, err = newTLS13(st.CipherSuite, k.client, k.server); err == nil {
			// crypto/tls sealed its NewSessionTicket with our key.
			l.out.Skip(uint64(a.tickets))
			rl = l
		}
	case tls.VersionTLS12:
		if k.master == nil || !k.gotCR || !a.gotSR {
			return errors.New("gateway: no TLS secrets for this handshake")
		}
		rl, err = newTLS12(st.CipherSuite, k.master, k.cr[:], a.sr[:])
	default:
		err = errors.New("gateway: unexpected TLS version")
	}
	if err != nil {
		return err
	}
	h.tls = &tlsSession{rl: rl}
	g.m.TLSHandshake(st.Version, st.CipherSuite, st.DidResume)
	return nil
}

// readTLSRequest opens records until h.plain holds a request the
// emulation has a verdict on (h.p), dropping the body of an answered
// request on the way. A non-zero Reject means it stopped short: a timeout,
// or a record layer error (err).
func (h *handshake) readTLSRequest() (Reject, error) {
	g := h.g
	r := h.c.Reader()
	for {
		if h.body.active() {
			k, ok := h.body.drop(h.plain)
			h.plain = h.plain[:copy(h.plain, h.plain[k:])]
			if !ok {
				return RejectMalformed, errBadBody
			}
			if !h.body.active() && h.body.close {
				return 0, nil
			}
		}
		if !h.body.active() && len(h.plain) > 0 && h.p.Feed(h.plain, g.cfg.MaxRequestSize) {
			return 0, nil
		}
		hdr, err := h.waitRecord(5)
		if err != nil {
			return RejectTimeout, err
		}
		n, err := h.tls.rl.recordLen(hdr)
		if err != nil {
			return RejectMalformed, err
		}
		if _, err := h.waitRecord(n); err != nil {
			return RejectTimeout, err
		}
		rec, err := r.Next(n)
		if err != nil {
			return RejectTimeout, err
		}
		plain, ct, err := h.tls.open(rec)
		if err != nil {
			r.Release()
			return RejectMalformed, err
		}
		if ct == contentAppData {
			if h.body.active() && len(h.plain) == 0 {
				k, ok := h.body.drop(plain)
				if !ok {
					r.Release()
					return RejectMalformed, errBadBody
				}
				plain = plain[k:]
			}
			if room := g.cfg.MaxRequestSize + maxEarly - len(h.plain); len(plain) > room {
				// The parser has its verdict at MaxRequestSize; past it
				// only early data is kept, up to maxEarly.
				plain = plain[:room]
			}
			h.plain = append(h.plain, plain...)
		}
		r.Release()
	}
}

var errBadBody = errors.New("gateway: malformed chunked body")

// waitRecord waits until n bytes are buffered, under the request's deadline.
func (h *handshake) waitRecord(n int) ([]byte, error) {
	if err := h.waitBytes(n, h.deadline()); err != nil {
		return nil, err
	}
	return h.c.Reader().Peek(n)
}

// TLSSuites lists every (version, suite) a handshake can end with, so a
// metrics reporter can create all its series at start-up.
var TLSSuites = func() [][2]uint16 {
	out := [][2]uint16{
		{tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256},
		{tls.VersionTLS13, tls.TLS_AES_256_GCM_SHA384},
		{tls.VersionTLS13, tls.TLS_CHACHA20_POLY1305_SHA256},
	}
	for _, s := range tls12Suites {
		out = append(out, [2]uint16{tls.VersionTLS12, s})
	}
	return out
}()

// TLSVersionName is the metric label of a TLS version ("1.2", "1.3").
func TLSVersionName(v uint16) string { return tlsVersionName(v) }
