package client

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
)

// Targets are encoded as Shadowsocks (SOCKS5) addresses: IPv4 (also when
// written as IPv4-in-IPv6), IPv6, and domain names.
func TestSocksAddr(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []byte
	}{
		{"10.1.2.3:443", []byte{1, 10, 1, 2, 3, 1, 187}},
		{"[::ffff:10.1.2.3]:80", []byte{1, 10, 1, 2, 3, 0, 80}},
		{"[2001:db8::1]:53", append(append([]byte{4}, net.ParseIP("2001:db8::1").To16()...), 0, 53)},
		{"example.com:8080", append(append([]byte{3, 11}, "example.com"...), 0x1f, 0x90)},
	} {
		got, err := socksAddr(c.in)
		if err != nil || !bytes.Equal(got, c.want) {
			t.Errorf("socksAddr(%q) = % x, %v; want % x", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"example.com", "example.com:http", "host:70000", ":80", string(make([]byte, 256)) + ":1"} {
		if _, err := socksAddr(bad); err == nil {
			t.Errorf("socksAddr(%q): no error", bad)
		}
	}
}

// recConn records the writes that reach the TCP connection.
type recConn struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
}

func (r *recConn) Write(p []byte) (int, error) {
	r.mu.Lock()
	r.writes = append(r.writes, append([]byte(nil), p...))
	r.mu.Unlock()
	return len(p), nil
}

// Between begin and end the writes of crypto/tls leave as one write, in
// order, behind nothing written before; outside, each passes at once; the
// buffer goes back after end.
func TestBatchConnGathersInOrder(t *testing.T) {
	rc := &recConn{}
	b := &batchConn{Conn: rc}
	b.Write([]byte("hs"))
	b.begin()
	b.Write([]byte("r1"))
	b.Write([]byte("r2"))
	if len(rc.writes) != 1 {
		t.Fatalf("writes during a batch reached the connection: %q", rc.writes)
	}
	if err := b.end(); err != nil {
		t.Fatal(err)
	}
	if b.buf != nil {
		t.Error("batch buffer kept after end")
	}
	b.Write([]byte("alert"))
	want := []string{"hs", "r1r2", "alert"}
	if len(rc.writes) != len(want) {
		t.Fatalf("writes %q, want %q", rc.writes, want)
	}
	for i, w := range want {
		if string(rc.writes[i]) != w {
			t.Fatalf("writes %q, want %q", rc.writes, want)
		}
	}
	// A batch larger than batchMax goes out in pieces, still in order.
	rc.writes = nil
	b.begin()
	var sent []byte
	for i := 0; i < 40; i++ {
		p := bytes.Repeat([]byte{byte(i)}, 16<<10)
		sent = append(sent, p...)
		b.Write(p)
	}
	b.end()
	if got := bytes.Join(rc.writes, nil); !bytes.Equal(got, sent) {
		t.Fatalf("large batch: %d bytes in %d writes, not what was written", len(got), len(rc.writes))
	}
	if len(rc.writes) > 3 {
		t.Errorf("640 KiB took %d writes, want at most 3", len(rc.writes))
	}
}

// chunkConn returns what it holds in reads of at most max bytes and
// counts them.
type chunkConn struct {
	net.Conn
	data  []byte
	max   int
	reads int
}

func (c *chunkConn) Read(p []byte) (int, error) {
	c.reads++
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.max)], c.data)
	c.data = c.data[n:]
	return n, nil
}

// Bulk reads go through the read-ahead (fewer reads below than crypto/tls
// asks for), every byte in order, and the buffer is given back at the end.
func TestBatchConnReadAhead(t *testing.T) {
	want := make([]byte, 4<<20)
	for i := range want {
		want[i] = byte(i * 31)
	}
	cc := &chunkConn{data: append([]byte(nil), want...), max: 1 << 20}
	b := &batchConn{Conn: cc}
	var got []byte
	p := make([]byte, 16<<10+512) // about what crypto/tls offers
	asks := 0
	for {
		asks++
		n, err := b.Read(p)
		got = append(got, p[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, not what was sent", len(got))
	}
	if cc.reads*4 > asks {
		t.Errorf("%d reads of the connection for %d reads of crypto/tls: no read-ahead", cc.reads, asks)
	}
	if b.rbuf != nil {
		t.Error("read-ahead buffer kept at EOF")
	}
}
