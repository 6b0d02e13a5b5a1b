package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudwego/netpoll"

	"github.com/httvps/httvps/codec"
	"github.com/httvps/httvps/codec/mux"
)

// Gateway accepts WebSocket sessions on the Outline-compatible paths and
// relays them to upstreams chosen by its Authenticator.
//
// Accept and the HTTP upgrade run on netpoll; once a session is upgraded its
// socket leaves netpoll and joins one of the gateway's relay loops (see
// loop.go and docs/04-gateway-design.md).
//
// Every goroutine of the gateway reaches it: netpoll's (handshakes), the
// relay loops, fallback relays and the caller's (Serve, Shutdown). The
// fields up to hsCPU are fixed once New returns; adm, reclaim and tlsKeys
// say how they are guarded; the atomics are shared; the rest is guarded by
// g.mu.
type Gateway struct {
	cfg       Config
	log       *slog.Logger
	m         Metrics
	pages     *decoyPages   // the decoy's answers (decoy.go)
	keepAlive time.Duration // see Config.DecoyKeepAlive
	// decoy is the default answer as one request gets it on a connection
	// that then closes, with the Date of New (tests compare against it).
	decoy    []byte
	chunk    int   // bytes read from a socket per call
	eofGrace int64 // ns; see Config.EOFGrace
	idle     [numPaths]int64

	limits    codec.Limits // client frames on the tcp path
	udpLimits codec.Limits // client frames on the udp path
	tunLimits codec.Limits // client frames on a tunnel: no message limit (boundaries carry no meaning)

	tm            TunnelMetrics   // cfg.Metrics if it implements it
	cm            CreditMetrics   // cfg.Metrics if it implements it
	docs          Documents       // cfg.Documents; nil: the decoy for every non-session
	dm            DocumentMetrics // cfg.Metrics if it implements it
	tunMaxStreams int             // see Config.TunnelMaxStreams

	loops []*loop
	next  atomic.Uint32

	fallback *fallbacks  // nil: the decoy answer for every non-session
	proxy    *proxyPeers // nil: no PROXY protocol (Config.ProxyProtocolFrom)
	fwd      *proxyPeers // nil: no forwarded-for headers (Config.ForwardedFrom)

	tlsConf *tls.Config   // nil: plaintext listener
	tlsKeys tlsKeys       // session ticket keys
	hsCPU   chan struct{} // slots for handshakes doing crypto

	adm        admission
	reclaim    reclaimer
	active     atomic.Int64 // sessions + handshakes
	handshakes atomic.Int64
	sessions   atomic.Int64 // from handOff (the 101 may leave there) to unlink
	handingOff atomic.Int64 // handOffs between their 101 and their post to a loop
	draining   atomic.Bool
	serving    atomic.Bool

	mu       sync.Mutex // guards evloop, addr, drainCh, drainCnt, stopped
	evloop   netpoll.EventLoop
	addr     net.Addr
	drainCh  chan struct{}
	drainCnt int
	stopped  bool
}

var netpollOnce sync.Once

// New validates cfg, fills in defaults and starts the relay loops.
func New(cfg Config) (*Gateway, error) {
	if cfg.Auth == nil {
		return nil, errors.New("gateway: Config.Auth is required")
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&cfg.MaxSessions, defaultMaxSessions)
	def(&cfg.MaxHandshakes, defaultMaxHandshakes)
	def(&cfg.MaxRequestSize, defaultMaxRequestSize)
	def(&cfg.BufferCap, defaultBufferCap)
	def(&cfg.ReadChunk, defaultReadChunk)
	def(&cfg.Loops, runtime.GOMAXPROCS(0))
	if cfg.AddrHandshakes == 0 {
		cfg.AddrHandshakes = defaultAddrHandshakes
	}
	def(&cfg.AddrBurst, defaultAddrBurst)
	if cfg.AddrRate == 0 {
		cfg.AddrRate = defaultAddrRate
	}
	defDur(&cfg.HandshakeTimeout, defaultHandshakeTimeout)
	defDur(&cfg.DialTimeout, defaultDialTimeout)
	defDur(&cfg.IdleTimeout, defaultIdleTimeout)
	defDur(&cfg.UDPIdleTimeout, defaultUDPIdleTimeout)
	defDur(&cfg.DrainTimeout, defaultDrainTimeout)
	if cfg.MaxFrameSize <= 0 {
		cfg.MaxFrameSize = defaultMaxFrame
	}
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = defaultMaxFrame
	}
	if cfg.MaxRequestSize < 256 {
		return nil, fmt.Errorf("gateway: MaxRequestSize %d is below 256", cfg.MaxRequestSize)
	}
	if cfg.DecoyStatus != 0 && !DecoyStatusValid(cfg.DecoyStatus) {
		return nil, fmt.Errorf("gateway: DecoyStatus %d has no nginx reason phrase and page", cfg.DecoyStatus)
	}
	if cfg.ReadChunk < 1024 || cfg.BufferCap < 1024 {
		return nil, errors.New("gateway: ReadChunk and BufferCap must be at least 1024")
	}
	if cfg.Metrics == nil {
		cfg.Metrics = nopMetrics{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	g := &Gateway{cfg: cfg, log: cfg.Logger, m: cfg.Metrics}
	g.reclaim.log = cfg.Logger
	g.adm.init(&cfg)
	var err error
	if g.fwd, err = newProxyPeers("ForwardedFrom", cfg.ForwardedFrom); err != nil {
		return nil, err
	}
	if g.proxy, err = newProxyPeers("ProxyProtocolFrom", cfg.ProxyProtocolFrom); err != nil {
		return nil, err
	}
	g.chunk = min(cfg.ReadChunk, cfg.BufferCap)
	switch {
	case cfg.EOFGrace == 0:
		g.eofGrace = int64(defaultEOFGrace)
	case cfg.EOFGrace > 0:
		g.eofGrace = int64(cfg.EOFGrace)
	}
	g.idle[PathTCP] = int64(cfg.IdleTimeout)
	g.idle[PathUDP] = int64(cfg.UDPIdleTimeout)
	g.idle[PathTunnel] = int64(cfg.IdleTimeout)
	g.docs, g.dm = cfg.Documents, nopDocumentMetrics{}
	if dm, ok := cfg.Metrics.(DocumentMetrics); ok {
		g.dm = dm
	}
	g.tm = nopTunnelMetrics{}
	g.cm = nopCreditMetrics{}
	if cm, ok := cfg.Metrics.(CreditMetrics); ok {
		g.cm = cm
	}
	if tm, ok := cfg.Metrics.(TunnelMetrics); ok {
		g.tm = tm
	}
	g.tunMaxStreams = cfg.TunnelMaxStreams
	if g.tunMaxStreams <= 0 {
		g.tunMaxStreams = mux.DefaultMaxStreams
	}
	g.pages = newDecoyPages(cfg)
	g.decoy = g.pages.AppendAnswer(nil, answer{})
	g.keepAlive = cfg.DecoyKeepAlive
	if g.keepAlive <= 0 {
		g.keepAlive = cfg.HandshakeTimeout
	}
	if cfg.Fallback != "" {
		f, err := newFallbacks(g, &cfg)
		if err != nil {
			return nil, fmt.Errorf("gateway: Fallback %q: %w", cfg.Fallback, err)
		}
		g.fallback = f
	}
	g.limits = codec.Limits{MaxFrame: cfg.MaxFrameSize, MaxMessage: cfg.MaxMessageSize, RejectText: true}
	g.tunLimits = codec.Limits{MaxFrame: cfg.MaxFrameSize, MaxMessage: math.MaxInt64, RejectText: true}
	g.udpLimits = codec.Limits{MaxFrame: min(cfg.MaxFrameSize, maxUDPPayload), MaxMessage: min(cfg.MaxMessageSize, maxUDPPayload), RejectText: true}
	if cfg.TLS != nil {
		tc, err := buildTLS(cfg.TLS, &g.tlsKeys)
		if err != nil {
			return nil, err
		}
		g.tlsConf = tc
		n := cfg.TLS.HandshakeCPU
		if n <= 0 {
			n = defaultHandshakeCPU()
		}
		g.hsCPU = make(chan struct{}, n)
	}
	netpollOnce.Do(func() {
		netpoll.SetLoggerOutput(io.Discard)
		// Handshake-phase connections are short and read at most
		// MaxRequestSize, so small netpoll buffers suffice.
		netpoll.Configure(netpoll.Config{BufferSize: 2048})
	})
	for i := 0; i < cfg.Loops; i++ {
		l, err := newLoop(g)
		if err != nil {
			return nil, fmt.Errorf("gateway: relay loop: %w", err)
		}
		g.loops = append(g.loops, l)
		go l.run()
	}
	return g, nil
}

// ListenAndServe listens on addr (TCP) and serves until Shutdown.
func (g *Gateway) ListenAndServe(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return g.Serve(ln)
}

// Serve accepts connections from ln until Shutdown. It takes ln over.
func (g *Gateway) Serve(ln net.Listener) error {
	nl, err := netpoll.ConvertListener(ln)
	if err != nil {
		ln.Close()
		return fmt.Errorf("gateway: %w", err)
	}
	el, err := netpoll.NewEventLoop(g.onRequest,
		netpoll.WithOnPrepare(g.onPrepare),
	)
	if err != nil {
		nl.Close()
		return fmt.Errorf("gateway: %w", err)
	}
	g.mu.Lock()
	if g.stopped {
		g.mu.Unlock()
		nl.Close()
		return net.ErrClosed
	}
	g.evloop = el
	g.addr = nl.Addr()
	g.mu.Unlock()
	g.serving.Store(true)
	g.log.Info("gateway serving", "addr", nl.Addr().String(), "loops", len(g.loops))
	err = el.Serve(nl)
	g.serving.Store(false)
	if g.draining.Load() {
		return nil
	}
	return err
}

// Addr is the listening address once Serve has started.
func (g *Gateway) Addr() net.Addr {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.addr
}

// Ready reports whether the gateway is serving and not draining.
func (g *Gateway) Ready() bool { return g.serving.Load() && !g.draining.Load() }

// Sessions is the number of upgraded connections the gateway holds,
// those whose upstream connect is in flight included. A session counts
// from its hand-off, which may send the 101 before a relay loop adopts
// it, so a client that has its 101 is always counted.
func (g *Gateway) Sessions() int { return int(g.sessions.Load()) }

// Handshakes is the number of connections not yet upgraded.
func (g *Gateway) Handshakes() int { return int(g.handshakes.Load()) }

// Shutdown drains the gateway: it stops accepting, sends close 1001 to every
// session, waits until they end, DrainTimeout passes or ctx is done, then
// closes what is left and stops the relay loops.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.mu.Lock()
	if g.stopped {
		g.mu.Unlock()
		return nil
	}
	g.stopped = true
	g.draining.Store(true)
	el := g.evloop
	g.drainCh = make(chan struct{})
	g.drainCnt = len(g.loops)
	g.mu.Unlock()

	if el != nil {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		el.Shutdown(sctx)
		cancel()
	}
	// A hand-off already past its draining check has sent its 101: let
	// it post its adoption first (microseconds; bounded), so the drain
	// that follows on that loop gives the session its close 1001.
	for wait := time.Now().Add(time.Second); g.handingOff.Load() > 0 && time.Now().Before(wait); {
		time.Sleep(100 * time.Microsecond)
	}
	for _, l := range g.loops {
		l.post(l.drain)
	}
	timer := time.NewTimer(g.cfg.DrainTimeout)
	defer timer.Stop()
	var err error
	select {
	case <-g.drainCh:
	case <-timer.C:
		err = errors.New("gateway: drain timeout, closing remaining sessions")
	case <-ctx.Done():
		err = ctx.Err()
	}
	if g.fallback != nil {
		g.fallback.closeAll(time.Now().Add(time.Second))
	}
	for _, l := range g.loops {
		l.post(l.kill)
		l.stop()
	}
	for _, l := range g.loops {
		<-l.done
	}
	g.log.Info("gateway stopped", "err", err)
	return err
}

// drained is called by a loop (on its goroutine) once it has no sessions.
func (g *Gateway) drained(l *loop) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.drainCnt > 0 {
		g.drainCnt--
		if g.drainCnt == 0 {
			close(g.drainCh)
		}
	}
}

func (g *Gateway) pickLoop() *loop {
	return g.loops[int(g.next.Add(1))%len(g.loops)]
}

// A receiver that took less than slowRate bytes per second between two
// drains of its queue is slow, and reads feeding it take minRead bytes
// instead of the read chunk (stream.small): it gains nothing
// from large reads (a few per second at most) and would hold each one in
// its queue for a long time. Faster receivers get the read chunk; there can
// only be a few of them at once (node bandwidth / slowRate), so what they
// hold stays small in total.
const (
	minRead  = 64 << 10
	slowRate = 32 << 20
)

// slowReceiver reports whether bytes read for a receiver between its queue
// draining at mark and draining again at now is under slowRate.
func slowReceiver(bytes, mark, now int64) bool {
	dt := now - mark
	if dt <= 0 {
		return false
	}
	return float64(bytes)*1e9/float64(dt) < slowRate
}

// readSize is the size of the next read: chunk, or at most minRead toward a
// slow receiver.
func readSize(chunk int, small bool) int {
	if small {
		return min(chunk, minRead)
	}
	return chunk
}

// upChunk is how much one read from an upstream may take: a read chunk for a
// stream, a whole datagram for udp.
func (g *Gateway) upChunk(k PathKind) int {
	if k == PathUDP {
		return 65536
	}
	return g.chunk
}

// CloseAccount ends every live session charged to the account with this key
// (close 1008), on every loop. It returns at once; the sessions end within
// one loop iteration.
func (g *Gateway) CloseAccount(key string) { g.endAccount(key, EndRevoked) }

// CloseAccountQuota is CloseAccount for an account whose quota is used up:
// the same close 1008, counted as EndQuota.
func (g *Gateway) CloseAccountQuota(key string) { g.endAccount(key, EndQuota) }

func (g *Gateway) endAccount(key string, end End) {
	for _, l := range g.loops {
		l.post(func() {
			for s := l.head.next; s != &l.head; {
				next := s.next
				if s.acct != nil && s.acct.Key() == key {
					s.revoke(end)
				}
				s = next
			}
		})
	}
}
