package tls13

import (
	"errors"
	"fmt"
	"testing"
)

type hsRecord struct {
	ct      uint8
	content []byte
}

func TestHandshakeReaderTable(t *testing.T) {
	ku := func(req byte) []byte { return []byte{24, 0, 0, 1, req} }
	hs := func(b ...byte) hsRecord { return hsRecord{TypeHandshake, b} }
	data := hsRecord{TypeApplicationData, []byte("x")}
	cases := []struct {
		name    string
		records []hsRecord
		want    []KeyUpdate // one per record, up to the error
		err     error
	}{
		{"not requested", []hsRecord{hs(ku(0)...)}, []KeyUpdate{KeyUpdateNotRequested}, nil},
		{"requested", []hsRecord{hs(ku(1)...)}, []KeyUpdate{KeyUpdateRequested}, nil},
		{"data passes", []hsRecord{data, data}, []KeyUpdate{NoKeyUpdate, NoKeyUpdate}, nil},
		{"two in a row", []hsRecord{hs(ku(1)...), data, hs(ku(0)...)}, []KeyUpdate{KeyUpdateRequested, NoKeyUpdate, KeyUpdateNotRequested}, nil},
		{"split 1+4", []hsRecord{hs(24), hs(0, 0, 1, 1)}, []KeyUpdate{NoKeyUpdate, KeyUpdateRequested}, nil},
		{"split 4+1", []hsRecord{hs(24, 0, 0, 1), hs(0)}, []KeyUpdate{NoKeyUpdate, KeyUpdateNotRequested}, nil},
		{"split 1+1+1+1+1", []hsRecord{hs(24), hs(0), hs(0), hs(1), hs(1)}, []KeyUpdate{0, 0, 0, 0, KeyUpdateRequested}, nil},
		{"split 2+3 then data", []hsRecord{hs(24, 0), hs(0, 1, 0), data}, []KeyUpdate{0, KeyUpdateNotRequested, 0}, nil},
		{"bad request_update", []hsRecord{hs(ku(2)...)}, nil, ErrIllegalParameter},
		{"bad request_update 0xff split", []hsRecord{hs(24, 0, 0), hs(1, 0xff)}, []KeyUpdate{0}, ErrIllegalParameter},
		{"length 0", []hsRecord{hs(24, 0, 0, 0)}, nil, ErrDecode},
		{"length 2", []hsRecord{hs(24, 0, 0, 2, 0, 0)}, nil, ErrDecode},
		{"length 2^16+1", []hsRecord{hs(24, 1, 0, 1, 0)}, nil, ErrDecode},
		{"bytes after KeyUpdate", []hsRecord{hs(24, 0, 0, 1, 0, 24)}, nil, ErrUnexpectedMessage},
		{"two KeyUpdates in one record", []hsRecord{hs(24, 0, 0, 1, 0, 24, 0, 0, 1, 0)}, nil, ErrUnexpectedMessage},
		{"interleaved data", []hsRecord{hs(24, 0), data}, []KeyUpdate{0}, ErrUnexpectedMessage},
		{"interleaved alert", []hsRecord{hs(24, 0, 0, 1), {TypeAlert, []byte{1, 0}}}, []KeyUpdate{0}, ErrUnexpectedMessage},
		{"NewSessionTicket", []hsRecord{hs(4, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0)}, nil, ErrUnexpectedMessage},
		{"CertificateRequest", []hsRecord{hs(13, 0, 0, 0)}, nil, ErrUnexpectedMessage},
		{"ClientHello (renegotiation)", []hsRecord{hs(1, 0, 0, 0)}, nil, ErrUnexpectedMessage},
		{"Finished", []hsRecord{hs(20, 0, 0, 32)}, nil, ErrUnexpectedMessage},
		{"HelloRequest", []hsRecord{hs(0, 0, 0, 0)}, nil, ErrUnexpectedMessage},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var h HandshakeReader
			for i, r := range c.records {
				got, err := h.Record(r.ct, r.content)
				if err != nil {
					if !errors.Is(err, c.err) || i != len(c.want) {
						t.Fatalf("record %d: err %v, want %v at record %d", i, err, c.err, len(c.want))
					}
					return
				}
				if got != c.want[i] {
					t.Fatalf("record %d: %v, want %v", i, got, c.want[i])
				}
			}
			if c.err != nil {
				t.Fatalf("no error, want %v", c.err)
			}
			if h.Pending() {
				t.Fatal("bytes left pending")
			}
		})
	}
}

func TestHandshakeReaderEmptyRecords(t *testing.T) {
	var h HandshakeReader
	ku := []byte{24, 0, 0, 1, 0}
	for round := 0; round < 3; round++ {
		for i := 0; i < MaxEmptyRecords; i++ {
			var err error
			switch i % 3 {
			case 0:
				_, err = h.Record(TypeApplicationData, nil)
			case 1:
				_, err = h.Record(TypeHandshake, ku)
			case 2:
				_, err = h.Record(TypeAlert, []byte{1, AlertUserCanceled})
			}
			if err != nil {
				t.Fatalf("round %d record %d: %v", round, i, err)
			}
		}
		// Data resets the count.
		if _, err := h.Record(TypeApplicationData, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < MaxEmptyRecords; i++ {
		h.Record(TypeApplicationData, nil)
	}
	if _, err := h.Record(TypeHandshake, ku); err != ErrTooManyEmpty || AlertFor(err) != AlertUnexpectedMessage {
		t.Fatalf("record %d without data: %v", MaxEmptyRecords+1, err)
	}
}

func TestClear(t *testing.T) {
	s, o := newPair(t, testSuites[0].id)
	r, _ := s.Seal(nil, TypeApplicationData, []byte("x"))
	s.Clear()
	o.Clear()
	if s.secret != [maxSecret]byte{} || o.secret != [maxSecret]byte{} || s.iv != [ivLen]byte{} {
		t.Fatal("secret or iv not zeroed")
	}
	if _, err := s.Seal(nil, TypeApplicationData, []byte("x")); err != ErrClosed {
		t.Fatalf("Seal after Clear: %v", err)
	}
	if _, _, err := o.Open(r); err != ErrClosed {
		t.Fatalf("Open after Clear: %v", err)
	}
	if s.Update() != ErrClosed || o.Update() != ErrClosed {
		t.Fatal("Update after Clear")
	}
}

func TestParseAlert(t *testing.T) {
	cases := []struct {
		in   []byte
		want error
	}{
		{[]byte{1, 0}, ErrCloseNotify},
		{[]byte{2, 0}, ErrCloseNotify}, // level is ignored (RFC 8446 §6)
		{[]byte{1, 90}, nil},           // user_canceled
		{[]byte{2, 20}, AlertError(20)},
		{[]byte{2, 255}, AlertError(255)}, // unknown: an error alert
		{[]byte{1, 112}, AlertError(112)},
		{[]byte{1}, ErrDecode},
		{[]byte{1, 0, 0}, ErrDecode},
	}
	for _, c := range cases {
		err := ParseAlert(c.in)
		if err != c.want {
			t.Errorf("ParseAlert(% x) = %v, want %v", c.in, err, c.want)
		}
	}
	var ae AlertError
	if err := ParseAlert([]byte{2, 42}); !errors.Is(err, ErrAlert) || !errors.As(err, &ae) || ae != 42 {
		t.Fatalf("alert 42: %v", err)
	}
}

func TestAlertFor(t *testing.T) {
	cases := []struct {
		err  error
		want uint8
	}{
		{ErrBadRecordMAC, 20},
		{ErrRecordOverflow, 22},
		{ErrUnexpectedMessage, 10},
		{ErrDecode, 50},
		{ErrIllegalParameter, 47},
		{ErrCloseNotify, 0},
		{ErrSeqExhausted, 80},
		{ErrTooManyEmpty, 10},
		{ErrRecordLength, 80},
		{fmt.Errorf("session: %w", ErrBadRecordMAC), 20},
		{errors.New("other"), 80},
	}
	for _, c := range cases {
		if got := AlertFor(c.err); got != c.want {
			t.Errorf("AlertFor(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}

func TestSealAlertAndKeyUpdate(t *testing.T) {
	for _, ts := range testSuites {
		s, o := newPair(t, ts.id)
		var h HandshakeReader
		rec, _ := s.SealAlert(nil, AlertUserCanceled)
		rec, _ = s.SealKeyUpdate(rec, true)
		rec, _ = s.Seal(rec, TypeApplicationData, []byte("after update"))
		rec, _ = s.SealAlert(rec, AlertCloseNotify)
		var got []string
		for len(rec) > 0 {
			n, err := RecordLen(rec)
			if err != nil {
				t.Fatal(err)
			}
			content, ct, err := o.Open(rec[:n])
			if err != nil {
				t.Fatalf("%s: %v", ts.name, err)
			}
			rec = rec[n:]
			ku, err := h.Record(ct, content)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case ku != NoKeyUpdate:
				got = append(got, fmt.Sprint("ku", ku))
				if err := o.Update(); err != nil {
					t.Fatal(err)
				}
			case ct == TypeAlert:
				got = append(got, fmt.Sprintf("alert %d/%d %v", content[0], content[1], ParseAlert(content)))
			default:
				got = append(got, string(content))
			}
		}
		want := fmt.Sprint([]string{"alert 1/90 <nil>", fmt.Sprint("ku", KeyUpdateRequested), "after update", "alert 1/0 " + ErrCloseNotify.Error()})
		if fmt.Sprint(got) != want {
			t.Fatalf("%s: got %v\nwant %v", ts.name, got, want)
		}
		fatal, _ := s.SealAlert(nil, AlertBadRecordMAC)
		content, _, _ := o.Open(fatal)
		if content[0] != 2 || content[1] != 20 {
			t.Fatalf("fatal alert level/desc % x", content)
		}
	}
}
