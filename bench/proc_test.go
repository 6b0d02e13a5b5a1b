package bench

import (
	"encoding/binary"
	"errors"
	"os"
	"testing"
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
