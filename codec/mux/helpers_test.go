package mux

import (
	"bytes"
	"fmt"
	"math/rand/v2"
)

// frame is one decoded frame, its data reassembled from the events.
type frame struct {
	H       Header
	Open    Kind
	Payload []byte // DATA/OPEN: the data (after the kind byte); others: the payload
}

func (f frame) String() string {
	return fmt.Sprintf("%v s%d f%#x len%d open%d payload%d", f.H.Type, f.H.Stream, f.H.Flags, f.H.Length, f.Open, len(f.Payload))
}

func equalFrames(a, b []frame) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].H != b[i].H || a[i].Open != b[i].Open || !bytes.Equal(a[i].Payload, b[i].Payload) {
			return false
		}
	}
	return true
}

// collector reassembles frames from a Parser's events and checks the event
// contract on the way (n bounds, pieces within their frame, Last exactly
// once per frame).
type collector struct {
	p      Parser
	frames []frame
	cur    *frame // a DATA/OPEN frame whose pieces are still coming
}

// feed gives one input chunk to the parser, to the end or to an error.
func (c *collector) feed(in []byte) error {
	for {
		ev, n, err := c.p.Next(in)
		if err != nil {
			if n != 0 || !isZero(ev) {
				return fmt.Errorf("error %v with n=%d ev=%+v", err, n, ev)
			}
			return err
		}
		if n < 0 || n > len(in) {
			return fmt.Errorf("n=%d outside 0..%d", n, len(in))
		}
		if ev.Kind == EventNone {
			if n != len(in) {
				return fmt.Errorf("EventNone with n=%d of %d", n, len(in))
			}
			return nil
		}
		if n == 0 {
			return fmt.Errorf("event %v consumed nothing", ev.Kind)
		}
		if err := c.event(ev); err != nil {
			return err
		}
		in = in[n:]
	}
}

func (c *collector) event(ev Event) error {
	switch ev.Kind {
	case EventFrame:
		if c.cur != nil {
			return fmt.Errorf("frame event inside %v", c.cur)
		}
		if ev.Header.Type == TypeData || ev.Header.Type == TypeOpen || int(ev.Header.Length) != len(ev.Payload) {
			return fmt.Errorf("bad frame event %+v", ev)
		}
		c.frames = append(c.frames, frame{H: ev.Header, Payload: bytes.Clone(ev.Payload)})
	case EventOpen:
		if c.cur != nil || ev.Header.Type != TypeOpen {
			return fmt.Errorf("open event inside %v", c.cur)
		}
		c.cur = &frame{H: ev.Header, Open: ev.Open, Payload: []byte{}}
		if ev.Last {
			if ev.Header.Length != 1 {
				return fmt.Errorf("open Last with length %d", ev.Header.Length)
			}
			c.frames, c.cur = append(c.frames, *c.cur), nil
		}
	case EventData:
		switch {
		case ev.Header.Type == TypeData && c.cur == nil:
			c.cur = &frame{H: ev.Header, Payload: []byte{}}
		case c.cur == nil || c.cur.H != ev.Header:
			return fmt.Errorf("data piece %+v outside its frame (%v)", ev.Header, c.cur)
		}
		c.cur.Payload = append(c.cur.Payload, ev.Payload...)
		want := int(c.cur.H.Length)
		if c.cur.H.Type == TypeOpen {
			want--
		}
		if len(c.cur.Payload) > want || ev.Last != (len(c.cur.Payload) == want) {
			return fmt.Errorf("data pieces %d of %d, Last %v", len(c.cur.Payload), want, ev.Last)
		}
		if ev.Last {
			c.frames, c.cur = append(c.frames, *c.cur), nil
		}
	default:
		return fmt.Errorf("event kind %d", ev.Kind)
	}
	return nil
}

// parseChunks runs a fresh Parser over in split into the given chunk sizes
// (the rest in one chunk).
func parseChunks(maxFrame uint32, in []byte, sizes func() int) ([]frame, error) {
	c := collector{p: Parser{MaxFrame: maxFrame}}
	for len(in) > 0 {
		k := min(sizes(), len(in))
		if err := c.feed(in[:k]); err != nil {
			return c.frames, err
		}
		in = in[k:]
	}
	if c.cur != nil {
		return c.frames, fmt.Errorf("unfinished %v", c.cur)
	}
	return c.frames, nil
}

func whole() int { return 1 << 30 }

// genFrames appends n random frames to dst (every type, unknown ones too,
// payloads from empty to MaxFrame) and returns the bytes and the frames a
// Parser must report (unknown types left out).
func genFrames(rng *rand.Rand, dst []byte, n int, maxFrame int) ([]byte, []frame) {
	var want []frame
	data := func(max int) []byte {
		var l int
		switch rng.IntN(4) {
		case 0:
			l = 0
		case 1:
			l = rng.IntN(16)
		case 2:
			l = rng.IntN(2048)
		default:
			l = rng.IntN(max + 1)
		}
		b := make([]byte, l)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	stream := func() uint32 { return 1 + rng.Uint32N(MaxStreamID) }
	for range n {
		fin := rng.IntN(2) == 0
		var f frame
		switch t := rng.IntN(9); t {
		case 0:
			s := Settings{Version: 1 + rng.Uint32N(3), MaxStreams: rng.Uint32N(1000), StreamWindow: 1 + rng.Uint32N(MaxWindow),
				SessionWindow: 1 + rng.Uint32N(MaxWindow), MaxFrame: MinMaxFrame + rng.Uint32N(MaxLength-MinMaxFrame+1)}
			dst = AppendSettings(dst, s)
			f = frame{H: Header{Length: 30, Type: TypeSettings}, Payload: AppendSettings(nil, s)[HeaderLen:]}
		case 1:
			d, id, k := data(maxFrame-1), stream(), Kind(rng.IntN(4))
			dst = AppendOpen(dst, id, k, fin, d)
			f = frame{H: Header{Length: uint32(len(d) + 1), Type: TypeOpen, Flags: finFlag(fin), Stream: id}, Open: k, Payload: d}
		case 2, 3:
			d, id := data(maxFrame), stream()
			if t == 2 {
				dst = AppendData(dst, id, fin, d)
			} else {
				dst = append(AppendDataHeader(dst, id, len(d), fin), d...)
			}
			f = frame{H: Header{Length: uint32(len(d)), Type: TypeData, Flags: finFlag(fin), Stream: id}, Payload: d}
		case 4:
			id, c := stream(), ResetCode(rng.Uint32())
			dst = AppendReset(dst, id, c)
			f = frame{H: Header{Length: 4, Type: TypeReset, Stream: id}, Payload: AppendReset(nil, id, c)[HeaderLen:]}
		case 5:
			id, inc := rng.Uint32N(4), 1+rng.Uint32N(MaxWindow)
			dst = AppendWindow(dst, id, inc)
			f = frame{H: Header{Length: 4, Type: TypeWindow, Stream: id}, Payload: AppendWindow(nil, id, inc)[HeaderLen:]}
		case 6:
			var id [8]byte
			for i := range id {
				id[i] = byte(rng.Uint32())
			}
			dst = AppendPing(dst, id, fin)
			f = frame{H: Header{Length: 8, Type: TypePing, Flags: finFlag(fin)}, Payload: id[:]}
		case 7:
			last, c := rng.Uint32N(MaxStreamID), GoAwayCode(rng.IntN(3))
			dst = AppendGoAway(dst, last, c)
			f = frame{H: Header{Length: 8, Type: TypeGoAway}, Payload: AppendGoAway(nil, last, c)[HeaderLen:]}
		case 8: // unknown type: skipped, no frame reported
			p := data(MaxControl)
			if len(p) > MaxControl {
				p = p[:MaxControl]
			}
			var h [HeaderLen]byte
			PutHeader(h[:], Header{Length: uint32(len(p)), Type: Type(7 + rng.IntN(249)), Flags: uint8(rng.Uint32()), Stream: rng.Uint32N(MaxStreamID)})
			dst = append(append(dst, h[:]...), p...)
			continue
		}
		want = append(want, f)
	}
	return dst, want
}

func isZero(ev Event) bool {
	return ev.Kind == EventNone && ev.Header == (Header{}) && ev.Open == 0 && ev.Payload == nil && !ev.Last
}
