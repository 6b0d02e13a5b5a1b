package codec

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/gobwas/ws"
)

// item is one frame as seen by the caller: data pieces of a frame are joined.
type item struct {
	kind   EventKind
	op     ws.OpCode
	data   string
	msgEnd bool
}

func (it item) String() string {
	d := it.data
	if len(d) > 16 {
		d = fmt.Sprintf("%q...(%d bytes)", d[:16], len(d))
	} else {
		d = fmt.Sprintf("%q", d)
	}
	return fmt.Sprintf("{kind=%d op=%d end=%v %s}", it.kind, it.op, it.msgEnd, d)
}

func dataItem(op ws.OpCode, data string, msgEnd bool) item {
	return item{kind: EventData, op: op, data: data, msgEnd: msgEnd}
}

func ctlItem(op ws.OpCode, data string) item {
	return item{kind: EventControl, op: op, data: data}
}

// chunker returns the size of the next chunk, given how much is left.
type chunker func(left int) int

func whole(left int) int { return left }
func bytewise(int) int   { return 1 }
func randomChunks(seed uint64) chunker {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return func(left int) int {
		switch rng.IntN(4) {
		case 0:
			return 1 + rng.IntN(3)
		case 1:
			return 1 + rng.IntN(20)
		default:
			return 1 + rng.IntN(left)
		}
	}
}

// within reports whether sub lies inside buf's memory.
func within(sub, buf []byte) bool {
	if len(sub) == 0 {
		return true
	}
	s := uintptr(unsafe.Pointer(unsafe.SliceData(sub)))
	b := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	return s >= b && s+uintptr(len(sub)) <= b+uintptr(len(buf))
}

// run feeds a copy of input to a fresh Reader in chunks, checks the
// invariants of Next on every call and returns the frames seen and the error
// that stopped it. Every chunk is a fresh buffer, so a Payload that outlived
// its call would show up as wrong data.
func run(tb testing.TB, l Limits, input []byte, next chunker) ([]item, error) {
	tb.Helper()
	var r Reader
	r.Init(l)
	var items []item
	var cur *item // data frame being joined
	var frameLen, msgLen int64
	maxFrame, maxMsg := l.MaxFrame, l.MaxMessage
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	if maxMsg <= 0 {
		maxMsg = DefaultMaxMessage
	}
	var dataIn, dataOut int
	for off := 0; off < len(input); {
		k := min(next(len(input)-off), len(input)-off)
		chunk := append([]byte(nil), input[off:off+k]...)
		off += k
		dataIn += k
		p := chunk
		for len(p) > 0 {
			ev, n, err := r.Next(p)
			if err != nil {
				if n != 0 || ev.Kind != EventNone {
					tb.Fatalf("error %v with n=%d kind=%d", err, n, ev.Kind)
				}
				if r.AtBoundary() {
					tb.Fatalf("AtBoundary after error")
				}
				if _, _, err2 := r.Next(p); err2 != err {
					tb.Fatalf("dead reader returned %v, then %v", err, err2)
				}
				return items, err
			}
			if n < 0 || n > len(p) {
				tb.Fatalf("n=%d outside [0,%d]", n, len(p))
			}
			switch ev.Kind {
			case EventNone:
				if n != len(p) {
					tb.Fatalf("EventNone with n=%d of %d", n, len(p))
				}
				if ev.Payload != nil || ev.FrameEnd || ev.MessageEnd {
					tb.Fatalf("EventNone with content: %+v", ev)
				}
			case EventData:
				if n == 0 {
					tb.Fatalf("EventData consumed nothing")
				}
				if len(ev.Payload) > 0 && &ev.Payload[len(ev.Payload)-1] != &p[n-1] {
					tb.Fatalf("data piece is not the tail of the consumed bytes")
				}
				if ev.Op != ws.OpBinary && ev.Op != ws.OpText {
					tb.Fatalf("data op %d", ev.Op)
				}
				if ev.MessageEnd && !ev.FrameEnd {
					tb.Fatalf("MessageEnd without FrameEnd")
				}
				dataOut += len(ev.Payload)
				frameLen += int64(len(ev.Payload))
				msgLen += int64(len(ev.Payload))
				if frameLen > maxFrame || msgLen > maxMsg {
					tb.Fatalf("limits broken: frame %d/%d message %d/%d", frameLen, maxFrame, msgLen, maxMsg)
				}
				if cur == nil {
					items = append(items, item{kind: EventData, op: ev.Op})
					cur = &items[len(items)-1]
				} else if cur.op != ev.Op {
					tb.Fatalf("op changed inside a frame: %d -> %d", cur.op, ev.Op)
				}
				cur.data += string(ev.Payload)
				if ev.FrameEnd {
					cur.msgEnd = ev.MessageEnd
					cur = nil
					frameLen = 0
				}
				if ev.MessageEnd {
					msgLen = 0
				}
			case EventControl:
				if n == 0 {
					tb.Fatalf("EventControl consumed nothing")
				}
				if cur != nil {
					tb.Fatalf("control event inside a data frame")
				}
				if len(ev.Payload) > MaxControlPayload {
					tb.Fatalf("control payload of %d bytes", len(ev.Payload))
				}
				if !within(ev.Payload, p[:n]) && !within(ev.Payload, r.ctl[:]) {
					tb.Fatalf("control payload neither in p nor in the Reader")
				}
				switch ev.Op {
				case ws.OpPing, ws.OpPong, ws.OpClose:
				default:
					tb.Fatalf("control op %d", ev.Op)
				}
				items = append(items, ctlItem(ev.Op, string(ev.Payload)))
			default:
				tb.Fatalf("unknown kind %d", ev.Kind)
			}
			p = p[n:]
		}
		if dataOut > dataIn {
			tb.Fatalf("%d payload bytes out of %d input bytes", dataOut, dataIn)
		}
	}
	return items, nil
}

func sameItems(a, b []item) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

var testMask = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// cf builds one masked client frame.
func cf(op ws.OpCode, fin bool, payload string) []byte {
	return AppendClientFrame(nil, op, fin, testMask, []byte(payload))
}

func cat(frames ...[]byte) []byte { return bytes.Join(frames, nil) }

// raw builds a frame header by hand, for frames AppendClientFrame will not
// produce: b0 and b1 verbatim, then ext (extended length) and a mask key.
func raw(b0, b1 byte, ext []byte, payload string) []byte {
	out := append([]byte{b0, b1}, ext...)
	if b1&bitMask != 0 {
		out = append(out, testMask[:]...)
		start := len(out)
		out = append(out, payload...)
		ws.Cipher(out[start:], testMask, 0)
		return out
	}
	return append(out, payload...)
}

func closePayload(code ws.StatusCode, reason string) string {
	return string([]byte{byte(code >> 8), byte(code)}) + reason
}
