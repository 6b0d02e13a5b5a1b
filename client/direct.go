package client

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Direct is the Transport of a plain ss:// key: streams are TCP
// connections to the Shadowsocks server, associations UDP sockets to it.
type Direct struct {
	server string
	dialer net.Dialer
	stats  counters

	mu  sync.Mutex // guards rtt, err
	rtt time.Duration
	err error
}

// NewDirect is a Transport to the Shadowsocks server at addr (host:port).
func NewDirect(addr string) *Direct {
	return &Direct{server: addr, dialer: net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}}
}

func (d *Direct) DialStream(ctx context.Context) (StreamConn, error) {
	start := time.Now()
	c, err := d.dialer.DialContext(ctx, "tcp", d.server)
	d.note(time.Since(start), err)
	if err != nil {
		return nil, err
	}
	return d.stats.stream(c.(*net.TCPConn)), nil
}

func (d *Direct) DialPacket(ctx context.Context) (net.Conn, error) {
	c, err := d.dialer.DialContext(ctx, "udp", d.server)
	if err != nil {
		d.note(0, err)
		return nil, err
	}
	return d.stats.packet(c), nil
}

// note keeps the TCP connect time (one round trip) and the last error.
func (d *Direct) note(rtt time.Duration, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.err = err
	if err == nil {
		d.rtt = rtt
	}
}

func (d *Direct) Status() Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.stats.status()
	s.Gateway, s.Connected, s.RTT, s.Err = d.server, d.err == nil, d.rtt, d.err
	return s
}

func (d *Direct) Close() error { return nil }

// counters count a Transport's open streams and its bytes.
type counters struct {
	streams  atomic.Int64
	up, down atomic.Int64
}

func (c *counters) status() Status {
	return Status{Streams: int(c.streams.Load()), Up: c.up.Load(), Down: c.down.Load()}
}

// stream wraps s so its bytes and its life are counted.
func (c *counters) stream(s StreamConn) StreamConn {
	c.streams.Add(1)
	return &countedStream{countedConn: countedConn{Conn: s, c: c}, half: s}
}

// packet is stream for a packet conn.
func (c *counters) packet(p net.Conn) net.Conn {
	c.streams.Add(1)
	return &countedConn{Conn: p, c: c}
}

// countedConn counts the bytes of a conn and, once closed, its end.
type countedConn struct {
	net.Conn
	c    *counters
	once sync.Once
}

func (x *countedConn) Read(p []byte) (int, error) {
	n, err := x.Conn.Read(p)
	x.c.down.Add(int64(n))
	return n, err
}

func (x *countedConn) Write(p []byte) (int, error) {
	n, err := x.Conn.Write(p)
	x.c.up.Add(int64(n))
	return n, err
}

func (x *countedConn) Close() error {
	x.once.Do(func() { x.c.streams.Add(-1) })
	return x.Conn.Close()
}

// countedStream is a countedConn that keeps the stream's half-close.
type countedStream struct {
	countedConn
	half StreamConn
}

func (s *countedStream) CloseRead() error  { return s.half.CloseRead() }
func (s *countedStream) CloseWrite() error { return s.half.CloseWrite() }
