package client

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"

	"github.com/Jigsaw-Code/outline-sdk/transport"
	"github.com/Jigsaw-Code/outline-sdk/transport/shadowsocks"
)

// Shadowsocks is the Shadowsocks AEAD layer (outline-sdk's
// transport/shadowsocks) over a Transport: each stream it dials is one
// Transport stream, each packet listener one Transport association. The
// key may change while it runs (the control plane rotated it): new streams
// use the new key, open ones keep theirs.
type Shadowsocks struct {
	t   Transport
	key atomic.Pointer[shadowsocks.EncryptionKey]
}

// NewShadowsocks checks cipher and secret and builds the layer over t.
func NewShadowsocks(t Transport, cipher, secret string) (*Shadowsocks, error) {
	s := &Shadowsocks{t: t}
	if err := s.SetKey(cipher, secret); err != nil {
		return nil, err
	}
	return s, nil
}

// SetKey switches new streams and associations to another key.
func (s *Shadowsocks) SetKey(cipher, secret string) error {
	c, err := checkCipher(cipher)
	if err != nil {
		return err
	}
	k, err := shadowsocks.NewEncryptionKey(c, secret)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	s.key.Store(k)
	return nil
}

// DialStream opens a stream to addr ("host:port") through the Shadowsocks
// server. As in every Shadowsocks client it returns once the Transport
// stream is up, before the server reached addr: the address goes out with
// the first data (or after ssClientDataWait without any), and a target that
// cannot be reached shows as an early EOF.
//
// The stream is outline-sdk's shadowsocks.Writer and Reader over the
// Transport stream, fed by ssConn (ssconn.go) in large batches.
func (s *Shadowsocks) DialStream(ctx context.Context, addr string) (StreamConn, error) {
	tgt, err := socksAddr(addr)
	if err != nil {
		return nil, err
	}
	c, err := s.t.DialStream(ctx)
	if err != nil {
		return nil, err
	}
	return newSSConn(c, s.key.Load(), tgt)
}

// ListenPacket opens one UDP association through the Shadowsocks server:
// WriteTo sends a datagram to any address (a *net.UDPAddr, or anything
// whose String is "host:port"), ReadFrom returns the answers with their
// sources.
func (s *Shadowsocks) ListenPacket(ctx context.Context) (net.PacketConn, error) {
	l, err := shadowsocks.NewPacketListener(transport.FuncPacketEndpoint(s.t.DialPacket), s.key.Load())
	if err != nil {
		return nil, err
	}
	return l.ListenPacket(ctx)
}
