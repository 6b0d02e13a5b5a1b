package tls13

import (
	"bytes"
	"errors"
	"testing"
)

func TestRoundTripEverySuite(t *testing.T) {
	for _, ts := range testSuites {
		t.Run(ts.name, func(t *testing.T) {
			s, o := newPair(t, ts.id)
			var buf []byte
			for _, n := range []int{0, 1, 2, 15, 16, 17, 255, 256, 1000, MaxPlaintext - 1, MaxPlaintext} {
				p := pattern(n, byte(n))
				rec, err := s.Seal(buf[:0], TypeApplicationData, p)
				if err != nil {
					t.Fatal(err)
				}
				if len(rec) != n+s.Overhead() {
					t.Fatalf("len %d: record %d bytes, want %d", n, len(rec), n+s.Overhead())
				}
				if l, err := RecordLen(rec); err != nil || l != len(rec) {
					t.Fatalf("RecordLen = %d, %v", l, err)
				}
				got, ct, err := o.Open(rec)
				if err != nil || ct != TypeApplicationData || !bytes.Equal(got, p) {
					t.Fatalf("len %d: Open = %d bytes, type %d, %v", n, len(got), ct, err)
				}
				buf = rec
			}
			if s.Seq() != 11 || o.Seq() != 11 {
				t.Fatalf("seq %d/%d, want 11", s.Seq(), o.Seq())
			}
		})
	}
}

func TestOpenTable(t *testing.T) {
	const ad = TypeApplicationData
	for _, ts := range testSuites {
		s, _ := newPair(t, ts.id)
		cases := []struct {
			name    string
			rec     func() []byte
			want    error
			content []byte
			ct      uint8
		}{
			{"plain", func() []byte { return rawRecord(s, 0, ad, 0x0303, []byte("hi\x17"), -1) }, nil, []byte("hi"), ad},
			{"padding stripped", func() []byte { return rawRecord(s, 0, ad, 0x0303, []byte("hi\x17\x00\x00\x00\x00"), -1) }, nil, []byte("hi"), ad},
			{"content ending in zeros keeps them", func() []byte { return rawRecord(s, 0, ad, 0x0303, []byte("a\x00\x00\x17\x00"), -1) }, nil, []byte("a\x00\x00"), ad},
			{"empty application data", func() []byte { return rawRecord(s, 0, ad, 0x0303, []byte{ad}, -1) }, nil, []byte{}, ad},
			{"alert", func() []byte { return rawRecord(s, 0, ad, 0x0303, []byte{1, 0, TypeAlert}, -1) }, nil, []byte{1, 0}, TypeAlert},
			{"handshake", func() []byte { return rawRecord(s, 0, ad, 0x0303, []byte{24, 0, 0, 1, 0, TypeHandshake}, -1) }, nil, []byte{24, 0, 0, 1, 0}, TypeHandshake},
			{"max inner plaintext with padding", func() []byte {
				return rawRecord(s, 0, ad, 0x0303, append(bytes.Repeat([]byte{9}, MaxPlaintext), ad), -1)
			}, nil, bytes.Repeat([]byte{9}, MaxPlaintext), ad},
			{"inner plaintext over 2^14+1", func() []byte {
				return rawRecord(s, 0, ad, 0x0303, append(bytes.Repeat([]byte{9}, MaxPlaintext+1), ad), -1)
			}, ErrRecordOverflow, nil, 0},
			{"padding beyond 2^14+1", func() []byte {
				return rawRecord(s, 0, ad, 0x0303, append([]byte{1, ad}, make([]byte, MaxPlaintext)...), -1)
			}, ErrRecordOverflow, nil, 0},
			{"all-zero inner plaintext", func() []byte { return rawRecord(s, 0, ad, 0x0303, make([]byte, 30), -1) }, ErrUnexpectedMessage, nil, 0},
			{"empty inner plaintext", func() []byte { return rawRecord(s, 0, ad, 0x0303, nil, -1) }, ErrUnexpectedMessage, nil, 0},
			{"inner change_cipher_spec", func() []byte { return rawRecord(s, 0, ad, 0x0303, []byte{1, TypeChangeCipherSpec}, -1) }, ErrUnexpectedMessage, nil, 0},
			{"inner unknown type", func() []byte { return rawRecord(s, 0, ad, 0x0303, []byte{1, 99}, -1) }, ErrUnexpectedMessage, nil, 0},
			{"empty handshake", func() []byte { return rawRecord(s, 0, ad, 0x0303, []byte{TypeHandshake, 0}, -1) }, ErrUnexpectedMessage, nil, 0},
			{"alert of 1 byte", func() []byte { return rawRecord(s, 0, ad, 0x0303, []byte{1, TypeAlert}, -1) }, ErrDecode, nil, 0},
			{"two alerts coalesced", func() []byte { return rawRecord(s, 0, ad, 0x0303, []byte{1, 0, 1, 0, TypeAlert}, -1) }, ErrDecode, nil, 0},
			{"corrupted tag", func() []byte {
				r := rawRecord(s, 0, ad, 0x0303, []byte("hi\x17"), -1)
				r[len(r)-1] ^= 1
				return r
			}, ErrBadRecordMAC, nil, 0},
			{"corrupted ciphertext", func() []byte {
				r := rawRecord(s, 0, ad, 0x0303, []byte("hi\x17"), -1)
				r[RecordHeaderLen] ^= 0x80
				return r
			}, ErrBadRecordMAC, nil, 0},
			{"wrong sequence number", func() []byte { return rawRecord(s, 1, ad, 0x0303, []byte("hi\x17"), -1) }, ErrBadRecordMAC, nil, 0},
			{"header version rewritten", func() []byte {
				r := rawRecord(s, 0, ad, 0x0303, []byte("hi\x17"), -1)
				r[2] = 1
				return r
			}, ErrBadRecordMAC, nil, 0},
			{"other legacy version authenticated", func() []byte { return rawRecord(s, 0, ad, 0x0301, []byte("hi\x17"), -1) }, nil, []byte("hi"), ad},
			{"ciphertext shorter than tag", func() []byte { return rawRecord(s, 0, ad, 0x0303, nil, -1)[:RecordHeaderLen+tagLen-1] }, ErrRecordLength, nil, 0},
			{"zero length", func() []byte { return []byte{ad, 3, 3, 0, 0} }, ErrBadRecordMAC, nil, 0},
			{"short body, header agrees", func() []byte { return []byte{ad, 3, 3, 0, 3, 1, 2, 3} }, ErrBadRecordMAC, nil, 0},
			{"header length longer than slice", func() []byte { return rawRecord(s, 0, ad, 0x0303, []byte("hi\x17"), 100) }, ErrRecordLength, nil, 0},
			{"header length shorter than slice", func() []byte { return rawRecord(s, 0, ad, 0x0303, []byte("hi\x17"), 5) }, ErrRecordLength, nil, 0},
			{"oversized record", func() []byte { return rawRecord(s, 0, ad, 0x0303, make([]byte, MaxCiphertext), -1) }, ErrRecordOverflow, nil, 0},
			{"outer change_cipher_spec", func() []byte { return []byte{TypeChangeCipherSpec, 3, 3, 0, 1, 1} }, ErrUnexpectedMessage, nil, 0},
			{"outer plaintext alert", func() []byte { return []byte{TypeAlert, 3, 3, 0, 2, 2, 40} }, ErrUnexpectedMessage, nil, 0},
			{"outer handshake", func() []byte { return rawRecord(s, 0, TypeHandshake, 0x0303, []byte("hi\x17"), -1) }, ErrUnexpectedMessage, nil, 0},
			{"short header", func() []byte { return []byte{ad, 3, 3, 0} }, ErrRecordLength, nil, 0},
		}
		for _, c := range cases {
			t.Run(ts.name+"/"+c.name, func(t *testing.T) {
				_, o := newPair(t, ts.id)
				content, ct, err := o.Open(c.rec())
				if !errors.Is(err, c.want) || (c.want == nil && err != nil) {
					t.Fatalf("err = %v, want %v", err, c.want)
				}
				if err != nil {
					// Errors are sticky: even a good record is refused now.
					good := rawRecord(s, 0, ad, 0x0303, []byte("x\x17"), -1)
					if _, _, err2 := o.Open(good); err2 != err {
						t.Fatalf("after %v, Open = %v", err, err2)
					}
					return
				}
				if ct != c.ct || !bytes.Equal(content, c.content) || o.Seq() != 1 {
					t.Fatalf("Open = %q type %d seq %d, want %q type %d", content, ct, o.Seq(), c.content, c.ct)
				}
			})
		}
	}
}

func TestRecordLen(t *testing.T) {
	cases := []struct {
		hdr  []byte
		n    int
		want error
	}{
		{[]byte{23, 3, 3, 0, 0}, 5, nil},
		{[]byte{23, 3, 3, 0x41, 0x00}, 5 + MaxCiphertext, nil},
		{[]byte{23, 3, 3, 0x41, 0x01}, 0, ErrRecordOverflow},
		{[]byte{23, 3, 3, 0xff, 0xff}, 0, ErrRecordOverflow},
		{[]byte{23, 3, 1, 0, 40}, 45, nil}, // legacy_record_version is ignored (RFC 8446 §5.1)
		{[]byte{20, 3, 3, 0, 1}, 0, ErrUnexpectedMessage},
		{[]byte{21, 3, 3, 0, 2}, 0, ErrUnexpectedMessage},
		{[]byte{22, 3, 3, 0, 2}, 0, ErrUnexpectedMessage},
		{[]byte{0, 0, 0, 0, 0}, 0, ErrUnexpectedMessage},
		{[]byte{23, 3, 3, 0}, 0, ErrRecordLength},
		{nil, 0, ErrRecordLength},
	}
	for _, c := range cases {
		n, err := RecordLen(c.hdr)
		if n != c.n || err != c.want {
			t.Errorf("RecordLen(% x) = %d, %v; want %d, %v", c.hdr, n, err, c.n, c.want)
		}
	}
}

func TestReplayedRecordFails(t *testing.T) {
	for _, ts := range testSuites {
		s, o := newPair(t, ts.id)
		r0, _ := s.Seal(nil, TypeApplicationData, []byte("first"))
		r1, _ := s.Seal(nil, TypeApplicationData, []byte("second"))
		replay := bytes.Clone(r0)
		if _, _, err := o.Open(r0); err != nil {
			t.Fatal(err)
		}
		if _, _, err := o.Open(replay); err != ErrBadRecordMAC {
			t.Fatalf("%s: replay: %v", ts.name, err)
		}
		if _, _, err := o.Open(r1); err != ErrBadRecordMAC {
			t.Fatalf("%s: after a failure Open must keep failing, got %v", ts.name, err)
		}
	}
}

func TestReorderedRecordFails(t *testing.T) {
	s, o := newPair(t, testSuites[0].id)
	_, _ = s.Seal(nil, TypeApplicationData, []byte("first"))
	r1, _ := s.Seal(nil, TypeApplicationData, []byte("second"))
	if _, _, err := o.Open(r1); err != ErrBadRecordMAC {
		t.Fatalf("skipped record: %v", err)
	}
}

func TestWrongKeyFails(t *testing.T) {
	for _, ts := range testSuites {
		s, _ := newPair(t, ts.id)
		o, _ := NewOpener(ts.id, testSecret(ts.id, 2))
		r, _ := s.Seal(nil, TypeApplicationData, []byte("data"))
		if _, _, err := o.Open(r); err != ErrBadRecordMAC {
			t.Fatalf("%s: %v", ts.name, err)
		}
	}
}

func TestSealLimits(t *testing.T) {
	s, o := newPair(t, testSuites[0].id)
	if _, err := s.Seal(nil, TypeApplicationData, make([]byte, MaxPlaintext+1)); err != ErrPayloadTooLarge {
		t.Fatalf("oversized payload: %v", err)
	}
	if s.Seq() != 0 {
		t.Fatal("a refused Seal used a sequence number")
	}
	// The last usable sequence number is 2^64-2; the next Seal must refuse
	// rather than wrap (RFC 8446 §5.3).
	s.seq, o.seq = ^uint64(0)-1, ^uint64(0)-1
	r, err := s.Seal(nil, TypeApplicationData, []byte("last"))
	if err != nil {
		t.Fatal(err)
	}
	if p, _, err := o.Open(r); err != nil || string(p) != "last" {
		t.Fatalf("last record: %q %v", p, err)
	}
	if _, err := s.Seal(nil, TypeApplicationData, []byte("wrap")); err != ErrSeqExhausted {
		t.Fatalf("Seal at 2^64-1: %v", err)
	}
	if _, _, err := o.Open(r); err != ErrSeqExhausted {
		t.Fatalf("Open at 2^64-1: %v", err)
	}
}

func TestSealInPlace(t *testing.T) {
	for _, ts := range testSuites {
		s, o := newPair(t, ts.id)
		const off, n = 7, 1000
		p := pattern(n, 3)
		buf := make([]byte, off, off+n+s.Overhead())
		// Payload built where Seal will put it.
		copy(buf[off+RecordHeaderLen:cap(buf)], p)
		out, err := s.Seal(buf, TypeApplicationData, buf[off+RecordHeaderLen:off+RecordHeaderLen+n])
		if err != nil || &out[0] != &buf[0] {
			t.Fatalf("in-place Seal moved or failed: %v", err)
		}
		if got, _, err := o.Open(out[off:]); err != nil || !bytes.Equal(got, p) {
			t.Fatalf("exact overlap: %v", err)
		}
		// Payload starting where the header goes (partial overlap).
		copy(buf[off:cap(buf)], p)
		out, err = s.Seal(buf[:off], TypeApplicationData, buf[off:off+n])
		if err != nil || &out[0] != &buf[0] {
			t.Fatalf("overlapping Seal moved or failed: %v", err)
		}
		if got, _, err := o.Open(out[off:]); err != nil || !bytes.Equal(got, p) {
			t.Fatalf("partial overlap: %v", err)
		}
	}
}

func TestUpdate(t *testing.T) {
	for _, ts := range testSuites {
		s, o := newPair(t, ts.id)
		r, _ := s.Seal(nil, TypeApplicationData, []byte("a"))
		if _, _, err := o.Open(r); err != nil {
			t.Fatal(err)
		}
		old := s.secret
		if err := s.Update(); err != nil {
			t.Fatal(err)
		}
		if s.secret == old || s.Seq() != 0 {
			t.Fatal("Update did not change the secret or reset seq")
		}
		r, _ = s.Seal(nil, TypeApplicationData, []byte("b"))
		stale, _ := NewOpener(ts.id, testSecret(ts.id, 1))
		if _, _, err := stale.Open(bytes.Clone(r)); err != ErrBadRecordMAC {
			t.Fatalf("old key opened an updated record: %v", err)
		}
		if err := o.Update(); err != nil {
			t.Fatal(err)
		}
		if p, _, err := o.Open(r); err != nil || string(p) != "b" {
			t.Fatalf("after Update: %q %v", p, err)
		}
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := NewOpener(0x1301, make([]byte, 48)); err != ErrSecretLength {
		t.Fatalf("AES-128 with 48-byte secret: %v", err)
	}
	if _, err := NewSealer(0x1302, make([]byte, 32)); err != ErrSecretLength {
		t.Fatalf("AES-256 with 32-byte secret: %v", err)
	}
	if _, err := NewOpener(0xc02f, make([]byte, 32)); err != ErrUnsupportedSuite {
		t.Fatalf("TLS 1.2 suite: %v", err)
	}
}
