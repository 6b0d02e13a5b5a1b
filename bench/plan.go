package bench

import (
	"fmt"
	"io"
	"time"
)

// step is one scenario on one peer (pe nil: the sink alone for latency, no
// peer for client-cpu and control) in one run.
type step struct {
	run int
	sc  string
	pe  *peer
}

// planSteps lists every step of a Run in order: runs, then scenarios, then
// peers. Scenarios that are not repeated (repeatedScenario) are in run 1
// only.
func planSteps(cfg *Config, peers []*peer) []step {
	var plan []step
	for run := 1; run <= cfg.Runs; run++ {
		for _, sc := range cfg.Scenarios {
			if run > 1 && !repeatedScenario(sc) {
				continue
			}
			switch sc {
			case ScenarioClientCPU, ScenarioControl:
				plan = append(plan, step{run, sc, nil})
				continue
			case ScenarioLatency:
				// Every peer, plaintext and TLS, after the sink alone.
				plan = append(plan, step{run, sc, nil})
				for _, pe := range peers {
					plan = append(plan, step{run, sc, pe})
				}
				continue
			}
			for _, pe := range peers {
				if applies(sc, pe.info.Name) {
					plan = append(plan, step{run, sc, pe})
				}
			}
		}
	}
	return plan
}

// applies reports whether a per-peer scenario runs on the named peer.
func applies(sc, name string) bool {
	switch sc {
	case ScenarioFlood:
		return floodPeer(name)
	case ScenarioUDP:
		return udpPeer(name)
	}
	if sc == ScenarioTunnelIdle {
		// Idle tunnels carry no stream: the SS tunnel peers would measure
		// the same thing again.
		return tunnelPeer(name) && !ssPeer(name)
	}
	if tlsScenario(sc) != tlsPeer(name) {
		return false
	}
	// tunnel-idle measures idle tunnels.
	return !(tunnelPeer(name) && (sc == ScenarioIdle || sc == ScenarioTLSIdle))
}

// progress writes one line before step k of n: where the run is, and a
// rough time left (the mean step so far times the steps left).
func progress(w io.Writer, k, n int, st step, name string, runs int, elapsed time.Duration) {
	eta := "?"
	if k > 0 {
		eta = (elapsed / time.Duration(k) * time.Duration(n-k)).Round(time.Second).String()
	}
	run := ""
	if runs > 1 {
		run = fmt.Sprintf("run %d/%d, ", st.run, runs)
	}
	fmt.Fprintf(w, "== [%d/%d] %s%s on %s (elapsed %s, about %s left)\n", k+1, n, run, st.sc, name, elapsed.Round(time.Second), eta)
}
