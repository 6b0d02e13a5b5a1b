package bench

import (
	"fmt"
	"runtime"
	"time"
)

// Hog spins one CPU until killed: the "hog" subcommand of the harness,
// which tls-connect-busy runs once per core beside every peer.
func Hog() {
	runtime.GOMAXPROCS(1)
	x := uint64(1)
	for {
		x = x*6364136223846793005 + 1442695040888963407
		if x == 0 {
			fmt.Println(x) // never; keeps the loop from being optimised away
		}
	}
}

// startHogs runs n "hog" children (their own process groups, killed by
// stop and by ps.stopAll) and gives them a moment to reach the CPU.
func startHogs(ps *procSet, self string, n int) (stop func(), err error) {
	var hogs []*Process
	stop = func() {
		for _, h := range hogs {
			h.Stop()
		}
	}
	for i := range n {
		p, err := ps.start(fmt.Sprintf("hog%d", i), []string{self, "hog"}, nil)
		if err != nil {
			stop()
			return nil, err
		}
		hogs = append(hogs, p)
	}
	time.Sleep(200 * time.Millisecond)
	for _, h := range hogs {
		if h.Exited() {
			stop()
			return nil, fmt.Errorf("bench: %s exited: %v: %s", h.Name, h.err, h.tail)
		}
	}
	return stop, nil
}
