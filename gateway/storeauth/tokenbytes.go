package storeauth

import (
	"io"
	"sort"
	"strconv"
	"sync"
)

// Per-token traffic series (Config.MetricsPerToken): what operators chart
// per user in Grafana. Counted from the usage the flusher takes from the
// accounts every FlushEvery, so the session hot path pays nothing; bounded
// by a cap on distinct tokens, past which traffic goes to the overflow
// series token="other" (which is always there, at zero when the series
// are off).

type tokenBytes struct {
	cap int // 0: off

	mu                 sync.Mutex // guards the rest
	m                  map[string]*[2]uint64
	otherUp, otherDown uint64
}

func (t *tokenBytes) add(id string, up, down int64) {
	if t.cap <= 0 || up < 0 || down < 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.m[id]
	if c == nil {
		if len(t.m) >= t.cap {
			t.otherUp += uint64(up)
			t.otherDown += uint64(down)
			return
		}
		if t.m == nil {
			t.m = make(map[string]*[2]uint64)
		}
		c = new([2]uint64)
		t.m[id] = c
	}
	c[0] += uint64(up)
	c[1] += uint64(down)
}

func (t *tokenBytes) other() (up, down uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.otherUp, t.otherDown
}

// WriteTokenSeries writes httvps_gateway_store_token_bytes_total for every
// token counted (Config.MetricsPerToken), ordered by token id; the
// overflow series is part of Stats. Token ids are not secrets (the admin
// API lists them); labels and secrets never appear.
func (a *Auth) WriteTokenSeries(w io.Writer) {
	t := &a.tokBytes
	if t.cap <= 0 {
		return
	}
	t.mu.Lock()
	ids := make([]string, 0, len(t.m))
	for id := range t.m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var b []byte
	for _, id := range ids {
		c := t.m[id]
		for i, dir := range [2]string{"up", "down"} {
			b = append(b, `httvps_gateway_store_token_bytes_total{token="`...)
			b = append(b, id...) // store ids are [A-Za-z0-9_-]
			b = append(b, `",direction="`...)
			b = append(b, dir...)
			b = append(b, `"} `...)
			b = strconv.AppendUint(b, c[i], 10)
			b = append(b, '\n')
		}
	}
	t.mu.Unlock()
	w.Write(b)
}
