package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// groupPids lists the processes whose process group is pgid. The harness
// starts every child in a group of its own, so for a forking server (nginx's
// master and workers) the group is exactly the server.
func groupPids(pgid int) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue // exited meanwhile
		}
		if g, err := parseStatPgrp(b); err == nil && g == pgid {
			pids = append(pids, pid)
		}
	}
	if len(pids) == 0 {
		return nil, fmt.Errorf("bench: no process in group %d", pgid)
	}
	return pids, nil
}

// parseStatPgrp returns field 5 (pgrp) of a /proc/PID/stat line.
func parseStatPgrp(b []byte) (int, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("%w: stat has no comm", errProcFormat)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 3 {
		return 0, fmt.Errorf("%w: stat has %d fields after comm", errProcFormat, len(f))
	}
	g, err := strconv.Atoi(f[2])
	if err != nil {
		return 0, fmt.Errorf("%w: pgrp %q", errProcFormat, f[2])
	}
	return g, nil
}

// ReadGroup sums CPU time and RSS over every process of group pgid. RSS
// counts shared pages once per process, so absolute figures overstate a
// forking server's footprint; differences (per-session growth) do not.
func ReadGroup(pgid int) (ProcSample, int, error) {
	pids, err := groupPids(pgid)
	if err != nil {
		return ProcSample{}, 0, err
	}
	var sum ProcSample
	n := 0
	for _, pid := range pids {
		s, err := ReadProc(pid)
		if err != nil {
			continue // a worker that exited between the listing and the read
		}
		sum.CPU += s.CPU
		sum.Exact += s.Exact
		sum.RSSKiB += s.RSSKiB
		n++
	}
	if n == 0 {
		return ProcSample{}, 0, fmt.Errorf("bench: group %d vanished", pgid)
	}
	return sum, n, nil
}

// groupFDs counts the open fds of every process of group pgid.
func groupFDs(pgid int) int {
	pids, err := groupPids(pgid)
	if err != nil {
		return 0
	}
	n := 0
	for _, pid := range pids {
		if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
			n += len(ents)
		}
	}
	return n
}
