package proxyproto

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
)

var (
	src4 = netip.MustParseAddrPort("203.0.113.7:51234")
	dst4 = netip.MustParseAddrPort("10.0.0.1:443")
	src6 = netip.MustParseAddrPort("[2001:db8::7]:51234")
	dst6 = netip.MustParseAddrPort("[2001:db8::1]:443")
)

// v2 builds a v2 header by hand: ver/cmd, family/transport, then body.
func v2(verCmd, famTrans byte, body []byte) []byte {
	b := append(sigV2[:0:0], sigV2[:]...)
	b = append(b, verCmd, famTrans, byte(len(body)>>8), byte(len(body)))
	return append(b, body...)
}

func inetBody(tlvs ...byte) []byte {
	return append([]byte{203, 0, 113, 7, 10, 0, 0, 1, 0xC8, 0x22, 0x01, 0xBB}, tlvs...)
}

// parseCases is shared by the table test, the allocation check and the
// fuzz seeds.
var parseCases = []struct {
	name     string
	in       []byte
	version  int
	src, dst netip.AddrPort
	err      error
}{
	{"v1 tcp4", []byte("PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n"), 1, src4, dst4, nil},
	{"v1 tcp6", []byte("PROXY TCP6 2001:db8::7 2001:db8::1 51234 443\r\n"), 1, src6, dst6, nil},
	{"v1 unknown", []byte("PROXY UNKNOWN\r\n"), 1, netip.AddrPort{}, netip.AddrPort{}, nil},
	{"v1 unknown with addresses", []byte("PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n"), 1, netip.AddrPort{}, netip.AddrPort{}, nil},
	{"v1 longest", []byte("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"), 1,
		netip.MustParseAddrPort("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"), netip.MustParseAddrPort("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"), nil},
	{"v1 port 0", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 0 0\r\n"), 1, netip.MustParseAddrPort("1.2.3.4:0"), netip.MustParseAddrPort("5.6.7.8:0"), nil},
	{"v1 bare LF", []byte("PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\n"), 0, netip.AddrPort{}, netip.AddrPort{}, ErrMalformed},
	{"v1 tcp4 with v6 address", []byte("PROXY TCP4 2001:db8::7 10.0.0.1 51234 443\r\n"), 0, netip.AddrPort{}, netip.AddrPort{}, ErrMalformed},
	{"v1 tcp6 with v4 address", []byte("PROXY TCP6 203.0.113.7 2001:db8::1 51234 443\r\n"), 0, netip.AddrPort{}, netip.AddrPort{}, ErrMalformed},
	{"v1 zone", []byte("PROXY TCP6 fe80::1%eth0 2001:db8::1 51234 443\r\n"), 0, netip.AddrPort{}, netip.AddrPort{}, ErrMalformed},
	{"v1 leading zero octet", []byte("PROXY TCP4 203.0.113.07 10.0.0.1 51234 443\r\n"), 0, netip.AddrPort{}, netip.AddrPort{}, ErrMalformed},
	{"v1 octet over 255", []byte("PROXY TCP4 203.0.113.256 10.0.0.1 51234 443\r\n"), 0, netip.AddrPort{}, netip.AddrPort{}, ErrMalformed},
	{"v1 port over 65535", []byte("PROXY TCP4 203.0.113.7 10.0.0.1 65536 443\r\n"), 0, netip.AddrPort{}, netip.AddrPort{}, ErrMalformed},
	{"v1 port leading zero", []byte("PROXY TCP4 203.0.113.7 10.0.0.1 0443 443\r\n"), 0, netip.AddrPort{}, netip.AddrPort{}, ErrMalformed},
	{"v1 missing port", []byte("PROXY TCP4 203.0.113.7 10.0.0.1 51234\r\n"), 0, netip.AddrPort{}, netip.AddrPort{}, ErrMalformed},
	{"v1 extra field", []byte("PROXY TCP4 203.0.113.7 10.0.0.1 51234 443 x\r\n"), 0, netip.AddrPort{}, netip.AddrPort{}, ErrMalformed},
	{"v1 double space", []byte("PROXY TCP4  203.0.113.7 10.0.0.1 51234 443\r\n"), 0, netip.AddrPort{}, netip.AddrPort{}, ErrMalformed},
	{"v1 trailing space", []byte("PROXY TCP4 203.0.113.7 10.0.0.1 51234 443 \r\n"), 0, netip.AddrPort{}, netip.AddrPort{}, ErrMalformed},
	{"v1 lower case", []byte("PROXY tcp4 203.0.113.7 10.0.0.1 51234 443\r\n"), 0, netip.AddrPort{}, netip.AddrPort{}, ErrMalformed},
	{"v1 UDP4", []byte("PROXY UDP4 203.0.113.7 10.0.0.1 51234 443\r\n"), 0, netip.AddrPort{}, netip.AddrPort{}, ErrMalformed},
	{"v1 control byte", []byte("PROXY TCP4 203.0.113.7\x0010.0.0.1 51234 443\r\n"), 0, netip.AddrPort{}, netip.AddrPort{}, ErrMalformed},
	{"v1 no CRLF in 107 bytes", bytes.Repeat([]byte("PROXY UNKNOWN "), 8), 0, netip.AddrPort{}, netip.AddrPort{}, ErrMalformed},
	{"v1 partial", []byte("PROXY TCP4 203.0.113.7 10.0"), 0, netip.AddrPort{}, netip.AddrPort{}, ErrShort},
	{"v1 partial prefix", []byte("PROX"), 0, netip.AddrPort{}, netip.AddrPort{}, ErrShort},
	{"v1 CR without LF yet", []byte("PROXY UNKNOWN\r"), 0, netip.AddrPort{}, netip.AddrPort{}, ErrShort},
	{"http request", []byte("GET / HTTP/1.1\r\n\r\n"), 0, netip.AddrPort{}, netip.AddrPort{}, ErrNotProxy},
	{"http PUT", []byte("PUT / HTTP/1.1\r\n\r\n"), 0, netip.AddrPort{}, netip.AddrPort{}, ErrNotProxy},
	{"tls client hello", []byte{0x16, 0x03, 0x01, 0x00, 0x05}, 0, netip.AddrPort{}, netip.AddrPort{}, ErrNotProxy},
	{"bare CRLF", []byte("\r\n\r\nGET"), 0, netip.AddrPort{}, netip.AddrPort{}, ErrNotProxy},
	{"empty", nil, 0, netip.AddrPort{}, netip.AddrPort{}, ErrShort},

	{"v2 tcp4", v2(0x21, 0x11, inetBody()), 2, src4, dst4, nil},
	{"v2 tcp6", AppendV2(nil, src6, dst6, nil), 2, src6, dst6, nil},
	{"v2 tcp4 with TLVs", v2(0x21, 0x11, inetBody(0x04, 0x00, 0x02, 'h', 'i', 0xEA, 0x00, 0x00)), 2, src4, dst4, nil},
	{"v2 local", v2(0x20, 0x00, nil), 2, netip.AddrPort{}, netip.AddrPort{}, nil},
	{"v2 local with a block", v2(0x20, 0x11, []byte{1, 2, 3}), 2, netip.AddrPort{}, netip.AddrPort{}, nil},
	{"v2 unspec", v2(0x21, 0x00, nil), 2, netip.AddrPort{}, netip.AddrPort{}, nil},
	{"v2 unix", v2(0x21, 0x31, make([]byte, unixLen)), 2, netip.AddrPort{}, netip.AddrPort{}, nil},
	{"v2 unix short block", v2(0x21, 0x31, make([]byte, 100)), 0, netip.AddrPort{}, netip.AddrPort{}, ErrMalformed},
	{"v2 udp4", v2(0x21, 0x12, inetBody()), 0, netip.AddrPort{}, netip.AddrPort{}, ErrMalformed},
	{"v2 version 1", v2(0x11, 0x11, inetBody()), 0, netip.AddrPort{}, netip.AddrPort{}, ErrMalformed},
	{"v2 command 2", v2(0x22, 0x11, inetBody()), 0, netip.AddrPort{}, netip.AddrPort{}, ErrMalformed},
	{"v2 family 4", v2(0x21, 0x41, inetBody()), 0, netip.AddrPort{}, netip.AddrPort{}, ErrMalformed},
	{"v2 transport 3", v2(0x21, 0x13, inetBody()), 0, netip.AddrPort{}, netip.AddrPort{}, ErrMalformed},
	{"v2 inet block too short", v2(0x21, 0x11, inetBody()[:11]), 0, netip.AddrPort{}, netip.AddrPort{}, ErrMalformed},
	{"v2 inet6 block too short", v2(0x21, 0x21, make([]byte, 35)), 0, netip.AddrPort{}, netip.AddrPort{}, ErrMalformed},
	{"v2 TLV past the end", v2(0x21, 0x11, inetBody(0x04, 0x00, 0x09, 'h')), 0, netip.AddrPort{}, netip.AddrPort{}, ErrMalformed},
	{"v2 TLV header cut", v2(0x21, 0x11, inetBody(0x04, 0x00)), 0, netip.AddrPort{}, netip.AddrPort{}, ErrMalformed},
	{"v2 over the limit", v2(0x21, 0x11, inetBody(append([]byte{0x04, 0x10, 0x00}, make([]byte, 4096)...)...)), 0, netip.AddrPort{}, netip.AddrPort{}, ErrTooLarge},
	{"v2 partial signature", sigV2[:7], 0, netip.AddrPort{}, netip.AddrPort{}, ErrShort},
	{"v2 bad version before the length", append(sigV2[:12:12], 0x31), 0, netip.AddrPort{}, netip.AddrPort{}, ErrMalformed},
	{"v2 partial block", v2(0x21, 0x11, inetBody())[:20], 0, netip.AddrPort{}, netip.AddrPort{}, ErrShort},
	{"v2 signature broken", append([]byte("\r\n\r\n\x00\r\nQUIX\n"), 0x21, 0x11, 0, 12), 0, netip.AddrPort{}, netip.AddrPort{}, ErrNotProxy},
}

const testMax = 2048

func TestParse(t *testing.T) {
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) {
			// What follows the header is never taken.
			in := append(append([]byte(nil), tc.in...), "GET / HTTP/1.1\r\n"...)
			if tc.err == ErrShort {
				in = tc.in
			}
			h, n, err := Parse(in, testMax)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if err == ErrShort {
				if n <= len(in) {
					t.Fatalf("short with need %d ≤ %d bytes given", n, len(in))
				}
				return
			}
			if err != nil {
				return
			}
			if n != len(tc.in) {
				t.Fatalf("length %d, want %d", n, len(tc.in))
			}
			if h.Version != tc.version || h.Src != tc.src || h.Dst != tc.dst {
				t.Fatalf("got %+v, want v%d %v → %v", h, tc.version, tc.src, tc.dst)
			}
		})
	}
}

// TestParseByteByByte feeds every valid header one byte more at a time: each
// prefix is ErrShort with a need no further than the header's end, and the
// whole header parses.
func TestParseByteByByte(t *testing.T) {
	for _, tc := range parseCases {
		if tc.err != nil {
			continue
		}
		for k := 0; k < len(tc.in); k++ {
			_, n, err := Parse(tc.in[:k], testMax)
			if err != ErrShort || n <= k || n > len(tc.in) {
				t.Fatalf("%s: %d of %d bytes: need %d, %v", tc.name, k, len(tc.in), n, err)
			}
		}
	}
}

func TestAppendRoundTrip(t *testing.T) {
	for _, c := range []struct{ src, dst netip.AddrPort }{{src4, dst4}, {src6, dst6}, {src4, dst6}, {netip.AddrPort{}, dst4}} {
		for _, b := range [][]byte{AppendV1(nil, c.src, c.dst), AppendV2(nil, c.src, c.dst, nil)} {
			h, n, err := Parse(b, 0)
			if err != nil || n != len(b) {
				t.Fatalf("%q: %v, %d of %d", b, err, n, len(b))
			}
			mixed := !c.src.IsValid() || c.src.Addr().Is4() != c.dst.Addr().Is4()
			if mixed && (h.Src.IsValid() || h.Dst.IsValid()) || !mixed && (h.Src != c.src || h.Dst != c.dst) {
				t.Fatalf("%q: got %v → %v", b, h.Src, h.Dst)
			}
		}
	}
}

func TestParseNoAlloc(t *testing.T) {
	for _, tc := range parseCases {
		if a := testing.AllocsPerRun(50, func() { Parse(tc.in, testMax) }); a != 0 {
			t.Errorf("%s: %v allocations, want 0", tc.name, a)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	for _, bc := range []struct {
		name string
		in   []byte
	}{
		{"v1-tcp4", AppendV1(nil, src4, dst4)},
		{"v1-tcp6", AppendV1(nil, src6, dst6)},
		{"v2-tcp4", AppendV2(nil, src4, dst4, nil)},
		{"v2-tcp6", AppendV2(nil, src6, dst6, nil)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := Parse(bc.in, testMax); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestParseIPv6 checks the own IPv6 parser against netip.ParseAddr.
func TestParseIPv6(t *testing.T) {
	for _, s := range []string{
		"::", "::1", "1::", "2001:db8::7", "2001:DB8:0:0:0:0:0:7", "1:2:3:4:5:6:7:8", "::ffff:1.2.3.4", "1:2:3:4:5:6:1.2.3.4",
		"fe80::1:2", "1::2:3:4:5:6:7", "::2:3:4:5:6:7:8",
		// Refused by both.
		"", ":", ":::", "1:::2", "1::2::3", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "12345::", "1:2:3:4:5:6:7:8::", "::1:2:3:4:5:6:7:8",
		"1:", ":1", "::1.2.3", "1.2.3.4", "1:2:3:4:5:6:7:1.2.3.4", "::1.2.3.04", "g::", "fe80::1%eth0", "::1:",
	} {
		want, werr := netip.ParseAddr(s)
		got, ok := parseIPv6([]byte(s))
		if werr == nil && (want.Is4() || want.Zone() != "") {
			werr = errors.New("an IPv4 address or a zone") // refused in a PROXY header
		}
		if ok != (werr == nil) || ok && got != want {
			t.Errorf("%q: got %v %v, want %v %v", s, got, ok, want, werr)
		}
	}
}
