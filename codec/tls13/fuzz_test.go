package tls13

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// openErrors are the only errors Open and RecordLen may return on peer input.
var openErrors = []error{ErrBadRecordMAC, ErrRecordOverflow, ErrUnexpectedMessage, ErrDecode, ErrRecordLength}

func isOpenError(err error) bool {
	for _, e := range openErrors {
		if err == e {
			return true
		}
	}
	return false
}

// resealExact re-encrypts inner under the mirror Sealer's current key and
// sequence number with the given header as additional data, the way any
// sender would have produced the record.
func resealExact(s *Sealer, hdr, inner []byte) []byte {
	if err := s.makeNonce(); err != nil {
		panic(err)
	}
	s.seq++
	return s.aead.Live().Seal(bytes.Clone(hdr), s.nonce[:], inner, hdr)
}

func fuzzSuite(idx uint8, secret []byte) (uint16, []byte) {
	id := testSuites[int(idx)%len(testSuites)].id
	si, _ := lookupSuite(id)
	if len(secret) != si.hashLen {
		secret = testSecret(id, 1)
	}
	return id, secret
}

// FuzzOpen feeds a stream of records to an Opener (with HandshakeReader and
// ParseAlert behind it, as the relay does). It must never panic, must fail
// only with the documented sentinels, and may return content only for a
// record that is exactly the AEAD sealing of that content (plus padding)
// under the key at that sequence number, i.e. one a key holder sealed.
// secret falls back to a fixed key unless it has the suite's hash length.
func FuzzOpen(f *testing.F) {
	for i, ts := range testSuites {
		s, _ := newPair(f, ts.id)
		var stream []byte
		stream, _ = s.Seal(stream, TypeApplicationData, []byte("hello"))
		stream, _ = s.SealKeyUpdate(stream, true)
		stream, _ = s.Seal(stream, TypeApplicationData, nil)
		stream, _ = s.SealAlert(stream, AlertCloseNotify)
		// A valid stream: data, KeyUpdate, empty data, close_notify.
		f.Add(uint8(i), []byte(nil), stream)
		s, _ = newPair(f, ts.id)
		// Padded record, then a KeyUpdate split over two records.
		padded := rawRecord(s, 0, TypeApplicationData, 0x0303, []byte("pad\x17\x00\x00\x00"), -1)
		split := append(rawRecord(s, 1, TypeApplicationData, 0x0303, []byte{24, 0, 0x16}, -1),
			rawRecord(s, 2, TypeApplicationData, 0x0303, []byte{0, 1, 1, 0x16}, -1)...)
		f.Add(uint8(i), []byte(nil), append(padded, split...))
		// Truncated record, oversized header, outer CCS.
		f.Add(uint8(i), []byte(nil), stream[:20])
		f.Add(uint8(i), []byte(nil), []byte{23, 3, 3, 0x41, 0x01})
		f.Add(uint8(i), []byte(nil), []byte{20, 3, 3, 0, 1, 1})
	}
	f.Fuzz(func(t *testing.T, suiteIdx uint8, secret, stream []byte) {
		id, secret := fuzzSuite(suiteIdx, secret)
		o, err := NewOpener(id, secret)
		if err != nil {
			t.Fatal(err)
		}
		mirror, _ := NewSealer(id, secret)
		var h HandshakeReader
		for len(stream) >= RecordHeaderLen {
			n, err := RecordLen(stream)
			if err != nil {
				if !isOpenError(err) {
					t.Fatalf("RecordLen: %v", err)
				}
				return
			}
			if n > len(stream) {
				return
			}
			rec := stream[:n]
			orig := bytes.Clone(rec)
			stream = stream[n:]
			content, ct, err := o.Open(rec)
			if err != nil {
				if !isOpenError(err) || content != nil {
					t.Fatalf("Open: %v with %d bytes", err, len(content))
				}
				return
			}
			pad := len(orig) - RecordHeaderLen - tagLen - 1 - len(content)
			inner := append(append(bytes.Clone(content), ct), make([]byte, pad)...)
			if !bytes.Equal(resealExact(mirror, orig[:RecordHeaderLen], inner), orig) {
				t.Fatalf("Open returned content for a record that is not its sealing")
			}
			ku, err := h.Record(ct, content)
			if err != nil {
				return
			}
			if ku != NoKeyUpdate {
				if o.Update() != nil || mirror.Update() != nil {
					t.Fatal("Update failed")
				}
			}
			if ct == TypeAlert {
				err := ParseAlert(content)
				if err != nil && err != ErrCloseNotify && !errors.Is(err, ErrAlert) {
					t.Fatalf("ParseAlert: %v", err)
				}
			}
		}
	})
}

// FuzzRoundTrip seals any payload and opens it back; then flips one bit of
// the record and requires a fresh Opener to refuse it.
func FuzzRoundTrip(f *testing.F) {
	f.Add(uint8(0), TypeApplicationData, []byte("GET / HTTP/1.1\r\n\r\n"), uint16(0))         // flip in header type
	f.Add(uint8(1), TypeApplicationData, []byte{}, uint16(3))                                 // empty record, flip length
	f.Add(uint8(2), TypeHandshake, []byte{24, 0, 0, 1, 1}, uint16(9))                         // KeyUpdate, flip body
	f.Add(uint8(0), TypeAlert, []byte{1, 0}, uint16(100))                                     // close_notify, flip tag
	f.Add(uint8(1), uint8(0), []byte("zero type is refused"), uint16(1))                      // ErrBadContent
	f.Add(uint8(2), TypeApplicationData, bytes.Repeat([]byte{0}, 300), uint16(2))             // zeros payload, flip version
	f.Add(uint8(0), TypeApplicationData, bytes.Repeat([]byte{0xff}, MaxPlaintext), uint16(7)) // full record
	f.Fuzz(func(t *testing.T, suiteIdx uint8, ct uint8, payload []byte, flip uint16) {
		if len(payload) > MaxPlaintext {
			payload = payload[:MaxPlaintext]
		}
		id, secret := fuzzSuite(suiteIdx, nil)
		s, _ := NewSealer(id, secret)
		o, _ := NewOpener(id, secret)
		rec, err := s.Seal(make([]byte, 0, 3), ct, payload)
		if err != nil {
			if err != ErrBadContent || len(rec) != 0 || s.Seq() != 0 {
				t.Fatalf("Seal: %v, %d bytes, seq %d", err, len(rec), s.Seq())
			}
			return
		}
		if len(rec) != len(payload)+s.Overhead() {
			t.Fatalf("record %d bytes for %d", len(rec), len(payload))
		}
		flipped := bytes.Clone(rec)
		flipped[int(flip)%len(flipped)] ^= 1 << (flip % 8)
		got, gotCT, err := o.Open(rec)
		if err != nil || gotCT != ct || !bytes.Equal(got, payload) {
			t.Fatalf("Open: %v, type %d, equal %v", err, gotCT, bytes.Equal(got, payload))
		}
		o2, _ := NewOpener(id, secret)
		if _, _, err := o2.Open(flipped); err == nil || !isOpenError(err) {
			t.Fatalf("flipped record: %v", err)
		}
	})
}

// writeSeeds stores the first records captured from a real peer, with its
// secret, as FuzzOpen seeds when TLS13_WRITE_SEEDS=1.
func writeSeeds(t *testing.T, ss *serverSession, peer string) {
	if os.Getenv("TLS13_WRITE_SEEDS") != "1" || len(ss.captured) == 0 {
		return
	}
	idx := -1
	for i, ts := range testSuites {
		if ts.id == ss.suite {
			idx = i
		}
	}
	var stream []byte
	for _, r := range ss.captured {
		stream = append(stream, r...)
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzOpen")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(dir, "captured-"+peer+"-"+testSuites[idx].name)
	body := fmt.Sprintf("go test fuzz v1\nuint8(%d)\n[]byte(%+q)\n[]byte(%+q)\n", idx, ss.clientSecret, stream)
	if err := os.WriteFile(name, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", name)
}

// TestCapturedSeedsOpen checks that the seeds captured from crypto/tls and
// OpenSSL are real positives: every record in them opens.
func TestCapturedSeedsOpen(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzOpen", "captured-*"))
	if len(files) == 0 {
		t.Fatal("no captured seeds")
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		var idx uint8
		if len(lines) != 4 {
			t.Fatalf("%s: %d lines", name, len(lines))
		}
		fmt.Sscanf(lines[1], "uint8(%d)", &idx)
		unq := func(l string) []byte {
			s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(l, "[]byte("), ")"))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			return []byte(s)
		}
		secret, stream := unq(lines[2]), unq(lines[3])
		id, secret := fuzzSuite(idx, secret)
		o, _ := NewOpener(id, secret)
		var h HandshakeReader
		records := 0
		for len(stream) > 0 {
			n, err := RecordLen(stream)
			if err != nil || n > len(stream) {
				t.Fatalf("%s: record %d: %v", name, records, err)
			}
			content, ct, err := o.Open(stream[:n])
			if err != nil {
				t.Fatalf("%s: record %d: %v", name, records, err)
			}
			if ku, _ := h.Record(ct, content); ku != NoKeyUpdate {
				o.Update()
			}
			stream = stream[n:]
			records++
		}
		if records < 2 {
			t.Fatalf("%s: only %d records", name, records)
		}
	}
}
