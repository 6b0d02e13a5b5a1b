package codec

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/gobwas/ws"
)

// FuzzReader feeds arbitrary bytes in arbitrary chunks. run checks the
// invariants of every call (no panic, n within p, payload within the input,
// limits held); on top, every chunking must agree with the whole input.
func FuzzReader(f *testing.F) {
	// A valid binary frame, whole.
	f.Add(cf(bin, true, "hello"), uint64(1), uint16(0), uint16(0), false)
	// Fragmented text with a ping in the middle, under small limits.
	f.Add(cat(cf(text, false, "ab"), cf(ws.OpPing, true, "p"), cf(ws.OpContinuation, true, "cd")), uint64(2), uint16(3), uint16(4), false)
	// The same refused as text.
	f.Add(cat(cf(text, false, "ab"), cf(ws.OpContinuation, true, "cd")), uint64(3), uint16(0), uint16(0), true)
	// 16-bit length frame cut into random chunks.
	f.Add(cf(bin, true, pattern(300, 1)), uint64(4), uint16(1000), uint16(1000), false)
	// A 64-bit length with the MSB set.
	f.Add(raw(0x82, 0xff, be64(1<<63), ""), uint64(5), uint16(0), uint16(0), false)
	// A huge announced frame with no payload.
	f.Add(raw(0x82, 0xff, be64(1<<32), ""), uint64(6), uint16(0), uint16(0), false)
	// Close with an invalid reason, then garbage.
	f.Add(cat(cf(ws.OpClose, true, closePayload(1000, "\xff")), []byte{0xff, 0xff}), uint64(7), uint16(0), uint16(0), false)
	// Unmasked frame.
	f.Add(raw(0x82, 0x02, nil, "hi"), uint64(8), uint16(0), uint16(0), false)

	f.Fuzz(func(t *testing.T, data []byte, seed uint64, maxFrame, maxMsg uint16, rejectText bool) {
		l := Limits{MaxFrame: int64(maxFrame), MaxMessage: int64(maxMsg), RejectText: rejectText}
		want, wantErr := run(t, l, data, whole)
		got, err := run(t, l, data, randomChunks(seed))
		if !errors.Is(err, wantErr) || (err == nil) != (wantErr == nil) {
			t.Fatalf("chunked err %v, whole err %v", err, wantErr)
		}
		if !sameItems(got, want) {
			t.Fatalf("chunked frames %v, whole %v", got, want)
		}
		got, err = run(t, l, data, bytewise)
		if !errors.Is(err, wantErr) || !sameItems(got, want) {
			t.Fatalf("bytewise: %v %v, whole %v %v", got, err, want, wantErr)
		}
	})
}

// FuzzRoundTrip builds a conversation with AppendClientFrame from payload
// (messages cut into fragments, control frames between them, all drawn from
// seed) and checks that parsing it in random chunks gives it back.
func FuzzRoundTrip(f *testing.F) {
	// Nothing but the final close.
	f.Add([]byte{}, uint64(0), uint32(0))
	// One short message.
	f.Add([]byte("hello, world"), uint64(1), uint32(0x01020304))
	// Enough bytes for 16-bit lengths and several fragments.
	f.Add([]byte(pattern(1000, 5)), uint64(2), uint32(0xdeadbeef))
	// Crosses the 64-bit length boundary.
	f.Add([]byte(pattern(70000, 6)), uint64(3), uint32(0xffffffff))

	f.Fuzz(func(t *testing.T, payload []byte, seed uint64, maskSeed uint32) {
		rng := rand.New(rand.NewPCG(seed, uint64(maskSeed)))
		var mask [4]byte
		binary.LittleEndian.PutUint32(mask[:], maskSeed)

		var input []byte
		var want []item
		for rest := payload; ; {
			// One message of up to len(rest) bytes, in 1-4 fragments.
			msg := rest[:rng.IntN(len(rest)+1)]
			rest = rest[len(msg):]
			op := bin
			if rng.IntN(2) == 0 {
				op = text
			}
			frags := 1 + rng.IntN(4)
			for i := range frags {
				part := msg
				if i < frags-1 {
					part = msg[:rng.IntN(len(msg)+1)]
				}
				msg = msg[len(part):]
				fop := op
				if i > 0 {
					fop = ws.OpContinuation
				}
				input = AppendClientFrame(input, fop, i == frags-1, mask, part)
				want = append(want, dataItem(op, string(part), i == frags-1))
				if rng.IntN(3) == 0 {
					ping := part[:min(len(part), rng.IntN(MaxControlPayload+1))]
					input = AppendClientFrame(input, ws.OpPing, true, mask, ping)
					want = append(want, ctlItem(ws.OpPing, string(ping)))
				}
			}
			if len(rest) == 0 {
				break
			}
		}
		closing := closePayload(ws.StatusGoingAway, "end")
		input = AppendClientFrame(input, ws.OpClose, true, mask, []byte(closing))
		want = append(want, ctlItem(ws.OpClose, closing))

		l := Limits{MaxFrame: int64(len(payload)) + 1, MaxMessage: int64(len(payload)) + 1}
		got, err := run(t, l, input, randomChunks(seed^0x5555))
		if err != nil {
			t.Fatal(err)
		}
		if !sameItems(got, want) {
			t.Fatalf("got %v\nwant %v", got, want)
		}
	})
}
