package client

import (
	"io"
	"net"
	"sync/atomic"
)

// NewWSStream is the Outline-path stream adapter over c (a WebSocket on
// /<secret>/tcp): each Write goes out as binary messages of at most
// WSOptions.WriteChunk bytes, Read returns the gateway's payloads
// concatenated, CloseWrite sends close 1000 (the gateway then ends the
// member's write side and keeps sending), and a close 1000 from the gateway
// (the member finished) is io.EOF. Close tears down both directions.
func NewWSStream(c *WSConn) StreamConn { return &wsStream{WSConn: c} }

type wsStream struct {
	*WSConn
	readClosed  atomic.Bool
	writeClosed atomic.Bool
}

func (s *wsStream) Read(p []byte) (int, error) {
	if s.readClosed.Load() {
		return 0, io.EOF
	}
	return s.WSConn.Read(p)
}

// CloseWrite ends this side's stream with close 1000.
func (s *wsStream) CloseWrite() error {
	s.writeClosed.Store(true)
	err := s.WSConn.WriteClose(1000)
	if s.readClosed.Load() {
		s.WSConn.Close()
	}
	return err
}

// CloseRead stops reading: WebSocket cannot tell the gateway, so later
// reads return io.EOF, and the connection closes once the write side has
// ended too.
func (s *wsStream) CloseRead() error {
	s.readClosed.Store(true)
	if s.writeClosed.Load() {
		return s.WSConn.Close()
	}
	return nil
}

// NewWSPacket is the Outline-path packet adapter over c (a WebSocket on
// /<secret>/udp): one Write is one message and one Shadowsocks UDP packet,
// one Read returns one (cut to the buffer, as UDP does).
func NewWSPacket(c *WSConn) net.Conn { return &wsPacket{WSConn: c} }

type wsPacket struct{ *WSConn }

func (p *wsPacket) Read(b []byte) (int, error) { return p.WSConn.ReadMessage(b) }
func (p *wsPacket) Write(b []byte) (int, error) {
	if err := p.WSConn.WriteMessage(b); err != nil {
		return 0, err
	}
	return len(b), nil
}
