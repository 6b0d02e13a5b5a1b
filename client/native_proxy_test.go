package client

import (
	"log/slog"
	"testing"

	"github.com/httvps/httvps/internal/testpeer"
)

// curl through the proxy front over the native tunnel (NewTunnel) and the
// real gateway's /v1/tunnel to a real ss-server, 64 MiB each way, and UDP
// (the gateway sends a udp stream to the route's port, where ss-server
// listens for UDP as well).
func TestCurlThroughProxyNative(t *testing.T) {
	srv := testpeer.SSServer(t, testPassword, "aes-256-gcm")
	const token = "native-proxy-token-0123456789"
	addr, _ := startRealGateway(t, false, map[string]string{token: srv})
	tun := NewTunnel(TunnelConfig{Gateways: []Gateway{{Addr: addr}}, Token: token, Logger: slog.New(slog.DiscardHandler)})
	defer tun.Close()
	s, err := NewShadowsocks(tun, "aes-256-gcm", testPassword)
	if err != nil {
		t.Fatal(err)
	}
	curlThroughProxy(t, s, 64<<20)

	pc, err := s.ListenPacket(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	checkPacketEcho(t, pc, testpeer.UDPEcho(t), []int{1, 700, 1300})
	if st := tun.Status(); st.Gateway != addr || !st.Connected || st.Up < 64<<20 || st.Down < 64<<20 {
		t.Errorf("tunnel status %+v", st)
	}
}
