package mux

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"testing"
)

func pairs(kv ...uint32) []byte {
	var b []byte
	for i := 0; i < len(kv); i += 2 {
		b = binary.BigEndian.AppendUint16(b, uint16(kv[i]))
		b = binary.BigEndian.AppendUint32(b, kv[i+1])
	}
	return b
}

func TestParseSettings(t *testing.T) {
	def := DefaultSettings()
	with := func(f func(*Settings)) Settings { s := def; f(&s); return s }
	tests := []struct {
		name string
		p    []byte
		want Settings
		err  error
	}{
		{name: "empty gives defaults", p: nil, want: def},
		{name: "round trip", p: AppendSettings(nil, Settings{2, 0, 1, MaxWindow, MaxLength})[HeaderLen:], want: Settings{2, 0, 1, MaxWindow, MaxLength}},
		{name: "unknown id ignored", p: pairs(0x99, 7, 0, 0), want: def},
		{name: "repeated id: last wins", p: pairs(SettingStreamWindow, 5, SettingStreamWindow, 6), want: with(func(s *Settings) { s.StreamWindow = 6 })},
		{name: "max streams 0 (a client)", p: pairs(SettingMaxStreams, 0), want: with(func(s *Settings) { s.MaxStreams = 0 })},
		{name: "max frame at minimum", p: pairs(SettingMaxFrame, MinMaxFrame), want: with(func(s *Settings) { s.MaxFrame = MinMaxFrame })},
		{name: "16 pairs", p: pairs(9, 0, 9, 0, 9, 0, 9, 0, 9, 0, 9, 0, 9, 0, 9, 0, 9, 0, 9, 0, 9, 0, 9, 0, 9, 0, 9, 0, 9, 0, 9, 0), want: def},
		{name: "17 pairs", p: pairs(9, 0, 9, 0, 9, 0, 9, 0, 9, 0, 9, 0, 9, 0, 9, 0, 9, 0, 9, 0, 9, 0, 9, 0, 9, 0, 9, 0, 9, 0, 9, 0, 9, 0), err: ErrFrameLength},
		{name: "partial pair", p: pairs(SettingVersion, 1)[:5], err: ErrFrameLength},
		{name: "version 0", p: pairs(SettingVersion, 0), err: ErrBadSettings},
		{name: "max streams 2^31", p: pairs(SettingMaxStreams, 1<<31), err: ErrBadSettings},
		{name: "stream window 0", p: pairs(SettingStreamWindow, 0), err: ErrBadSettings},
		{name: "stream window 2^31", p: pairs(SettingStreamWindow, 1<<31), err: ErrBadSettings},
		{name: "session window 0", p: pairs(SettingSessionWindow, 0), err: ErrBadSettings},
		{name: "session window 2^31", p: pairs(SettingSessionWindow, 1<<31), err: ErrBadSettings},
		{name: "max frame below 16384", p: pairs(SettingMaxFrame, MinMaxFrame-1), err: ErrBadSettings},
		{name: "max frame 2^24", p: pairs(SettingMaxFrame, MaxLength+1), err: ErrBadSettings},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSettings(tc.p)
			if tc.err == nil && err != nil || tc.err != nil && !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if err == nil && got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			if err != nil && CloseCode(err) != CloseProtocol {
				t.Fatalf("close code %d, want 1002", CloseCode(err))
			}
		})
	}
}

func TestParseControl(t *testing.T) {
	u32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	t.Run("window", func(t *testing.T) {
		for _, tc := range []struct {
			p    []byte
			want uint32
			err  error
		}{
			{u32(1), 1, nil}, {u32(MaxWindow), MaxWindow, nil}, {u32(0), 0, ErrBadWindow},
			{u32(MaxWindow + 1), 0, ErrBadWindow}, {u32(0xffffffff), 0, ErrBadWindow},
			{u32(1)[:3], 0, ErrFrameLength}, {append(u32(1), 0), 0, ErrFrameLength},
		} {
			got, err := ParseWindow(tc.p)
			if got != tc.want || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Errorf("ParseWindow(%x) = %d, %v; want %d, %v", tc.p, got, err, tc.want, tc.err)
			}
		}
	})
	t.Run("reset", func(t *testing.T) {
		for c := ResetCode(0); c < 10; c++ {
			got, err := ParseReset(u32(uint32(c)))
			if err != nil || got != c || got.Known() != (c >= 1 && c <= 7) {
				t.Errorf("ParseReset(%d) = %v, %v (known %v)", c, got, err, got.Known())
			}
		}
		if _, err := ParseReset(u32(1)[:2]); !errors.Is(err, ErrFrameLength) {
			t.Errorf("short reset: %v", err)
		}
	})
	t.Run("ping", func(t *testing.T) {
		id, err := ParsePing([]byte("12345678"))
		if err != nil || string(id[:]) != "12345678" {
			t.Errorf("ParsePing = %q, %v", id, err)
		}
		if _, err := ParsePing([]byte("1234567")); !errors.Is(err, ErrFrameLength) {
			t.Errorf("short ping: %v", err)
		}
	})
	t.Run("goaway", func(t *testing.T) {
		last, c, err := ParseGoAway(append(u32(1<<31|42), u32(9)...))
		if err != nil || last != 42 || c != 9 {
			t.Errorf("ParseGoAway = %d, %v, %v; want 42 (R bit ignored), 9", last, c, err)
		}
		if _, _, err := ParseGoAway(u32(1)); !errors.Is(err, ErrFrameLength) {
			t.Errorf("short goaway: %v", err)
		}
	})
}

func TestAddWindow(t *testing.T) {
	if w, err := AddWindow(DefaultStreamWindow, MaxWindow-DefaultStreamWindow); err != nil || w != MaxWindow {
		t.Fatalf("to the maximum: %d %v", w, err)
	}
	if w, err := AddWindow(1, MaxWindow); !errors.Is(err, ErrWindowOverflow) || w != 1 {
		t.Fatalf("past the maximum: %d %v", w, err)
	}
	if _, err := AddWindow(MaxWindow, 0xffffffff); !errors.Is(err, ErrWindowOverflow) {
		t.Fatalf("uint32 wrap not caught: %v", err)
	}
}

func TestCloseCode(t *testing.T) {
	var p Parser
	_, _, parserErr := p.Next(hdr(MaxControl+1, TypeWindow, 0, 0))
	tests := []struct {
		err  error
		want uint16
	}{
		{nil, 1000},
		{ErrProtocol, 1002}, {ErrReservedBit, 1002}, {ErrStreamID, 1002}, {ErrFrameLength, 1002},
		{ErrBadSettings, 1002}, {ErrBadWindow, 1002}, {ErrWindowOverflow, 1002}, {ErrSettingsOrder, 1002},
		{ErrStreamOrder, 1002}, {ErrUnknownStream, 1002},
		{ErrFrameTooLarge, 1009}, {parserErr, 1009},
		{ErrSessionWindow, 1008}, {ErrControlBudget, 1008},
		{fmt.Errorf("tunnel: %w", ErrBadWindow), 1002},
		{io.EOF, 1011}, {errors.New("other"), 1011},
	}
	for _, tc := range tests {
		if got := CloseCode(tc.err); got != tc.want {
			t.Errorf("CloseCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

func TestAppendHeader(t *testing.T) {
	b := make([]byte, HeaderLen)
	PutHeader(b, Header{Length: MaxLength, Type: 0x42, Flags: 0x81, Stream: 1<<31 | 5})
	if want := hdr(MaxLength, 0x42, 0x81, 5); string(b) != string(want) {
		t.Fatalf("PutHeader = %x, want %x (R bit cleared)", b, want)
	}
	d := AppendData([]byte("pre"), 3, true, []byte("xyz"))
	h := append(AppendDataHeader([]byte("pre"), 3, 3, true), "xyz"...)
	if string(d) != string(h) || string(d[:3]) != "pre" {
		t.Fatalf("AppendData %x != AppendDataHeader+payload %x", d, h)
	}
	for name, f := range map[string]func(){
		"PutHeader":                 func() { PutHeader(b, Header{Length: MaxLength + 1}) },
		"AppendDataHeader":          func() { AppendDataHeader(nil, 1, MaxLength+1, false) },
		"AppendDataHeader negative": func() { AppendDataHeader(nil, 1, -1, false) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic for a length that does not fit 24 bits", name)
				}
			}()
			f()
		}()
	}
}

func TestStrings(t *testing.T) {
	for v, want := range map[fmt.Stringer]string{
		TypeGoAway: "GOAWAY", Type(9): "TYPE(9)", KindUDP: "udp", Kind(0): "kind(0)",
		ResetFlowControl: "FLOW_CONTROL", ResetCode(0): "RESET(0)", GoAwayNoError: "NO_ERROR", GoAwayCode(5): "GOAWAY(5)",
	} {
		if got := v.String(); got != want {
			t.Errorf("String() = %q, want %q", got, want)
		}
	}
}
