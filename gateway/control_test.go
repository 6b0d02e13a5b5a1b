package gateway

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"

	"github.com/httvps/httvps/codec"
	"github.com/httvps/httvps/codec/tls13"
)

// TestControlBudget checks the control-frame token bucket on the loop's
// clock, which the test sets: a full bucket takes exactly MaxControlBurst
// frames at one instant, one more token comes back every 1/MaxControlRate,
// an idle client refills to the burst and no further, and a negative rate
// takes no budget at all.
func TestControlBudget(t *testing.T) {
	const sec = int64(time.Second)
	type step struct {
		at     int64 // ns after the start
		frames int
		want   int // frames accepted before the first refused one
	}
	cases := []struct {
		name        string
		rate, burst int
		steps       []step
	}{
		{"burst then one per period", 10, 5, []step{
			{0, 8, 5},
			{sec / 10, 3, 1},
			{sec/10 + sec/20, 1, 0},
			{3 * sec / 10, 1, 1},
		}},
		{"idle refills only to the burst", 10, 5, []step{
			{0, 5, 5},
			{100 * sec, 10, 5},
		}},
		{"steady within the rate", 10, 2, []step{
			{0, 1, 1}, {sec / 10, 1, 1}, {2 * sec / 10, 1, 1}, {3 * sec / 10, 1, 1},
			{4 * sec / 10, 3, 2},
		}},
		{"defaults", 0, 0, []step{
			{0, defaultMaxControlBurst + 1, defaultMaxControlBurst},
			{sec, 20, defaultMaxControlRate},
		}},
		{"disabled", -1, 0, []step{
			{0, 100000, 100000},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := &Gateway{cfg: Config{MaxControlRate: tc.rate, MaxControlBurst: tc.burst}}
			l := &loop{g: g}
			s := &session{l: l}
			start := time.Now().UnixNano()
			for i, st := range tc.steps {
				l.now = start + st.at
				got := 0
				for range st.frames {
					if !s.controlFrame() {
						break
					}
					got++
				}
				if got != st.want {
					t.Fatalf("step %d (t=%v, %d frames): %d accepted, want %d", i, time.Duration(st.at), st.frames, got, st.want)
				}
			}
		})
	}
}

// TestPingReadAllocs: a read that brings data and many pings (plaintext,
// and TLS 1.3 records) is relayed and answered with one pong without
// allocating, and the client gets exactly one pong for the last ping.
func TestPingReadAllocs(t *testing.T) {
	for _, withTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", withTLS), func(t *testing.T) {
			g := &Gateway{cfg: Config{MaxControlRate: -1, BufferCap: 1 << 20}, m: nopMetrics{}, chunk: 64 << 10}
			l := &loop{g: g, scratch: make([]byte, 256<<10), iov: make([][]byte, 0, maxIOV)}
			l.out = make([]byte, 0, len(l.scratch)+1024)
			cli, up := socketPair(t), socketPair(t)
			s := &session{l: l, kind: PathTCP, cfd: int32(cli[0]), ufd: int32(up[0])}
			s.rd.Init(codec.Limits{RejectText: true})
			var client *tls13.Sealer
			if withTLS {
				secretC, secretS := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
				rl, err := newTLS13(tls.TLS_AES_128_GCM_SHA256, secretC, secretS)
				if err != nil {
					t.Fatal(err)
				}
				s.tls = &tlsSession{rl: rl}
				if client, err = tls13.NewSealer(tls.TLS_AES_128_GCM_SHA256, secretC); err != nil {
					t.Fatal(err)
				}
			}
			var batch []byte
			for i := range 40 {
				batch = codec.AppendClientFrame(batch, ws.OpPing, true, [4]byte{9, 8, 7, 6}, []byte{byte(i)})
				if i%10 == 0 {
					batch = codec.AppendClientFrame(batch, ws.OpBinary, true, [4]byte{1, 2, 3, 4}, []byte("data"))
				}
			}
			const runs = 50
			reads := make([][]byte, runs+1)
			for i := range reads {
				if withTLS {
					reads[i], _ = client.Seal(nil, 23, batch[:len(batch)/2])
					reads[i], _ = client.Seal(reads[i], 23, batch[len(batch)/2:])
				} else {
					reads[i] = batch
				}
			}
			i := 0
			allocs := testing.AllocsPerRun(runs, func() {
				n := copy(l.scratch, reads[i])
				i++
				if withTLS {
					s.openRecords(l.scratch[:n])
				} else if iov, ok := s.consume(l.scratch[:n], l.iov[:0]); ok {
					s.flushPieces(iov)
				}
			})
			if s.dead() || s.closeSent() {
				t.Fatal("session failed")
			}
			if allocs != 0 {
				t.Errorf("%v allocations per read", allocs)
			}
			got := make([]byte, 64<<10)
			n, _ := unix.Read(cli[1], got)
			if withTLS {
				// One record per read: 5-byte header, a 3-byte pong, the
				// inner type, the 16-byte tag.
				if want := (runs + 1) * (5 + 3 + 1 + 16); n != want {
					t.Fatalf("client got %d bytes, want %d (one pong record per read)", n, want)
				}
				return
			}
			if want := bytes.Repeat([]byte{0x8a, 1, 39}, runs+1); !bytes.Equal(got[:n], want) {
				t.Fatalf("client got %d bytes (% x…), want one pong for ping 39 per read (%d bytes)", n, got[:min(n, 24)], len(want))
			}
			if n, _ := unix.Read(up[1], got); n != (runs+1)*4*4 {
				t.Fatalf("upstream got %d bytes, want %d", n, (runs+1)*16)
			}
		})
	}
}

func socketPair(t *testing.T) [2]int {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	return fds
}
