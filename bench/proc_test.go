package bench

import (
	"encoding/binary"
	"errors"
	"os"
	"testing"
	"time"
)

func TestParseStatTicks(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want int64
		err  bool
	}{
		{"plain", "1234 (httvps-gate) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 6 0 100 1000 200", 281, false},
		{"comm with spaces and parens", "77 (a) b (c)) R 1 77 77 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 1 1 1", 10, false},
		{"truncated", "1 (x) S 1 2 3", 0, true},
		{"no comm", "garbage", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStatTicks([]byte(tc.in))
			if tc.err {
				if !errors.Is(err, errProcFormat) {
					t.Fatalf("err = %v, want errProcFormat", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

func TestParseStatusKiB(t *testing.T) {
	status := "Name:\tsink\nVmPeak:\t  10000 kB\nVmRSS:\t    6848 kB\nThreads:\t5\n"
	if got, err := parseStatusKiB([]byte(status), "VmRSS"); err != nil || got != 6848 {
		t.Fatalf("VmRSS = %d, %v", got, err)
	}
	if _, err := parseStatusKiB([]byte(status), "VmSwap"); !errors.Is(err, errProcFormat) {
		t.Fatalf("missing key: err = %v", err)
	}
	if _, err := parseStatusKiB([]byte("VmRSS:\t12 MB\n"), "VmRSS"); !errors.Is(err, errProcFormat) {
		t.Fatalf("bad unit: err = %v", err)
	}
}

func TestParseAuxvClockTicks(t *testing.T) {
	var b []byte
	for _, kv := range [][2]uint64{{6, 4096}, {17, 250}, {0, 0}} {
		b = binary.LittleEndian.AppendUint64(b, kv[0])
		b = binary.LittleEndian.AppendUint64(b, kv[1])
	}
	if got := parseAuxvClockTicks(b); got != 250 {
		t.Fatalf("got %d, want 250", got)
	}
	if got := parseAuxvClockTicks(b[16:16]); got != 0 {
		t.Fatalf("empty auxv: got %d", got)
	}
}

func TestReadProcSelf(t *testing.T) {
	s, err := ReadProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.RSSKiB <= 0 || s.CPU < 0 {
		t.Fatalf("implausible sample %+v", s)
	}
	if clockTicks() <= 0 {
		t.Fatal("no clock ticks")
	}
}

func TestParseSchedstat(t *testing.T) {
	if d, ok := parseSchedstat([]byte("123456789 42 7\n")); !ok || d != 123456789 {
		t.Fatalf("got %v %v", d, ok)
	}
	for _, bad := range []string{"", "1 2", "x 2 3", "-5 1 1", "1 2 3 4"} {
		if _, ok := parseSchedstat([]byte(bad)); ok {
			t.Fatalf("%q accepted", bad)
		}
	}
}

func TestCPUSince(t *testing.T) {
	tick := time.Second / time.Duration(clockTicks())
	before := ProcSample{CPU: 10 * tick, Exact: 10*tick + 3*time.Millisecond}
	// Agreeing readings: the exact figure, finer than a tick.
	after := ProcSample{CPU: 12 * tick, Exact: 10*tick + 3*time.Millisecond + 17*time.Millisecond + 123*time.Microsecond}
	n := CPUFallbacks()
	if got := after.CPUSince(before); got != 17*time.Millisecond+123*time.Microsecond {
		t.Fatalf("exact: got %v", got)
	}
	if CPUFallbacks() != n {
		t.Fatal("agreeing readings counted as a fallback")
	}
	// A thread exited in between: the exact sum lost its time, the ticks did not.
	gone := ProcSample{CPU: 60 * tick, Exact: before.Exact + time.Millisecond}
	if got := gone.CPUSince(before); got != 50*tick {
		t.Fatalf("exited thread: got %v, want the ticks' %v", got, 50*tick)
	}
	// No schedstat: ticks.
	if got := (ProcSample{CPU: 15 * tick}).CPUSince(ProcSample{CPU: 10 * tick}); got != 5*tick {
		t.Fatalf("no schedstat: got %v", got)
	}
	if CPUFallbacks() != n+2 {
		t.Fatalf("fallbacks %d, want %d", CPUFallbacks(), n+2)
	}
}

// TestExactCPUOfBusyProcess burns CPU in this process and checks that the
// exact reading sees it, agrees with utime+stime, and resolves below a tick.
func TestExactCPUOfBusyProcess(t *testing.T) {
	if !exactCPU() {
		t.Skip("no schedstat on this kernel")
	}
	before, err := ReadProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Burn CPU until utime+stime has moved by a few ticks (bounded by wall time).
	deadline := time.Now().Add(10 * time.Second)
	x := uint64(1)
	var after ProcSample
	for time.Now().Before(deadline) {
		for i := 0; i < 1_000_000; i++ {
			x = x*6364136223846793005 + 1442695040888963407
		}
		if after, err = ReadProc(os.Getpid()); err != nil {
			t.Fatal(err)
		}
		if after.CPU-before.CPU >= 5*time.Second/time.Duration(clockTicks()) {
			break
		}
	}
	_ = x
	n := CPUFallbacks()
	got := after.CPUSince(before)
	if CPUFallbacks() != n {
		t.Fatalf("exact %v and ticks %v disagree", after.Exact-before.Exact, after.CPU-before.CPU)
	}
	if got <= 0 || got%(time.Second/time.Duration(clockTicks())) == 0 {
		t.Fatalf("exact CPU %v: not finer than a tick", got)
	}
}
