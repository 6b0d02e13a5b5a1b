package mux

import (
	"bytes"
	"testing"
)

// FuzzParser parses arbitrary input whole and in chunks of chunk%64+1 bytes:
// the event contract must hold (the collector checks it), both runs must give
// the same frames and the same error, and every control frame the Parser
// accepts must decode with its Parse* function and re-encode to its bytes.
func FuzzParser(f *testing.F) {
	ping := [8]byte{'p', 'i', 'n', 'g', 0, 0, 0, 1}
	// A tunnel's opening: SETTINGS, OPEN with first data, DATA, window credit.
	f.Add(cat(AppendSettings(nil, DefaultSettings()), AppendOpen(nil, 1, KindTCP, false, []byte("salt")),
		AppendData(nil, 1, false, []byte("chunk")), AppendWindow(nil, 0, 65536)), uint8(0))
	// Every control type, split byte by byte.
	f.Add(cat(AppendReset(nil, 3, ResetRefused), AppendPing(nil, ping, true), AppendGoAway(nil, 5, GoAwayNoError),
		AppendWindow(nil, 7, 1)), uint8(0))
	// Half-close: an empty DATA with FIN, an OPEN with FIN and no data.
	f.Add(cat(AppendData(nil, 9, true, nil), AppendOpen(nil, 11, KindUDP, true, nil)), uint8(3))
	// An unknown type with a 256-byte payload, then DATA.
	f.Add(cat(hdr(MaxControl, 0x99, 0, 0), make([]byte, MaxControl), AppendData(nil, 1, false, []byte("after"))), uint8(17))
	// Errors: R bit, too large, wrong stream, bad length.
	f.Add(hdr(0, TypeData, 0, 1<<31|1), uint8(0))
	f.Add(hdr(DefaultMaxFrame+1, TypeData, 0, 1), uint8(0))
	f.Add(hdr(8, TypePing, 0, 1), uint8(0))
	f.Add(hdr(5, TypeSettings, 0, 0), uint8(0))
	// Settings with values out of range (the Parser passes them; ParseSettings refuses).
	f.Add(cat(hdr(12, TypeSettings, 0, 0), pairs(SettingMaxFrame, 1, SettingStreamWindow, 0)), uint8(5))
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		orig := bytes.Clone(in)
		a, errA := parseChunks(0, in, whole)
		b, errB := parseChunks(0, in, func() int { return int(chunk%64) + 1 })
		if !bytes.Equal(in, orig) {
			t.Fatal("the parser modified its input")
		}
		// Both runs stop at the same error (a truncated last frame is one too).
		if errA != nil && errB != nil && errA.Error() != errB.Error() || (errA == nil) != (errB == nil) {
			t.Fatalf("whole: %v, chunked: %v", errA, errB)
		}
		if !equalFrames(a, b) {
			t.Fatalf("whole gave %d frames, chunked %d", len(a), len(b))
		}
		for _, fr := range a {
			checkControl(t, fr)
		}
	})
}

func checkControl(t *testing.T, fr frame) {
	var re []byte
	switch fr.H.Type {
	case TypeSettings:
		s, err := ParseSettings(fr.Payload)
		if err != nil {
			return
		}
		if s2, err := ParseSettings(AppendSettings(nil, s)[HeaderLen:]); err != nil || s2 != s {
			t.Fatalf("settings %+v re-encode: %+v %v", s, s2, err)
		}
		return
	case TypeReset:
		c, err := ParseReset(fr.Payload)
		if err != nil {
			t.Fatalf("reset of valid length: %v", err)
		}
		re = AppendReset(nil, fr.H.Stream, c)
	case TypeWindow:
		inc, err := ParseWindow(fr.Payload)
		if err != nil {
			return
		}
		re = AppendWindow(nil, fr.H.Stream, inc)
	case TypePing:
		id, err := ParsePing(fr.Payload)
		if err != nil {
			t.Fatalf("ping of valid length: %v", err)
		}
		re = AppendPing(nil, id, fr.H.Flags&FlagACK != 0)
	case TypeGoAway:
		last, c, err := ParseGoAway(fr.Payload)
		if err != nil {
			t.Fatalf("goaway of valid length: %v", err)
		}
		if fr.Payload[0]&0x80 != 0 {
			return // the ignored R bit does not survive a re-encode
		}
		re = AppendGoAway(nil, last, c)
	default:
		return
	}
	if fr.H.Flags&^FlagACK != 0 || fr.H.Type != TypePing && fr.H.Flags != 0 {
		return // undefined flags are not re-encoded
	}
	if !bytes.Equal(re[HeaderLen:], fr.Payload) {
		t.Fatalf("%v re-encodes to %x, was %x", fr.H.Type, re[HeaderLen:], fr.Payload)
	}
}
