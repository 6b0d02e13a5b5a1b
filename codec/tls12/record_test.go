package tls12

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"testing"
)

// TestPRFVectors checks P_SHA256 against the widely used TLS 1.2 PRF test
// vector and P_SHA384 against `openssl kdf TLS1-PRF` output.
func TestPRFVectors(t *testing.T) {
	h := func(s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	out := make([]byte, 100)
	prf(sha256.New, h("9bbe436ba940f017b17652849a71db35"), "test label", h("a0ba9f936cda311827a6f796ffd5198c"), nil, out)
	want := "e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a6b301791e90d35c9c9a46b4e14baf9af0fa022f7077def17abfd3797c0564bab4fbc91666e9def9b97fce34f796789baa48082d122ee42c5a72e5a5110fff70187347b66"
	if hex.EncodeToString(out) != want {
		t.Errorf("P_SHA256: %x", out)
	}
	out = make([]byte, 148)
	prf(sha512.New384, h("b80b733d6ceefcdc71566ea48e5567df"), "test label", h("cd665cf6a8447dd6"), h("ff8b27555edb7465"), out)
	want = "7b0c18e9ced410ed1804f2cfa34a336a1c14dffb4900bb5fd7942107e81c83cde9ca0faa60be9fe34f82b1233c9146a0e534cb400fed2700884f9dc236f80edd8bfa961144c9e8d792eca722a7b32fc3d416d473ebc2c5fd4abfdad05d9184259b5bf8cd4d90fa0d31e2dec479e4f1a26066f2eea9a69236a3e52655c9e9aee691c8f3a26854308d5eaa3be85e0990703d73e56f"
	if hex.EncodeToString(out) != want {
		t.Errorf("P_SHA384: %x", out)
	}
}

func TestKeysLengths(t *testing.T) {
	for _, ts := range testSuites {
		ck, civ, sk, siv := testKeys(ts.id, 1)
		si, _ := lookupSuite(ts.id)
		if len(ck) != si.keyLen || len(sk) != si.keyLen || len(civ) != si.ivLen || len(siv) != si.ivLen {
			t.Errorf("%s: lengths %d %d %d %d", ts.name, len(ck), len(civ), len(sk), len(siv))
		}
		if cap(ck) != len(ck) || cap(civ) != len(civ) {
			t.Errorf("%s: slices not capped, an append would overwrite the next key", ts.name)
		}
	}
	m, r := make([]byte, MasterSecretLen), make([]byte, RandomLen)
	for name, call := range map[string]func() error{
		"unsupported suite": func() error { _, _, _, _, err := Keys(0x009c, m, r, r); return err },
		"short master":      func() error { _, _, _, _, err := Keys(testSuites[0].id, m[:47], r, r); return err },
		"short random":      func() error { _, _, _, _, err := Keys(testSuites[0].id, m, r[:31], r); return err },
		"opener key length": func() error { _, err := NewOpener(testSuites[2].id, r[:16], r[:4], 1); return err },
		"sealer iv length":  func() error { _, err := NewSealer(testSuites[4].id, r, r[:4], 1); return err },
		"opener tls13 suite": func() error {
			_, err := NewOpener(0x1301, r[:16], r[:4], 1)
			return err
		},
	} {
		if err := call(); err != ErrUnsupportedSuite && err != ErrKeyLength {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// openCases are records a peer may send and what Open must make of them.
// Each builds its records with a Sealer for the Opener's keys at seq 1.
var openCases = []struct {
	name    string
	records func(s *Sealer) [][]byte // all but the last must open
	wantCT  uint8
	wantErr error
}{
	{"application data", func(s *Sealer) [][]byte {
		return [][]byte{rawRecord(s, 1, TypeApplicationData, 0x0303, []byte("data"), -1)}
	}, TypeApplicationData, nil},
	{"empty application data", func(s *Sealer) [][]byte {
		return [][]byte{rawRecord(s, 1, TypeApplicationData, 0x0303, nil, -1)}
	}, TypeApplicationData, nil},
	{"full record", func(s *Sealer) [][]byte {
		return [][]byte{rawRecord(s, 1, TypeApplicationData, 0x0303, make([]byte, MaxPlaintext), -1)}
	}, TypeApplicationData, nil},
	{"close_notify", func(s *Sealer) [][]byte {
		return [][]byte{rawRecord(s, 1, TypeAlert, 0x0303, []byte{1, 0}, -1)}
	}, TypeAlert, nil},
	{"corrupted tag", func(s *Sealer) [][]byte {
		r := rawRecord(s, 1, TypeApplicationData, 0x0303, []byte("data"), -1)
		r[len(r)-1] ^= 1
		return [][]byte{r}
	}, 0, ErrBadRecordMAC},
	{"corrupted ciphertext", func(s *Sealer) [][]byte {
		r := rawRecord(s, 1, TypeApplicationData, 0x0303, []byte("data"), -1)
		r[len(r)-17] ^= 0x80
		return [][]byte{r}
	}, 0, ErrBadRecordMAC},
	{"corrupted explicit nonce or first byte", func(s *Sealer) [][]byte {
		r := rawRecord(s, 1, TypeApplicationData, 0x0303, []byte("data"), -1)
		r[RecordHeaderLen] ^= 1
		return [][]byte{r}
	}, 0, ErrBadRecordMAC},
	{"type rewritten in header", func(s *Sealer) [][]byte {
		r := rawRecord(s, 1, TypeApplicationData, 0x0303, []byte{1, 0}, -1)
		r[0] = TypeAlert
		return [][]byte{r}
	}, 0, ErrBadRecordMAC},
	{"truncated record, length field fixed up", func(s *Sealer) [][]byte {
		r := rawRecord(s, 1, TypeApplicationData, 0x0303, []byte("data"), -1)
		r = r[:len(r)-1]
		r[4]--
		return [][]byte{r}
	}, 0, ErrBadRecordMAC},
	{"shorter than nonce and tag", func(s *Sealer) [][]byte {
		return [][]byte{{23, 3, 3, 0, 15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}}
	}, 0, ErrBadRecordMAC},
	{"empty fragment", func(s *Sealer) [][]byte { return [][]byte{{23, 3, 3, 0, 0}} }, 0, ErrBadRecordMAC},
	{"slice shorter than header length", func(s *Sealer) [][]byte {
		r := rawRecord(s, 1, TypeApplicationData, 0x0303, []byte("data"), -1)
		return [][]byte{r[:len(r)-1]}
	}, 0, ErrRecordLength},
	{"header length over 2^14+2048", func(s *Sealer) [][]byte {
		return [][]byte{append([]byte{23, 3, 3, 0x48, 0x01}, make([]byte, MaxCiphertext+1)...)}
	}, 0, ErrRecordOverflow},
	{"plaintext 2^14+1", func(s *Sealer) [][]byte {
		return [][]byte{rawRecord(s, 1, TypeApplicationData, 0x0303, make([]byte, MaxPlaintext+1), -1)}
	}, 0, ErrRecordOverflow},
	{"wrong version 0x0301", func(s *Sealer) [][]byte {
		return [][]byte{rawRecord(s, 1, TypeApplicationData, 0x0301, []byte("data"), -1)}
	}, 0, ErrProtocolVersion},
	{"wrong version 0x0304", func(s *Sealer) [][]byte {
		return [][]byte{rawRecord(s, 1, TypeApplicationData, 0x0304, []byte("data"), -1)}
	}, 0, ErrProtocolVersion},
	{"change_cipher_spec after handshake", func(s *Sealer) [][]byte {
		return [][]byte{rawRecord(s, 1, TypeChangeCipherSpec, 0x0303, []byte{1}, -1)}
	}, 0, ErrUnexpectedMessage},
	{"plaintext change_cipher_spec", func(s *Sealer) [][]byte { return [][]byte{{20, 3, 3, 0, 1, 1}} }, 0, ErrUnexpectedMessage},
	{"heartbeat type", func(s *Sealer) [][]byte {
		return [][]byte{rawRecord(s, 1, 24, 0x0303, []byte{1}, -1)}
	}, 0, ErrUnexpectedMessage},
	{"replay of the previous record", func(s *Sealer) [][]byte {
		r := rawRecord(s, 1, TypeApplicationData, 0x0303, []byte("data"), -1)
		return [][]byte{r, bytes.Clone(r)}
	}, 0, ErrBadRecordMAC},
	{"record from seq 0 (a Finished-time key reuse)", func(s *Sealer) [][]byte {
		return [][]byte{rawRecord(s, 0, TypeApplicationData, 0x0303, []byte("data"), -1)}
	}, 0, ErrBadRecordMAC},
	{"skipped record", func(s *Sealer) [][]byte {
		return [][]byte{rawRecord(s, 2, TypeApplicationData, 0x0303, []byte("data"), -1)}
	}, 0, ErrBadRecordMAC},
	{"renegotiation ClientHello", func(s *Sealer) [][]byte {
		return [][]byte{
			rawRecord(s, 1, TypeApplicationData, 0x0303, []byte("before"), -1),
			rawRecord(s, 2, TypeHandshake, 0x0303, append([]byte{1, 0, 0, 38, 3, 3}, make([]byte, 32)...), -1),
		}
	}, 0, ErrRenegotiation},
	{"ClientHello fragment of one byte", func(s *Sealer) [][]byte {
		return [][]byte{rawRecord(s, 1, TypeHandshake, 0x0303, []byte{1}, -1)}
	}, 0, ErrRenegotiation},
	{"HelloRequest", func(s *Sealer) [][]byte {
		return [][]byte{rawRecord(s, 1, TypeHandshake, 0x0303, []byte{0, 0, 0, 0}, -1)}
	}, 0, ErrRenegotiation},
	{"Finished after handshake", func(s *Sealer) [][]byte {
		return [][]byte{rawRecord(s, 1, TypeHandshake, 0x0303, append([]byte{20, 0, 0, 12}, make([]byte, 12)...), -1)}
	}, 0, ErrUnexpectedMessage},
	{"empty handshake record", func(s *Sealer) [][]byte {
		return [][]byte{rawRecord(s, 1, TypeHandshake, 0x0303, nil, -1)}
	}, 0, ErrUnexpectedMessage},
	{"alert of 3 bytes", func(s *Sealer) [][]byte {
		return [][]byte{rawRecord(s, 1, TypeAlert, 0x0303, []byte{1, 0, 0}, -1)}
	}, 0, ErrDecode},
	{"empty alert", func(s *Sealer) [][]byte {
		return [][]byte{rawRecord(s, 1, TypeAlert, 0x0303, nil, -1)}
	}, 0, ErrDecode},
}

func TestOpenCases(t *testing.T) {
	for _, ts := range testSuites {
		for _, tc := range openCases {
			t.Run(ts.name+"/"+tc.name, func(t *testing.T) {
				s, o := newPair(t, ts.id, 1)
				recs := tc.records(s)
				for i, rec := range recs {
					content, ct, err := o.Open(rec)
					if i < len(recs)-1 {
						if err != nil {
							t.Fatalf("record %d: %v", i, err)
						}
						continue
					}
					if err != tc.wantErr {
						t.Fatalf("err %v, want %v", err, tc.wantErr)
					}
					if err != nil {
						if content != nil || ct != 0 {
							t.Fatalf("content %d bytes, type %d with error", len(content), ct)
						}
						// Errors are sticky.
						if _, _, err2 := o.Open(rawRecord(s, o.Seq(), TypeApplicationData, 0x0303, nil, -1)); err2 != err {
							t.Fatalf("after error: %v", err2)
						}
						return
					}
					if ct != tc.wantCT {
						t.Fatalf("type %d, want %d", ct, tc.wantCT)
					}
					if o.Seq() != uint64(len(recs))+1 {
						t.Fatalf("seq %d", o.Seq())
					}
					_ = content
				}
			})
		}
	}
}

// TestSealOpen checks that Opener reads what Sealer writes, including the
// GCM explicit nonce being the sequence number, and that records are laid
// out as documented.
func TestSealOpen(t *testing.T) {
	for _, ts := range testSuites {
		s, o := newPair(t, ts.id, 1)
		var stream []byte
		for n := 0; n <= 300; n++ {
			var err error
			if stream, err = s.Seal(stream, TypeApplicationData, payloadFor(n)); err != nil {
				t.Fatal(err)
			}
		}
		for n := 0; n <= 300; n++ {
			l, err := RecordLen(stream)
			if err != nil {
				t.Fatal(err)
			}
			if l != n+s.Overhead() {
				t.Fatalf("%s: record of %d is %d bytes", ts.name, n, l)
			}
			if ex := s.suite.explicitLen; ex > 0 {
				if got := binary.BigEndian.Uint64(stream[RecordHeaderLen:]); got != uint64(n+1) {
					t.Fatalf("%s: explicit nonce %d for seq %d", ts.name, got, n+1)
				}
			}
			content, ct, err := o.Open(stream[:l])
			if err != nil || ct != TypeApplicationData || !bytes.Equal(content, payloadFor(n)) {
				t.Fatalf("%s: record %d: %v", ts.name, n, err)
			}
			stream = stream[l:]
		}
	}
}

func TestSealRefuses(t *testing.T) {
	for _, ts := range testSuites {
		s, _ := newPair(t, ts.id, 1)
		dst := []byte("keep")
		for name, c := range map[string]struct {
			ct      uint8
			payload []byte
			want    error
		}{
			"too large":          {TypeApplicationData, make([]byte, MaxPlaintext+1), ErrPayloadTooLarge},
			"handshake":          {TypeHandshake, []byte{0, 0, 0, 0}, ErrBadContent},
			"change_cipher_spec": {TypeChangeCipherSpec, []byte{1}, ErrBadContent},
			"alert of 3 bytes":   {TypeAlert, []byte{1, 0, 0}, ErrBadContent},
		} {
			out, err := s.Seal(dst, c.ct, c.payload)
			if err != c.want || string(out) != "keep" || s.Seq() != 1 {
				t.Errorf("%s/%s: %v, %q, seq %d", ts.name, name, err, out, s.Seq())
			}
		}
	}
}

// TestSealOverlap builds the payload in place, where Seal's own header and
// explicit nonce go, and at the exact spot it ends up.
func TestSealOverlap(t *testing.T) {
	for _, ts := range testSuites {
		for _, at := range []int{0, 3, RecordHeaderLen, RecordHeaderLen + 8, 40} {
			s, o := newPair(t, ts.id, 1)
			p := payloadFor(1000)
			buf := make([]byte, 7, 4096)
			copy(buf[7+at:7+at+len(p)], p)
			out, err := s.Seal(buf, TypeApplicationData, buf[7+at:7+at+len(p)])
			if err != nil || &out[0] != &buf[0] {
				t.Fatalf("%v or reallocated", err)
			}
			content, _, err := o.Open(out[7:])
			if err != nil || !bytes.Equal(content, p) {
				t.Fatalf("%s: payload at +%d: %v", ts.name, at, err)
			}
		}
	}
}

// TestSeqNeverWraps starts both sides one record short of 2^64-1.
func TestSeqNeverWraps(t *testing.T) {
	for _, ts := range testSuites {
		s, o := newPair(t, ts.id, 1<<64-2)
		rec, err := s.Seal(nil, TypeApplicationData, []byte("last"))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := o.Open(rec); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Seal(nil, TypeApplicationData, []byte("wrap")); err != ErrSeqExhausted {
			t.Fatalf("%s: Seal at 2^64-1: %v", ts.name, err)
		}
		if _, _, err := o.Open(bytes.Clone(rec)); err != ErrSeqExhausted {
			t.Fatalf("%s: Open at 2^64-1: %v", ts.name, err)
		}
	}
}

func TestClear(t *testing.T) {
	s, o := newPair(t, testSuites[0].id, 1)
	rec, _ := s.Seal(nil, TypeApplicationData, []byte("x"))
	s.Clear()
	o.Clear()
	if _, err := s.Seal(nil, TypeApplicationData, nil); err != ErrClosed {
		t.Fatal(err)
	}
	if _, _, err := o.Open(rec); err != ErrClosed {
		t.Fatal(err)
	}
	if s.iv != [nonceLen]byte{} || o.iv != [nonceLen]byte{} {
		t.Fatal("iv not zeroed")
	}
}

func TestRecordLen(t *testing.T) {
	for _, c := range []struct {
		hdr  []byte
		n    int
		want error
	}{
		{[]byte{23, 3, 3, 0, 0}, 5, nil},
		{[]byte{21, 3, 3, 0, 26}, 31, nil},
		{[]byte{22, 3, 3, 0x40, 0}, 5 + 1<<14, nil},
		{[]byte{23, 3, 3, 0x48, 0x00}, MaxRecordLen, nil},
		{[]byte{23, 3, 3, 0x48, 0x01}, 0, ErrRecordOverflow},
		{[]byte{23, 3, 3, 0xff, 0xff}, 0, ErrRecordOverflow},
		{[]byte{20, 3, 3, 0, 1}, 0, ErrUnexpectedMessage},
		{[]byte{24, 3, 3, 0, 1}, 0, ErrUnexpectedMessage},
		{[]byte{0x16, 3, 1, 0, 1}, 0, ErrProtocolVersion},
		{[]byte{23, 3, 4, 0, 1}, 0, ErrProtocolVersion},
		{[]byte{23, 3, 3, 0}, 0, ErrRecordLength},
	} {
		n, err := RecordLen(c.hdr)
		if n != c.n || err != c.want {
			t.Errorf("% x: %d, %v; want %d, %v", c.hdr, n, err, c.n, c.want)
		}
	}
}
