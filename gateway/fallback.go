package gateway

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudwego/netpoll"
	"golang.org/x/sys/unix"

	"github.com/httvps/httvps/bufpool"
)

// With Config.Fallback set, every connection that would get the decoy is
// handed to a real web server instead (docs/04-gateway-design.md,
// "Fallback"): decoy dials it, the connection leaves netpoll as a session
// does, and closed passes the socket here with every byte read so far. Over
// TLS the gateway keeps terminating TLS with its own record layer and relays
// the plaintext.
//
// A fallback connection is relayed by a pair of goroutines over std net
// connections, not on the relay loops: these connections are rare (probers,
// stray visitors) and short, and a goroutine pair keeps them apart from the
// session code. They are bounded in number (MaxFallbacks, and they count in
// MaxSessions), in memory (pooled buffers taken only while bytes move: an
// idle fallback connection holds none) and in time (FallbackIdleTimeout,
// and a short linger once the web server has finished).

const (
	defaultMaxFallbacks    = 1024
	defaultFallbackIdle    = 2 * time.Minute
	fallbackLinger         = 5 * time.Second // client reads after the web server's FIN
	fallbackBuf            = 16 << 10        // plaintext buffer per direction
	fallbackTLSIn          = 64 << 10        // ciphertext buffer: room for a partial record and a read
	fallbackSealRoom       = 64              // record overhead kept free when sealing into fallbackBuf
	fallbackDialWarnPeriod = 10 * time.Second
)

var (
	errFallbackIdle    = errors.New("gateway: fallback idle")
	errFallbackRefused = errors.New("gateway: fallback is this listener, or the client sent too much")
)

// maxFallbackCarry bounds the client bytes buffered at the hand-off that
// are carried to the fallback (netpoll reads eagerly while the request is
// read and the fallback dialled, so an upload that follows its request at
// once can be megabytes in by then); past it the connection is closed. The
// dial waits at most fallbackDialTimeout, so what a client can make the
// gateway buffer this way is bounded by its bandwidth over that time.
const (
	maxFallbackCarry    = 64 << 20
	fallbackDialTimeout = time.Second
)

// sameEndpoint reports whether a and b are the same TCP address.
func sameEndpoint(a, b net.Addr) bool {
	x, ok1 := a.(*net.TCPAddr)
	y, ok2 := b.(*net.TCPAddr)
	return ok1 && ok2 && x.AddrPort().Addr().Unmap() == y.AddrPort().Addr().Unmap() && x.Port == y.Port
}

// fallbacks is the gateway's fallback web server and its live connections.
//
// Reached from every handshake goroutine and every fallback connection's
// goroutines: the first fields are fixed at New, the atomics shared, the rest
// guarded by mu.
type fallbacks struct {
	g    *Gateway
	addr netip.AddrPort
	max  int64
	idle time.Duration

	live        atomic.Int64
	lastWarn    atomic.Int64 // unix ns of the last dial-failure warning
	warnQuiesce atomic.Bool

	mu     sync.Mutex
	conns  map[*fallbackConn]struct{} // guarded by mu
	closed bool                       // guarded by mu: Shutdown ran
	wg     sync.WaitGroup
}

func newFallbacks(g *Gateway, cfg *Config) (*fallbacks, error) {
	ap, err := resolveUpstream(cfg.Fallback)
	if err != nil {
		return nil, err
	}
	n := cfg.MaxFallbacks
	if n <= 0 {
		n = defaultMaxFallbacks
	}
	idle := cfg.FallbackIdleTimeout
	if idle <= 0 {
		idle = defaultFallbackIdle
	}
	return &fallbacks{g: g, addr: ap, max: int64(n), idle: idle, conns: make(map[*fallbackConn]struct{})}, nil
}

// Fallbacks is the number of connections relayed to Config.Fallback now.
func (g *Gateway) Fallbacks() int {
	if g.fallback == nil {
		return 0
	}
	return int(g.fallback.live.Load())
}

// startFallback dials the fallback and detaches the connection so that
// closed hands it over (adoptFallback). It reports false, having changed
// nothing, when the connection is to get the built-in decoy instead: the
// fallback is at MaxFallbacks or cannot be dialled. Runs on the handshake
// goroutine, which owns the connection.
func (h *handshake) startFallback() bool {
	g, f := h.g, h.g.fallback
	if h.tlsErr != nil && !errors.Is(h.tlsErr, errCloseNotify) {
		// The client's record stream is broken (say, a bad record MAC):
		// nothing more of it can be relayed.
		return false
	}
	if h.plainTLS {
		// Plain HTTP on the TLS port: the fallback is a plain-HTTP server
		// and would answer as on its own port; the decoy answers as nginx
		// does on a TLS port.
		return false
	}
	if f.live.Add(1) > f.max {
		f.live.Add(-1)
		g.m.Dropped(DropFallbackBusy, h.readSoFar())
		return false
	}
	// One address may hold a sixteenth of the fallback connections (at
	// least 8), so a single host cannot turn the real site into the decoy
	// for everyone.
	if !g.adm.bookFallback(h.addr, max(int(f.max)/16, min(int(f.max), 8))) {
		f.live.Add(-1)
		g.m.Dropped(DropFallbackBusy, h.readSoFar())
		return false
	}
	d := net.Dialer{Timeout: min(g.cfg.DialTimeout, fallbackDialTimeout)}
	c, err := d.Dial("tcp", f.addr.String())
	if err == nil && (sameEndpoint(c.RemoteAddr(), h.c.LocalAddr()) || h.c.Reader().Len() > maxFallbackCarry) {
		// A fallback that is this listener would loop; a client that
		// streamed more than a request's worth during the dial is not
		// carried.
		c.Close()
		err = errFallbackRefused
	}
	if err != nil {
		f.live.Add(-1)
		g.adm.unbookFallback(h.addr)
		g.m.Dropped(DropFallbackDial, h.readSoFar())
		if now := time.Now().UnixNano(); now-f.lastWarn.Load() > int64(fallbackDialWarnPeriod) {
			f.lastWarn.Store(now)
			g.log.Warn("fallback dial failed; answering with the built-in decoy", "fallback", f.addr.String(), "err", err)
		}
		return false
	}
	g.m.HandshakeRejected(h.reject)
	h.fb = c.(*net.TCPConn)
	if err := h.c.Close(); err != nil {
		// closed still runs (netpoll calls it however the connection ends)
		// and cleans up through adoptFallback.
		g.log.Debug("fallback detach", "err", err)
	}
	return true
}

// readSoFar is how many bytes of the client's the hand-off would carry.
func (h *handshake) readSoFar() int {
	if h.tls != nil {
		return len(h.plain)
	}
	return h.c.Reader().Len()
}

// adoptFallback runs in netpoll's close callback after startFallback's
// close. Once quiesce has stopped the poller, no byte can reach netpoll's
// buffer any more, so what it holds is exactly what the client sent past
// what the handshake consumed.
func (h *handshake) adoptFallback(c netpoll.Connection) {
	g, f := h.g, h.g.fallback
	h.releaseAccount()
	if h.ufd >= 0 {
		unix.Close(h.ufd)
		h.ufd = -1
	}
	fc := &fallbackConn{f: f, back: h.fb, tls: h.tls, remote: h.remote(), addr: h.addr}
	if h.tls != nil {
		fc.first = append(fc.first, h.plain...)
		fc.clientEnded = errors.Is(h.tlsErr, errCloseNotify)
	}
	if !quiesce(c) && f.warnQuiesce.CompareAndSwap(false, true) {
		g.log.Warn("fallback: cannot stop netpoll's reads at the hand-off; bytes arriving during it may be lost")
	}
	r := c.Reader()
	var rest []byte
	tooMuch := false
	if n := r.Len(); n > maxFallbackCarry {
		tooMuch = true
	} else if n > 0 {
		if b, err := r.Next(n); err == nil {
			rest = append([]byte(nil), b...)
		}
	}
	if h.tls != nil {
		fc.firstRec = rest
	} else {
		fc.first = rest
	}
	// Move the socket to the Go runtime's poller, so the relay gets
	// deadlines and half-close from std net: FileConn makes its own
	// descriptor of our duplicate (ownFD), which is closed after.
	var nc net.Conn
	fd, err := ownFD(c)
	if err == nil {
		file := os.NewFile(uintptr(fd), "client")
		nc, err = net.FileConn(file)
		file.Close()
	}
	cc, ok := nc.(*net.TCPConn)
	f.mu.Lock()
	if err == nil && ok && !f.closed && !tooMuch {
		fc.client = cc
	}
	if fc.client == nil {
		f.mu.Unlock()
		if nc != nil {
			nc.Close()
		}
		fc.back.Close()
		fc.clearTLS()
		f.live.Add(-1)
		g.adm.unbookFallback(fc.addr)
		g.active.Add(-1)
		return
	}
	f.conns[fc] = struct{}{}
	f.wg.Add(1)
	f.mu.Unlock()
	fc.touch()
	go fc.run()
}

// closeAll ends every fallback connection (Shutdown) and waits for their
// goroutines, at most until deadline.
func (f *fallbacks) closeAll(deadline time.Time) {
	f.mu.Lock()
	f.closed = true
	for fc := range f.conns {
		fc.abort()
	}
	f.mu.Unlock()
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

// fallbackConn is one client connection relayed to the fallback web server.
// The up goroutine (client → fallback) owns the record layer's read side,
// the down goroutine (fallback → client) its write side; wmu orders the
// writes to the client, which the up goroutine also makes (an alert).
// Fields are fixed when the connection is handed over (client, back, tls,
// remote, addr), or owned by the goroutine named on them; the atomics are
// shared; run reads up and down after both goroutines are done.
type fallbackConn struct {
	f      *fallbacks
	client *net.TCPConn
	back   *net.TCPConn
	tls    *tlsSession // nil on a plaintext listener
	remote net.Addr
	addr   addrKey // booked with admission.bookFallback

	first    []byte // client bytes for the fallback before any read (plaintext); owned by the up goroutine
	firstRec []byte // TLS: ciphertext read by netpoll but not yet opened; owned by the up goroutine
	// TLS: the client's close_notify came before the hand-off.
	clientEnded bool

	wmu      sync.Mutex   // held for every write to client, and for sealing (tls's write side)
	last     atomic.Int64 // unix ns of the last byte moved either way
	backDone atomic.Int64 // unix ns of the fallback's FIN; 0 before
	up, down int64        // bytes relayed, for the end-of-connection log line
}

func (fc *fallbackConn) touch() { fc.last.Store(time.Now().UnixNano()) }

// abort closes both sockets; every blocked read and write returns.
func (fc *fallbackConn) abort() {
	fc.client.Close()
	fc.back.Close()
}

func (fc *fallbackConn) clearTLS() {
	if fc.tls != nil {
		fc.tls.clear()
	}
}

func (fc *fallbackConn) run() {
	f, g := fc.f, fc.f.g
	var upErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		upErr = fc.relayUp()
		if upErr != nil {
			fc.abort()
		}
	}()
	downErr := fc.relayDown()
	if downErr != nil {
		fc.abort()
	}
	<-done
	fc.client.Close()
	fc.back.Close()
	fc.clearTLS()
	f.mu.Lock()
	delete(f.conns, fc)
	f.mu.Unlock()
	f.live.Add(-1)
	g.adm.unbookFallback(fc.addr)
	g.active.Add(-1)
	g.log.Debug("fallback connection ended", "remote", fc.remote.String(), "up", fc.up, "down", fc.down,
		"up_err", upErr, "down_err", downErr)
	f.wg.Done()
}

// waitReadable blocks, holding no buffer, until c has bytes (or EOF or an
// error) to read. The deadline is the idle timeout from the last byte moved
// either way; for the client side, once the fallback has sent its FIN, it
// is fallbackLinger from that FIN (as a web server lingers after its
// answer).
func (fc *fallbackConn) waitReadable(c *net.TCPConn, client bool) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	for {
		deadline := fc.last.Load() + int64(fc.f.idle)
		if bd := fc.backDone.Load(); client && bd != 0 {
			deadline = min(deadline, bd+int64(fallbackLinger))
		}
		if deadline <= time.Now().UnixNano() {
			return errFallbackIdle
		}
		c.SetReadDeadline(time.Unix(0, deadline))
		err := rc.Read(func(fd uintptr) bool {
			var b [1]byte
			_, _, e := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
			return e != unix.EAGAIN && e != unix.EINTR
		})
		if err == nil {
			return nil
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
		// The other direction may have moved bytes meanwhile: recompute.
	}
}

// write sends p with the idle timeout as its deadline.
func (fc *fallbackConn) write(c *net.TCPConn, p []byte) error {
	c.SetWriteDeadline(time.Now().Add(fc.f.idle))
	_, err := c.Write(p)
	if err == nil {
		fc.touch()
	}
	return err
}

// relayUp copies client → fallback until the client's end of stream (TCP
// FIN, or close_notify over TLS), which it passes on as a FIN. A nil result
// means a clean end of this direction.
func (fc *fallbackConn) relayUp() error {
	if fc.tls != nil {
		return fc.relayUpTLS()
	}
	if len(fc.first) > 0 {
		if err := fc.write(fc.back, fc.first); err != nil {
			return err
		}
		fc.up += int64(len(fc.first))
		fc.first = nil
	}
	return fc.pipe(fc.back, fc.client, true)
}

// relayDown copies fallback → client until the fallback's FIN, which it
// passes on (over TLS after a close_notify).
func (fc *fallbackConn) relayDown() error {
	if fc.tls != nil {
		return fc.relayDownTLS()
	}
	return fc.pipe(fc.client, fc.back, false)
}

// pipe is one plaintext direction. An idle end after the fallback's FIN is
// a clean end: the client just did not close within the linger.
func (fc *fallbackConn) pipe(dst, src *net.TCPConn, up bool) error {
	for {
		if err := fc.waitReadable(src, up); err != nil {
			if up && err == errFallbackIdle && fc.backDone.Load() != 0 {
				return nil
			}
			return err
		}
		b := bufpool.Get(fallbackBuf)
		n, err := src.Read(*b)
		if n > 0 {
			fc.touch()
			werr := fc.write(dst, (*b)[:n])
			if up {
				fc.up += int64(n)
			} else {
				fc.down += int64(n)
			}
			if werr != nil {
				bufpool.Put(b)
				return werr
			}
		}
		bufpool.Put(b)
		if err == io.EOF {
			if !up {
				fc.backDone.Store(time.Now().UnixNano())
			}
			return dst.CloseWrite()
		}
		if err != nil {
			return err
		}
	}
}

// relayUpTLS opens the client's records and writes their plaintext to the
// fallback. The ciphertext buffer is held only while a partial record is
// waiting for the rest.
func (fc *fallbackConn) relayUpTLS() error {
	rl := fc.tls.rl
	if len(fc.first) > 0 {
		if err := fc.write(fc.back, fc.first); err != nil {
			return err
		}
		fc.up += int64(len(fc.first))
		fc.first = nil
	}
	if fc.clientEnded {
		return fc.back.CloseWrite()
	}
	var buf *[]byte
	carry := 0
	defer func() { bufpool.Put(buf) }()
	// Records netpoll had already read are opened first; a trailing
	// partial record moves into the buffer.
	data := fc.firstRec
	fc.firstRec = nil
	for {
		rest, eof, err := fc.openRecords(rl, data)
		if err != nil || eof {
			return err
		}
		if len(rest) > 0 {
			if buf == nil {
				buf = bufpool.Get(fallbackTLSIn)
			}
			carry = copy(*buf, rest)
		} else {
			carry = 0
			bufpool.Put(buf)
			buf = nil
		}
		if err := fc.waitReadable(fc.client, true); err != nil {
			if err == errFallbackIdle && fc.backDone.Load() != 0 {
				return nil
			}
			return err
		}
		if buf == nil {
			buf = bufpool.Get(fallbackTLSIn)
		}
		n, rerr := fc.client.Read((*buf)[carry:])
		if n > 0 {
			fc.touch()
		}
		data = (*buf)[:carry+n]
		if rerr != nil {
			// TCP ended without close_notify: whatever complete records
			// came are passed on, then the end of stream.
			if _, _, err := fc.openRecords(rl, data); err != nil {
				return err
			}
			if rerr == io.EOF {
				return fc.back.CloseWrite()
			}
			return rerr
		}
	}
}

// openRecords opens the complete records in data in place and writes their
// application data to the fallback. It returns the trailing partial record
// and whether the client's close_notify came (passed on as a FIN).
func (fc *fallbackConn) openRecords(rl recordLayer, data []byte) (rest []byte, eof bool, err error) {
	for len(data) >= 5 {
		n, err := rl.recordLen(data)
		if err != nil {
			return nil, false, fc.tlsFail(rl, err)
		}
		if len(data) < n {
			break
		}
		plain, ct, err := fc.tls.open(data[:n])
		data = data[n:]
		if errors.Is(err, errCloseNotify) {
			return nil, true, fc.back.CloseWrite()
		}
		if err != nil {
			return nil, false, fc.tlsFail(rl, err)
		}
		if ct == contentAppData && len(plain) > 0 {
			if err := fc.write(fc.back, plain); err != nil {
				return nil, false, err
			}
			fc.up += int64(len(plain))
		}
	}
	return data, false, nil
}

// tlsFail sends the alert a record-layer error calls for; the connection is
// then aborted.
func (fc *fallbackConn) tlsFail(rl recordLayer, err error) error {
	if desc, send := rl.alertFor(err); send {
		fc.wmu.Lock()
		if b, aerr := rl.sealAlert(make([]byte, 0, 64), desc); aerr == nil {
			fc.client.SetWriteDeadline(time.Now().Add(time.Second))
			fc.client.Write(b)
		}
		fc.wmu.Unlock()
	}
	return err
}

// relayDownTLS seals what the fallback sends into records for the client;
// the fallback's FIN becomes close_notify and a FIN.
func (fc *fallbackConn) relayDownTLS() error {
	rl := fc.tls.rl
	for {
		if err := fc.waitReadable(fc.back, false); err != nil {
			return err
		}
		in, out := bufpool.Get(fallbackBuf), bufpool.Get(fallbackBuf)
		n, rerr := fc.back.Read((*in)[:fallbackBuf-fallbackSealRoom])
		fc.wmu.Lock()
		err := fc.sealAndWrite(rl, (*out)[:0], (*in)[:n], rerr == io.EOF)
		fc.wmu.Unlock()
		bufpool.Put(in)
		bufpool.Put(out)
		fc.down += int64(n)
		if err != nil {
			return err
		}
		if rerr == io.EOF {
			fc.backDone.Store(time.Now().UnixNano())
			return fc.client.CloseWrite()
		}
		if rerr != nil {
			return rerr
		}
	}
}

// sealAndWrite seals p (at most one record's worth) through sealTo (behind
// a KeyUpdate if one is due), and close_notify if end, into out and writes
// it. Under wmu.
func (fc *fallbackConn) sealAndWrite(rl recordLayer, out, p []byte, end bool) error {
	var err error
	if len(p) > 0 {
		if out, err = fc.tls.sealTo(out, p); err != nil {
			return err
		}
	}
	if end {
		if out, err = rl.sealAlert(out, alertCloseNotify); err != nil {
			return err
		}
	}
	if len(out) == 0 {
		return nil
	}
	return fc.write(fc.client, out)
}
