package client

import (
	"io"
	"net"
	"testing"

	"github.com/httvps/httvps/internal/testpeer"
)

// BenchmarkTunnelStreamOpen: a stream on an open tunnel — OPEN with its
// first bytes, their echo, FIN both ways — against tunServer (client and
// test server costs together).
func BenchmarkTunnelStreamOpen(b *testing.B) {
	srv := startTunServer(b, tunToken, testpeer.EchoServer(b), "", serverSettings(1000))
	tun := NewTunnel(TunnelConfig{Gateways: []Gateway{{Addr: srv.Addr()}}, Token: tunToken, Pool: 1})
	defer tun.Close()
	msg := make([]byte, 100)
	got := make([]byte, 100)
	b.ReportAllocs()
	for b.Loop() {
		s, err := tun.DialStream(b.Context())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Write(msg); err != nil {
			b.Fatal(err)
		}
		s.CloseWrite()
		if _, err := io.ReadFull(s, got); err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}

// BenchmarkTunnelUpload: one stream's upload in 64 KiB writes to a
// discarding upstream, within the windows. The allocations reported are the
// test server's copies of what it receives; the client's frame buffers are
// pooled.
func BenchmarkTunnelUpload(b *testing.B) {
	sink := testpeer.ListenTCP(b, func(c *net.TCPConn) { io.Copy(io.Discard, c) })
	srv := startTunServer(b, tunToken, sink, "", serverSettings(10))
	tun := NewTunnel(TunnelConfig{Gateways: []Gateway{{Addr: srv.Addr()}}, Token: tunToken, Pool: 1})
	defer tun.Close()
	s, err := tun.DialStream(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	buf := make([]byte, 64<<10)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
}
