package vmmetrics

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"

	"github.com/httvps/httvps/codec/mux"
	"github.com/httvps/httvps/gateway"
)

func scrape(t *testing.T, set *metrics.Set) map[string]string {
	t.Helper()
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	series := make(map[string]string)
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("malformed line %q", line)
		}
		series[line[:i]] = line[i+1:]
	}
	return series
}

// expected lists every series New must create, so a label value added to the
// gateway without a series here fails the test.
func expected() []string {
	var want []string
	for _, p := range paths {
		want = append(want,
			fmt.Sprintf(`httvps_gateway_handshakes_total{result="ok",path="%s"}`, p),
			fmt.Sprintf(`httvps_gateway_sessions{path="%s"}`, p),
			fmt.Sprintf(`httvps_gateway_upstream_dial_errors_total{path="%s"}`, p))
		for e := gateway.End(0); e < gateway.NumEnds; e++ {
			want = append(want, fmt.Sprintf(`httvps_gateway_sessions_ended_total{path="%s",reason="%s"}`, p, e))
		}
	}
	for r := gateway.Reject(0); r < gateway.NumRejects; r++ {
		want = append(want, fmt.Sprintf(`httvps_gateway_handshakes_rejected_total{reason="%s"}`, r))
	}
	for d := gateway.Drop(0); d < gateway.NumDrops; d++ {
		want = append(want,
			fmt.Sprintf(`httvps_gateway_drops_total{what="%s"}`, d),
			fmt.Sprintf(`httvps_gateway_dropped_bytes_total{what="%s"}`, d))
	}
	for _, vs := range gateway.TLSSuites {
		want = append(want, fmt.Sprintf(`httvps_gateway_tls_handshakes_total{version="%s",suite="%s"}`,
			gateway.TLSVersionName(vs[0]), tls.CipherSuiteName(vs[1])))
	}
	for _, k := range []string{"tcp", "udp"} {
		want = append(want, fmt.Sprintf(`httvps_gateway_tunnel_streams_opened_total{kind="%s"}`, k))
	}
	for e := gateway.StreamEnd(0); e < gateway.NumStreamEnds; e++ {
		want = append(want, fmt.Sprintf(`httvps_gateway_tunnel_streams_ended_total{reason="%s"}`, e))
	}
	for c := mux.ResetCode(1); c < gateway.NumResetCodes; c++ {
		want = append(want, fmt.Sprintf(`httvps_gateway_tunnel_resets_sent_total{code="%s"}`, gateway.ResetName(c)))
	}
	for r := gateway.DocResult(0); r < gateway.NumDocResults; r++ {
		want = append(want, fmt.Sprintf(`httvps_gateway_documents_total{result="%s"}`, r))
	}
	return append(want,
		`httvps_gateway_tunnel_streams`,
		`httvps_gateway_tls_resumed_total`,
		`httvps_gateway_credit_waits_total`,
		`httvps_gateway_bytes_total{dir="up"}`,
		`httvps_gateway_bytes_total{dir="down"}`,
		`httvps_gateway_buffered_bytes`)
}

func TestAllSeriesAtStart(t *testing.T) {
	set := metrics.NewSet()
	New(set)
	got := scrape(t, set)
	want := expected()
	for _, name := range want {
		v, ok := got[name]
		if !ok {
			t.Errorf("missing series %s", name)
		} else if v != "0" {
			t.Errorf("%s = %s at start, want 0", name, v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d series, want %d", len(got), len(want))
	}
	for name := range got {
		if strings.Contains(name, "unknown") {
			t.Errorf("series with an unknown label: %s", name)
		}
	}
}

func TestCallsAreReflected(t *testing.T) {
	set := metrics.NewSet()
	m := New(set)

	m.HandshakeOK(gateway.PathTCP)
	m.HandshakeOK(gateway.PathTCP)
	m.HandshakeOK(gateway.PathUDP)
	m.HandshakeRejected(gateway.RejectSecret)
	m.SessionStart(gateway.PathTCP)
	m.SessionStart(gateway.PathTCP)
	m.SessionStart(gateway.PathUDP)
	m.SessionEnd(gateway.PathTCP, gateway.EndIdle)
	m.BytesUp(100)
	m.BytesUp(23)
	m.BytesDown(7)
	m.UpstreamDialError(gateway.PathUDP)
	m.Dropped(gateway.DropEarlyData, 12)
	m.Buffered(4096)
	m.Buffered(-1000)
	// Out-of-range values must not panic on the relay path.
	m.HandshakeRejected(gateway.NumRejects)
	m.SessionEnd(gateway.PathUDP, gateway.NumEnds)
	m.Dropped(gateway.NumDrops, 1)

	got := scrape(t, set)
	for name, want := range map[string]string{
		`httvps_gateway_handshakes_total{result="ok",path="tcp"}`:         "2",
		`httvps_gateway_handshakes_total{result="ok",path="udp"}`:         "1",
		`httvps_gateway_handshakes_rejected_total{reason="secret"}`:       "1",
		`httvps_gateway_handshakes_rejected_total{reason="path"}`:         "0",
		`httvps_gateway_sessions{path="tcp"}`:                             "1",
		`httvps_gateway_sessions{path="udp"}`:                             "0",
		`httvps_gateway_sessions_ended_total{path="tcp",reason="idle"}`:   "1",
		`httvps_gateway_sessions_ended_total{path="tcp",reason="normal"}`: "0",
		`httvps_gateway_bytes_total{dir="up"}`:                            "123",
		`httvps_gateway_bytes_total{dir="down"}`:                          "7",
		`httvps_gateway_upstream_dial_errors_total{path="udp"}`:           "1",
		`httvps_gateway_drops_total{what="early_data"}`:                   "1",
		`httvps_gateway_dropped_bytes_total{what="early_data"}`:           "12",
		`httvps_gateway_buffered_bytes`:                                   "3096",
	} {
		if got[name] != want {
			t.Errorf("%s = %q, want %q", name, got[name], want)
		}
	}
}

func TestHotCallsDoNotAllocate(t *testing.T) {
	m := New(metrics.NewSet())
	allocs := testing.AllocsPerRun(1000, func() {
		m.BytesUp(1500)
		m.BytesDown(1500)
		m.Buffered(64)
		m.Buffered(-64)
	})
	if allocs != 0 {
		t.Errorf("hot calls allocate %v times per run", allocs)
	}
}

func BenchmarkBytesUp(b *testing.B) {
	m := New(metrics.NewSet())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.BytesUp(1500)
		}
	})
}
