package bench

import (
	"fmt"
	"slices"
	"testing"
)

// The plan runs repeated scenarios every run, the others once, each on the
// peers it applies to, peers in turn.
func TestPlanSteps(t *testing.T) {
	cfg := &Config{Runs: 2, Scenarios: []string{ScenarioThroughput, ScenarioControl, ScenarioLatency, ScenarioIdle, ScenarioTunnelIdle}}
	var peers []*peer
	for _, n := range []string{PeerHTTVPS, PeerTunnel, PeerHTTVPSTLS, PeerTunnelSS} {
		peers = append(peers, &peer{info: PeerInfo{Name: n}})
	}
	var got []string
	for _, st := range planSteps(cfg, peers) {
		name := "-"
		if st.pe != nil {
			name = st.pe.info.Name
		}
		got = append(got, fmt.Sprintf("%d %s %s", st.run, st.sc, name))
	}
	run := func(r int) []string {
		s := []string{
			"throughput httvps", "throughput httvps-tunnel", "throughput httvps-tunnel-ss",
		}
		if r == 1 {
			s = append(s, "control -")
		}
		s = append(s, "latency -", "latency httvps", "latency httvps-tunnel", "latency httvps-tls", "latency httvps-tunnel-ss", "idle httvps")
		if r == 1 {
			s = append(s, "tunnel-idle httvps-tunnel")
		}
		for i := range s {
			s[i] = fmt.Sprint(r, " ", s[i])
		}
		return s
	}
	if want := append(run(1), run(2)...); !slices.Equal(got, want) {
		t.Fatalf("plan\n%q\nwant\n%q", got, want)
	}
}
