package mux

import (
	"encoding/binary"
	"fmt"
	"sync"
)

// EventKind says what an Event carries.
type EventKind uint8

const (
	EventNone  EventKind = iota // all input consumed, need more bytes
	EventFrame                  // a whole frame other than DATA and OPEN; Payload is its payload
	EventOpen                   // an OPEN's header and kind; its data follows as EventData
	EventData                   // a piece of a DATA payload or of an OPEN's first data
)

// Event is one result of Parser.Next.
type Event struct {
	Kind   EventKind
	Header Header // the frame's header, for every kind but EventNone
	Open   Kind   // EventOpen: the stream kind (not checked here: an unknown one is the caller's RESET PROTOCOL)
	// Payload is, for EventData, a subslice of the input given to Next. For
	// EventFrame it is a subslice of the input when the whole payload was in
	// it, or else the Parser's pooled buffer. Either way it is valid only
	// until the next call to Next or until the caller reuses the input.
	Payload []byte
	// Last is set on the EventData piece that ends its frame (Header.FIN()
	// then applies after it), and on an EventOpen with no data: an empty
	// DATA gives one EventData with an empty Payload and Last set.
	Last bool
}

type parseState uint8

const (
	stateHeader  parseState = iota // between frames or inside a header (hn bytes in hdr)
	stateKind                      // an OPEN's header read, its kind byte next
	stateData                      // inside a DATA/OPEN payload, which is never buffered
	stateControl                   // inside another frame's payload (collected in ctl if split)
	stateSkip                      // inside an unknown frame's payload
)

// ctlPool holds the buffers of control frames split across inputs.
var ctlPool = sync.Pool{New: func() any { return new([MaxControl]byte) }}

// Parser decodes frames incrementally from the concatenated WebSocket
// payloads, split at any byte. The zero value is ready; set MaxFrame (the
// MAX_FRAME this side announced; 0 means DefaultMaxFrame) before the first
// Next. Between calls it keeps at most a partial header in a fixed array
// and, only while a control frame is split across inputs, a pooled
// MaxControl-byte buffer: an idle Parser holds no buffer and no pointer to
// the caller's input. Not safe for concurrent use.
type Parser struct {
	MaxFrame uint32

	h      Header // the current frame's header
	remain uint32 // payload bytes of the current frame not yet consumed
	state  parseState
	hn     uint8 // header bytes collected in hdr
	hdr    [HeaderLen]byte
	ctl    *[MaxControl]byte // a split control payload; released at the next Next after it is returned
	err    error             // sticky: every Next after an error returns it
}

// AtBoundary reports whether p is between frames with nothing partial
// buffered. It is false after an error.
func (p *Parser) AtBoundary() bool {
	return p.err == nil && p.state == stateHeader && p.hn == 0
}

// Next decodes from in, continuing whatever frame the previous call left
// unfinished, and returns one event and how many bytes of in it consumed.
//
//   - EventNone means all of in was consumed (n == len(in)) without
//     completing an event; call again when more bytes arrive.
//   - Any other event: call again with in[n:] (the rest may hold more).
//   - On error ev is zero and n is 0, and p is dead: every later call
//     returns the same error. CloseCode(err) gives the tunnel's close code.
//
// Frames are checked from their header, before any payload is taken: the R
// bit (ErrReservedBit), the length (ErrFrameTooLarge past MaxFrame for DATA
// and OPEN, past MaxControl for the others), the stream ID for the type
// (ErrStreamID) and the payload length for the type (ErrFrameLength).
// Unknown types are skipped without an event. Control payloads' values are
// not checked here: decode them with the Parse* functions.
func (p *Parser) Next(in []byte) (ev Event, n int, err error) {
	if p.err != nil {
		return Event{}, 0, p.err
	}
	if p.ctl != nil && p.state != stateControl {
		ctlPool.Put(p.ctl)
		p.ctl = nil
	}
	for {
		switch p.state {
		case stateHeader:
			var raw []byte
			if p.hn == 0 && len(in)-n >= HeaderLen {
				raw = in[n : n+HeaderLen]
				n += HeaderLen
			} else {
				c := copy(p.hdr[p.hn:], in[n:])
				p.hn += uint8(c)
				n += c
				if p.hn < HeaderLen {
					return Event{}, n, nil
				}
				p.hn = 0
				raw = p.hdr[:]
			}
			if err := p.header(raw); err != nil {
				p.err = err
				return Event{}, 0, err
			}
			// Empty DATA and SETTINGS give their event at the header.
			switch {
			case p.h.Type == TypeData && p.remain == 0:
				p.state = stateHeader
				return Event{Kind: EventData, Header: p.h, Payload: in[n:n], Last: true}, n, nil
			case p.h.Type == TypeSettings && p.remain == 0:
				p.state = stateHeader
				return Event{Kind: EventFrame, Header: p.h, Payload: in[n:n]}, n, nil
			}
		case stateKind:
			if n == len(in) {
				return Event{}, n, nil
			}
			ev = Event{Kind: EventOpen, Header: p.h, Open: Kind(in[n])}
			n++
			p.remain--
			p.state = stateData
			if p.remain == 0 {
				p.state = stateHeader
				ev.Last = true
			}
			return ev, n, nil
		case stateData:
			if n == len(in) {
				return Event{}, n, nil
			}
			k := min(uint32(len(in)-n), p.remain)
			ev = Event{Kind: EventData, Header: p.h, Payload: in[n : n+int(k)]}
			n += int(k)
			p.remain -= k
			if p.remain == 0 {
				p.state = stateHeader
				ev.Last = true
			}
			return ev, n, nil
		case stateControl:
			got := p.h.Length - p.remain
			if got == 0 && uint32(len(in)-n) >= p.remain {
				ev = Event{Kind: EventFrame, Header: p.h, Payload: in[n : n+int(p.remain)]}
				n += int(p.remain)
				p.remain = 0
				p.state = stateHeader
				return ev, n, nil
			}
			if n == len(in) {
				return Event{}, n, nil
			}
			if p.ctl == nil {
				p.ctl = ctlPool.Get().(*[MaxControl]byte)
			}
			c := copy(p.ctl[got:p.h.Length], in[n:])
			n += c
			p.remain -= uint32(c)
			if p.remain > 0 {
				return Event{}, n, nil
			}
			p.state = stateHeader // p.ctl goes back to the pool at the next call
			return Event{Kind: EventFrame, Header: p.h, Payload: p.ctl[:p.h.Length]}, n, nil
		case stateSkip:
			k := min(uint32(len(in)-n), p.remain)
			n += int(k)
			p.remain -= k
			if p.remain > 0 {
				return Event{}, n, nil
			}
			p.state = stateHeader
		}
	}
}

// header decodes and checks raw, then sets the state for the payload.
func (p *Parser) header(raw []byte) error {
	h := Header{
		Length: uint32(raw[0])<<16 | uint32(raw[1])<<8 | uint32(raw[2]),
		Type:   Type(raw[3]),
		Flags:  raw[4],
		Stream: binary.BigEndian.Uint32(raw[5:]) & MaxStreamID,
	}
	if raw[5]&0x80 != 0 {
		return headerError(ErrReservedBit, h)
	}
	maxFrame := p.MaxFrame
	if maxFrame == 0 {
		maxFrame = DefaultMaxFrame
	}
	var lengthOK, streamOK bool
	switch h.Type {
	case TypeData, TypeOpen:
		if h.Length > maxFrame {
			return headerError(ErrFrameTooLarge, h)
		}
		lengthOK, streamOK = h.Type == TypeData || h.Length >= 1, h.Stream != 0
	default:
		if h.Length > MaxControl {
			return headerError(ErrFrameTooLarge, h)
		}
		switch h.Type {
		case TypeSettings:
			lengthOK, streamOK = h.Length%6 == 0 && h.Length <= MaxSettings*6, h.Stream == 0
		case TypeReset:
			lengthOK, streamOK = h.Length == 4, h.Stream != 0
		case TypeWindow:
			lengthOK, streamOK = h.Length == 4, true
		case TypePing, TypeGoAway:
			lengthOK, streamOK = h.Length == 8, h.Stream == 0
		default:
			lengthOK, streamOK = true, true
		}
	}
	if !streamOK {
		return headerError(ErrStreamID, h)
	}
	if !lengthOK {
		return headerError(ErrFrameLength, h)
	}
	p.h, p.remain = h, h.Length
	switch h.Type {
	case TypeData:
		p.state = stateData
	case TypeOpen:
		p.state = stateKind
	case TypeSettings, TypeReset, TypeWindow, TypePing, TypeGoAway:
		p.state = stateControl
	default:
		p.state = stateSkip
	}
	return nil
}

func headerError(base error, h Header) error {
	return fmt.Errorf("%w (%v, stream %d, length %d)", base, h.Type, h.Stream, h.Length)
}
