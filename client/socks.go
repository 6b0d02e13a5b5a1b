package client

import (
	"bufio"
	"context"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"time"
)

// SOCKS5 (RFC 1928) and its username/password method (RFC 1929).
const (
	socksVersion     = 5
	socksAuthVersion = 1

	methodNone     = 0x00
	methodPassword = 0x02
	methodNoneOK   = 0xff

	cmdConnect      = 1
	cmdBind         = 2
	cmdUDPAssociate = 3

	atypIPv4   = 1
	atypDomain = 3
	atypIPv6   = 4
)

// Reply codes (RFC 1928 §6).
const (
	repSucceeded          = 0x00
	repGeneralFailure     = 0x01
	repNotAllowed         = 0x02
	repNetworkUnreachable = 0x03
	repHostUnreachable    = 0x04
	repConnectionRefused  = 0x05
	repTTLExpired         = 0x06
	repCommandUnsupported = 0x07
	repAddressUnsupported = 0x08
)

var errSOCKS = errors.New("client: socks5")

func (p *Proxy) socks(c net.Conn, br *bufio.Reader, lim *limitReader) {
	if err := p.socksHandshake(c, br, lim); err != nil {
		p.log.Debug("proxy: socks5", "client", c.RemoteAddr().String(), "err", err)
	}
}

func (p *Proxy) socksHandshake(c net.Conn, br *bufio.Reader, lim *limitReader) error {
	var hdr [2]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return err
	}
	methods := make([]byte, hdr[1]) // at most 255
	if _, err := io.ReadFull(br, methods); err != nil {
		return err
	}
	want := byte(methodNone)
	if p.cfg.Username != "" {
		want = methodPassword
	}
	offered := false
	for _, m := range methods {
		offered = offered || m == want
	}
	if !offered {
		c.Write([]byte{socksVersion, methodNoneOK})
		return fmt.Errorf("%w: the client offers no acceptable method", errSOCKS)
	}
	if _, err := c.Write([]byte{socksVersion, want}); err != nil {
		return err
	}
	if want == methodPassword {
		if err := p.socksPassword(c, br); err != nil {
			return err
		}
	}

	var req [4]byte // VER CMD RSV ATYP
	if _, err := io.ReadFull(br, req[:]); err != nil {
		return err
	}
	if req[0] != socksVersion {
		return fmt.Errorf("%w: request version %d", errSOCKS, req[0])
	}
	addr, err := readSOCKSAddr(br, req[3])
	if err != nil {
		if errors.Is(err, errAddrType) {
			socksReply(c, repAddressUnsupported, nil)
		}
		return err
	}
	switch req[1] {
	case cmdConnect:
		return p.socksConnect(c, br, lim, addr)
	case cmdUDPAssociate:
		return p.socksUDP(c, addr)
	}
	socksReply(c, repCommandUnsupported, nil)
	return fmt.Errorf("%w: command %d not supported", errSOCKS, req[1])
}

// socksPassword runs RFC 1929; the password is compared in constant time.
func (p *Proxy) socksPassword(c net.Conn, br *bufio.Reader) error {
	var v [2]byte
	if _, err := io.ReadFull(br, v[:]); err != nil {
		return err
	}
	if v[0] != socksAuthVersion {
		return fmt.Errorf("%w: auth version %d", errSOCKS, v[0])
	}
	user := make([]byte, v[1])
	if _, err := io.ReadFull(br, user); err != nil {
		return err
	}
	if _, err := io.ReadFull(br, v[:1]); err != nil {
		return err
	}
	pass := make([]byte, v[0])
	if _, err := io.ReadFull(br, pass); err != nil {
		return err
	}
	okUser := subtle.ConstantTimeCompare(user, []byte(p.cfg.Username))
	okPass := subtle.ConstantTimeCompare(pass, []byte(p.cfg.Password))
	if okUser&okPass != 1 {
		c.Write([]byte{socksAuthVersion, 1})
		return fmt.Errorf("%w: wrong username or password", errSOCKS)
	}
	_, err := c.Write([]byte{socksAuthVersion, 0})
	return err
}

func (p *Proxy) socksConnect(c net.Conn, br *bufio.Reader, lim *limitReader, addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.DialTimeout)
	up, err := p.cfg.Dialer.DialStream(ctx, addr)
	cancel()
	if err != nil {
		socksReply(c, socksCode(err), nil)
		return fmt.Errorf("%w: connect: %w", errSOCKS, err)
	}
	if err := socksReply(c, repSucceeded, nil); err != nil {
		up.Close()
		return err
	}
	lim.n = -1
	c.SetDeadline(time.Time{})
	relay(c, br, up)
	return nil
}

// socksCode maps a dial error onto a reply code.
func socksCode(err error) byte {
	var ne net.Error
	switch {
	case errors.Is(err, ErrRefused):
		return repNotAllowed
	case errors.Is(err, syscall.ECONNREFUSED):
		return repConnectionRefused
	case errors.Is(err, syscall.ENETUNREACH):
		return repNetworkUnreachable
	case errors.Is(err, syscall.EHOSTUNREACH):
		return repHostUnreachable
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return repTTLExpired
	}
	return repGeneralFailure
}

// socksReply writes VER REP RSV and the bound address (0.0.0.0:0 if nil).
func socksReply(c net.Conn, rep byte, bound *net.UDPAddr) error {
	b := []byte{socksVersion, rep, 0}
	if bound == nil {
		b = append(b, atypIPv4, 0, 0, 0, 0, 0, 0)
	} else {
		b = appendSOCKSAddr(b, bound.AddrPort().Addr().Unmap().String(), uint16(bound.Port))
	}
	_, err := c.Write(b)
	return err
}

var errAddrType = fmt.Errorf("%w: address type not supported", errSOCKS)

// readSOCKSAddr reads ADDR PORT of type atyp and returns "host:port".
// A domain is 1 to 255 bytes (its length byte); no other length is read.
func readSOCKSAddr(r io.Reader, atyp byte) (string, error) {
	var b [256]byte
	var host string
	switch atyp {
	case atypIPv4:
		if _, err := io.ReadFull(r, b[:4]); err != nil {
			return "", err
		}
		host = netip.AddrFrom4([4]byte(b[:4])).String()
	case atypIPv6:
		if _, err := io.ReadFull(r, b[:16]); err != nil {
			return "", err
		}
		host = netip.AddrFrom16([16]byte(b[:16])).String()
	case atypDomain:
		if _, err := io.ReadFull(r, b[:1]); err != nil {
			return "", err
		}
		n := int(b[0])
		if n == 0 {
			return "", fmt.Errorf("%w: empty domain name", errSOCKS)
		}
		if _, err := io.ReadFull(r, b[:n]); err != nil {
			return "", err
		}
		host = string(b[:n])
	default:
		return "", errAddrType
	}
	if _, err := io.ReadFull(r, b[:2]); err != nil {
		return "", err
	}
	return net.JoinHostPort(host, strconv.Itoa(int(binary.BigEndian.Uint16(b[:2])))), nil
}

// parseSOCKSAddr is readSOCKSAddr over a datagram: the address and how many
// bytes it took.
func parseSOCKSAddr(b []byte) (string, int, error) {
	r := &countReader{b: b}
	addr, err := readSOCKSAddr(r, firstOr(b))
	if err != nil {
		return "", 0, err
	}
	return addr, r.off, nil
}

func firstOr(b []byte) byte {
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

// countReader reads b after its first byte (the address type).
type countReader struct {
	b   []byte
	off int
}

func (r *countReader) Read(p []byte) (int, error) {
	if r.off == 0 {
		r.off = 1
	}
	if r.off >= len(r.b) {
		return 0, io.ErrUnexpectedEOF
	}
	n := copy(p, r.b[r.off:])
	r.off += n
	return n, nil
}

// appendSOCKSAddr appends ATYP ADDR PORT for host (an IP or a name).
func appendSOCKSAddr(b []byte, host string, port uint16) []byte {
	if ip, err := netip.ParseAddr(host); err == nil {
		ip = ip.Unmap()
		if ip.Is4() {
			a := ip.As4()
			b = append(append(b, atypIPv4), a[:]...)
		} else {
			a := ip.As16()
			b = append(append(b, atypIPv6), a[:]...)
		}
	} else {
		if len(host) > 255 {
			host = host[:255]
		}
		b = append(append(b, atypDomain, byte(len(host))), host...)
	}
	return binary.BigEndian.AppendUint16(b, port)
}
