package api

import (
	"io"
	"strconv"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"
)

// routeKey is the user value holding the matched route's label.
const routeKey = "httvps.route"

// serverMetrics are one Server's series, in a Set of its own so several
// Servers (tests) can live in one process.
type serverMetrics struct {
	set *metrics.Set
}

func newServerMetrics() *serverMetrics {
	m := &serverMetrics{set: metrics.NewSet()}
	for _, r := range refuseReasons {
		m.set.GetOrCreateCounter(`httvps_control_refused_total{reason="` + r + `"}`)
	}
	return m
}

// refused counts one request answered with the decoy (decoy.go).
func (m *serverMetrics) refused(reason string) {
	m.set.GetOrCreateCounter(`httvps_control_refused_total{reason="` + reason + `"}`).Inc()
}

// route creates a route's series at start-up so dashboards see zeros
// rather than holes.
func (m *serverMetrics) route(label string) {
	m.set.GetOrCreatePrometheusHistogram(`httvps_control_request_duration_seconds{route="` + label + `"}`)
	m.set.GetOrCreateCounter(`httvps_control_requests_total{route="` + label + `",status="200"}`)
}

// observe counts one answered request. route is always one of the
// registered patterns, "unmatched" or "invalid", never a raw path (which
// may hold a secret).
func (m *serverMetrics) observe(route string, status int, d time.Duration) {
	m.set.GetOrCreateCounter(`httvps_control_requests_total{route="` + route + `",status="` + strconv.Itoa(status) + `"}`).Inc()
	if route != "invalid" {
		m.set.GetOrCreatePrometheusHistogram(`httvps_control_request_duration_seconds{route="` + route + `"}`).Update(d.Seconds())
	}
}

// instrument records the route label, the status and the latency of h.
func (s *Server) instrument(label string, h fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		start := time.Now()
		ctx.SetUserValue(routeKey, label)
		h(ctx)
		s.met.observe(label, ctx.Response.StatusCode(), time.Since(start))
	}
}

func routeOf(ctx *fasthttp.RequestCtx) string {
	r, _ := ctx.UserValue(routeKey).(string)
	return r
}

// serveMetrics writes the API's series, the pool's (when Config.Pool
// reports them), then every other registered set (the gateway's and the
// store's in `httvps up`) with the go_* and process_* metrics.
func (s *Server) serveMetrics(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.SetContentType("text/plain; version=0.0.4; charset=utf-8")
	ctx.Response.Header.Set("Cache-Control", "no-store")
	s.WriteMetrics(ctx)
}

// WriteMetrics writes what /metrics serves, for an operator listener of
// the binary's own.
func (s *Server) WriteMetrics(w io.Writer) {
	s.met.set.WritePrometheus(w)
	if ps, ok := s.pool.(poolStats); ok {
		writePoolMetrics(w, ps.Stats())
	}
	metrics.WritePrometheus(w, true)
	metrics.WriteFDMetrics(w)
}
