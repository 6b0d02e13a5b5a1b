package proxyproto

import (
	"errors"
	"net/netip"
	"testing"
)

// FuzzParse: whatever the bytes, Parse does not panic, a header's length
// lies within what it was given and within the limits, the header parses the
// same from exactly its own bytes, every prefix of it is ErrShort with a
// need no further than its end, and a re-encoded header (v1 or v2) parses
// back to the same addresses.
func FuzzParse(f *testing.F) {
	// Every table case: valid headers of both versions, each malformed
	// kind, partial headers and non-PROXY starts.
	for _, tc := range parseCases {
		f.Add(tc.in)
	}
	// A header with the client's first bytes behind it.
	f.Add(append(AppendV2(nil, src4, dst4, []byte{0x04, 0x00, 0x01, 'x'}), 0x16, 0x03, 0x01))
	f.Add(append(AppendV1(nil, src6, dst6), "GET / HTTP/1.1\r\n"...))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := Parse(b, testMax)
		switch {
		case errors.Is(err, ErrShort):
			if n <= len(b) || n > max(MaxV1Len, testMax) {
				t.Fatalf("short: need %d with %d bytes", n, len(b))
			}
			return
		case err != nil:
			return
		}
		if n <= 0 || n > len(b) || h.Version == 1 && n > MaxV1Len || n > testMax {
			t.Fatalf("v%d header of %d bytes from %d", h.Version, n, len(b))
		}
		if h2, n2, err := Parse(b[:n], testMax); err != nil || n2 != n || h2 != h {
			t.Fatalf("own bytes: %+v %d %v, want %+v %d", h2, n2, err, h, n)
		}
		for k := range n {
			if _, need, err := Parse(b[:k], testMax); err != ErrShort || need <= k || need > n {
				t.Fatalf("prefix %d of %d: need %d, %v", k, n, need, err)
			}
		}
		if !h.Src.IsValid() || h.Src.Addr().Unmap().Is4() != h.Dst.Addr().Unmap().Is4() {
			return // nothing to re-encode, or a mix the encoders write as UNKNOWN/LOCAL
		}
		for _, enc := range [][]byte{AppendV1(nil, h.Src, h.Dst), AppendV2(nil, h.Src, h.Dst, nil)} {
			h2, _, err := Parse(enc, testMax)
			if err != nil || h2.Src.Addr().Unmap() != h.Src.Addr().Unmap() || h2.Src.Port() != h.Src.Port() {
				t.Fatalf("re-encoded %q: %+v %v, want %v", enc, h2, err, h.Src)
			}
		}
	})
}

// FuzzParseIPv6: the own IPv6 parser agrees with netip.ParseAddr, except
// that it refuses IPv4 addresses and zones.
func FuzzParseIPv6(f *testing.F) {
	for _, s := range []string{"::", "2001:db8::7", "1:2:3:4:5:6:7:8", "::ffff:1.2.3.4", "1::2::3", "fe80::1%eth0", "12345::", "1:2:3:4:5:6:7:1.2.3.4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := netip.ParseAddr(s)
		wok := err == nil && want.Is6() && want.Zone() == ""
		got, ok := parseIPv6([]byte(s))
		if ok != wok || ok && got != want {
			t.Fatalf("%q: got %v %v, want %v %v", s, got, ok, want, wok)
		}
	})
}
