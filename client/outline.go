package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// ErrNoUDP: the key carries TCP only (a v2ray-plugin ss:// key for a
// server that is not an HTTVPS gateway).
var ErrNoUDP = errors.New("client: the key has no UDP path")

// outlineDialTimeout bounds one gateway's connect, TLS and upgrade, so a
// black-holed gateway leaves time to try the next.
const outlineDialTimeout = 10 * time.Second

// Outline is the Transport over the gateways' Outline-compatible paths:
// every stream is one WebSocket on the TCP path ("/<token>/tcp"), every
// UDP association one WebSocket on the UDP path. A dial tries the
// gateways in order from the last one that worked, so a failed gateway is
// skipped from then on until the others fail too.
type Outline struct {
	tcpPath, udpPath string
	opts             WSOptions
	stats            counters

	mu      sync.Mutex // guards the fields below
	gws     []Gateway
	cur     int // index in gws of the gateway to try first
	rtt     time.Duration
	lastErr error
	ok      bool
	closed  bool
}

// NewOutline is the Outline-path transport of k (its gateways and paths).
func NewOutline(k *Key) (*Outline, error) {
	if len(k.Gateways) == 0 {
		return nil, fmt.Errorf("%w: no gateway", ErrBadKey)
	}
	if k.Token == "" && k.TCPPath == "" {
		return nil, fmt.Errorf("%w: no token or path for the Outline paths", ErrBadKey)
	}
	return &Outline{
		tcpPath: k.tcpPath(), udpPath: k.udpPath(),
		opts: WSOptions{Timeout: outlineDialTimeout},
		gws:  append([]Gateway(nil), k.Gateways...),
	}, nil
}

// SetGateways replaces the gateway list (a refreshed client config); the
// best one is tried first again.
func (o *Outline) SetGateways(gws []Gateway) {
	if len(gws) == 0 {
		return
	}
	o.mu.Lock()
	o.gws, o.cur = append([]Gateway(nil), gws...), 0
	o.mu.Unlock()
}

func (o *Outline) DialStream(ctx context.Context) (StreamConn, error) {
	c, err := o.dial(ctx, o.tcpPath)
	if err != nil {
		return nil, err
	}
	return o.stats.stream(NewWSStream(c)), nil
}

func (o *Outline) DialPacket(ctx context.Context) (net.Conn, error) {
	if o.udpPath == "-" {
		return nil, ErrNoUDP
	}
	c, err := o.dial(ctx, o.udpPath)
	if err != nil {
		return nil, err
	}
	return o.stats.packet(NewWSPacket(c)), nil
}

// dial opens a WebSocket on path at the first gateway that answers 101.
// When every gateway refused the upgrade the error wraps ErrRefused; when
// any failed otherwise (unreachable, TLS) it does not, since the token may
// be fine.
func (o *Outline) dial(ctx context.Context, path string) (*WSConn, error) {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil, net.ErrClosed
	}
	gws, first := o.gws, o.cur
	o.mu.Unlock()
	var refused, other error
	for i := range gws {
		idx := (first + i) % len(gws)
		start := time.Now()
		c, _, err := DialWS(ctx, gws[idx], path, o.opts)
		if err == nil {
			o.mu.Lock()
			if len(o.gws) == len(gws) {
				o.cur = idx
			}
			o.rtt, o.ok, o.lastErr = time.Since(start), true, nil
			o.mu.Unlock()
			return c, nil
		}
		if errors.Is(err, ErrRefused) {
			refused = err
		} else {
			other = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	err := other
	if err == nil {
		err = fmt.Errorf("every gateway refused the upgrade (%d tried), last: %w", len(gws), refused)
	}
	o.mu.Lock()
	o.ok, o.lastErr = false, err
	o.mu.Unlock()
	return nil, err
}

// Status: Gateway is the one tried first (the last that worked), RTT the
// time its last WebSocket took to open (TCP, TLS and upgrade).
func (o *Outline) Status() Status {
	s := o.stats.status()
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.gws) > 0 {
		s.Gateway = o.gws[o.cur%len(o.gws)].Addr
	}
	s.Connected, s.RTT, s.Err = o.ok, o.rtt, o.lastErr
	return s
}

// Close refuses new dials; open streams end with their own Close.
func (o *Outline) Close() error {
	o.mu.Lock()
	o.closed = true
	o.mu.Unlock()
	return nil
}
