package client

import (
	"context"
	"errors"
	"net"
	"time"
)

// Gateway is one gateway of a key or config.
type Gateway struct {
	Addr string // host:port
	TLS  bool   // wss (default) or ws
	SNI  string // TLS server name; empty: host of Addr
	Pin  []byte // SHA-256 of the leaf certificate DER; nil: verify the chain normally
}

// StreamConn is one TCP stream to the Outline member: the Shadowsocks byte stream.
// Same method set as outline-sdk's transport.StreamConn, so either converts to the other.
type StreamConn interface {
	net.Conn
	CloseRead() error
	CloseWrite() error
}

// Transport carries Shadowsocks ciphertext to the Outline member (through gateways, or directly).
type Transport interface {
	DialStream(ctx context.Context) (StreamConn, error)
	// DialPacket opens one UDP association: each Write sends one Shadowsocks UDP packet,
	// each Read returns one.
	DialPacket(ctx context.Context) (net.Conn, error)
	Status() Status
	Close() error
}

// Status is a snapshot of a Transport for the status line and logs.
type Status struct {
	Gateway   string // the gateway in use ("" if none)
	Connected bool
	RTT       time.Duration // last measured (0: unknown)
	Streams   int           // open streams
	Up, Down  int64         // ciphertext bytes sent/received so far
	Err       error         // last connection error, if not connected
}

// ErrRefused: every gateway answered the WebSocket upgrade with something other
// than 101 (the caller then asks the control plane why). Wrapped with detail.
var ErrRefused = errors.New("client: gateway refused the connection")
