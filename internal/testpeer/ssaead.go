package testpeer

// A minimal Shadowsocks AEAD (SIP004) implementation for tests only: it lets
// tests speak Shadowsocks straight over the gateway's WebSocket paths without
// ss-local. It is checked against a real ss-server in ssaead_test.go. The
// product's own cipher lives in codec/; this one is independent on purpose,
// so the two can catch each other's mistakes.

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/hkdf"
)

// MaxChunk is the largest payload of one Shadowsocks AEAD TCP chunk.
const MaxChunk = 0x3FFF

const tagSize = 16

// Cipher holds the master key of one Shadowsocks AEAD method and password.
type Cipher struct {
	Method   string
	key      []byte
	saltSize int
	newAEAD  func(key []byte) (cipher.AEAD, error)
}

func newGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// NewCipher returns the cipher for method (chacha20-ietf-poly1305,
// aes-128-gcm, aes-192-gcm, aes-256-gcm) keyed from password with
// EVP_BytesToKey(MD5).
func NewCipher(method, password string) (*Cipher, error) {
	c := &Cipher{Method: method}
	var keySize int
	switch method {
	case "chacha20-ietf-poly1305":
		keySize, c.newAEAD = 32, chacha20poly1305.New
	case "aes-128-gcm":
		keySize, c.newAEAD = 16, newGCM
	case "aes-192-gcm":
		keySize, c.newAEAD = 24, newGCM
	case "aes-256-gcm":
		keySize, c.newAEAD = 32, newGCM
	default:
		return nil, fmt.Errorf("testpeer: unsupported method %q", method)
	}
	c.key = evpBytesToKey(password, keySize)
	c.saltSize = keySize
	return c, nil
}

// evpBytesToKey is OpenSSL's EVP_BytesToKey with MD5, one iteration, no salt.
func evpBytesToKey(password string, keyLen int) []byte {
	var key, prev []byte
	for len(key) < keyLen {
		h := md5.New()
		h.Write(prev)
		h.Write([]byte(password))
		prev = h.Sum(nil)
		key = append(key, prev...)
	}
	return key[:keyLen]
}

func (c *Cipher) subkeyAEAD(salt []byte) (cipher.AEAD, error) {
	sub := make([]byte, len(c.key))
	if _, err := io.ReadFull(hkdf.New(sha1.New, c.key, salt, []byte("ss-subkey")), sub); err != nil {
		return nil, err
	}
	return c.newAEAD(sub)
}

func increment(nonce []byte) {
	for i := range nonce {
		nonce[i]++
		if nonce[i] != 0 {
			return
		}
	}
}

// StreamWriter encrypts a Shadowsocks TCP stream: the salt on first use, then
// chunks of [sealed 2-byte length][sealed payload].
type StreamWriter struct {
	c     *Cipher
	w     io.Writer
	aead  cipher.AEAD
	nonce []byte
	buf   []byte
}

// NewWriter returns a StreamWriter that writes ciphertext to w.
func (c *Cipher) NewWriter(w io.Writer) *StreamWriter { return &StreamWriter{c: c, w: w} }

// Write encrypts p as one or more chunks and writes them (with the salt
// first, on the first call) in a single Write on the underlying writer.
func (s *StreamWriter) Write(p []byte) (int, error) {
	out := s.buf[:0]
	if s.aead == nil {
		salt := make([]byte, s.c.saltSize)
		if _, err := rand.Read(salt); err != nil {
			return 0, err
		}
		aead, err := s.c.subkeyAEAD(salt)
		if err != nil {
			return 0, err
		}
		s.aead, s.nonce = aead, make([]byte, aead.NonceSize())
		out = append(out, salt...)
	}
	for rest := p; len(rest) > 0; {
		n := min(len(rest), MaxChunk)
		var l [2]byte
		binary.BigEndian.PutUint16(l[:], uint16(n))
		out = s.aead.Seal(out, s.nonce, l[:], nil)
		increment(s.nonce)
		out = s.aead.Seal(out, s.nonce, rest[:n], nil)
		increment(s.nonce)
		rest = rest[n:]
	}
	s.buf = out[:0]
	if len(out) == 0 {
		return 0, nil
	}
	if _, err := s.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// StreamReader decrypts a Shadowsocks TCP stream.
type StreamReader struct {
	c       *Cipher
	r       io.Reader
	aead    cipher.AEAD
	nonce   []byte
	buf     []byte
	pending []byte
}

// NewReader returns a StreamReader that reads ciphertext from r.
func (c *Cipher) NewReader(r io.Reader) *StreamReader { return &StreamReader{c: c, r: r} }

// ErrBadChunk means a chunk failed authentication or had a bad length.
var ErrBadChunk = errors.New("testpeer: bad shadowsocks chunk")

// Read returns decrypted payload. A clean end of the ciphertext between
// chunks is io.EOF; anywhere else it is io.ErrUnexpectedEOF.
func (s *StreamReader) Read(p []byte) (int, error) {
	if len(s.pending) == 0 {
		if err := s.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, s.pending)
	s.pending = s.pending[n:]
	return n, nil
}

func (s *StreamReader) next() error {
	if s.aead == nil {
		salt := make([]byte, s.c.saltSize)
		if _, err := io.ReadFull(s.r, salt); err != nil {
			return err
		}
		aead, err := s.c.subkeyAEAD(salt)
		if err != nil {
			return err
		}
		s.aead, s.nonce = aead, make([]byte, aead.NonceSize())
		s.buf = make([]byte, MaxChunk+tagSize)
	}
	lb := s.buf[:2+tagSize]
	if _, err := io.ReadFull(s.r, lb); err != nil {
		return err
	}
	l, err := s.aead.Open(lb[:0], s.nonce, lb, nil)
	if err != nil {
		return fmt.Errorf("%w: length: %v", ErrBadChunk, err)
	}
	increment(s.nonce)
	n := int(binary.BigEndian.Uint16(l)) & MaxChunk
	pb := s.buf[:n+tagSize]
	if _, err := io.ReadFull(s.r, pb); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	if s.pending, err = s.aead.Open(pb[:0], s.nonce, pb, nil); err != nil {
		return fmt.Errorf("%w: payload: %v", ErrBadChunk, err)
	}
	increment(s.nonce)
	return nil
}

// HalfConn is a byte stream that can end its sending side on its own:
// *net.TCPConn and *WSConn both are.
type HalfConn interface {
	io.ReadWriter
	CloseWrite() error
	Close() error
}

// SSConn is a Shadowsocks client stream over a HalfConn: writes are
// encrypted, reads decrypted, and the target address goes out first.
type SSConn struct {
	Under HalfConn
	*StreamReader
	*StreamWriter
}

// NewSSConn starts a Shadowsocks TCP stream to target ("host:port") over
// under, sending the salt and the address chunk at once.
func (c *Cipher) NewSSConn(under HalfConn, target string) (*SSConn, error) {
	addr, err := EncodeSOCKSAddr(target)
	if err != nil {
		return nil, err
	}
	sc := &SSConn{Under: under, StreamReader: c.NewReader(under), StreamWriter: c.NewWriter(under)}
	if _, err := sc.StreamWriter.Write(addr); err != nil {
		return nil, err
	}
	return sc, nil
}

// Read implements io.Reader.
func (s *SSConn) Read(p []byte) (int, error) { return s.StreamReader.Read(p) }

// Write implements io.Writer.
func (s *SSConn) Write(p []byte) (int, error) { return s.StreamWriter.Write(p) }

// CloseWrite ends the sending side of the underlying stream.
func (s *SSConn) CloseWrite() error { return s.Under.CloseWrite() }

// Close closes the underlying stream.
func (s *SSConn) Close() error { return s.Under.Close() }

// SealPacket returns one Shadowsocks UDP packet: salt + seal(zero nonce,
// [SOCKS5 address of target][payload]).
func (c *Cipher) SealPacket(target string, payload []byte) ([]byte, error) {
	addr, err := EncodeSOCKSAddr(target)
	if err != nil {
		return nil, err
	}
	salt := make([]byte, c.saltSize)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	aead, err := c.subkeyAEAD(salt)
	if err != nil {
		return nil, err
	}
	plain := append(addr, payload...)
	return aead.Seal(salt, make([]byte, aead.NonceSize()), plain, nil), nil
}

// OpenPacket decrypts one Shadowsocks UDP packet into its address and payload.
func (c *Cipher) OpenPacket(pkt []byte) (addr string, payload []byte, err error) {
	if len(pkt) < c.saltSize+tagSize {
		return "", nil, fmt.Errorf("%w: short packet", ErrBadChunk)
	}
	aead, err := c.subkeyAEAD(pkt[:c.saltSize])
	if err != nil {
		return "", nil, err
	}
	plain, err := aead.Open(nil, make([]byte, aead.NonceSize()), pkt[c.saltSize:], nil)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %v", ErrBadChunk, err)
	}
	addr, n, err := ParseSOCKSAddr(plain)
	if err != nil {
		return "", nil, err
	}
	return addr, plain[n:], nil
}

// EncodeSOCKSAddr encodes "host:port" as a SOCKS5 address (ATYP, address,
// big-endian port). IP literals use ATYP 1 or 4, anything else a domain.
func EncodeSOCKSAddr(hostport string) ([]byte, error) {
	host, ps, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(ps, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("testpeer: port %q: %w", ps, err)
	}
	var b []byte
	if ip := net.ParseIP(host); ip != nil {
		if ip4 := ip.To4(); ip4 != nil {
			b = append([]byte{1}, ip4...)
		} else {
			b = append([]byte{4}, ip.To16()...)
		}
	} else {
		if len(host) > 255 {
			return nil, errors.New("testpeer: host name too long")
		}
		b = append([]byte{3, byte(len(host))}, host...)
	}
	return binary.BigEndian.AppendUint16(b, uint16(port)), nil
}

// ParseSOCKSAddr decodes a SOCKS5 address at the start of b and returns it
// with its encoded length.
func ParseSOCKSAddr(b []byte) (string, int, error) {
	bad := errors.New("testpeer: bad socks address")
	if len(b) < 1 {
		return "", 0, bad
	}
	var host string
	var n int
	switch b[0] {
	case 1:
		n = 1 + 4
		if len(b) < n+2 {
			return "", 0, bad
		}
		host = net.IP(b[1:5]).String()
	case 4:
		n = 1 + 16
		if len(b) < n+2 {
			return "", 0, bad
		}
		host = net.IP(b[1:17]).String()
	case 3:
		if len(b) < 2 {
			return "", 0, bad
		}
		n = 2 + int(b[1])
		if len(b) < n+2 {
			return "", 0, bad
		}
		host = string(b[2:n])
	default:
		return "", 0, bad
	}
	port := binary.BigEndian.Uint16(b[n:])
	return net.JoinHostPort(host, strconv.Itoa(int(port))), n + 2, nil
}
