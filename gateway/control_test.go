package gateway

import (
	"testing"
	"time"
)

// TestControlBudget checks the control-frame token bucket on the loop's
// clock, which the test sets: a full bucket takes exactly MaxControlBurst
// frames at one instant, one more token comes back every 1/MaxControlRate,
// an idle client refills to the burst and no further, and a negative rate
// takes no budget at all.
func TestControlBudget(t *testing.T) {
	const sec = int64(time.Second)
	type step struct {
		at     int64 // ns after the start
		frames int
		want   int // frames accepted before the first refused one
	}
	cases := []struct {
		name        string
		rate, burst int
		steps       []step
	}{
		{"burst then one per period", 10, 5, []step{
			{0, 8, 5},
			{sec / 10, 3, 1},
			{sec/10 + sec/20, 1, 0},
			{3 * sec / 10, 1, 1},
		}},
		{"idle refills only to the burst", 10, 5, []step{
			{0, 5, 5},
			{100 * sec, 10, 5},
		}},
		{"steady within the rate", 10, 2, []step{
			{0, 1, 1}, {sec / 10, 1, 1}, {2 * sec / 10, 1, 1}, {3 * sec / 10, 1, 1},
			{4 * sec / 10, 3, 2},
		}},
		{"defaults", 0, 0, []step{
			{0, defaultMaxControlBurst + 1, defaultMaxControlBurst},
			{sec, 20, defaultMaxControlRate},
		}},
		{"disabled", -1, 0, []step{
			{0, 100000, 100000},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := &Gateway{cfg: Config{MaxControlRate: tc.rate, MaxControlBurst: tc.burst}}
			l := &loop{g: g}
			s := &session{l: l}
			start := time.Now().UnixNano()
			for i, st := range tc.steps {
				l.now = start + st.at
				got := 0
				for range st.frames {
					if !s.controlFrame() {
						break
					}
					got++
				}
				if got != st.want {
					t.Fatalf("step %d (t=%v, %d frames): %d accepted, want %d", i, time.Duration(st.at), st.frames, got, st.want)
				}
			}
		})
	}
}
