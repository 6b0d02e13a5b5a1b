package client

import (
	"log/slog"
	"testing"

	"github.com/httvps/httvps/codec/mux"
	"github.com/httvps/httvps/internal/testpeer"
)

// curl through the proxy front over the native tunnel (NewTunnel) to a
// real ss-server, 64 MiB each way, and UDP. The tunnel's far end is the
// client tests' own /v1/tunnel server (tunnel_server_test.go) until the
// gateway serves the native path.
func TestCurlThroughProxyNative(t *testing.T) {
	srv := testpeer.SSServer(t, testPassword, "aes-256-gcm")
	const token = "native-proxy-token-0123456789"
	ts := startTunServer(t, token, srv, srv, mux.DefaultSettings())
	tun := NewTunnel(TunnelConfig{Gateways: []Gateway{{Addr: ts.Addr()}}, Token: token, Logger: slog.New(slog.DiscardHandler)})
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
	if st := tun.Status(); st.Gateway != ts.Addr() || !st.Connected || st.Up < 64<<20 || st.Down < 64<<20 {
		t.Errorf("tunnel status %+v", st)
	}
}
