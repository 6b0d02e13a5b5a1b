package tls12

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

// openErrors are the only errors RecordLen and Open may return on peer input.
var openErrors = []error{ErrBadRecordMAC, ErrRecordOverflow, ErrUnexpectedMessage,
	ErrRenegotiation, ErrProtocolVersion, ErrDecode, ErrRecordLength}

func isOpenError(err error) bool {
	for _, e := range openErrors {
		if err == e {
			return true
		}
	}
	return false
}

// fuzzKeys picks a suite by index; key and iv fall back to fixed ones
// unless both have the suite's lengths.
func fuzzKeys(idx uint8, key, iv []byte) (uint16, []byte, []byte) {
	id := testSuites[int(idx)%len(testSuites)].id
	si, _ := lookupSuite(id)
	if len(key) != si.keyLen || len(iv) != si.ivLen {
		key, iv, _, _ = testKeys(id, 1)
	}
	return id, key, iv
}

// FuzzOpen feeds a stream of records to an Opener (with ParseAlert behind
// it, as the relay does). It must never panic, must fail only with the
// documented sentinels, and may return content only for a record that is
// exactly what a key holder's Sealer makes at that sequence number.
func FuzzOpen(f *testing.F) {
	for i, ts := range testSuites {
		s, _ := newPair(f, ts.id, 1)
		var stream []byte
		stream, _ = s.Seal(stream, TypeApplicationData, []byte("hello"))
		stream, _ = s.Seal(stream, TypeApplicationData, nil)
		stream, _ = s.SealAlert(stream, AlertUserCanceled)
		stream, _ = s.SealAlert(stream, AlertCloseNotify)
		// A valid stream from seq 1: data, empty data, warning, close_notify.
		f.Add(uint8(i), []byte(nil), []byte(nil), uint64(1), stream)
		s, _ = newPair(f, ts.id, 1)
		// Renegotiation: an encrypted ClientHello at seq 1.
		f.Add(uint8(i), []byte(nil), []byte(nil), uint64(1),
			rawRecord(s, 1, TypeHandshake, 0x0303, []byte{1, 0, 0, 40, 3, 3}, -1))
		// Truncated record, oversized header, CCS, wrong version.
		f.Add(uint8(i), []byte(nil), []byte(nil), uint64(1), stream[:20])
		f.Add(uint8(i), []byte(nil), []byte(nil), uint64(1), []byte{23, 3, 3, 0x48, 0x01})
		f.Add(uint8(i), []byte(nil), []byte(nil), uint64(1), []byte{20, 3, 3, 0, 1, 1})
		f.Add(uint8(i), []byte(nil), []byte(nil), uint64(1), []byte{23, 3, 1, 0, 0})
	}
	// A seq one short of exhaustion: one record opens, the next cannot.
	s, _ := newPair(f, testSuites[0].id, 1<<64-2)
	last, _ := s.Seal(nil, TypeApplicationData, []byte("last"))
	f.Add(uint8(0), []byte(nil), []byte(nil), uint64(1<<64-2), append(last, last...))
	f.Fuzz(func(t *testing.T, suiteIdx uint8, key, iv []byte, seq uint64, stream []byte) {
		id, key, iv := fuzzKeys(suiteIdx, key, iv)
		o, err := NewOpener(id, key, iv, seq)
		if err != nil {
			t.Fatal(err)
		}
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
			seq := o.Seq()
			mirror, _ := NewSealer(id, key, iv, seq)
			content, ct, err := o.Open(rec)
			if err != nil {
				if !(isOpenError(err) || err == ErrSeqExhausted) || content != nil {
					t.Fatalf("Open: %v with %d bytes", err, len(content))
				}
				return
			}
			// The record must be exactly what a key holder seals at this
			// seq (with the record's own GCM explicit nonce).
			k := mirror.keyState
			ex := k.suite.explicitLen
			k.seq = seq
			k.makeNonce(orig[RecordHeaderLen : RecordHeaderLen+ex])
			want := k.aead.Live().Seal(bytes.Clone(orig[:RecordHeaderLen+ex]), k.nonce[:], content, k.makeAAD(ct, len(content)))
			if !bytes.Equal(want, orig) {
				t.Fatalf("Open returned content for a record that is not its sealing")
			}
			if ct == TypeAlert {
				err := ParseAlert(content)
				if err != nil && err != ErrCloseNotify && err != ErrDecode && !errors.Is(err, ErrAlert) {
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
	f.Add(uint8(2), TypeApplicationData, []byte("explicit nonce"), uint16(6))                 // flip GCM explicit nonce
	f.Add(uint8(4), TypeAlert, []byte{1, 0}, uint16(100))                                     // close_notify, flip tag
	f.Add(uint8(5), TypeHandshake, []byte{1, 0, 0, 0}, uint16(1))                             // ErrBadContent: no handshake
	f.Add(uint8(3), TypeApplicationData, bytes.Repeat([]byte{0}, 300), uint16(2))             // zeros payload, flip version
	f.Add(uint8(0), TypeApplicationData, bytes.Repeat([]byte{0xff}, MaxPlaintext), uint16(7)) // full record
	f.Fuzz(func(t *testing.T, suiteIdx uint8, ct uint8, payload []byte, flip uint16) {
		if len(payload) > MaxPlaintext {
			payload = payload[:MaxPlaintext]
		}
		id, key, iv := fuzzKeys(suiteIdx, nil, nil)
		s, _ := NewSealer(id, key, iv, 1)
		o, _ := NewOpener(id, key, iv, 1)
		rec, err := s.Seal(make([]byte, 0, 3), ct, payload)
		if err != nil {
			if err != ErrBadContent || len(rec) != 0 || s.Seq() != 1 {
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
		o2, _ := NewOpener(id, key, iv, 1)
		if _, _, err := o2.Open(flipped); err == nil || !isOpenError(err) {
			t.Fatalf("flipped record: %v", err)
		}
	})
}

// writeSeeds stores the first records captured from a real peer, with the
// client's key and IV, as FuzzOpen seeds when TLS12_WRITE_SEEDS=1.
func writeSeeds(t *testing.T, ss *session, peer string, idx int) {
	if os.Getenv("TLS12_WRITE_SEEDS") != "1" || len(ss.captured) == 0 {
		return
	}
	var stream []byte
	for _, r := range ss.captured {
		if len(stream)+len(r) > 4096 {
			break // keep the corpus small
		}
		stream = append(stream, r...)
	}
	if len(stream) == 0 {
		return
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzOpen")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(dir, "captured-"+peer+"-"+testSuites[idx].name)
	body := fmt.Sprintf("go test fuzz v1\nuint8(%d)\n[]byte(%+q)\n[]byte(%+q)\nuint64(1)\n[]byte(%+q)\n",
		idx, ss.key, ss.iv, stream)
	if err := os.WriteFile(name, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", name)
}

// TestCapturedSeedsOpen checks that the seeds captured from real peers are
// real positives: every record in them opens at sequence number 1 on.
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
		if len(lines) != 6 {
			t.Fatalf("%s: %d lines", name, len(lines))
		}
		unq := func(line, prefix string) []byte {
			s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(line, prefix+"("), ")"))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			return []byte(s)
		}
		idx, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(lines[1], "uint8("), ")"))
		if err != nil {
			t.Fatal(err)
		}
		key, iv, stream := unq(lines[2], "[]byte"), unq(lines[3], "[]byte"), unq(lines[5], "[]byte")
		o, err := NewOpener(testSuites[idx].id, key, iv, 1)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		records := 0
		for len(stream) > 0 {
			n, err := RecordLen(stream)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if _, _, err := o.Open(stream[:n]); err != nil {
				t.Fatalf("%s: record %d: %v", name, records, err)
			}
			stream = stream[n:]
			records++
		}
		if records == 0 {
			t.Fatalf("%s: no records", name)
		}
	}
}
