package tls12

import (
	"errors"
	"testing"
)

func TestParseAlert(t *testing.T) {
	for _, c := range []struct {
		name    string
		content []byte
		want    error
	}{
		{"close_notify warning", []byte{1, 0}, ErrCloseNotify},
		{"close_notify fatal", []byte{2, 0}, ErrCloseNotify},
		{"user_canceled warning ignored", []byte{1, 90}, nil},
		{"no_renegotiation warning ignored", []byte{1, 100}, nil},
		{"fatal handshake_failure", []byte{2, 40}, AlertError(40)},
		{"fatal bad_record_mac", []byte{2, 20}, AlertError(20)},
		{"unknown level", []byte{3, 40}, ErrDecode},
		{"short", []byte{2}, ErrDecode},
		{"long", []byte{2, 40, 0}, ErrDecode},
	} {
		if err := ParseAlert(c.content); err != c.want {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	if !errors.Is(AlertError(40), ErrAlert) {
		t.Error("AlertError is not ErrAlert")
	}
}

func TestAlertFor(t *testing.T) {
	for _, c := range []struct {
		err  error
		want uint8
	}{
		{ErrCloseNotify, AlertCloseNotify},
		{ErrRenegotiation, AlertNoRenegotiation},
		{ErrBadRecordMAC, AlertBadRecordMAC},
		{ErrRecordOverflow, AlertRecordOverflow},
		{ErrUnexpectedMessage, AlertUnexpectedMessage},
		{ErrProtocolVersion, AlertProtocolVersion},
		{ErrDecode, AlertDecodeError},
		{ErrSeqExhausted, AlertInternalError},
		{ErrRecordLength, AlertInternalError},
		{errors.New("other"), AlertInternalError},
		{wrap{ErrRenegotiation}, AlertNoRenegotiation},
	} {
		if got := AlertFor(c.err); got != c.want {
			t.Errorf("%v: %d, want %d", c.err, got, c.want)
		}
	}
}

type wrap struct{ error }

func (w wrap) Unwrap() error { return w.error }

// TestRenegotiationAnswer: a ClientHello after the handshake is answered by
// a warning-level no_renegotiation (RFC 5246 §7.2.2), which the peer's
// Opener reads as a warning ParseAlert ignores; close_notify is also a
// warning, fatal alerts are fatal.
func TestRenegotiationAnswer(t *testing.T) {
	for _, ts := range testSuites {
		s, o := newPair(t, ts.id, 1)
		hello := rawRecord(s, 1, TypeHandshake, 0x0303, []byte{1, 0, 0, 0}, -1)
		_, _, err := o.Open(hello)
		if err != ErrRenegotiation {
			t.Fatalf("%s: %v", ts.name, err)
		}
		for _, c := range []struct {
			desc, level uint8
		}{{AlertFor(err), 1}, {AlertCloseNotify, 1}, {AlertUserCanceled, 1}, {AlertBadRecordMAC, 2}, {AlertHandshakeFailure, 2}} {
			s2, o2 := newPair(t, ts.id, 1)
			rec, err := s2.SealAlert(nil, c.desc)
			if err != nil {
				t.Fatal(err)
			}
			content, ct, err := o2.Open(rec)
			if err != nil || ct != TypeAlert || content[0] != c.level || content[1] != c.desc {
				t.Fatalf("%s: alert %d: %v %d % x", ts.name, c.desc, err, ct, content)
			}
		}
	}
}

func TestHelloRandom(t *testing.T) {
	random := make([]byte, RandomLen)
	for i := range random {
		random[i] = byte(i + 1)
	}
	hello := func(recVer byte, typ byte, bodyLen int) []byte {
		body := append([]byte{typ, 0, byte(bodyLen >> 8), byte(bodyLen), 3, 3}, random...)
		body = append(body, make([]byte, bodyLen-34)...)
		return append([]byte{22, 3, recVer, byte(len(body) >> 8), byte(len(body))}, body...)
	}
	for _, c := range []struct {
		name string
		rec  []byte
		typ  uint8
		err  error
	}{
		{"ClientHello", hello(1, 1, 200), 1, nil},
		{"ServerHello", hello(3, 2, 70), 2, nil},
		{"shortest hello", hello(3, 2, 34), 2, nil},
		{"message length too short", hello(3, 2, 34)[:42], 0, ErrNotHello},
		{"Certificate", hello(3, 11, 70), 0, ErrNotHello},
		{"application data record", append([]byte{23}, hello(3, 1, 70)[1:]...), 0, ErrNotHello},
		{"SSLv2 record", append([]byte{0x80, 0x2e}, make([]byte, 60)...), 0, ErrNotHello},
	} {
		typ, r, err := HelloRandom(c.rec)
		if typ != c.typ || err != c.err || (err == nil && string(r) != string(random)) {
			t.Errorf("%s: %d, %x, %v", c.name, typ, r, err)
		}
	}
	// A hello fragmented into a record too short to hold the random.
	frag := hello(3, 1, 100)
	frag = append([]byte{22, 3, 3, 0, 20}, frag[5:25]...)
	if _, _, err := HelloRandom(frag); err != ErrNotHello {
		t.Errorf("fragment: %v", err)
	}
}
