package gateway

import (
	"bytes"
	"log/slog"
	"math"
	"testing"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"

	"github.com/httvps/httvps/codec"
	"github.com/httvps/httvps/codec/mux"
)

// tunnelUnderTest is a tunnel session without a loop goroutine or epoll (the
// loop's epoll fd is invalid, so registering a member fails: every OPEN is
// answered RESET CONNECT), with one open stream 1 on a socket pair. The
// caller ends the tunnel (tunEndStreams), which closes the stream's socket.
func tunnelUnderTest(t testing.TB, m Metrics) (s *session, st *tstream, client, member int) {
	g := &Gateway{cfg: Config{BufferCap: 1 << 20}, m: m, tm: nopTunnelMetrics{}, chunk: 64 << 10,
		log: slog.New(slog.DiscardHandler), tunMaxStreams: 4}
	g.idle[PathTCP] = 1
	l := &loop{g: g, epfd: -1, scratch: make([]byte, 256<<10), iov: make([][]byte, 0, maxIOV), fds: make([]*session, 1<<16)}
	l.out = make([]byte, 0, len(l.scratch)+1024)
	pair := func() [2]int {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		return fds
	}
	cli, up := pair(), pair()
	// The member end up[0] is the stream's: the tunnel closes it when the
	// stream ends (a second close could hit an fd reused meanwhile).
	t.Cleanup(func() { unix.Close(cli[0]); unix.Close(cli[1]); unix.Close(up[1]) })
	s = &session{l: l, kind: PathTunnel, cfd: int32(cli[0]), ufd: -1, tun: newTunnel(nil)}
	s.rd.Init(codec.Limits{RejectText: true, MaxMessage: math.MaxInt64})
	st = &tstream{id: 1, fd: up[0], recvWin: tunStreamWindow, sendWin: mux.DefaultStreamWindow}
	s.tun.streams = map[uint32]*tstream{1: st}
	s.tun.byFD = map[int32]*tstream{int32(up[0]): st}
	s.tun.gotSettings, s.tun.highest = true, 1
	return s, st, cli[1], up[1]
}

// FuzzTunnelInput feeds arbitrary client bytes, split at an arbitrary point,
// to a tunnel: whatever they are, the gateway must not panic, must keep its
// windows within their bounds, and once the tunnel ends hold no buffer.
func FuzzTunnelInput(f *testing.F) {
	open := func(id uint32, k mux.Kind) []byte { return mux.AppendOpen(nil, id, k, false, []byte("x")) }
	seeds := [][]byte{
		// DATA on the open stream, with FIN.
		mux.AppendData(nil, 1, true, []byte("hello")),
		// OPEN (refused: no member), then DATA on it (ignored, credited).
		append(open(3, mux.KindTCP), mux.AppendData(nil, 3, false, make([]byte, 100))...),
		// udp OPEN, then a packet split in two frames' worth of bytes.
		append(open(5, mux.KindUDP), mux.AppendData(nil, 5, false, make([]byte, 2000))...),
		// WINDOW, PING, RESET, GOAWAY, an unknown type.
		bytes.Join([][]byte{mux.AppendWindow(nil, 0, 10), mux.AppendPing(nil, [8]byte{1}, false),
			mux.AppendReset(nil, 1, mux.ResetCancel), mux.AppendGoAway(nil, 0, 0), {0, 0, 1, 0x9, 0, 0, 0, 0, 0, 7}}, nil),
		// Overruns: session WINDOW overflow, stream WINDOW overflow, ID
		// order. (A stream window overrun needs 256 KiB of input, which
		// slows the fuzzer's minimizing; TestTunnelBadInput has it.)
		mux.AppendWindow(nil, 0, mux.MaxWindow),
		mux.AppendWindow(nil, 1, mux.MaxWindow),
		append(open(9, mux.KindTCP), open(7, mux.KindTCP)...),
		// A second SETTINGS, a frame too large.
		mux.AppendSettings(nil, mux.DefaultSettings()),
		{0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1},
	}
	for _, s := range seeds {
		f.Add(s, uint16(len(s)/2))
	}
	f.Fuzz(fuzzTunnelOnce)
}

func fuzzTunnelOnce(t *testing.T, in []byte, cut uint16) {
	{
		m := &countingMetrics{}
		s, _, _, _ := tunnelUnderTest(t, m)
		k := int(cut) % (len(in) + 1)
		for _, piece := range [][]byte{in[:k], in[k:]} {
			buf := append([]byte(nil), piece...)
			if !s.tunInput(buf) {
				break
			}
			s.tunFlush()
		}
		tun := s.tun
		if tun.recvWin < 0 || tun.recvWin > mux.MaxWindow || tun.sendWin > mux.MaxWindow {
			t.Fatalf("session windows out of bounds: recv %d send %d", tun.recvWin, tun.sendWin)
		}
		for _, st := range tun.streams {
			if st.recvWin < 0 || st.sendWin > mux.MaxWindow {
				t.Fatalf("stream %d windows out of bounds: recv %d send %d", st.id, st.recvWin, st.sendWin)
			}
			if st.up.len() > tunStreamWindow {
				t.Fatalf("stream %d holds %d bytes, beyond its window", st.id, st.up.len())
			}
		}
		s.tunEndStreams()
		if b := m.buffered.Load(); b != 0 {
			t.Fatalf("%d bytes still buffered after the tunnel ended", b)
		}
	}
}

// BenchmarkTunnelRelay: one client read of 16 DATA frames of 4 KiB for one
// stream relayed to its member, and one 16 KiB member read framed for the
// client: the loop's work per pair of events, without epoll.
func BenchmarkTunnelRelay(b *testing.B) {
	s, st, client, member := tunnelUnderTest(b, nopMetrics{})
	defer s.tunEndStreams()
	var frames []byte
	for range 16 {
		frames = mux.AppendData(frames, 1, false, make([]byte, 4096))
	}
	read := codec.AppendClientFrame(nil, ws.OpBinary, true, [4]byte{1, 2, 3, 4}, frames)
	down := make([]byte, 16<<10)
	sink := make([]byte, 1<<20)
	b.ReportAllocs()
	b.SetBytes(int64(len(frames) + len(down)))
	for b.Loop() {
		n := copy(s.l.scratch, read)
		s.consume(s.l.scratch[:n], s.l.iov[:0])
		s.tunFlush()
		unix.Read(member, sink)
		unix.Write(member, down)
		s.streamRead(st)
		unix.Read(client, sink)
		// The client's windows stay open, as a reading client's would.
		st.sendWin, s.tun.sendWin = mux.DefaultStreamWindow, mux.DefaultSessionWindow
	}
	if s.dead() || s.closeSent() {
		b.Fatal("tunnel failed")
	}
}
