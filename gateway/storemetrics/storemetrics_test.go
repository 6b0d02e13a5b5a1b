package storemetrics

import (
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"

	"github.com/httvps/httvps/gateway/storeauth"
)

type fixed storeauth.Stats

func (f fixed) Stats() storeauth.Stats { return storeauth.Stats(f) }

func scrape() string {
	var b strings.Builder
	metrics.WritePrometheus(&b, false)
	return b.String()
}

func TestWriteZeros(t *testing.T) {
	var b strings.Builder
	Write(&b, storeauth.Stats{CacheMisses: 1, StoreDown: true})
	for _, want := range []string{
		`httvps_gateway_store_token_cache_total{result="miss"} 1`,
		`httvps_gateway_store_token_cache_total{result="hit"} 0`,
		`httvps_gateway_store_denied_total{reason="quota"} 0`,
		`httvps_gateway_store_up 0`,
		`httvps_gateway_store_pending_usage_bytes 0`,
	} {
		if !strings.Contains(b.String(), want+"\n") {
			t.Errorf("no %q in:\n%s", want, b.String())
		}
	}
}

// Export replaces the source; a stale unexport leaves the newer one alone.
func TestExport(t *testing.T) {
	unexportA := Export(fixed{CacheHits: 7})
	if s := scrape(); !strings.Contains(s, `httvps_gateway_store_token_cache_total{result="hit"} 7`) {
		t.Fatalf("first source not exported:\n%s", s)
	}
	unexportB := Export(fixed{CacheHits: 9})
	unexportA()
	s := scrape()
	if !strings.Contains(s, `httvps_gateway_store_token_cache_total{result="hit"} 9`) || strings.Count(s, "httvps_gateway_store_up ") != 1 {
		t.Fatalf("second source not exported once:\n%s", s)
	}
	unexportB()
	if s := scrape(); strings.Contains(s, "httvps_gateway_store_") {
		t.Fatalf("exported after unexport:\n%s", s)
	}
}
