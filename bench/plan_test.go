package bench

import (
	"fmt"
	"slices"
	"strings"
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

// The flood runs on the TLS and Shadowsocks peers but not the tunnels, udp
// on the Shadowsocks packet-path peers; the estimate grows with the sizes.
func TestPlanFloodUDPAndEstimate(t *testing.T) {
	cfg := &Config{Self: "x", Runs: 1, Scenarios: []string{ScenarioFlood, ScenarioUDP}}
	cfg.setDefaults()
	var peers []*peer
	for _, n := range []string{PeerHTTVPS, PeerHTTVPSTLS, PeerTunnelTLS, PeerHTTVPSSS, PeerOutline, PeerNginxTLS, PeerTunnelSS} {
		peers = append(peers, &peer{info: PeerInfo{Name: n}})
	}
	var got []string
	for _, st := range planSteps(cfg, peers) {
		got = append(got, st.sc+" "+st.pe.info.Name)
	}
	want := []string{"handshake-flood httvps-tls", "handshake-flood httvps-ss", "handshake-flood outline-ss", "handshake-flood nginx-tls",
		"udp httvps-ss", "udp outline-ss", "udp httvps-tunnel-ss"}
	if !slices.Equal(got, want) {
		t.Fatalf("plan %q, want %q", got, want)
	}
	small, _ := estimatePlan(cfg, planSteps(cfg, peers))
	cfg.UDPPackets *= 2
	large, _ := estimatePlan(cfg, planSteps(cfg, peers))
	if small <= 0 || large <= small {
		t.Fatalf("estimates %v, %v", small, large)
	}
}

// The live display keeps one status line below the log's lines.
func TestLiveLog(t *testing.T) {
	var b strings.Builder
	l := newLiveLog(&b)
	l.render = func() string { return "== [1/2] udp" }
	l.redraw()
	fmt.Fprintln(l, "udp line")
	l.close()
	if want := "\r\033[K== [1/2] udp\r\033[Kudp line\n== [1/2] udp\r\033[K"; b.String() != want {
		t.Fatalf("%q, want %q", b.String(), want)
	}
}
