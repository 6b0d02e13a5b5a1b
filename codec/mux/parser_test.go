package mux

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
	"unsafe"
)

// hdr builds a raw header; stream may carry the R bit (1<<31).
func hdr(length uint32, t Type, flags uint8, stream uint32) []byte {
	return []byte{byte(length >> 16), byte(length >> 8), byte(length), byte(t), flags,
		byte(stream >> 24), byte(stream >> 16), byte(stream >> 8), byte(stream)}
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestParserFrames(t *testing.T) {
	ping := [8]byte{1, 2, 3, 4, 5, 6, 7, 8}
	k64 := bytes.Repeat([]byte{0xab}, DefaultMaxFrame)
	k16 := bytes.Repeat([]byte{0xcd}, MinMaxFrame)
	unknown := cat(hdr(MaxControl, 0x7f, 0xff, 9), bytes.Repeat([]byte{1}, MaxControl))
	tests := []struct {
		name     string
		maxFrame uint32
		in       []byte
		want     []frame
		err      error // nil: no error; else errors.Is target
	}{
		{name: "settings", in: AppendSettings(nil, DefaultSettings()),
			want: []frame{{H: Header{Length: 30, Type: TypeSettings}, Payload: AppendSettings(nil, DefaultSettings())[9:]}}},
		{name: "settings empty", in: hdr(0, TypeSettings, 0, 0),
			want: []frame{{H: Header{Type: TypeSettings}, Payload: []byte{}}}},
		{name: "settings 16 pairs", in: cat(hdr(96, TypeSettings, 0, 0), make([]byte, 96)),
			want: []frame{{H: Header{Length: 96, Type: TypeSettings}, Payload: make([]byte, 96)}}},
		{name: "open tcp empty", in: AppendOpen(nil, 1, KindTCP, false, nil),
			want: []frame{{H: Header{Length: 1, Type: TypeOpen, Stream: 1}, Open: KindTCP, Payload: []byte{}}}},
		{name: "open udp data fin", in: AppendOpen(nil, 3, KindUDP, true, []byte("pkt")),
			want: []frame{{H: Header{Length: 4, Type: TypeOpen, Flags: FlagFIN, Stream: 3}, Open: KindUDP, Payload: []byte("pkt")}}},
		{name: "open unknown kind passed on", in: AppendOpen(nil, 5, Kind(9), false, []byte("x")),
			want: []frame{{H: Header{Length: 2, Type: TypeOpen, Stream: 5}, Open: Kind(9), Payload: []byte("x")}}},
		{name: "data", in: AppendData(nil, 7, false, []byte("hello")),
			want: []frame{{H: Header{Length: 5, Type: TypeData, Stream: 7}, Payload: []byte("hello")}}},
		{name: "data empty fin", in: AppendData(nil, MaxStreamID, true, nil),
			want: []frame{{H: Header{Type: TypeData, Flags: FlagFIN, Stream: MaxStreamID}, Payload: []byte{}}}},
		{name: "data at max frame", in: AppendData(nil, 1, false, k64),
			want: []frame{{H: Header{Length: DefaultMaxFrame, Type: TypeData, Stream: 1}, Payload: k64}}},
		{name: "data at small max frame", maxFrame: MinMaxFrame, in: AppendData(nil, 1, false, k16),
			want: []frame{{H: Header{Length: MinMaxFrame, Type: TypeData, Stream: 1}, Payload: k16}}},
		{name: "reset", in: AppendReset(nil, 2, ResetRefused),
			want: []frame{{H: Header{Length: 4, Type: TypeReset, Stream: 2}, Payload: []byte{0, 0, 0, 2}}}},
		{name: "window session", in: AppendWindow(nil, 0, MaxWindow),
			want: []frame{{H: Header{Length: 4, Type: TypeWindow}, Payload: []byte{0x7f, 0xff, 0xff, 0xff}}}},
		{name: "window stream", in: AppendWindow(nil, 9, 1),
			want: []frame{{H: Header{Length: 4, Type: TypeWindow, Stream: 9}, Payload: []byte{0, 0, 0, 1}}}},
		{name: "ping", in: AppendPing(nil, ping, false),
			want: []frame{{H: Header{Length: 8, Type: TypePing}, Payload: ping[:]}}},
		{name: "ping ack", in: AppendPing(nil, ping, true),
			want: []frame{{H: Header{Length: 8, Type: TypePing, Flags: FlagACK}, Payload: ping[:]}}},
		{name: "goaway", in: AppendGoAway(nil, 11, GoAwayInternal),
			want: []frame{{H: Header{Length: 8, Type: TypeGoAway}, Payload: []byte{0, 0, 0, 11, 0, 0, 0, 2}}}},
		{name: "undefined flags kept, ignored", in: cat(hdr(4, TypeReset, 0xfe, 2), []byte{0, 0, 0, 1}),
			want: []frame{{H: Header{Length: 4, Type: TypeReset, Flags: 0xfe, Stream: 2}, Payload: []byte{0, 0, 0, 1}}}},
		{name: "unknown type skipped", in: cat(unknown, hdr(0, 0xff, 0, 0), AppendData(nil, 1, false, []byte("a"))),
			want: []frame{{H: Header{Length: 1, Type: TypeData, Stream: 1}, Payload: []byte("a")}}},

		{name: "reserved bit data", in: hdr(0, TypeData, 0, 1<<31|1), err: ErrReservedBit},
		{name: "reserved bit settings", in: hdr(0, TypeSettings, 0, 1<<31), err: ErrReservedBit},
		{name: "reserved bit unknown type", in: hdr(0, 0x40, 0, 1<<31), err: ErrReservedBit},
		{name: "data over max frame", in: hdr(DefaultMaxFrame+1, TypeData, 0, 1), err: ErrFrameTooLarge},
		{name: "open over small max frame", maxFrame: MinMaxFrame, in: hdr(MinMaxFrame+1, TypeOpen, 0, 1), err: ErrFrameTooLarge},
		{name: "data at 2^24-1", in: hdr(MaxLength, TypeData, 0, 1), err: ErrFrameTooLarge},
		{name: "ping over max control", in: hdr(MaxControl+1, TypePing, 0, 0), err: ErrFrameTooLarge},
		{name: "unknown over max control", in: hdr(MaxControl+1, 0x33, 0, 0), err: ErrFrameTooLarge},
		{name: "settings on stream", in: hdr(0, TypeSettings, 0, 1), err: ErrStreamID},
		{name: "ping on stream", in: hdr(8, TypePing, 0, 1), err: ErrStreamID},
		{name: "goaway on stream", in: hdr(8, TypeGoAway, 0, 3), err: ErrStreamID},
		{name: "open on stream 0", in: hdr(1, TypeOpen, 0, 0), err: ErrStreamID},
		{name: "data on stream 0", in: hdr(1, TypeData, 0, 0), err: ErrStreamID},
		{name: "reset on stream 0", in: hdr(4, TypeReset, 0, 0), err: ErrStreamID},
		{name: "settings partial pair", in: hdr(5, TypeSettings, 0, 0), err: ErrFrameLength},
		{name: "settings 17 pairs", in: hdr(102, TypeSettings, 0, 0), err: ErrFrameLength},
		{name: "open without kind", in: hdr(0, TypeOpen, 0, 1), err: ErrFrameLength},
		{name: "reset short", in: hdr(3, TypeReset, 0, 1), err: ErrFrameLength},
		{name: "reset long", in: hdr(5, TypeReset, 0, 1), err: ErrFrameLength},
		{name: "window short", in: hdr(3, TypeWindow, 0, 0), err: ErrFrameLength},
		{name: "window long", in: hdr(5, TypeWindow, 0, 1), err: ErrFrameLength},
		{name: "ping short", in: hdr(7, TypePing, 0, 0), err: ErrFrameLength},
		{name: "ping long", in: hdr(9, TypePing, 0, 0), err: ErrFrameLength},
		{name: "goaway short", in: hdr(7, TypeGoAway, 0, 0), err: ErrFrameLength},
		{name: "goaway long", in: hdr(9, TypeGoAway, 0, 0), err: ErrFrameLength},
		{name: "frames before the error are delivered", in: cat(AppendData(nil, 1, true, []byte("ok")), hdr(0, TypePing, 0, 0)),
			want: []frame{{H: Header{Length: 2, Type: TypeData, Flags: FlagFIN, Stream: 1}, Payload: []byte("ok")}}, err: ErrFrameLength},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			orig := bytes.Clone(tc.in)
			for _, split := range []struct {
				name  string
				sizes func() int
			}{{"whole", whole}, {"bytewise", func() int { return 1 }}} {
				got, err := parseChunks(tc.maxFrame, tc.in, split.sizes)
				if tc.err == nil && err != nil || tc.err != nil && !errors.Is(err, tc.err) {
					t.Fatalf("%s: err %v, want %v", split.name, err, tc.err)
				}
				if !equalFrames(got, tc.want) {
					t.Fatalf("%s: frames\n%v\nwant\n%v", split.name, got, tc.want)
				}
			}
			if !bytes.Equal(tc.in, orig) {
				t.Fatal("the parser modified its input")
			}
		})
	}
}

func TestParserErrorSticky(t *testing.T) {
	var p Parser
	_, _, err := p.Next(hdr(0, TypeData, 0, 0))
	if !errors.Is(err, ErrStreamID) || CloseCode(err) != CloseProtocol {
		t.Fatalf("err %v (close %d), want ErrStreamID / 1002", err, CloseCode(err))
	}
	ev, n, err2 := p.Next(AppendData(nil, 1, false, []byte("x")))
	if err2 != err || n != 0 || !isZero(ev) {
		t.Fatalf("after an error: %+v %d %v, want the same error", ev, n, err2)
	}
	if p.AtBoundary() {
		t.Fatal("AtBoundary after an error")
	}
}

// TestParserEvents pins the event sequence of an OPEN with data and an empty
// DATA, as the gateway's relay relies on it.
func TestParserEvents(t *testing.T) {
	in := cat(AppendOpen(nil, 1, KindTCP, false, []byte("abc")), AppendData(nil, 1, true, nil))
	var p Parser
	type step struct {
		kind EventKind
		data string
		last bool
		n    int
	}
	want := []step{{EventOpen, "", false, 10}, {EventData, "abc", true, 3}, {EventData, "", true, 9}, {EventNone, "", false, 0}}
	for i, w := range want {
		ev, n, err := p.Next(in)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Kind != w.kind || string(ev.Payload) != w.data || ev.Last != w.last || n != w.n {
			t.Fatalf("step %d: %v %q last=%v n=%d, want %+v", i, ev.Kind, ev.Payload, ev.Last, n, w)
		}
		in = in[n:]
	}
	if !p.AtBoundary() {
		t.Fatal("not at a boundary after whole frames")
	}
	// A partial header: consumed, no event, not at a boundary.
	if ev, n, err := p.Next(hdr(1, TypeData, 0, 1)[:4]); err != nil || ev.Kind != EventNone || n != 4 || p.AtBoundary() {
		t.Fatalf("partial header: %+v %d %v boundary=%v", ev, n, err, p.AtBoundary())
	}
}

// TestParserSplitControlBuffer: a control frame split across inputs comes
// whole from the pooled buffer, which the Parser drops at the next call.
func TestParserSplitControlBuffer(t *testing.T) {
	in := AppendGoAway(nil, 77, GoAwayProtocol)
	var p Parser
	if ev, n, err := p.Next(in[:12]); err != nil || ev.Kind != EventNone || n != 12 {
		t.Fatalf("first part: %+v %d %v", ev, n, err)
	}
	if p.ctl == nil {
		t.Fatal("no buffer while the payload is split")
	}
	ev, n, err := p.Next(in[12:])
	if err != nil || ev.Kind != EventFrame || n != len(in)-12 {
		t.Fatalf("second part: %+v %d %v", ev, n, err)
	}
	last, c, err := ParseGoAway(ev.Payload)
	if err != nil || last != 77 || c != GoAwayProtocol {
		t.Fatalf("goaway %d %v %v", last, c, err)
	}
	if _, _, err := p.Next(nil); err != nil || p.ctl != nil {
		t.Fatalf("buffer kept after the frame was handed out (err %v)", err)
	}
}

func TestParserSize(t *testing.T) {
	if s := unsafe.Sizeof(Parser{}); s > 64 {
		t.Fatalf("Parser is %d bytes, want <= 64 (one per tunnel, idle ones too)", s)
	}
}

// TestParserSplitEverywhere feeds random frame sequences split at every byte
// boundary (one byte per call; each two-part split of a shorter sequence)
// and at random boundaries, and checks the frames reassemble exactly.
func TestParserSplitEverywhere(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	long, wantLong := genFrames(rng, nil, 3000, DefaultMaxFrame)
	check := func(name string, in []byte, want []frame, sizes func() int) {
		t.Helper()
		got, err := parseChunks(0, in, sizes)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !equalFrames(got, want) {
			t.Fatalf("%s: %d frames differ from the %d sent", name, len(got), len(want))
		}
	}
	check("bytewise", long, wantLong, func() int { return 1 })
	for i := range 20 {
		r := rand.New(rand.NewPCG(uint64(i), 7))
		check("random", long, wantLong, func() int {
			switch r.IntN(3) {
			case 0:
				return 1 + r.IntN(HeaderLen+2)
			case 1:
				return 1 + r.IntN(MaxControl+2)
			}
			return 1 + r.IntN(3*DefaultMaxFrame)
		})
	}
	// Every two-part split of a small sequence (payloads up to 300 bytes).
	short, wantShort := genFrames(rng, nil, 60, 300)
	for i := 0; i <= len(short); i++ {
		first := true
		check("two parts", short, wantShort, func() int {
			if first {
				first = false
				return max(i, 1)
			}
			return len(short)
		})
	}
}
