package bench

import (
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/Jigsaw-Code/outline-sdk/transport/shadowsocks"
)

// ssCipher is the Shadowsocks method of every Shadowsocks peer: the one
// Outline's own keys use.
const ssCipher = "chacha20-ietf-poly1305"

// ssTarget makes a Transport speak Shadowsocks AEAD inside the stream: the
// client encrypts to the peer's Shadowsocks server (ss-server behind our
// gateway, or outline-ss-server itself), which decrypts and dials Target.
type ssTarget struct {
	Key    *shadowsocks.EncryptionKey
	Target string // the sink, IPv4:port
}

func newSSTarget(password, target string) (*ssTarget, error) {
	k, err := shadowsocks.NewEncryptionKey(ssCipher, password)
	if err != nil {
		return nil, err
	}
	return &ssTarget{Key: k, Target: target}, nil
}

// ssStream is a Stream carried as a Shadowsocks AEAD stream over inner. The
// target address goes with the first data, as Outline clients send it, so a
// request costs the same messages as on a raw stream. A byte changed on the
// way fails the AEAD tag at the other end.
type ssStream struct {
	inner    Stream
	w        *shadowsocks.Writer
	r        io.Reader
	addr     []byte // SOCKS address of the target, sent once
	addrSent bool
}

func newSSStream(inner Stream, t *ssTarget) (*ssStream, error) {
	addr, err := socksAddr(t.Target)
	if err != nil {
		return nil, err
	}
	return &ssStream{inner: inner, w: shadowsocks.NewWriter(inner, t.Key), r: shadowsocks.NewReader(inner, t.Key), addr: addr}, nil
}

func (s *ssStream) Write(p []byte) (int, error) {
	if !s.addrSent {
		s.addrSent = true
		if _, err := s.w.LazyWrite(s.addr); err != nil {
			return 0, err
		}
	}
	return s.w.Write(p)
}

func (s *ssStream) CloseWrite() error {
	if !s.addrSent {
		s.addrSent = true
		if _, err := s.w.LazyWrite(s.addr); err != nil {
			return err
		}
		if err := s.w.Flush(); err != nil {
			return err
		}
	}
	return s.inner.CloseWrite()
}

func (s *ssStream) Read(p []byte) (int, error)    { return s.r.Read(p) }
func (s *ssStream) Close() error                  { return s.inner.Close() }
func (s *ssStream) SetDeadline(t time.Time) error { return s.inner.SetDeadline(t) }

// socksAddr encodes an IPv4:port as a SOCKS5 address (type 1).
func socksAddr(hostport string) ([]byte, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, err
	}
	ip := net.ParseIP(host).To4()
	pn, err := strconv.Atoi(port)
	if ip == nil || err != nil || pn < 1 || pn > 65535 {
		return nil, fmt.Errorf("bench: shadowsocks target %q: want IPv4:port", hostport)
	}
	return append(append([]byte{1}, ip...), byte(pn>>8), byte(pn)), nil
}
