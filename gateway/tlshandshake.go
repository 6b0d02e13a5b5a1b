package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"net"
	"sync"
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
	// HandshakeCPU bounds handshakes doing cryptographic work at once, so a
	// handshake flood cannot starve the relay loops of CPU. A handshake
	// waiting for the network does not hold a slot. 0 means
	// max(1, GOMAXPROCS/2).
	HandshakeCPU int
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
// Session tickets are off: resumption would add per-server state, and a
// ticket sent after the handshake would shift the record sequence numbers
// the relay takes over at.
func buildTLS(c *TLSConfig, kl *keyLog) (*tls.Config, error) {
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
	return &tls.Config{
		GetCertificate:         c.GetCertificate,
		MinVersion:             minV,
		MaxVersion:             tls.VersionTLS13,
		CipherSuites:           tls12Suites,
		SessionTicketsDisabled: true,
		NextProtos:             []string{"http/1.1"},
		// The traffic secrets are handed to the relay through this hook, in
		// memory only; nothing is ever written out.
		KeyLogWriter: kl,
	}, nil
}

// keyLog receives crypto/tls's key log lines and keeps the secrets the relay
// needs, by client random, until the handshake goroutine takes them.
type keyLog struct {
	mu sync.Mutex
	m  map[[32]byte]*secrets
}

type secrets struct {
	client, server []byte // TLS 1.3 application traffic secrets
	master         []byte // TLS 1.2 master secret
}

func (k *keyLog) Write(line []byte) (int, error) {
	n := len(line)
	line = bytes.TrimSpace(line)
	f := bytes.Fields(line)
	if len(f) != 3 || hex.DecodedLen(len(f[1])) != 32 {
		return n, nil
	}
	var cr [32]byte
	if _, err := hex.Decode(cr[:], f[1]); err != nil {
		return n, nil
	}
	var dst *[]byte
	k.mu.Lock()
	defer k.mu.Unlock()
	s := k.m[cr]
	if s == nil {
		s = new(secrets)
		k.m[cr] = s
	}
	switch string(f[0]) {
	case "CLIENT_TRAFFIC_SECRET_0":
		dst = &s.client
	case "SERVER_TRAFFIC_SECRET_0":
		dst = &s.server
	case "CLIENT_RANDOM":
		dst = &s.master
	default:
		return n, nil
	}
	*dst = make([]byte, hex.DecodedLen(len(f[2])))
	hex.Decode(*dst, f[2])
	clear(f[2])
	return n, nil
}

// take removes and returns the secrets logged for a client random.
func (k *keyLog) take(cr [32]byte) *secrets {
	k.mu.Lock()
	defer k.mu.Unlock()
	s := k.m[cr]
	delete(k.m, cr)
	return s
}

func (s *secrets) wipe() {
	if s != nil {
		clear(s.client)
		clear(s.server)
		clear(s.master)
	}
}

// hsConn is the net.Conn crypto/tls handshakes over: the netpoll connection,
// read one TLS record at a time so that nothing past the client's Finished
// is consumed (the next record is the relay's first, sequence number 0).
// It also notes the client and server randoms, and gives up the handshake
// CPU slot while it waits for the network.
type hsConn struct {
	h        *handshake
	c        netpoll.Connection
	deadline time.Time

	hdr    [5]byte
	hn     int
	remain int

	gotCR, gotSR bool
	cr, sr       [32]byte
	slot         bool // holds a handshake CPU slot
}

var errHandshakeInput = errors.New("gateway: handshake input too large")

func (a *hsConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r := a.c.Reader()
	if r.Len() > 1<<16 {
		// A client flight is a few KiB; netpoll buffers eagerly, so bound it.
		return 0, errHandshakeInput
	}
	if r.Len() == 0 {
		a.release()
		if err := a.wait(1); err != nil {
			return 0, err
		}
	}
	if err := a.acquire(); err != nil {
		return 0, err
	}
	if a.remain == 0 {
		if b, _ := r.Peek(1); !a.gotCR && a.hn == 0 && len(b) == 1 && b[0] == contentHandshake {
			// The first record is the ClientHello; its random sits at a fixed
			// offset (record header 5, handshake header 4, version 2).
			if err := a.wait(43); err == nil {
				b, _ := r.Peek(43)
				if b[0] == contentHandshake && b[5] == 1 {
					copy(a.cr[:], b[11:43])
					a.gotCR = true
				}
			}
		}
		want := min(len(p), 5-a.hn)
		want = min(want, r.Len())
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

// wait blocks until n bytes are buffered or the deadline passes.
func (a *hsConn) wait(n int) error {
	r := a.c.Reader()
	if r.Len() >= n {
		return nil
	}
	left := time.Until(a.deadline)
	if left <= 0 {
		return errHandshakeTimeout
	}
	a.c.SetReadTimeout(left)
	_, err := r.Peek(n)
	return err
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
	select {
	case g.hsCPU <- struct{}{}:
		a.slot = true
		return nil
	case <-t.C:
		return errHandshakeTimeout
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
	if err := w.Flush(); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (a *hsConn) Close() error                       { return nil }
func (a *hsConn) LocalAddr() net.Addr                { return a.c.LocalAddr() }
func (a *hsConn) RemoteAddr() net.Addr               { return a.c.RemoteAddr() }
func (a *hsConn) SetDeadline(t time.Time) error      { return nil }
func (a *hsConn) SetReadDeadline(t time.Time) error  { return nil }
func (a *hsConn) SetWriteDeadline(t time.Time) error { return nil }

// tlsHandshake runs the TLS handshake on the handshake goroutine and sets up
// the record layer the rest of the connection uses.
func (h *handshake) tlsHandshake() error {
	g := h.g
	a := &hsConn{h: h, c: h.c, deadline: h.start.Add(g.cfg.HandshakeTimeout)}
	defer a.release()
	h.c.SetWriteTimeout(time.Until(a.deadline))
	tc := tls.Server(a, g.tlsConf)
	ctx, cancel := context.WithDeadline(context.Background(), a.deadline)
	err := tc.HandshakeContext(ctx)
	cancel()
	var sec *secrets
	if a.gotCR {
		sec = g.keylog.take(a.cr)
		defer sec.wipe()
	}
	if err != nil {
		return err
	}
	if sec == nil {
		return errors.New("gateway: no TLS secrets for this handshake")
	}
	st := tc.ConnectionState()
	var rl recordLayer
	switch st.Version {
	case tls.VersionTLS13:
		rl, err = newTLS13(st.CipherSuite, sec.client, sec.server)
	case tls.VersionTLS12:
		if !a.gotSR {
			return errors.New("gateway: no ServerHello seen")
		}
		rl, err = newTLS12(st.CipherSuite, sec.master, a.cr[:], a.sr[:])
	default:
		err = errors.New("gateway: unexpected TLS version")
	}
	if err != nil {
		return err
	}
	h.tls = &tlsSession{rl: rl}
	g.m.TLSHandshake(st.Version, st.CipherSuite)
	return nil
}

// readTLSRequest opens records until the HTTP request is complete. It
// returns the request (plaintext, in h.plain).
func (h *handshake) readTLSRequest() ([]byte, Reject, error) {
	g := h.g
	r := h.c.Reader()
	deadline := h.start.Add(g.cfg.HandshakeTimeout)
	for {
		if i := bytes.Index(h.plain, crlfcrlf); i >= 0 {
			h.extra = h.plain[i+4:]
			return h.plain[:i+4], 0, nil
		}
		if len(h.plain) >= g.cfg.MaxRequestSize {
			return nil, RejectTooLarge, nil
		}
		if len(h.plain) > 0 && !plausibleRequest(h.plain) {
			return nil, RejectMalformed, nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, RejectTimeout, errHandshakeTimeout
		}
		h.c.SetReadTimeout(left)
		hdr, err := r.Peek(5)
		if err != nil {
			return nil, RejectTimeout, err
		}
		n, err := h.tls.rl.recordLen(hdr)
		if err != nil {
			return nil, RejectMalformed, err
		}
		rec, err := r.Next(n)
		if err != nil {
			return nil, RejectTimeout, err
		}
		plain, ct, err := h.tls.rl.open(rec)
		if err == nil {
			var reply bool
			reply, err = h.tls.rl.post(ct, plain)
			h.tls.replyKU = h.tls.replyKU || reply
		}
		if err != nil {
			r.Release()
			return nil, RejectMalformed, err
		}
		if ct == contentAppData {
			if len(h.plain)+len(plain) > g.cfg.MaxRequestSize+maxEarly {
				r.Release()
				return nil, RejectTooLarge, nil
			}
			h.plain = append(h.plain, plain...)
		}
		r.Release()
	}
}

// sealDecoy protects the decoy answer and a close_notify for a TLS client.
func (h *handshake) sealDecoy() ([]byte, error) {
	rl := h.tls.rl
	p := h.g.decoy
	out := make([]byte, 0, len(p)+(len(p)/maxTLSPlain+2)*64)
	var err error
	for len(p) > 0 {
		k := min(len(p), maxTLSPlain)
		if out, err = rl.seal(out, contentAppData, p[:k]); err != nil {
			return nil, err
		}
		p = p[k:]
	}
	return rl.sealAlert(out, alertCloseNotify)
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
