// Package proxyproto parses the PROXY protocol header (HAProxy's
// proxy-protocol.txt, versions 1 and 2) that a load balancer sends ahead of
// a connection's first byte to say whose connection it is.
//
// It is built for an event loop: [Parse] looks at the bytes buffered so far,
// which may hold part of a header, and either returns the header and its
// length or says how many bytes it needs before it can tell more. It never
// allocates, never reads past the header, and takes no length from the
// wire without checking it against a limit first.
//
// # Protocol flow
//
//	load balancer                           gateway (listener with PROXY on)
//	connect                          --->   accept
//	"PROXY TCP4 a b p q\r\n"  (v1)   --->   Parse: the client is a:p
//	  or sigV2, ver/cmd, fam, len,
//	  addresses, TLVs          (v2)  --->   Parse: the client is the source address
//	the client's bytes               --->   (TLS ClientHello, HTTP request) as if from a:p
//
// A header that breaks a rule, or a connection that starts with anything
// else, is an error: the receiver closes the connection, as nginx does on a
// "broken header".
package proxyproto

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// Errors returned by Parse.
var (
	// ErrShort: the bytes so far are a valid beginning; more are needed.
	ErrShort = errors.New("proxyproto: header incomplete")
	// ErrNotProxy: the bytes do not start a PROXY header (v1 or v2).
	ErrNotProxy = errors.New("proxyproto: not a PROXY protocol header")
	// ErrMalformed: a PROXY header that breaks the specification.
	ErrMalformed = errors.New("proxyproto: malformed PROXY header")
	// ErrTooLarge: a v2 header longer than the caller's limit.
	ErrTooLarge = errors.New("proxyproto: PROXY header too large")
)

// Lengths.
const (
	// MaxV1Len is the longest v1 header, CRLF included
	// ("PROXY UNKNOWN ffff:…:ffff ffff:…:ffff 65535 65535\r\n").
	MaxV1Len = 107
	// V2HeaderLen is the fixed part of a v2 header: the 12-byte
	// signature, version and command, family and transport, length.
	V2HeaderLen = 16
	// MaxV2Len is the longest v2 header the format can express.
	MaxV2Len = V2HeaderLen + 0xFFFF
)

// v2 layout (after the signature):
//
//	byte 12   high nibble: version (2); low nibble: command (0 LOCAL, 1 PROXY)
//	byte 13   high nibble: family (0 UNSPEC, 1 INET, 2 INET6, 3 UNIX);
//	          low nibble: transport (0 UNSPEC, 1 STREAM, 2 DGRAM)
//	14..15    big-endian length of what follows: addresses, then TLVs
//	INET      src ip (4), dst ip (4), src port (2), dst port (2)   = 12
//	INET6     src ip (16), dst ip (16), src port (2), dst port (2) = 36
//	UNIX      src path (108), dst path (108)                       = 216
//	TLV       type (1), big-endian length (2), value
var sigV2 = [12]byte{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A}

const (
	v2Version = 0x20
	cmdLocal  = 0x00
	cmdProxy  = 0x01

	famUnspec = 0x0
	famInet   = 0x1
	famInet6  = 0x2
	famUnix   = 0x3

	transUnspec = 0x0
	transStream = 0x1
	transDgram  = 0x2

	inetLen  = 12
	inet6Len = 36
	unixLen  = 216
)

const v1Prefix = "PROXY "

// Header is a parsed PROXY header.
type Header struct {
	Version int // 1 or 2
	// Src is the client's address and Dst the one it connected to. Both
	// are the zero AddrPort (IsValid false) when the header names no IP
	// endpoints (v1 UNKNOWN; v2 LOCAL, UNSPEC or UNIX): the connection is
	// then the balancer's own (a health check) and its own addresses stand.
	Src, Dst netip.AddrPort
}

// Parse parses the PROXY header at the start of b, which may hold only its
// beginning. It returns:
//
//   - the header and its length n (≤ len(b)) when b holds all of it;
//   - ErrShort with n > len(b) the fewest bytes b must hold before Parse
//     can say more (for v1, one more byte; for v2, the whole header once
//     its length is known);
//   - ErrNotProxy, ErrMalformed or ErrTooLarge.
//
// maxLen bounds a v2 header's total length (≤ 0 or past MaxV2Len:
// MaxV2Len); a v1 header is bounded by MaxV1Len. Parse keeps no reference
// to b.
func Parse(b []byte, maxLen int) (Header, int, error) {
	if len(b) == 0 {
		return Header{}, 1, ErrShort
	}
	switch b[0] {
	case v1Prefix[0]:
		return parseV1(b)
	case sigV2[0]:
		return parseV2(b, maxLen)
	}
	return Header{}, 0, ErrNotProxy
}

func parseV1(b []byte) (Header, int, error) {
	p := min(len(b), len(v1Prefix))
	if string(b[:p]) != v1Prefix[:p] {
		return Header{}, 0, ErrNotProxy
	}
	end := -1
	for i := p; i < min(len(b), MaxV1Len); i++ {
		c := b[i]
		if c == '\n' {
			end = i
			break
		}
		// Only printable US-ASCII and the CR before the LF.
		if (c < ' ' || c > '~') && c != '\r' {
			return Header{}, 0, ErrMalformed
		}
	}
	if end < 0 {
		if len(b) >= MaxV1Len {
			return Header{}, 0, ErrMalformed
		}
		return Header{}, len(b) + 1, ErrShort
	}
	n := end + 1
	if b[end-1] != '\r' {
		return Header{}, 0, ErrMalformed
	}
	line := b[len(v1Prefix) : end-1]
	if len(line) > 0 && line[len(line)-1] == ' ' {
		return Header{}, 0, ErrMalformed
	}
	proto, line := field(line)
	switch string(proto) {
	case "UNKNOWN":
		// Whatever follows is to be ignored (the balancer could not tell).
		return Header{Version: 1}, n, nil
	case "TCP4", "TCP6":
	default:
		return Header{}, 0, ErrMalformed
	}
	var f [4][]byte
	for i := range f {
		f[i], line = field(line)
		if len(f[i]) == 0 {
			return Header{}, 0, ErrMalformed
		}
	}
	if len(line) != 0 {
		return Header{}, 0, ErrMalformed
	}
	six := proto[3] == '6'
	src, ok1 := parseIP(f[0], six)
	dst, ok2 := parseIP(f[1], six)
	sp, ok3 := parsePort(f[2])
	dp, ok4 := parsePort(f[3])
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return Header{}, 0, ErrMalformed
	}
	return Header{Version: 1, Src: netip.AddrPortFrom(src, sp), Dst: netip.AddrPortFrom(dst, dp)}, n, nil
}

// field splits off the text up to the next single space. An empty field
// (two spaces, a leading or a trailing one) comes back empty.
func field(b []byte) (f, rest []byte) {
	for i, c := range b {
		if c == ' ' {
			return b[:i], b[i+1:]
		}
	}
	return b, nil
}

// parseIP parses a dotted IPv4 address (six false) or an IPv6 address
// without a zone (six true), without allocating (netip.ParseAddr keeps its
// input in its errors, so a []byte converted for it escapes).
func parseIP(b []byte, six bool) (netip.Addr, bool) {
	if !six {
		return parseIPv4(b)
	}
	return parseIPv6(b)
}

// parseIPv6 takes RFC 4291 text: eight groups of 1 to 4 hex digits, one
// "::" for a run of zero groups, and an optional dotted IPv4 tail in place
// of the last two groups.
func parseIPv6(b []byte) (netip.Addr, bool) {
	var ip [16]byte
	ellipsis := -1 // byte index in ip where "::" stands
	i := 0         // bytes of ip filled
	if len(b) >= 2 && b[0] == ':' && b[1] == ':' {
		ellipsis = 0
		b = b[2:]
	}
	for len(b) > 0 && i < 16 {
		// One group, or the IPv4 tail.
		k, v := 0, 0
		for k < len(b) && k < 5 {
			d := unhex(b[k])
			if d < 0 {
				break
			}
			v = v<<4 | d
			k++
		}
		if k < len(b) && b[k] == '.' {
			if i > 12 {
				return netip.Addr{}, false
			}
			v4, ok := parseIPv4(b)
			if !ok {
				return netip.Addr{}, false
			}
			a4 := v4.As4()
			copy(ip[i:], a4[:])
			i += 4
			b = nil
			break
		}
		if k == 0 || k > 4 {
			return netip.Addr{}, false
		}
		ip[i], ip[i+1] = byte(v>>8), byte(v)
		i += 2
		b = b[k:]
		if len(b) == 0 {
			break
		}
		if b[0] != ':' || len(b) == 1 {
			return netip.Addr{}, false
		}
		b = b[1:]
		if b[0] == ':' {
			if ellipsis >= 0 {
				return netip.Addr{}, false
			}
			ellipsis = i
			b = b[1:]
		}
	}
	if len(b) != 0 {
		return netip.Addr{}, false
	}
	if i < 16 {
		if ellipsis < 0 {
			return netip.Addr{}, false
		}
		n := 16 - i
		copy(ip[ellipsis+n:], ip[ellipsis:i])
		clear(ip[ellipsis : ellipsis+n])
	} else if ellipsis >= 0 {
		return netip.Addr{}, false // "::" must stand for at least one group
	}
	return netip.AddrFrom16(ip), true
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// parseIPv4 takes exactly four decimal octets, no leading zeros.
func parseIPv4(b []byte) (netip.Addr, bool) {
	var ip [4]byte
	k := 0
	for i := 0; i < 4; i++ {
		if i > 0 {
			if k >= len(b) || b[k] != '.' {
				return netip.Addr{}, false
			}
			k++
		}
		v, digits := 0, 0
		for k < len(b) && b[k] >= '0' && b[k] <= '9' && digits < 4 {
			v = v*10 + int(b[k]-'0')
			k++
			digits++
		}
		if digits == 0 || digits > 3 || v > 255 || digits > 1 && b[k-digits] == '0' {
			return netip.Addr{}, false
		}
		ip[i] = byte(v)
	}
	if k != len(b) {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(ip), true
}

// parsePort takes 1 to 5 decimal digits up to 65535 (leading zeros are
// refused, as the specification writes ports without them).
func parsePort(b []byte) (uint16, bool) {
	if len(b) == 0 || len(b) > 5 || len(b) > 1 && b[0] == '0' {
		return 0, false
	}
	v := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	if v > 0xFFFF {
		return 0, false
	}
	return uint16(v), true
}

func parseV2(b []byte, maxLen int) (Header, int, error) {
	p := min(len(b), len(sigV2))
	if string(b[:p]) != string(sigV2[:p]) {
		return Header{}, 0, ErrNotProxy
	}
	if len(b) < V2HeaderLen {
		// Reject a bad version, command or family as soon as it is in.
		if len(b) > 12 && !validVerCmd(b[12]) || len(b) > 13 && !validFamily(b[13]) {
			return Header{}, 0, ErrMalformed
		}
		return Header{}, V2HeaderLen, ErrShort
	}
	if !validVerCmd(b[12]) || !validFamily(b[13]) {
		return Header{}, 0, ErrMalformed
	}
	if maxLen <= 0 || maxLen > MaxV2Len {
		maxLen = MaxV2Len
	}
	body := int(binary.BigEndian.Uint16(b[14:16]))
	n := V2HeaderLen + body
	if n > maxLen {
		return Header{}, 0, ErrTooLarge
	}
	fam, trans := b[13]>>4, b[13]&0x0F
	if b[12]&0x0F == cmdLocal {
		// The balancer's own connection (a health check): the block is
		// to be skipped whatever it holds.
		if len(b) < n {
			return Header{}, n, ErrShort
		}
		return Header{Version: 2}, n, nil
	}
	// The address block's length must fit the length field before the
	// whole header is waited for.
	alen := 0
	switch fam {
	case famInet:
		alen = inetLen
	case famInet6:
		alen = inet6Len
	case famUnix:
		alen = unixLen
	}
	if body < alen {
		return Header{}, 0, ErrMalformed
	}
	if len(b) < n {
		return Header{}, n, ErrShort
	}
	if !validTLVs(b[V2HeaderLen+alen : n]) {
		return Header{}, 0, ErrMalformed
	}
	h := Header{Version: 2}
	if fam != famInet && fam != famInet6 {
		return h, n, nil // UNSPEC or UNIX: no IP endpoints to take
	}
	if trans != transStream {
		// A datagram (or unspecified) transport cannot describe a TCP
		// client's connection.
		return Header{}, 0, ErrMalformed
	}
	a := b[V2HeaderLen:]
	if fam == famInet {
		h.Src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[0:4])), binary.BigEndian.Uint16(a[8:10]))
		h.Dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[4:8])), binary.BigEndian.Uint16(a[10:12]))
	} else {
		h.Src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[0:16])), binary.BigEndian.Uint16(a[32:34]))
		h.Dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[16:32])), binary.BigEndian.Uint16(a[34:36]))
	}
	return h, n, nil
}

func validVerCmd(c byte) bool {
	return c&0xF0 == v2Version && (c&0x0F == cmdLocal || c&0x0F == cmdProxy)
}

func validFamily(c byte) bool {
	return c>>4 <= famUnix && c&0x0F <= transDgram
}

// validTLVs checks that b is a sequence of whole TLVs; their contents are
// not interpreted (the gateway needs none of them).
func validTLVs(b []byte) bool {
	for len(b) > 0 {
		if len(b) < 3 {
			return false
		}
		l := 3 + int(binary.BigEndian.Uint16(b[1:3]))
		if l > len(b) {
			return false
		}
		b = b[l:]
	}
	return true
}

// AppendV1 appends the v1 header for a TCP connection from src to dst (both
// IPv4, or both IPv6), or "PROXY UNKNOWN" when either is invalid or they
// differ in family.
func AppendV1(b []byte, src, dst netip.AddrPort) []byte {
	s, d := src.Addr().Unmap(), dst.Addr().Unmap()
	if !src.IsValid() || !dst.IsValid() || s.Is4() != d.Is4() {
		return append(b, "PROXY UNKNOWN\r\n"...)
	}
	if s.Is4() {
		b = append(b, "PROXY TCP4 "...)
	} else {
		b = append(b, "PROXY TCP6 "...)
	}
	b = s.WithZone("").AppendTo(b)
	b = append(b, ' ')
	b = d.WithZone("").AppendTo(b)
	b = append(b, ' ')
	b = appendUint(b, src.Port())
	b = append(b, ' ')
	b = appendUint(b, dst.Port())
	return append(b, "\r\n"...)
}

func appendUint(b []byte, v uint16) []byte {
	var d [5]byte
	i := len(d)
	for {
		i--
		d[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return append(b, d[i:]...)
}

// AppendV2 appends the v2 header for a TCP connection from src to dst
// (PROXY, STREAM), followed by tlvs (whole TLVs, appended as given); with
// either address invalid or the families differing, a LOCAL header.
func AppendV2(b []byte, src, dst netip.AddrPort, tlvs []byte) []byte {
	b = append(b, sigV2[:]...)
	s, d := src.Addr().Unmap(), dst.Addr().Unmap()
	var addrs []byte
	var buf [inet6Len]byte
	switch {
	case !src.IsValid() || !dst.IsValid() || s.Is4() != d.Is4():
		b = append(b, v2Version|cmdLocal, famUnspec<<4|transUnspec)
	case s.Is4():
		b = append(b, v2Version|cmdProxy, famInet<<4|transStream)
		s4, d4 := s.As4(), d.As4()
		copy(buf[0:], s4[:])
		copy(buf[4:], d4[:])
		binary.BigEndian.PutUint16(buf[8:], src.Port())
		binary.BigEndian.PutUint16(buf[10:], dst.Port())
		addrs = buf[:inetLen]
	default:
		b = append(b, v2Version|cmdProxy, famInet6<<4|transStream)
		s16, d16 := s.As16(), d.As16()
		copy(buf[0:], s16[:])
		copy(buf[16:], d16[:])
		binary.BigEndian.PutUint16(buf[32:], src.Port())
		binary.BigEndian.PutUint16(buf[34:], dst.Port())
		addrs = buf[:inet6Len]
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(addrs)+len(tlvs)))
	b = append(b, addrs...)
	return append(b, tlvs...)
}
