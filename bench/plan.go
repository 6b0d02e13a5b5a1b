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

// stepOverhead is a step's fixed cost: starting and stopping the processes,
// the warm-up.
const stepOverhead = 1.0

// estimateStep is a rough duration of one step on a 2-core machine,
// in seconds, from the sizes in cfg (rates measured on the short run).
func estimateStep(cfg *Config, st step) float64 {
	const (
		relayRate   = 400e6  // bytes/s through a relay, plaintext or TLS
		udpRate     = 8000.0 // round trips/s per cell
		tlsConnCost = 1.5e-3 // s per new TLS session (tls-connect)
	)
	name := ""
	if st.pe != nil {
		name = st.pe.info.Name
	}
	cells := float64(2 * len(cfg.Streams))
	t := stepOverhead
	switch st.sc {
	case ScenarioThroughput:
		t += cells * float64(cfg.Bytes) / relayRate
	case ScenarioTLSThroughput:
		t += cells * float64(cfg.TLSBytes) / relayRate
	case ScenarioIdle, ScenarioTLSIdle:
		per := 0.25e-3
		if tlsPeer(name) {
			per = 0.75e-3
		}
		for _, n := range idleCountsOf(cfg, st.run) {
			if name == PeerGoCopy {
				n = min(n, cfg.GoCopySessions)
			}
			t += cfg.Settle.Seconds() + 0.5 + float64(n)*per
		}
	case ScenarioSlowReader:
		t += cfg.SlowDuration.Seconds()
	case ScenarioTLSConnect:
		t += float64(cfg.ConnectCount) * tlsConnCost
	case ScenarioTLSConnectBusy:
		t += 2 * float64(cfg.ConnectCount) * tlsConnCost
	case ScenarioTunnelIdle:
		t += cfg.Settle.Seconds() + float64(cfg.Tunnels)*0.4e-3
	case ScenarioLatency:
		t += float64(len(cfg.LatencyStreams))*(cfg.LatencyDuration.Seconds()+0.3) + float64(cfg.FirstByteSessions)*2e-3
	case ScenarioFlood:
		t += 2*(float64(cfg.FloodBytes)/relayRate+cfg.FloodDuration.Seconds()) + float64(cfg.FloodStalled)*0.3e-3 + 1
	case ScenarioUDP:
		t += float64(len(cfg.UDPAssociations)) * float64(cfg.UDPPackets) / udpRate
	case ScenarioClientCPU:
		t += 12*float64(cfg.ClientBytes)/200e6 + 10
	case ScenarioControl:
		t += 2*cfg.TokenCheckTime.Seconds() + cfg.ConfigLoadTime.Seconds() + 8
	}
	return t
}

// estimatePlan is the whole plan's estimated duration, and per scenario.
func estimatePlan(cfg *Config, plan []step) (time.Duration, map[string]time.Duration) {
	var total float64
	per := map[string]time.Duration{}
	for _, st := range plan {
		s := estimateStep(cfg, st)
		total += s
		per[st.sc] += time.Duration(s * float64(time.Second))
	}
	return time.Duration(total * float64(time.Second)), per
}

// writePlan writes the run plan: the steps per scenario and the estimate.
func writePlan(w io.Writer, cfg *Config, plan []step) {
	total, per := estimatePlan(cfg, plan)
	counts := map[string]int{}
	for _, st := range plan {
		counts[st.sc]++
	}
	fmt.Fprintf(w, "plan: %d steps, %d run(s), estimated %s on 2 cores:", len(plan), cfg.Runs, total.Round(time.Minute/6))
	for _, sc := range cfg.Scenarios {
		if counts[sc] > 0 {
			fmt.Fprintf(w, " %s %d×≈%s", sc, counts[sc], (per[sc] / time.Duration(counts[sc])).Round(time.Second/10))
		}
	}
	fmt.Fprintln(w)
}
