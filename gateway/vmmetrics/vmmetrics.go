// Package vmmetrics reports gateway.Metrics through VictoriaMetrics/metrics.
//
// Every series is registered by New, for every path, reason and direction,
// so dashboards and rate() queries never see a series appear late. The hot
// calls (BytesUp, BytesDown, Buffered) are single atomic adds.
package vmmetrics

import (
	"crypto/tls"
	"fmt"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"

	"github.com/httvps/httvps/codec/mux"
	"github.com/httvps/httvps/gateway"
)

// paths lists every gateway.PathKind; the gateway does not export its count.
var paths = [...]gateway.PathKind{gateway.PathTCP, gateway.PathUDP, gateway.PathTunnel}

// Metrics implements gateway.Metrics. Every goroutine of the gateway (relay
// loops, handshakes, the fallback) calls it at once: every field is set in
// New and never reassigned, and what changes is a counter or an atomic, so
// no field needs a lock.
type Metrics struct {
	handshakeOK  [len(paths)]*metrics.Counter
	rejected     [gateway.NumRejects]*metrics.Counter
	ended        [len(paths)][gateway.NumEnds]*metrics.Counter
	bytesUp      *metrics.Counter
	bytesDown    *metrics.Counter
	dialErrors   [len(paths)]*metrics.Counter
	drops        [gateway.NumDrops]*metrics.Counter
	droppedBytes [gateway.NumDrops]*metrics.Counter
	live         [len(paths)]atomic.Int64
	buffered     atomic.Int64
	tlsOK        map[[2]uint16]*metrics.Counter // read-only after New
	tlsResumed   *metrics.Counter

	// The native tunnel's streams (gateway.TunnelMetrics).
	streamsOpened [2]*metrics.Counter // tcp, udp
	streamsEnded  [gateway.NumStreamEnds]*metrics.Counter
	resetsSent    [gateway.NumResetCodes]*metrics.Counter
	openStreams   atomic.Int64

	documents [gateway.NumDocResults]*metrics.Counter // gateway.DocumentMetrics

	creditWaits *metrics.Counter // gateway.CreditMetrics
}

var (
	_ gateway.Metrics         = (*Metrics)(nil)
	_ gateway.TunnelMetrics   = (*Metrics)(nil)
	_ gateway.DocumentMetrics = (*Metrics)(nil)
	_ gateway.CreditMetrics   = (*Metrics)(nil)
)

// New registers the gateway series in set and returns the reporter. A nil set
// means the default set, which metrics.WritePrometheus always writes; another
// set must be registered with metrics.RegisterSet or written directly.
// New panics if the series already exist in set, as metrics does for any
// duplicate registration.
func New(set *metrics.Set) *Metrics {
	if set == nil {
		set = metrics.GetDefaultSet()
	}
	m := &Metrics{}
	for i, p := range paths {
		m.handshakeOK[i] = set.NewCounter(fmt.Sprintf(`httvps_gateway_handshakes_total{result="ok",path=%q}`, p))
		m.dialErrors[i] = set.NewCounter(fmt.Sprintf(`httvps_gateway_upstream_dial_errors_total{path=%q}`, p))
		live := &m.live[i]
		set.NewGauge(fmt.Sprintf(`httvps_gateway_sessions{path=%q}`, p), func() float64 {
			return float64(live.Load())
		})
		for e := gateway.End(0); e < gateway.NumEnds; e++ {
			m.ended[i][e] = set.NewCounter(fmt.Sprintf(`httvps_gateway_sessions_ended_total{path=%q,reason=%q}`, p, e))
		}
	}
	for r := gateway.Reject(0); r < gateway.NumRejects; r++ {
		m.rejected[r] = set.NewCounter(fmt.Sprintf(`httvps_gateway_handshakes_rejected_total{reason=%q}`, r))
	}
	for d := gateway.Drop(0); d < gateway.NumDrops; d++ {
		m.drops[d] = set.NewCounter(fmt.Sprintf(`httvps_gateway_drops_total{what=%q}`, d))
		m.droppedBytes[d] = set.NewCounter(fmt.Sprintf(`httvps_gateway_dropped_bytes_total{what=%q}`, d))
	}
	m.tlsOK = make(map[[2]uint16]*metrics.Counter, len(gateway.TLSSuites))
	for _, vs := range gateway.TLSSuites {
		m.tlsOK[vs] = set.NewCounter(fmt.Sprintf(`httvps_gateway_tls_handshakes_total{version=%q,suite=%q}`,
			gateway.TLSVersionName(vs[0]), tls.CipherSuiteName(vs[1])))
	}
	m.tlsResumed = set.NewCounter(`httvps_gateway_tls_resumed_total`)
	for i, k := range [2]string{"tcp", "udp"} {
		m.streamsOpened[i] = set.NewCounter(fmt.Sprintf(`httvps_gateway_tunnel_streams_opened_total{kind=%q}`, k))
	}
	for e := gateway.StreamEnd(0); e < gateway.NumStreamEnds; e++ {
		m.streamsEnded[e] = set.NewCounter(fmt.Sprintf(`httvps_gateway_tunnel_streams_ended_total{reason=%q}`, e))
	}
	for c := mux.ResetCode(1); c < gateway.NumResetCodes; c++ {
		m.resetsSent[c] = set.NewCounter(fmt.Sprintf(`httvps_gateway_tunnel_resets_sent_total{code=%q}`, gateway.ResetName(c)))
	}
	for r := gateway.DocResult(0); r < gateway.NumDocResults; r++ {
		m.documents[r] = set.NewCounter(fmt.Sprintf(`httvps_gateway_documents_total{result=%q}`, r))
	}
	set.NewGauge(`httvps_gateway_tunnel_streams`, func() float64 {
		return float64(m.openStreams.Load())
	})
	m.creditWaits = set.NewCounter(`httvps_gateway_credit_waits_total`)
	m.bytesUp = set.NewCounter(`httvps_gateway_bytes_total{dir="up"}`)
	m.bytesDown = set.NewCounter(`httvps_gateway_bytes_total{dir="down"}`)
	set.NewGauge(`httvps_gateway_buffered_bytes`, func() float64 {
		return float64(m.buffered.Load())
	})
	return m
}

// pathIndex maps an out-of-range kind onto tcp rather than panicking on the
// relay path; the gateway only ever passes the two known kinds.
func pathIndex(p gateway.PathKind) int {
	if int(p) < len(paths) {
		return int(p)
	}
	return 0
}

// HandshakeOK implements gateway.Metrics.
func (m *Metrics) HandshakeOK(p gateway.PathKind) { m.handshakeOK[pathIndex(p)].Inc() }

// HandshakeRejected implements gateway.Metrics.
func (m *Metrics) HandshakeRejected(r gateway.Reject) {
	if r < gateway.NumRejects {
		m.rejected[r].Inc()
	}
}

// SessionStart implements gateway.Metrics.
func (m *Metrics) SessionStart(p gateway.PathKind) { m.live[pathIndex(p)].Add(1) }

// SessionEnd implements gateway.Metrics.
func (m *Metrics) SessionEnd(p gateway.PathKind, e gateway.End) {
	i := pathIndex(p)
	m.live[i].Add(-1)
	if e < gateway.NumEnds {
		m.ended[i][e].Inc()
	}
}

// BytesUp implements gateway.Metrics.
func (m *Metrics) BytesUp(n int) { m.bytesUp.Add(n) }

// BytesDown implements gateway.Metrics.
func (m *Metrics) BytesDown(n int) { m.bytesDown.Add(n) }

// UpstreamDialError implements gateway.Metrics.
func (m *Metrics) UpstreamDialError(p gateway.PathKind) { m.dialErrors[pathIndex(p)].Inc() }

// Dropped implements gateway.Metrics: drops_total counts events and
// dropped_bytes_total the bytes they carried.
func (m *Metrics) Dropped(d gateway.Drop, n int) {
	if d < gateway.NumDrops {
		m.drops[d].Inc()
		m.droppedBytes[d].Add(n)
	}
}

// Buffered implements gateway.Metrics.
func (m *Metrics) Buffered(delta int) { m.buffered.Add(int64(delta)) }

// TLSHandshake implements gateway.Metrics.
func (m *Metrics) TLSHandshake(version, suite uint16, resumed bool) {
	if c := m.tlsOK[[2]uint16{version, suite}]; c != nil {
		c.Inc()
	}
	if resumed {
		m.tlsResumed.Inc()
	}
}

// StreamOpened implements gateway.TunnelMetrics.
func (m *Metrics) StreamOpened(udp bool) {
	i := 0
	if udp {
		i = 1
	}
	m.streamsOpened[i].Inc()
	m.openStreams.Add(1)
}

// StreamEnded implements gateway.TunnelMetrics.
func (m *Metrics) StreamEnded(e gateway.StreamEnd) {
	m.openStreams.Add(-1)
	if e < gateway.NumStreamEnds {
		m.streamsEnded[e].Inc()
	}
}

// ResetSent implements gateway.TunnelMetrics.
func (m *Metrics) ResetSent(c mux.ResetCode) {
	if c > 0 && c < gateway.NumResetCodes {
		m.resetsSent[c].Inc()
	}
}

// Document implements gateway.DocumentMetrics.
func (m *Metrics) Document(r gateway.DocResult) {
	if r < gateway.NumDocResults {
		m.documents[r].Inc()
	}
}

// CreditWait implements gateway.CreditMetrics.
func (m *Metrics) CreditWait() { m.creditWaits.Inc() }
