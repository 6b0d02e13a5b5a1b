package main

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/httvps/httvps/control/store/redisstore"
	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/gateway/storeauth"
)

const (
	// storeConnectTimeout bounds the first connection to Redis at start-up.
	storeConnectTimeout = 10 * time.Second
	// runStopTimeout bounds the final usage flush and deregistration.
	runStopTimeout = 10 * time.Second
)

// chainAuth tries the static routes first, then the store.
type chainAuth struct {
	static *gateway.StaticAuth
	store  *storeauth.Auth
}

func (c chainAuth) Authenticate(secret []byte, kind gateway.PathKind) (gateway.Route, bool) {
	if c.static != nil {
		if r, ok := c.static.Authenticate(secret, kind); ok {
			return r, true
		}
	}
	return c.store.Authenticate(secret, kind)
}

// fleet is the gateway's membership of a store-backed fleet.
type fleet struct {
	st   *redisstore.Store
	auth *storeauth.Auth
	stop context.CancelFunc
	done chan error
}

// openFleet connects to Redis and builds the store-backed Authenticator.
// Start runs it once the gateway exists.
func openFleet(o *options, log *slog.Logger) (*fleet, error) {
	ctx, cancel := context.WithTimeout(context.Background(), storeConnectTimeout)
	defer cancel()
	st, err := redisstore.New(ctx, o.Redis)
	if err != nil {
		return nil, err
	}
	a := storeauth.New(st, storeauth.Config{
		GatewayID: o.GatewayID,
		PublicURL: o.PublicURL,
		Logger:    log,
	})
	currentAuth.Store(a)
	registerStoreMetrics()
	return &fleet{st: st, auth: a, done: make(chan error, 1)}, nil
}

// start attaches the gateway and runs the fleet membership in the
// background.
func (f *fleet) start(gw *gateway.Gateway) {
	f.auth.Attach(gw)
	ctx, cancel := context.WithCancel(context.Background())
	f.stop = cancel
	go func() { f.done <- f.auth.Run(ctx) }()
}

// detach stops closing sessions on the gateway; called before its
// Shutdown, after which it must not be called into.
func (f *fleet) detach() { f.auth.Attach(nil) }

// close stops Run (final usage flush, deregistration) and the store.
func (f *fleet) close(log *slog.Logger) {
	if f.stop != nil {
		f.stop()
		select {
		case err := <-f.done:
			if err != nil {
				log.Error("leaving the fleet", "err", err)
			}
		case <-time.After(runStopTimeout):
			log.Error("leaving the fleet: timed out")
		}
	}
	f.st.Close()
}

// currentAuth is what the metrics writer reports; tests may run the binary's
// run more than once, and the writer is registered once per process.
var currentAuth atomic.Pointer[storeauth.Auth]

var registerStoreMetrics = sync.OnceFunc(func() {
	metrics.RegisterMetricsWriter(func(w io.Writer) {
		if a := currentAuth.Load(); a != nil {
			writeStoreMetrics(w, a.Stats())
		}
	})
})

// writeStoreMetrics writes every series, zeros included, so dashboards
// never see holes.
func writeStoreMetrics(w io.Writer, s storeauth.Stats) {
	const p = "httvps_gateway_store_"
	for _, c := range []struct {
		name string
		v    uint64
	}{
		{`token_cache_total{result="hit"}`, s.CacheHits},
		{`token_cache_total{result="miss"}`, s.CacheMisses},
		{`token_cache_total{result="negative_hit"}`, s.NegativeHits},
		{`token_cache_total{result="stale_hit"}`, s.StaleHits},
		{`denied_total{reason="unknown"}`, s.DeniedUnknown},
		{`denied_total{reason="revoked"}`, s.DeniedRevoked},
		{`denied_total{reason="expired"}`, s.DeniedExpired},
		{`denied_total{reason="quota"}`, s.DeniedQuota},
		{`denied_total{reason="sessions"}`, s.DeniedSessions},
		{`denied_total{reason="unavailable"}`, s.DeniedUnavailable},
		{`denied_total{reason="no_route"}`, s.DeniedNoRoute},
		{`local_admits_total`, s.LocalAdmits},
		{`errors_total`, s.StoreErrors},
		{`flush_errors_total`, s.FlushErrors},
		{`quota_events_total`, s.Published},
	} {
		metrics.WriteCounterUint64(w, p+c.name, c.v)
	}
	up := uint64(1)
	if s.StoreDown {
		up = 0
	}
	metrics.WriteGaugeUint64(w, p+"up", up)
	metrics.WriteGaugeUint64(w, p+"cached_tokens", uint64(s.CachedTokens))
	metrics.WriteGaugeUint64(w, p+"negative_cache_entries", uint64(s.NegativeCache))
	metrics.WriteGaugeUint64(w, p+"accounts", uint64(s.Accounts))
	metrics.WriteGaugeUint64(w, p+"pending_usage_bytes", uint64(max(s.PendingUsage, 0)))
}
