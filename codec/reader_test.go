package codec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/gobwas/ws"
)

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

var bin, text = ws.OpBinary, ws.OpText

type readerCase struct {
	name   string
	limits Limits
	input  []byte
	want   []item // frames seen before err
	err    error
}

var readerCases = []readerCase{
	// Well-formed traffic.
	{name: "empty input"},
	{
		name:  "one binary frame",
		input: cf(bin, true, "hello"),
		want:  []item{dataItem(bin, "hello", true)},
	},
	{
		name:  "text frame allowed by default",
		input: cf(text, true, "héllo"),
		want:  []item{dataItem(text, "héllo", true)},
	},
	{
		name:  "zero-length final frame",
		input: cf(bin, true, ""),
		want:  []item{dataItem(bin, "", true)},
	},
	{
		name:  "zero-length fragments",
		input: cat(cf(bin, false, ""), cf(ws.OpContinuation, false, ""), cf(ws.OpContinuation, true, "")),
		want:  []item{dataItem(bin, "", false), dataItem(bin, "", false), dataItem(bin, "", true)},
	},
	{
		name:  "several frames in one chunk",
		input: cat(cf(bin, true, "a"), cf(text, true, "bc"), cf(bin, true, "def")),
		want:  []item{dataItem(bin, "a", true), dataItem(text, "bc", true), dataItem(bin, "def", true)},
	},
	{
		name: "fragmented message with interleaved control frames",
		input: cat(
			cf(text, false, "frag1 "),
			cf(ws.OpPing, true, "p1"),
			cf(ws.OpContinuation, false, "frag2 "),
			cf(ws.OpPong, true, ""),
			cf(ws.OpPing, true, strings.Repeat("x", 125)),
			cf(ws.OpContinuation, true, "frag3"),
			cf(bin, true, "next"),
			cf(ws.OpClose, true, closePayload(1000, "bye")),
		),
		want: []item{
			dataItem(text, "frag1 ", false),
			ctlItem(ws.OpPing, "p1"),
			dataItem(text, "frag2 ", false),
			ctlItem(ws.OpPong, ""),
			ctlItem(ws.OpPing, strings.Repeat("x", 125)),
			dataItem(text, "frag3", true),
			dataItem(bin, "next", true),
			ctlItem(ws.OpClose, closePayload(1000, "bye")),
		},
	},
	{
		name:  "empty close",
		input: cf(ws.OpClose, true, ""),
		want:  []item{ctlItem(ws.OpClose, "")},
	},
	{
		name:  "close with private code",
		input: cf(ws.OpClose, true, closePayload(4999, "")),
		want:  []item{ctlItem(ws.OpClose, closePayload(4999, ""))},
	},
	{
		name:   "frame of exactly MaxFrame",
		limits: Limits{MaxFrame: 10, MaxMessage: 100},
		input:  cf(bin, true, "0123456789"),
		want:   []item{dataItem(bin, "0123456789", true)},
	},
	{
		name:   "message of exactly MaxMessage, counter reset after it",
		limits: Limits{MaxFrame: 10, MaxMessage: 15},
		input:  cat(cf(bin, false, "0123456789"), cf(ws.OpContinuation, true, "abcde"), cf(bin, true, "0123456789")),
		want:   []item{dataItem(bin, "0123456789", false), dataItem(bin, "abcde", true), dataItem(bin, "0123456789", true)},
	},
	{
		name:   "control frames do not count towards MaxMessage",
		limits: Limits{MaxFrame: 10, MaxMessage: 10},
		input:  cat(cf(bin, false, "01234"), cf(ws.OpPing, true, "0123456789ab"), cf(ws.OpContinuation, true, "56789")),
		want:   []item{dataItem(bin, "01234", false), ctlItem(ws.OpPing, "0123456789ab"), dataItem(bin, "56789", true)},
	},

	// Masking, reserved bits, opcodes.
	{
		name:  "unmasked frame",
		input: raw(0x82, 0x03, nil, "abc"),
		err:   ErrUnmasked,
	},
	{
		name:  "unmasked frame after a good one",
		input: cat(cf(bin, true, "ok"), raw(0x82, 0x03, nil, "abc")),
		want:  []item{dataItem(bin, "ok", true)},
		err:   ErrUnmasked,
	},
	{name: "RSV1 set", input: raw(0xc2, 0x80, nil, ""), err: ErrReservedBits},
	{name: "RSV2 set", input: raw(0xa2, 0x80, nil, ""), err: ErrReservedBits},
	{name: "RSV3 set", input: raw(0x92, 0x80, nil, ""), err: ErrReservedBits},
	{name: "RSV on control frame", input: raw(0xc9, 0x80, nil, ""), err: ErrReservedBits},
	{name: "reserved data opcode 3", input: raw(0x83, 0x80, nil, ""), err: ErrBadOpcode},
	{name: "reserved data opcode 7", input: raw(0x87, 0x80, nil, ""), err: ErrBadOpcode},
	{name: "reserved control opcode B", input: raw(0x8b, 0x80, nil, ""), err: ErrBadOpcode},
	{name: "reserved control opcode F", input: raw(0x8f, 0x80, nil, ""), err: ErrBadOpcode},

	// Control frame rules.
	{name: "ping without FIN", input: cf(ws.OpPing, false, "x"), err: ErrFragmentedControl},
	{name: "close without FIN", input: cf(ws.OpClose, false, ""), err: ErrFragmentedControl},
	{name: "ping of 126 bytes", input: cf(ws.OpPing, true, strings.Repeat("x", 126)), err: ErrControlTooLarge},
	{name: "pong with 64-bit length", input: raw(0x8a, 0xff, be64(1<<16), ""), err: ErrControlTooLarge},

	// Fragmentation rules.
	{name: "continuation first", input: cf(ws.OpContinuation, true, "x"), err: ErrStrayContinuation},
	{
		name:  "continuation after a finished message",
		input: cat(cf(bin, true, "a"), cf(ws.OpContinuation, true, "b")),
		want:  []item{dataItem(bin, "a", true)},
		err:   ErrStrayContinuation,
	},
	{
		name:  "binary inside an open message",
		input: cat(cf(bin, false, "a"), cf(bin, true, "b")),
		want:  []item{dataItem(bin, "a", false)},
		err:   ErrMessageOpen,
	},
	{
		name:  "text inside an open message",
		input: cat(cf(bin, false, "a"), cf(ws.OpPing, true, ""), cf(text, true, "b")),
		want:  []item{dataItem(bin, "a", false), ctlItem(ws.OpPing, "")},
		err:   ErrMessageOpen,
	},

	// Lengths and limits.
	{name: "64-bit length with MSB set", input: raw(0x82, 0xff, be64(1<<63|5), ""), err: ErrBadLength},
	{name: "64-bit length all ones", input: raw(0x82, 0xff, be64(^uint64(0)), ""), err: ErrBadLength},
	{name: "16-bit length below 126", input: raw(0x82, 0xfe, be16(125), strings.Repeat("x", 125)), err: ErrBadLength},
	{name: "64-bit length below 65536", input: raw(0x82, 0xff, be64(65535), ""), err: ErrBadLength},
	{
		name:   "frame over MaxFrame",
		limits: Limits{MaxFrame: 10},
		input:  cf(bin, true, "0123456789a"),
		err:    ErrFrameTooLarge,
	},
	{
		// Only the header is sent: the error must not wait for the payload.
		name:  "huge frame refused from the header",
		input: raw(0x82, 0xff, be64(1<<40), ""),
		err:   ErrFrameTooLarge,
	},
	{
		name:   "continuation over MaxFrame",
		limits: Limits{MaxFrame: 4, MaxMessage: 100},
		input:  cat(cf(bin, false, "0123"), cf(ws.OpContinuation, true, "01234")),
		want:   []item{dataItem(bin, "0123", false)},
		err:    ErrFrameTooLarge,
	},
	{
		name:   "message over MaxMessage",
		limits: Limits{MaxFrame: 10, MaxMessage: 15},
		input:  cat(cf(bin, false, "0123456789"), cf(ws.OpContinuation, true, "abcdef")),
		want:   []item{dataItem(bin, "0123456789", false)},
		err:    ErrMessageTooLarge,
	},
	{
		name:   "single frame over MaxMessage",
		limits: Limits{MaxFrame: 100, MaxMessage: 5},
		input:  cf(bin, true, "012345"),
		err:    ErrMessageTooLarge,
	},
	{
		name:   "text refused",
		limits: Limits{RejectText: true},
		input:  cf(text, true, "hi"),
		err:    ErrTextFrame,
	},
	{
		name:   "binary passes when text refused",
		limits: Limits{RejectText: true},
		input:  cat(cf(bin, false, "a"), cf(ws.OpContinuation, true, "b")),
		want:   []item{dataItem(bin, "a", false), dataItem(bin, "b", true)},
	},

	// Close payloads.
	{name: "close of one byte", input: cf(ws.OpClose, true, "\x03"), err: ErrCloseLength},
	{name: "close code 1005", input: cf(ws.OpClose, true, closePayload(1005, "")), err: ErrCloseCode},
	{name: "close code 999", input: cf(ws.OpClose, true, closePayload(999, "")), err: ErrCloseCode},
	{name: "close code 5000", input: cf(ws.OpClose, true, closePayload(5000, "")), err: ErrCloseCode},
	{name: "close reason bad UTF-8", input: cf(ws.OpClose, true, closePayload(1000, "\xff\xfe")), err: ErrCloseReasonInvalid},
	{
		name:  "bad close after data",
		input: cat(cf(bin, true, "a"), cf(ws.OpClose, true, closePayload(1000, "ok\xc3"))),
		want:  []item{dataItem(bin, "a", true)},
		err:   ErrCloseReasonInvalid,
	},
}

// TestReader runs every case whole, byte by byte and in random chunkings;
// all must give the same frames and the same error.
func TestReader(t *testing.T) {
	for _, tc := range readerCases {
		t.Run(tc.name, func(t *testing.T) {
			chunkings := map[string]chunker{"whole": whole, "bytewise": bytewise}
			for seed := range uint64(8) {
				chunkings[fmt.Sprintf("random%d", seed)] = randomChunks(seed)
			}
			for cname, ch := range chunkings {
				got, err := run(t, tc.limits, tc.input, ch)
				if !errors.Is(err, tc.err) {
					t.Errorf("%s: err = %v, want %v", cname, err, tc.err)
				}
				if !sameItems(got, tc.want) {
					t.Errorf("%s: frames\n got %v\nwant %v", cname, got, tc.want)
				}
			}
		})
	}
}

// TestReaderSizeBoundaries crosses every length encoding boundary, with
// fragments and interleaved control frames, in many chunkings.
func TestReaderSizeBoundaries(t *testing.T) {
	sizes := []int{0, 1, 125, 126, 127, 65535, 65536, 65537}
	var input []byte
	var want []item
	for i, n := range sizes {
		payload := pattern(n, byte(i))
		input = append(input, cf(bin, true, payload)...)
		want = append(want, dataItem(bin, payload, true))
	}
	// The same sizes again as fragments of one text message, with pings between.
	for i, n := range sizes {
		op := ws.OpContinuation
		if i == 0 {
			op = text
		}
		payload := pattern(n, byte(i+50))
		input = append(input, cf(op, i == len(sizes)-1, payload)...)
		want = append(want, dataItem(text, payload, i == len(sizes)-1))
		if i < len(sizes)-1 {
			input = append(input, cf(ws.OpPing, true, payload[:min(len(payload), 125)])...)
			want = append(want, ctlItem(ws.OpPing, payload[:min(len(payload), 125)]))
		}
	}
	input = append(input, cf(ws.OpClose, true, closePayload(1001, "done"))...)
	want = append(want, ctlItem(ws.OpClose, closePayload(1001, "done")))

	l := Limits{MaxFrame: 65537, MaxMessage: 4 << 20}
	chunkings := map[string]chunker{"whole": whole, "bytewise": bytewise}
	for seed := range uint64(5) {
		chunkings[fmt.Sprintf("random%d", seed)] = randomChunks(seed)
	}
	for name, ch := range chunkings {
		got, err := run(t, l, input, ch)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !sameItems(got, want) {
			t.Fatalf("%s: frames differ:\n got %v\nwant %v", name, got, want)
		}
	}
}

func pattern(n int, seed byte) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return string(b)
}

// TestReaderSplitHeaderErrorsEarly checks that limits are enforced as soon as
// the header is complete, with no payload byte sent.
func TestReaderSplitHeaderErrorsEarly(t *testing.T) {
	hdr := raw(0x82, 0xff, be64(1<<20+1), "")
	var r Reader
	r.Init(Limits{})
	for i := range hdr {
		_, n, err := r.Next(hdr[i : i+1])
		if i < len(hdr)-1 {
			if err != nil || n != 1 {
				t.Fatalf("byte %d: n=%d err=%v", i, n, err)
			}
			continue
		}
		if !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("last header byte: err=%v, want ErrFrameTooLarge", err)
		}
	}
}

func TestReaderAtBoundary(t *testing.T) {
	var r Reader
	r.Init(Limits{})
	if !r.AtBoundary() {
		t.Fatal("fresh reader not at boundary")
	}
	in := cat(cf(bin, false, "abc"), cf(ws.OpPing, true, "pp"))
	steps := []struct {
		chunk []byte
		at    bool
	}{
		{in[:1], false},   // half a header
		{in[1:6], false},  // header done, no payload yet
		{in[6:8], false},  // part of the payload
		{in[8:9], true},   // frame done; the message stays open
		{in[9:16], false}, // ping header and part of its payload
		{in[16:], true},
	}
	for i, s := range steps {
		p := append([]byte(nil), s.chunk...)
		for len(p) > 0 {
			_, n, err := r.Next(p)
			if err != nil {
				t.Fatal(err)
			}
			p = p[n:]
		}
		if r.AtBoundary() != s.at {
			t.Fatalf("step %d: AtBoundary = %v, want %v", i, !s.at, s.at)
		}
	}
}

func TestReaderInitResets(t *testing.T) {
	var r Reader
	r.Init(Limits{})
	if _, _, err := r.Next(raw(0x82, 0x00, nil, "")); !errors.Is(err, ErrUnmasked) {
		t.Fatalf("err = %v", err)
	}
	r.Init(Limits{})
	ev, n, err := r.Next(cf(bin, true, "x"))
	if err != nil || ev.Kind != EventData || string(ev.Payload) != "x" || n != 7 {
		t.Fatalf("after Init: %+v n=%d err=%v", ev, n, err)
	}
}

// TestReaderControlPayloadInPlace checks where control payloads live: in p
// when whole, in the Reader when split.
func TestReaderControlPayloadInPlace(t *testing.T) {
	frame := cf(ws.OpPing, true, "ping!")
	var r Reader
	r.Init(Limits{})
	p := append([]byte(nil), frame...)
	ev, _, err := r.Next(p)
	if err != nil || !within(ev.Payload, p) || string(ev.Payload) != "ping!" {
		t.Fatalf("whole: %+v %v", ev, err)
	}
	p = append([]byte(nil), frame...)
	if ev, n, err := r.Next(p[:8]); err != nil || ev.Kind != EventNone || n != 8 {
		t.Fatalf("split head: %+v n=%d %v", ev, n, err)
	}
	ev, _, err = r.Next(p[8:])
	if err != nil || !within(ev.Payload, r.ctl[:]) || string(ev.Payload) != "ping!" {
		t.Fatalf("split: %+v %v", ev, err)
	}
}

func TestParseClose(t *testing.T) {
	tests := []struct {
		name    string
		payload string
		code    ws.StatusCode
		reason  string
		err     error
	}{
		{"empty", "", ws.StatusNoStatusRcvd, "", nil},
		{"one byte", "\x03", 0, "", ErrCloseLength},
		{"1000 no reason", closePayload(1000, ""), 1000, "", nil},
		{"1001 reason", closePayload(1001, "going"), 1001, "going", nil},
		{"1003", closePayload(1003, ""), 1003, "", nil},
		{"1007", closePayload(1007, ""), 1007, "", nil},
		{"1011", closePayload(1011, "ü"), 1011, "ü", nil},
		{"3000", closePayload(3000, ""), 3000, "", nil},
		{"4999", closePayload(4999, ""), 4999, "", nil},
		{"0", closePayload(0, ""), 0, "", ErrCloseCode},
		{"999", closePayload(999, ""), 0, "", ErrCloseCode},
		{"1004 reserved", closePayload(1004, ""), 0, "", ErrCloseCode},
		{"1005 local only", closePayload(1005, ""), 0, "", ErrCloseCode},
		{"1006 local only", closePayload(1006, ""), 0, "", ErrCloseCode},
		{"1012 unassigned by RFC 6455", closePayload(1012, ""), 0, "", ErrCloseCode},
		{"1015 local only", closePayload(1015, ""), 0, "", ErrCloseCode},
		{"2999", closePayload(2999, ""), 0, "", ErrCloseCode},
		{"5000", closePayload(5000, ""), 0, "", ErrCloseCode},
		{"65535", closePayload(65535, ""), 0, "", ErrCloseCode},
		{"bad UTF-8", closePayload(1000, "\xff"), 0, "", ErrCloseReasonInvalid},
		{"truncated rune", closePayload(1000, "a\xe2\x82"), 0, "", ErrCloseReasonInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, reason, err := ParseClose([]byte(tc.payload))
			if !errors.Is(err, tc.err) || code != tc.code || string(reason) != tc.reason {
				t.Fatalf("got (%d, %q, %v), want (%d, %q, %v)", code, reason, err, tc.code, tc.reason, tc.err)
			}
		})
	}
}

func TestCloseCode(t *testing.T) {
	tests := []struct {
		err  error
		code ws.StatusCode
	}{
		{nil, 1000},
		{ErrUnmasked, 1002},
		{ErrReservedBits, 1002},
		{ErrBadOpcode, 1002},
		{ErrFragmentedControl, 1002},
		{ErrControlTooLarge, 1002},
		{ErrStrayContinuation, 1002},
		{ErrMessageOpen, 1002},
		{ErrBadLength, 1002},
		{ErrCloseLength, 1002},
		{ErrCloseCode, 1002},
		{ErrFrameTooLarge, 1009},
		{ErrMessageTooLarge, 1009},
		{ErrTextFrame, 1003},
		{ErrCloseReasonInvalid, 1007},
		{fmt.Errorf("session 7: %w", ErrFrameTooLarge), 1009},
		{errors.New("something else"), 1011},
	}
	for _, tc := range tests {
		if got := CloseCode(tc.err); got != tc.code {
			t.Errorf("CloseCode(%v) = %d, want %d", tc.err, got, tc.code)
		}
	}
}

// TestReaderAllocs: Next must not allocate on any path.
func TestReaderAllocs(t *testing.T) {
	frames := map[string][]byte{
		"data 1KiB":       cf(bin, true, strings.Repeat("d", 1024)),
		"data 64KiB":      cf(bin, true, strings.Repeat("d", 64<<10)),
		"ping":            cf(ws.OpPing, true, "are you there"),
		"close":           cf(ws.OpClose, true, closePayload(1000, "bye")),
		"fragments+pings": cat(cf(bin, false, "a"), cf(ws.OpPing, true, "p"), cf(ws.OpContinuation, true, "b")),
	}
	for name, in := range frames {
		for _, split := range []int{len(in), 3, 9} {
			var r Reader
			scratch := make([]byte, len(in))
			allocs := testing.AllocsPerRun(100, func() {
				r.Init(Limits{})
				// Next unmasks in place: start each run from masked bytes.
				copy(scratch, in)
				for p := scratch; len(p) > 0; {
					// Chunks of split bytes exercise the buffered paths.
					c := p[:min(split, len(p))]
					p = p[len(c):]
					for len(c) > 0 {
						_, n, err := r.Next(c)
						if err != nil {
							t.Fatal(err)
						}
						c = c[n:]
					}
				}
			})
			if allocs != 0 {
				t.Errorf("%s split %d: %v allocs per run", name, split, allocs)
			}
		}
	}
}

func BenchmarkReaderNext(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10} {
		frame := cf(bin, true, strings.Repeat("z", size))
		b.Run(fmt.Sprintf("frame=%dB", size), func(b *testing.B) {
			var r Reader
			r.Init(Limits{})
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			for b.Loop() {
				for p := frame; len(p) > 0; {
					_, n, err := r.Next(p)
					if err != nil {
						b.Fatal(err)
					}
					p = p[n:]
				}
			}
		})
	}
	// A relay read of 16 KiB holding many small frames, cut mid-frame.
	b.Run("chunks=16KiB/frames=100B", func(b *testing.B) {
		var stream []byte
		for len(stream) < 16<<10 {
			stream = append(stream, cf(bin, true, strings.Repeat("s", 100))...)
		}
		stream = stream[:16<<10]
		var r Reader
		b.SetBytes(int64(len(stream)))
		b.ReportAllocs()
		for b.Loop() {
			r.Init(Limits{})
			for p := stream; len(p) > 0; {
				_, n, err := r.Next(p)
				if err != nil {
					b.Fatal(err)
				}
				p = p[n:]
			}
		}
	})
}

func TestReaderDoesNotModifyBeyondFrame(t *testing.T) {
	// Unmasking in place must stay inside the payload it returns.
	in := cat(cf(bin, true, "abc"), cf(bin, true, "def"))
	orig := bytes.Clone(in)
	var r Reader
	r.Init(Limits{})
	_, n, err := r.Next(in)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(in[n:], orig[n:]) {
		t.Fatal("bytes after the returned piece changed")
	}
}
