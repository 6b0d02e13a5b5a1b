package bench

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// errProcFormat reports a /proc file whose layout is not the documented one.
var errProcFormat = errors.New("bench: unexpected /proc format")

// ProcSample is one reading of a process's resource use.
type ProcSample struct {
	CPU    time.Duration // utime + stime: clock ticks' resolution, exited threads included
	Exact  time.Duration // the live threads' run time (schedstat): nanoseconds; 0 if unavailable
	RSSKiB int64         // VmRSS
}

// ReadProc reads CPU time and RSS of pid.
func ReadProc(pid int) (ProcSample, error) {
	cpu, err := ReadCPU(pid)
	if err != nil {
		return ProcSample{}, err
	}
	rss, err := ReadRSS(pid)
	if err != nil {
		return ProcSample{}, err
	}
	return ProcSample{CPU: cpu, Exact: readExactCPU(pid), RSSKiB: rss}, nil
}

// CPUSince is the CPU time used between an earlier sample and s. It is the
// threads' exact run time, so that a short cell's figure does not carry the
// clock tick's resolution (10 ms at USER_HZ 100), unless the two disagree
// by more than the ticks' own error: a thread that ran and exited in
// between takes its time out of the exact sum but not out of utime+stime.
// Then it is the ticks' figure, and the fallback is counted
// (CPUFallbacks) for the report's notes.
func (s ProcSample) CPUSince(before ProcSample) time.Duration {
	ticks := s.CPU - before.CPU
	if s.Exact == 0 || before.Exact == 0 {
		cpuFallbacks.Add(1)
		return ticks
	}
	exact := s.Exact - before.Exact
	tick := time.Second / time.Duration(clockTicks())
	slack := 3*tick + ticks/50
	if exact < ticks-slack || exact > ticks+slack {
		cpuFallbacks.Add(1)
		return ticks
	}
	return exact
}

// cpuFallbacks counts CPUSince figures taken from clock ticks.
var cpuFallbacks atomic.Int64

// CPUFallbacks is how many CPU figures so far came from clock ticks.
func CPUFallbacks() int64 { return cpuFallbacks.Load() }

// readExactCPU sums the first field of /proc/PID/task/*/schedstat (time
// on a CPU, ns) over pid's threads; 0 if the kernel does not provide it.
func readExactCPU(pid int) time.Duration {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var sum time.Duration
	for _, e := range ents {
		b, err := os.ReadFile(dir + "/" + e.Name() + "/schedstat")
		if err != nil {
			if os.IsNotExist(err) {
				continue // a thread that exited since the listing
			}
			return 0
		}
		ns, ok := parseSchedstat(b)
		if !ok {
			return 0
		}
		sum += ns
	}
	return sum
}

// exactCPU reports whether this kernel gives threads' run times
// (CONFIG_SCHEDSTATS' /proc/PID/task/TID/schedstat).
var exactCPU = sync.OnceValue(func() bool { return readExactCPU(os.Getpid()) > 0 })

// parseSchedstat returns the run time of a schedstat line
// ("run_ns wait_ns timeslices").
func parseSchedstat(b []byte) (time.Duration, bool) {
	f := strings.Fields(string(b))
	if len(f) != 3 {
		return 0, false
	}
	v, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || v < 0 {
		return 0, false
	}
	return time.Duration(v), true
}

// ReadCPU returns utime+stime of pid from /proc/PID/stat.
func ReadCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	ticks, err := parseStatTicks(b)
	if err != nil {
		return 0, err
	}
	return time.Duration(ticks) * time.Second / time.Duration(clockTicks()), nil
}

// parseStatTicks returns utime+stime (fields 14 and 15) of a /proc/PID/stat
// line. The comm field may hold spaces and parentheses, so fields are counted
// from the last ')'.
func parseStatTicks(b []byte) (int64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("%w: stat has no comm", errProcFormat)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("%w: stat has %d fields after comm", errProcFormat, len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%w: utime %q stime %q", errProcFormat, f[11], f[12])
	}
	return ut + st, nil
}

// ReadRSS returns VmRSS of pid in KiB.
func ReadRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseStatusKiB(b, "VmRSS")
}

// parseStatusKiB returns the value of a "Key:   N kB" line of /proc/PID/status.
func parseStatusKiB(b []byte, key string) (int64, error) {
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || k != key {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("%w: %s line %q", errProcFormat, key, line)
		}
		return strconv.ParseInt(f[0], 10, 64)
	}
	return 0, fmt.Errorf("%w: no %s line", errProcFormat, key)
}

var clockTicksOnce = sync.OnceValue(func() int64 {
	b, err := os.ReadFile("/proc/self/auxv")
	if err != nil {
		return 100
	}
	if t := parseAuxvClockTicks(b); t > 0 {
		return t
	}
	return 100
})

// clockTicks is the kernel's USER_HZ (sysconf(_SC_CLK_TCK)), read from the
// auxiliary vector; 100 if it cannot be read.
func clockTicks() int64 { return clockTicksOnce() }

// parseAuxvClockTicks finds AT_CLKTCK (17) in a 64-bit little-endian auxv.
func parseAuxvClockTicks(b []byte) int64 {
	const atClkTck = 17
	for len(b) >= 16 {
		k := binary.LittleEndian.Uint64(b)
		v := binary.LittleEndian.Uint64(b[8:])
		if k == 0 {
			break
		}
		if k == atClkTck {
			return int64(v)
		}
		b = b[16:]
	}
	return 0
}
