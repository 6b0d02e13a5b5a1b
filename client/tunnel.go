package client

// The client side of the HTTVPS native tunnel (docs/03, "HTTVPS native
// tunnel"): a pool of WebSockets to /v1/tunnel, each carrying many streams
// as codec/mux frames. Files: tunnel.go (the pool: dial, failover,
// reconnect, Transport), tunnel_session.go (one tunnel: OPEN, windows, its
// control writer and PINGs), tunnel_reader.go (its reader: frames to
// streams), tunnel_stream.go (a tcp stream), tunnel_packet.go (a udp
// stream).

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/httvps/httvps/codec/mux"
)

// Tunnel errors.
var (
	ErrTunnelClosed  = errors.New("client: tunnel transport closed")
	ErrNoGateway     = errors.New("client: no gateway configured")
	ErrTunnelVersion = errors.New("client: gateway speaks no tunnel version of ours")
	ErrTunnelLost    = errors.New("client: tunnel lost")
	ErrTunnelTimeout = errors.New("client: tunnel did not answer PING")
	// ErrStreamReset: the gateway reset the stream; wrapped with the code
	// (errors.As a *StreamResetError for it).
	ErrStreamReset    = errors.New("client: stream reset by the gateway")
	ErrStreamClosed   = errors.New("client: stream closed")
	ErrPacketTooLarge = errors.New("client: packet over 65507 bytes")
)

// StreamResetError is a RESET from the gateway.
type StreamResetError struct{ Code mux.ResetCode }

func (e *StreamResetError) Error() string {
	return "client: stream reset by the gateway: " + e.Code.String()
}
func (e *StreamResetError) Unwrap() error { return ErrStreamReset }

// DefaultTunnelStreamWindow is the receive window the client announces
// per stream: 1 MiB rather than docs/03's 256 KiB default, so a download
// sends a WINDOW (and the gateway waits for one) every 512 KiB instead of
// every 128 KiB, which cut the client's CPU per GiB of a one-stream
// download by about a fifth on the bench. A stream nobody reads holds at
// most this much in the client; the session window is credited on arrival,
// so such streams never block the others.
const DefaultTunnelStreamWindow = 1 << 20

// TunnelConfig configures NewTunnel. Zero values mean the defaults.
type TunnelConfig struct {
	Gateways []Gateway // tried in order; after a failure the next one, sticking to the last that worked
	Token    string    // sent as Authorization: Bearer; never logged
	// DeviceID, when set, is sent with every tunnel as the HTTVPS-Device
	// header (docs/03), so the gateways count this client's tunnels as one
	// device of the token whatever its address. It must be 16 to 64
	// characters of [A-Za-z0-9_-] (NewDeviceID makes one); keep it across
	// restarts. Empty: the client's address is its device.
	DeviceID string
	Pool     int // tunnels kept open, streams spread over them; 0: 2
	Logger   *slog.Logger
	// DialTimeout bounds one gateway's connect, TLS and upgrade; 0: 15 s.
	DialTimeout time.Duration
	// TLSConfig is the base TLS configuration (see WSOptions.TLSConfig).
	TLSConfig *tls.Config
	// PingInterval is how often each tunnel sends PING (RTT, NAT keep-alive);
	// a PING unanswered for PingTimeout ends the tunnel. 0: 15 s and 2 × PingInterval.
	PingInterval, PingTimeout time.Duration
	// StreamWindow, SessionWindow, MaxFrame: what this side announces in its
	// SETTINGS (receive windows, largest frame); 0: DefaultTunnelStreamWindow
	// and the docs/03 defaults.
	StreamWindow, SessionWindow, MaxFrame uint32
	// BackoffMin, BackoffMax bound the reconnect delay (doubling, with
	// jitter); 0: 250 ms and 30 s.
	BackoffMin, BackoffMax time.Duration
	// UDPQueue is the most packets queued per udp stream toward the
	// application (256 KiB at most as well); more are dropped and counted. 0: 64.
	UDPQueue int
}

// Tunnel is a Transport over the native tunnel. It keeps Pool tunnels
// connected (reconnecting with backoff, failing over across gateways) and
// opens each stream on the least loaded one.
type Tunnel struct {
	cfg  TunnelConfig
	log  *slog.Logger
	hdr  http.Header
	done chan struct{}
	wake chan struct{} // the maintainer: a session ended or a dial is wanted

	up, down atomic.Int64
	streams  atomic.Int64 // open streams (tcp and udp)
	drops    atomic.Int64 // udp packets dropped toward the application
	refused  atomic.Int64 // REFUSED resets received (retried or not)

	mu        sync.Mutex
	sessions  []*tunSession // connected, including those going away
	changed   chan struct{} // closed and replaced on every change below
	gateways  []Gateway     // the list dialled; SetGateways replaces it
	gen       uint64        // bumped by SetGateways: an index into an older list is stale
	preferred int           // index into gateways of the one to try first
	onRefused func()        // SetOnRefused
	lastErr   error
	attempts  uint64 // dial cycles finished (success or not)
	// quickEnds counts tunnels in a row that ended within quickEnd of
	// opening: the gateway takes the upgrade but not the tunnel, so the
	// next dial waits as after a failure.
	quickEnds int
	closed    bool
}

// NewTunnel starts a Tunnel: it begins to connect at once.
func NewTunnel(cfg TunnelConfig) *Tunnel {
	if cfg.Pool <= 0 {
		cfg.Pool = 2
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 15 * time.Second
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = 15 * time.Second
	}
	if cfg.PingTimeout <= 0 {
		cfg.PingTimeout = 2 * cfg.PingInterval
	}
	if cfg.StreamWindow == 0 {
		cfg.StreamWindow = DefaultTunnelStreamWindow
	}
	if cfg.SessionWindow == 0 {
		cfg.SessionWindow = mux.DefaultSessionWindow
	}
	if cfg.MaxFrame == 0 {
		cfg.MaxFrame = mux.DefaultMaxFrame
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = 250 * time.Millisecond
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 30 * time.Second
	}
	if cfg.UDPQueue <= 0 {
		cfg.UDPQueue = 64
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	hdr := http.Header{"Authorization": {"Bearer " + cfg.Token}}
	switch err := CheckDeviceID(cfg.DeviceID); {
	case cfg.DeviceID == "":
	case err != nil:
		// The gateways would refuse every tunnel: go as the address.
		log.Warn("device id not sent", "err", err)
	default:
		hdr.Set(DeviceHeader, cfg.DeviceID)
	}
	t := &Tunnel{
		cfg:     cfg,
		log:     log,
		hdr:     hdr,
		done:    make(chan struct{}),
		wake:    make(chan struct{}, 1),
		changed: make(chan struct{}),
	}
	t.gateways = append([]Gateway(nil), cfg.Gateways...)
	go t.maintain()
	return t
}

// notify wakes everything waiting on a change. Called with t.mu held.
func (t *Tunnel) notifyLocked() {
	close(t.changed)
	t.changed = make(chan struct{})
}

func (t *Tunnel) kick() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// maintain keeps Pool usable tunnels: it dials while there are fewer, trying
// the gateways in turn, and backs off (doubling, with jitter) after a cycle
// in which every gateway failed.
func (t *Tunnel) maintain() {
	backoff := t.cfg.BackoffMin
	for {
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			return
		}
		usable := 0
		for _, s := range t.sessions {
			if s.usable() {
				usable++
			}
		}
		t.mu.Unlock()
		if usable >= t.cfg.Pool {
			select {
			case <-t.wake:
				continue
			case <-t.done:
				return
			}
		}
		t.mu.Lock()
		quick := t.quickEnds > 0
		t.mu.Unlock()
		if quick {
			if !t.sleep(jitter(backoff)) {
				return
			}
			backoff = min(2*backoff, t.cfg.BackoffMax)
		}
		s, err := t.dialCycle()
		t.mu.Lock()
		t.attempts++
		if err == nil {
			if t.closed {
				t.mu.Unlock()
				s.close(ErrTunnelClosed)
				return
			}
			t.sessions = append(t.sessions, s)
			t.lastErr = nil
			if t.quickEnds == 0 {
				backoff = t.cfg.BackoffMin
			}
			// SetGateways may have dropped its gateway while it was dialled.
			stale := !listed(t.gateways, s.gw)
			t.notifyLocked()
			t.mu.Unlock()
			s.start()
			if stale {
				s.drain()
			}
			continue
		}
		t.lastErr = err
		onRefused := t.onRefused
		t.notifyLocked()
		t.mu.Unlock()
		if onRefused != nil && errors.Is(err, ErrRefused) {
			onRefused()
		}
		d := jitter(backoff)
		t.log.Debug("tunnel: no gateway reachable", "err", err, "retry_in", d)
		backoff = min(2*backoff, t.cfg.BackoffMax)
		timer := time.NewTimer(d)
		select {
		case <-timer.C:
		case <-t.wake:
			// A stream is waiting: try again, but no sooner than
			// BackoffMin after the last cycle.
			timer.Stop()
			select {
			case <-time.After(t.cfg.BackoffMin):
			case <-t.done:
				return
			}
		case <-t.done:
			timer.Stop()
			return
		}
	}
}

// jitter spreads d over ±50 %, so clients that lost one gateway do not
// come back in step.
func jitter(d time.Duration) time.Duration { return d/2 + rand.N(d) }

// quickEnd: a tunnel that ends sooner than this after opening counts as a
// failed dial for the backoff.
const quickEnd = time.Second

// sleep waits d unless the Tunnel closes first (false).
func (t *Tunnel) sleep(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-t.done:
		return false
	}
}

// dialCycle tries every gateway once, from the preferred one on, and
// returns the first tunnel that opens. If every gateway refused the
// upgrade, the error wraps ErrRefused.
func (t *Tunnel) dialCycle() (*tunSession, error) {
	t.mu.Lock()
	gws, gen, first := t.gateways, t.gen, t.preferred
	t.mu.Unlock()
	n := len(gws)
	if n == 0 {
		return nil, ErrNoGateway
	}
	var errs []error
	refused := 0
	for i := range n {
		k := (first + i) % n
		gw := gws[k]
		s, err := t.dialSession(gw)
		if err == nil {
			t.mu.Lock()
			if t.gen == gen {
				t.preferred = k
			}
			t.mu.Unlock()
			if i > 0 {
				t.log.Info("tunnel: failed over", "gateway", gw.Addr)
			}
			return s, nil
		}
		t.log.Debug("tunnel: gateway failed", "gateway", gw.Addr, "err", err)
		if errors.Is(err, ErrRefused) {
			refused++
		}
		errs = append(errs, err)
		select {
		case <-t.done:
			return nil, ErrTunnelClosed
		default:
		}
	}
	err := errors.Join(errs...)
	if refused == n {
		return nil, fmt.Errorf("%w: every gateway: %w", ErrRefused, err)
	}
	return nil, err
}

func (t *Tunnel) dialSession(gw Gateway) (*tunSession, error) {
	ctx, cancel := context.WithTimeout(context.Background(), t.cfg.DialTimeout)
	defer cancel()
	// Close cancels a dial in progress.
	go func() {
		select {
		case <-t.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	c, proto, err := DialWS(ctx, gw, "/v1/tunnel", WSOptions{
		Header:     t.hdr,
		Protocols:  []string{mux.Subprotocol},
		TLSConfig:  t.cfg.TLSConfig,
		MaxMessage: 16 << 20, // the tunnel reads frames piecewise; a message costs no memory
	})
	if err != nil {
		return nil, err
	}
	if proto != mux.Subprotocol {
		c.Close()
		return nil, fmt.Errorf("%w: %s chose %q", ErrTunnelVersion, gw.Addr, proto)
	}
	s := newTunSession(t, gw, c)
	if err := s.sendSettings(); err != nil {
		c.Close()
		return nil, fmt.Errorf("client: tunnel to %s: %w", gw.Addr, err)
	}
	return s, nil
}

// SetGateways replaces the gateway list (a refreshed client config). New
// tunnels are dialled from the new list, its first gateway first; tunnels
// to gateways still listed stay, and streams on them are not touched. A
// tunnel to a gateway no longer listed is drained: it takes no new stream
// and closes when its last stream ends. An empty list is ignored.
func (t *Tunnel) SetGateways(gws []Gateway) {
	if len(gws) == 0 {
		return
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.gateways = slices.Clone(gws)
	t.gen++
	t.preferred = 0
	var dropped []*tunSession
	for _, s := range t.sessions {
		if !listed(t.gateways, s.gw) {
			dropped = append(dropped, s)
		}
	}
	t.notifyLocked()
	t.mu.Unlock()
	for _, s := range dropped {
		t.log.Info("tunnel: gateway no longer listed, draining", "gateway", s.gw.Addr)
		s.drain()
	}
	t.kick() // dial replacements from the new list
}

// listed reports whether gw is in gws (same address, scheme, server name
// and pin).
func listed(gws []Gateway, gw Gateway) bool {
	return slices.ContainsFunc(gws, func(x Gateway) bool { return sameGateway(x, gw) })
}

func sameGateway(x, y Gateway) bool {
	return x.Addr == y.Addr && x.TLS == y.TLS && x.SNI == y.SNI && bytes.Equal(x.Pin, y.Pin)
}

// SetOnRefused sets f to be called (on the maintainer's goroutine; it must
// not block) after a dial cycle in which every gateway refused the token
// (ErrRefused): the token was revoked, expired or is over quota, and only
// the control plane says which.
func (t *Tunnel) SetOnRefused(f func()) {
	t.mu.Lock()
	t.onRefused = f
	t.mu.Unlock()
}

// sessionEnded drops s from the pool and wakes the maintainer.
func (t *Tunnel) sessionEnded(s *tunSession) {
	t.mu.Lock()
	if time.Since(s.opened) < quickEnd {
		t.quickEnds++
	} else {
		t.quickEnds = 0
	}
	for i, x := range t.sessions {
		if x == s {
			t.sessions = append(t.sessions[:i], t.sessions[i+1:]...)
			break
		}
	}
	t.notifyLocked()
	t.mu.Unlock()
	t.kick()
}

// poke tells waiters and the maintainer that something changed (a session
// is going away, a slot is free, settings arrived).
func (t *Tunnel) poke() {
	t.mu.Lock()
	t.notifyLocked()
	t.mu.Unlock()
	t.kick()
}

// acquire returns a usable tunnel with a stream slot reserved on it (the
// caller registers or releases it), preferring the least loaded and
// avoiding avoid when another will do. It waits for the maintainer while
// none is usable, until ctx ends or a dial cycle started after the call
// fails.
func (t *Tunnel) acquire(ctx context.Context, avoid *tunSession) (*tunSession, error) {
	t.mu.Lock()
	start := t.attempts
	for {
		if t.closed {
			t.mu.Unlock()
			return nil, ErrTunnelClosed
		}
		var best *tunSession
		bestLoad := 0
		for _, s := range t.sessions {
			load, ok := s.room()
			if !ok || s == avoid && len(t.sessions) > 1 {
				continue
			}
			if best == nil || load < bestLoad {
				best, bestLoad = s, load
			}
		}
		if best != nil && best.reserve() {
			t.mu.Unlock()
			return best, nil
		}
		if t.attempts > start+1 && t.lastErr != nil {
			err := t.lastErr
			t.mu.Unlock()
			return nil, fmt.Errorf("client: no tunnel: %w", err)
		}
		ch := t.changed
		t.mu.Unlock()
		t.kick()
		select {
		case <-ch:
		case <-ctx.Done():
			t.mu.Lock()
			err := t.lastErr
			t.mu.Unlock()
			if err != nil {
				return nil, fmt.Errorf("client: no tunnel: %w (%w)", ctx.Err(), err)
			}
			return nil, ctx.Err()
		case <-t.done:
			return nil, ErrTunnelClosed
		}
		t.mu.Lock()
	}
}

// DialStream opens a tcp stream. The OPEN goes out with the first Write (as
// its first data) or the first Read; a stream the gateway REFUSED before it
// answered anything is opened again, on another tunnel if there is one,
// with the bytes written so far.
func (t *Tunnel) DialStream(ctx context.Context) (StreamConn, error) {
	s, err := t.acquire(ctx, nil)
	if err != nil {
		return nil, err
	}
	st := newTunStream(t, mux.KindTCP, s)
	t.streams.Add(1)
	return st, nil
}

// DialPacket opens a udp stream: one Write is one DATA frame and one
// packet, one Read returns one; not flow-controlled, and packets beyond the
// queue toward the application are dropped (Drops).
func (t *Tunnel) DialPacket(ctx context.Context) (net.Conn, error) {
	s, err := t.acquire(ctx, nil)
	if err != nil {
		return nil, err
	}
	st := newTunStream(t, mux.KindUDP, s)
	t.streams.Add(1)
	return &tunPacket{st}, nil
}

// Drops returns how many udp packets from the gateway were dropped because
// the application did not read them in time.
func (t *Tunnel) Drops() int64 { return t.drops.Load() }

func (t *Tunnel) Status() Status {
	st := Status{Streams: int(t.streams.Load()), Up: t.up.Load(), Down: t.down.Load()}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range t.sessions {
		if !s.usable() {
			continue
		}
		if !st.Connected {
			st.Gateway, st.Connected = s.gw.Addr, true
		}
		if rtt := s.lastRTT(); rtt > 0 && st.RTT == 0 {
			st.RTT = rtt
		}
	}
	if !st.Connected {
		st.Err = t.lastErr
	}
	return st
}

// Close ends every tunnel (and so every stream) and stops reconnecting.
func (t *Tunnel) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	close(t.done)
	sessions := append([]*tunSession(nil), t.sessions...)
	t.notifyLocked()
	t.mu.Unlock()
	for _, s := range sessions {
		s.close(ErrTunnelClosed)
	}
	return nil
}
