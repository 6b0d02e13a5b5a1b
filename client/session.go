package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Session defaults.
const (
	// DefaultRefresh is how often a key with a control plane fetches its
	// client config again.
	DefaultRefresh = 5 * time.Minute
	// refusalRecheck spaces the control-plane questions after refusals.
	refusalRecheck = 30 * time.Second
)

// TransportNative and TransportOutline name SessionConfig.Transport's
// choices; a plain Shadowsocks key always goes direct.
const (
	TransportNative  = "native"
	TransportOutline = "outline"
	TransportDirect  = "direct"
)

// NativeFunc builds the native tunnel Transport of a key (NewTunnel);
// base is SessionConfig.TLSConfig.
type NativeFunc func(k *Key, base *tls.Config, log *slog.Logger) (Transport, error)

// SessionConfig configures a Session.
type SessionConfig struct {
	// Key is the resolved key (ResolveKey); required.
	Key *Key
	// Transport is TransportNative (the default) or TransportOutline for
	// keys with gateways; keys without go direct.
	Transport string
	// Native builds the native tunnel; nil refuses TransportNative.
	Native NativeFunc
	// Username and Password protect the local proxy (ProxyConfig).
	Username, Password string
	// Refresh is how often the client config is fetched again when the key
	// has a control plane (0 → DefaultRefresh; negative: never).
	Refresh time.Duration
	// Fetch asks the control plane (nil → a default Fetcher).
	Fetch *Fetcher
	// TLSConfig is the base TLS configuration toward gateways (RootCAs
	// for a private CA); nil: the system roots. A key's pin replaces
	// verification either way.
	TLSConfig *tls.Config
	// Logger (nil → slog.Default()).
	Logger *slog.Logger
}

// Session is a running client: a Transport, the Shadowsocks layer over
// it, the local proxy front, and, for a key with a control plane, the
// config refresh that follows gateway and key changes.
type Session struct {
	cfg   SessionConfig
	log   *slog.Logger
	kind  string
	t     Transport
	ss    *Shadowsocks
	proxy *Proxy
	fetch *Fetcher

	key       atomic.Pointer[Key]
	refusal   atomic.Pointer[string]
	checking  atomic.Bool
	lastCheck atomic.Int64 // unix nanoseconds of the last refusal check
	wg        sync.WaitGroup
	// bgMu orders refused's wg.Go before Serve's wg.Wait: the tunnel may
	// report a refusal while it is being closed.
	bgMu    sync.Mutex
	stopped bool // guarded by bgMu; no new background work
	// life ends when Serve stops: background control-plane requests
	// (Explain) end with it instead of running to their own timeout.
	life    context.Context
	endLife context.CancelFunc
}

// SessionStatus is what the status line shows.
type SessionStatus struct {
	Status
	Transport string // native, outline or direct
	Clients   int    // local proxy connections being served
	// Refusal is the control plane's reason after every gateway refused
	// ("" when there was none, or the token works again).
	Refusal string
}

// NewSession builds the transport, the Shadowsocks layer and the proxy.
func NewSession(cfg SessionConfig) (*Session, error) {
	k := cfg.Key
	if k == nil || k.NeedsConfig() {
		return nil, fmt.Errorf("%w: the key is not resolved (no gateway, cipher or secret)", ErrBadKey)
	}
	s := &Session{cfg: cfg, log: cfg.Logger, fetch: cfg.Fetch}
	s.life, s.endLife = context.WithCancel(context.Background())
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.fetch == nil {
		s.fetch = &Fetcher{}
	}
	s.key.Store(k.Clone())
	var err error
	switch {
	case k.Direct():
		s.kind, s.t = TransportDirect, NewDirect(k.Server)
	case cfg.Transport == TransportOutline:
		s.kind = TransportOutline
		var o *Outline
		if o, err = NewOutline(k); err == nil {
			o.opts.TLSConfig = cfg.TLSConfig
			s.t = o
		}
	case cfg.Transport == "" || cfg.Transport == TransportNative:
		if cfg.Native == nil {
			return nil, errors.New("client: the native tunnel is not available in this build (use the outline transport)")
		}
		if k.Token == "" {
			return nil, fmt.Errorf("%w: the native tunnel needs a token; this key has only Outline paths (use the outline transport)", ErrBadKey)
		}
		s.kind = TransportNative
		s.t, err = cfg.Native(k, cfg.TLSConfig, s.log)
	default:
		return nil, fmt.Errorf("client: unknown transport %q (want native or outline)", cfg.Transport)
	}
	if err != nil {
		return nil, err
	}
	// A tunnel refused on reconnect (the token revoked under open streams)
	// asks the control plane why, as a refused dial does.
	if r, ok := s.t.(interface{ SetOnRefused(func()) }); ok {
		r.SetOnRefused(s.refused)
	}
	if s.ss, err = NewShadowsocks(s.t, k.Cipher, k.Secret); err != nil {
		s.t.Close()
		return nil, err
	}
	if s.proxy, err = NewProxy(ProxyConfig{Dialer: refusalDialer{s}, Username: cfg.Username, Password: cfg.Password, Logger: s.log}); err != nil {
		s.t.Close()
		return nil, err
	}
	return s, nil
}

// Key is the key in use (after refreshes).
func (s *Session) Key() *Key { return s.key.Load() }

// Serve runs the proxy on ln and the config refresh until ctx ends, then
// closes everything and returns nil (or the listener's error).
func (s *Session) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if k := s.Key(); k.Control != "" && k.Token != "" && s.cfg.Refresh >= 0 {
		s.wg.Go(func() { s.refreshLoop(ctx) })
	}
	served := make(chan error, 1)
	go func() { served <- s.proxy.Serve(ln) }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-served:
	}
	cancel()
	s.endLife()
	s.proxy.Close()
	s.t.Close()
	s.bgMu.Lock()
	s.stopped = true
	s.bgMu.Unlock()
	s.wg.Wait()
	if errors.Is(err, ErrProxyClosed) {
		err = nil
	}
	return err
}

// Status is the transport's status with the proxy's and the refusal's.
func (s *Session) Status() SessionStatus {
	st := SessionStatus{Status: s.t.Status(), Transport: s.kind, Clients: s.proxy.Open()}
	if r := s.refusal.Load(); r != nil {
		st.Refusal = *r
	}
	return st
}

func (s *Session) refreshLoop(ctx context.Context) {
	every := s.cfg.Refresh
	if every == 0 {
		every = DefaultRefresh
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s.refresh(ctx)
	}
}

// refresh fetches the client config and follows it: new gateways go to
// the transport, a new cipher or secret to the Shadowsocks layer.
func (s *Session) refresh(ctx context.Context) {
	old := s.Key()
	cfg, err := s.fetch.ClientConfig(ctx, old)
	if err != nil {
		var ce *ControlError
		if errors.As(err, &ce) {
			s.setRefusal(ce.Reason())
		}
		s.log.Warn("client config refresh failed", "err", err)
		return
	}
	nk, err := old.WithConfig(cfg)
	if err != nil {
		s.log.Warn("client config refresh: unusable answer", "err", err)
		return
	}
	s.setRefusal("")
	changed := false
	if !sameGateways(old.Gateways, nk.Gateways) && !old.Direct() {
		changed = true
		if g, ok := s.t.(interface{ SetGateways([]Gateway) }); ok {
			g.SetGateways(nk.Gateways)
			s.log.Info("gateways changed", "gateways", len(nk.Gateways), "first", nk.Gateways[0].Addr)
		} else {
			s.log.Info("gateways changed; this transport keeps its list until restart", "transport", s.kind, "gateways", len(nk.Gateways))
		}
	}
	if nk.Cipher != old.Cipher || nk.Secret != old.Secret {
		if err := s.ss.SetKey(nk.Cipher, nk.Secret); err != nil {
			s.log.Warn("client config refresh: new Shadowsocks key refused", "err", err)
			return
		}
		changed = true
		s.log.Info("Shadowsocks key changed", "cipher", nk.Cipher)
	}
	if changed {
		s.key.Store(nk)
	}
}

func sameGateways(a, b []Gateway) bool {
	return slices.EqualFunc(a, b, sameGateway)
}

func (s *Session) setRefusal(r string) {
	if r == "" {
		s.refusal.Store(nil)
		return
	}
	s.refusal.Store(&r)
}

// refused asks the control plane why, once per refusalRecheck, in the
// background; the answer is logged once and kept for the status line.
func (s *Session) refused() {
	k := s.Key()
	now := time.Now().UnixNano()
	if k.Control == "" || k.Token == "" || now-s.lastCheck.Load() < int64(refusalRecheck) || !s.checking.CompareAndSwap(false, true) {
		return
	}
	s.lastCheck.Store(now)
	s.bgMu.Lock()
	defer s.bgMu.Unlock()
	if s.stopped {
		s.checking.Store(false)
		return
	}
	s.wg.Go(func() {
		defer s.checking.Store(false)
		reason := s.Explain(s.life)
		if old := s.refusal.Load(); old == nil || *old != reason {
			s.log.Error("every gateway refused the connection: " + reason)
		}
		s.setRefusal(reason)
	})
}

// Explain asks GET /v1/client/config why the gateways refuse the key's
// token and returns one line for the user.
func (s *Session) Explain(ctx context.Context) string {
	return ExplainRefusal(ctx, s.fetch, s.Key())
}

// ExplainRefusal is Session.Explain for a key alone.
func ExplainRefusal(ctx context.Context, f *Fetcher, k *Key) string {
	if k.Control == "" || k.Token == "" {
		return "the key names no control plane to ask why"
	}
	if f == nil {
		f = &Fetcher{}
	}
	_, err := f.ClientConfig(ctx, k)
	var ce *ControlError
	switch {
	case errors.As(err, &ce):
		return ce.Reason()
	case err != nil:
		return "the control plane cannot be asked why: " + err.Error()
	}
	return "the control plane accepts the token (a device or session limit, or gateway trouble?)"
}

// refusalDialer is the Shadowsocks layer with refusals noticed.
type refusalDialer struct{ s *Session }

func (d refusalDialer) DialStream(ctx context.Context, addr string) (StreamConn, error) {
	c, err := d.s.ss.DialStream(ctx, addr)
	if errors.Is(err, ErrRefused) {
		d.s.refused()
	}
	return c, err
}

func (d refusalDialer) ListenPacket(ctx context.Context) (net.PacketConn, error) {
	c, err := d.s.ss.ListenPacket(ctx)
	if errors.Is(err, ErrRefused) {
		d.s.refused()
	}
	return c, err
}
