package client

import (
	"context"
	"fmt"
	"io"
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
// the first data (or after 10 ms without any), and a target that cannot be
// reached shows as an early EOF.
func (s *Shadowsocks) DialStream(ctx context.Context, addr string) (StreamConn, error) {
	d, err := shadowsocks.NewStreamDialer(transport.FuncStreamEndpoint(func(ctx context.Context) (transport.StreamConn, error) {
		return s.t.DialStream(ctx)
	}), s.key.Load())
	if err != nil {
		return nil, err
	}
	c, err := d.DialStream(ctx, addr)
	if err != nil {
		return nil, err
	}
	return ssStream{c}, nil
}

// ssStream makes CloseWrite send what the Shadowsocks writer still holds
// first: the target address waits up to 10 ms for the first data, and a
// FIN before it would end a stream the server never opened.
type ssStream struct{ transport.StreamConn }

func (s ssStream) CloseWrite() error {
	s.StreamConn.Write(nil) // an empty write flushes the queued address
	return s.StreamConn.CloseWrite()
}

// ReadFrom and WriteTo keep outline-sdk's copy paths (no extra buffer).
func (s ssStream) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := s.StreamConn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{s.StreamConn}, r)
}

func (s ssStream) WriteTo(w io.Writer) (int64, error) {
	if wt, ok := s.StreamConn.(io.WriterTo); ok {
		return wt.WriteTo(w)
	}
	return io.Copy(w, struct{ io.Reader }{s.StreamConn})
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
