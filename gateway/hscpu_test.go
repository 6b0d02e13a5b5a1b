package gateway

import (
	"runtime"
	"testing"
)

// The default handshake CPU slots count cores, not Ps: a GOMAXPROCS above
// the core count must not let a handshake flood take every core.
func TestDefaultHandshakeCPUCountsCores(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	cores := runtime.NumCPU()
	for _, procs := range []int{1, cores, 2 * cores, 4 * cores} {
		runtime.GOMAXPROCS(procs)
		want := max(1, min(procs, cores)/2)
		if got := defaultHandshakeCPU(); got != want {
			t.Errorf("GOMAXPROCS %d on %d cores: %d slots, want %d", procs, cores, got, want)
		}
		if got := defaultHandshakeCPU(); 2*got > max(2, cores) {
			t.Errorf("GOMAXPROCS %d on %d cores: %d slots is more than half the cores", procs, cores, got)
		}
	}
}
