package api

import (
	"io"
	"sort"
	"strings"

	"github.com/VictoriaMetrics/metrics"

	"github.com/httvps/httvps/control/pool"
)

// poolStats is implemented by pools that report figures for /metrics
// (*pool.Manager does; the tests' fakes need not).
type poolStats interface {
	Stats() pool.Stats
}

// writePoolMetrics writes the httvps_control_pool_* series from one
// snapshot. They are written per scrape rather than registered, so no two
// Servers (tests, `httvps up` beside a gateway) ever claim a name twice.
// Every fixed label combination is written, zeros included; the
// per-member series follow the members of the last health round.
func writePoolMetrics(w io.Writer, s pool.Stats) {
	const p = "httvps_control_pool_"
	metrics.WriteGaugeUint64(w, p+`members{state="up"}`, uint64(s.MembersUp))
	metrics.WriteGaugeUint64(w, p+`members{state="down"}`, uint64(s.MembersDown))
	metrics.WriteGaugeUint64(w, p+`members{state="draining"}`, uint64(s.MembersDraining))
	metrics.WriteCounterUint64(w, p+`health_checks_total{result="up"}`, s.HealthChecksUp)
	metrics.WriteCounterUint64(w, p+`health_checks_total{result="down"}`, s.HealthChecksDown)
	metrics.WriteCounterUint64(w, p+"key_repairs_total", s.Repairs)
	metrics.WriteCounterUint64(w, p+"stray_keys_deleted_total", s.StraysDeleted)
	metrics.WriteGaugeUint64(w, p+"stray_keys", uint64(s.StrayKeys))
	metrics.WriteGaugeUint64(w, p+"pending_deletions", uint64(s.PendingDeletions))
	for _, kind := range pool.Backends {
		metrics.WriteCounterUint64(w, p+`key_errors_total{backend="`+kind+`",op="create"}`, s.CreateErrors[kind])
		metrics.WriteCounterUint64(w, p+`key_errors_total{backend="`+kind+`",op="delete"}`, s.DeleteErrors[kind])
	}
	var total uint64
	for _, id := range sortedKeys(s.MemberKeys) {
		total += uint64(s.MemberKeys[id])
		metrics.WriteGaugeUint64(w, p+`member_keys{member="`+labelValue(id)+`"}`, uint64(s.MemberKeys[id]))
	}
	metrics.WriteGaugeUint64(w, p+"keys", total)
	for _, id := range sortedKeys(s.Transfer) {
		metrics.WriteGaugeUint64(w, p+`member_transfer_bytes{member="`+labelValue(id)+`"}`, uint64(max(s.Transfer[id], 0)))
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// labelValue escapes a label value as the text exposition format wants.
var labelValue = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace
