// Package storemetrics exports a store-backed authenticator's statistics
// (gateway/storeauth) as the httvps_gateway_store_* series, for every binary
// that runs one: httvps-gateway with -redis and httvps up. The series are
// written by metrics.WritePrometheus, next to the gateway's own.
package storemetrics

import (
	"io"
	"sync"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"

	"github.com/httvps/httvps/gateway/storeauth"
)

// Source is what is exported; *storeauth.Auth is one.
type Source interface {
	Stats() storeauth.Stats
}

type exported struct{ src Source }

// current is what the metrics writer reports. The writer is registered once
// per process (metrics keeps writers for good), and tests run the binaries'
// run more than once.
var current atomic.Pointer[exported]

var register = sync.OnceFunc(func() {
	metrics.RegisterMetricsWriter(func(w io.Writer) {
		if e := current.Load(); e != nil {
			Write(w, e.src.Stats())
			if ts, ok := e.src.(interface{ WriteTokenSeries(io.Writer) }); ok {
				ts.WriteTokenSeries(w) // -metrics-per-token
			}
		}
	})
})

// Export makes src the source of the series, in place of any earlier one.
// The returned function stops exporting src, unless another source has
// replaced it since.
func Export(src Source) (unexport func()) {
	e := &exported{src: src}
	current.Store(e)
	register()
	return func() { current.CompareAndSwap(e, nil) }
}

// Write writes every series, zeros included, so dashboards never see holes.
func Write(w io.Writer, s storeauth.Stats) {
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
		{`quota_leases_total`, s.QuotaLeases},
		{`token_bytes_total{token="other",direction="up"}`, s.TokenOtherUp},
		{`token_bytes_total{token="other",direction="down"}`, s.TokenOtherDown},
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
