package codec

import (
	"encoding/binary"

	"github.com/gobwas/ws"
)

// Limits bounds what a Reader accepts. Zero values select the defaults.
type Limits struct {
	MaxFrame   int64 // largest payload of one data frame; <= 0 means DefaultMaxFrame
	MaxMessage int64 // largest total payload of a (fragmented) message; <= 0 means DefaultMaxMessage
	RejectText bool  // text frames (and messages) are an error: ErrTextFrame
}

// EventKind says what an Event carries.
type EventKind uint8

const (
	EventNone    EventKind = iota // all input consumed, need more bytes
	EventData                     // Payload: next piece of a data message's payload, unmasked in place
	EventControl                  // a complete control frame (ping/pong/close); Payload = its unmasked payload (<= 125 bytes)
)

// Event is one result of Reader.Next.
type Event struct {
	Kind EventKind
	// Op is, for EventData, the message's opcode (OpBinary or OpText, also
	// for continuation frames) and, for EventControl, OpPing, OpPong or OpClose.
	Op ws.OpCode
	// Payload is, for EventData, a subslice of the p given to Next. For
	// EventControl it is a subslice of p when the whole control frame was in
	// p, or else the Reader's own array. Either way it is valid only until the
	// next call to Next or until the caller reuses p.
	Payload []byte
	// FrameEnd is set on the piece that ends a data frame.
	FrameEnd bool
	// MessageEnd is set on the piece that ends a data message (the last byte
	// of a FIN frame). A zero-length frame yields one EventData with an empty
	// Payload and FrameEnd set, and MessageEnd set when it has FIN.
	MessageEnd bool
}

type readState uint8

const (
	stateHeader  readState = iota // between frames or inside a header (hn bytes in hdr)
	stateData                     // inside a data frame's payload, which is never buffered
	stateControl                  // inside a control frame's payload (cn bytes in ctl)
)

// Reader parses client-to-server frames incrementally, from chunks split at
// any byte. Use the zero value after Init. Between calls it keeps at most a
// partial header and a partial control payload in fixed arrays: it holds no
// pointers to the caller's buffers, so the caller may lend it a pooled buffer
// per read and return the buffer after the loop.
//
// Text payloads are passed through; their UTF-8 is not checked here.
// A Reader is not safe for concurrent use.
type Reader struct {
	err        error // sticky: once set, every Next returns it
	maxFrame   int64
	maxMessage int64
	remain     int64 // payload bytes left in the current frame
	msgLen     int64 // payload bytes announced so far in the open message
	maskOff    int   // payload bytes of the current frame already unmasked, mod 4
	mask       [4]byte
	state      readState
	rejectText bool
	fin        bool      // current frame has FIN
	op         ws.OpCode // current control frame's opcode
	msgOp      ws.OpCode // open data message's opcode; 0 when none is open
	hn         uint8     // header bytes buffered in hdr
	cn         uint8     // control payload bytes buffered in ctl
	cl         uint8     // current control frame's payload length
	hdr        [MaxHeaderLen]byte
	ctl        [MaxControlPayload]byte
}

// Init resets r to expect the first frame of a connection, under l.
func (r *Reader) Init(l Limits) {
	*r = Reader{
		maxFrame:   l.MaxFrame,
		maxMessage: l.MaxMessage,
		rejectText: l.RejectText,
	}
	if r.maxFrame <= 0 {
		r.maxFrame = DefaultMaxFrame
	}
	if r.maxMessage <= 0 {
		r.maxMessage = DefaultMaxMessage
	}
}

// AtBoundary reports whether r is between frames with nothing partial
// buffered (a fragmented message may still be open). It is false after an
// error.
func (r *Reader) AtBoundary() bool {
	return r.err == nil && r.state == stateHeader && r.hn == 0
}

// Next parses p, continuing whatever frame the previous call left
// unfinished, and returns the first event found and how many bytes of p it
// consumed to find it. It unmasks payload in place in p.
//
//   - EventNone means all of p was consumed (n == len(p)) without completing
//     an event; call again when more bytes arrive. Next(nil) returns it with n 0.
//   - Any other event has 1 <= n <= len(p); call again with p[n:] (the rest
//     may hold more events) until len(p) reaches 0.
//   - On error ev is zero and n is 0. The Reader is then dead: every later
//     call returns the same error. CloseCode(err) gives the status to send.
//
// The caller loop is:
//
//	for len(p) > 0 {
//		ev, n, err := r.Next(p)
//		p = p[n:]
//		if err != nil { ... close with CloseCode(err) ... }
//		handle ev (EventNone only when p is now empty)
//	}
//
// A Close frame's payload is checked with ParseClose before it is returned.
func (r *Reader) Next(p []byte) (ev Event, n int, err error) {
	if r.err != nil {
		return Event{}, 0, r.err
	}
	for {
		switch r.state {
		case stateHeader:
			var c int
			var ok bool
			c, ok, err = r.readHeader(p[n:])
			n += c
			if err != nil {
				r.err = err
				return Event{}, 0, err
			}
			if !ok {
				return Event{}, n, nil
			}
			if r.remain == 0 {
				// Empty frames produce their event right at the header.
				if r.state == stateControl {
					ev, err = r.control(p[n:n])
					if err != nil {
						return Event{}, 0, err
					}
					return ev, n, nil
				}
				return r.data(p[n:n]), n, nil
			}
		case stateData:
			k := len(p) - n
			if k == 0 {
				return Event{}, n, nil
			}
			if int64(k) > r.remain {
				k = int(r.remain)
			}
			piece := p[n : n+k]
			n += k
			return r.data(piece), n, nil
		case stateControl:
			k := len(p) - n
			if k == 0 {
				return Event{}, n, nil
			}
			if r.cn == 0 && k >= int(r.cl) {
				// Whole payload in p: unmask and return it in place.
				piece := p[n : n+int(r.cl)]
				n += int(r.cl)
				ws.Cipher(piece, r.mask, 0)
				ev, err = r.control(piece)
				if err != nil {
					return Event{}, 0, err
				}
				return ev, n, nil
			}
			c := copy(r.ctl[r.cn:r.cl], p[n:])
			r.cn += uint8(c)
			n += c
			if r.cn < r.cl {
				return Event{}, n, nil
			}
			piece := r.ctl[:r.cl]
			ws.Cipher(piece, r.mask, 0)
			ev, err = r.control(piece)
			if err != nil {
				return Event{}, 0, err
			}
			return ev, n, nil
		}
	}
}

// data unmasks piece, which must be the next len(piece) payload bytes of the
// current data frame, and advances past it.
func (r *Reader) data(piece []byte) Event {
	ws.Cipher(piece, r.mask, r.maskOff)
	r.maskOff = (r.maskOff + len(piece)) & 3
	r.remain -= int64(len(piece))
	ev := Event{Kind: EventData, Op: r.msgOp, Payload: piece}
	if r.remain == 0 {
		ev.FrameEnd = true
		r.state = stateHeader
		if r.fin {
			ev.MessageEnd = true
			r.msgOp = 0
			r.msgLen = 0
		}
	}
	return ev
}

// control finishes the current control frame with its unmasked payload.
func (r *Reader) control(payload []byte) (Event, error) {
	if r.op == ws.OpClose {
		if _, _, err := ParseClose(payload); err != nil {
			r.err = err
			return Event{}, err
		}
	}
	r.state = stateHeader
	r.cn = 0
	return Event{Kind: EventControl, Op: r.op, Payload: payload}, nil
}

// readHeader consumes header bytes from p. When the header completes it
// validates it and sets up the payload state; ok reports completion.
func (r *Reader) readHeader(p []byte) (n int, ok bool, err error) {
	if r.hn == 0 && len(p) >= 2 {
		// Fast path: the whole header is in p, nothing to buffer.
		if err := r.checkStart(p[0], p[1]); err != nil {
			return 0, false, err
		}
		need := headerLen(p[1])
		if len(p) >= need {
			return need, true, r.finishHeader(p[:need])
		}
	}
	for n < len(p) {
		need := 2
		if r.hn >= 2 {
			need = headerLen(r.hdr[1])
		}
		c := copy(r.hdr[r.hn:need], p[n:])
		r.hn += uint8(c)
		n += c
		if r.hn == 2 && need == 2 {
			if err := r.checkStart(r.hdr[0], r.hdr[1]); err != nil {
				return n, false, err
			}
			continue // the length and key bytes may follow in p
		}
		if int(r.hn) == need {
			r.hn = 0
			return n, true, r.finishHeader(r.hdr[:need])
		}
	}
	return n, false, nil
}

// headerLen is the header length implied by a masked frame's second byte.
func headerLen(b1 byte) int {
	n := 2 + 4
	switch b1 & maskLen {
	case len16:
		n += 2
	case len64:
		n += 8
	}
	return n
}

// checkStart validates the first two header bytes, which fix everything
// except the extended length and the key. It changes no state.
func (r *Reader) checkStart(b0, b1 byte) error {
	if b0&bitsRsv != 0 {
		return ErrReservedBits
	}
	if b1&bitMask == 0 {
		return ErrUnmasked
	}
	op := ws.OpCode(b0 & maskOp)
	fin := b0&bitFin != 0
	switch op {
	case ws.OpClose, ws.OpPing, ws.OpPong:
		if !fin {
			return ErrFragmentedControl
		}
		if b1&maskLen > MaxControlPayload {
			return ErrControlTooLarge
		}
	case ws.OpContinuation:
		if r.msgOp == 0 {
			return ErrStrayContinuation
		}
	case ws.OpText, ws.OpBinary:
		if r.msgOp != 0 {
			return ErrMessageOpen
		}
		if op == ws.OpText && r.rejectText {
			return ErrTextFrame
		}
	default:
		return ErrBadOpcode
	}
	return nil
}

// finishHeader decodes a complete header already passed by checkStart,
// checks the length against the limits and enters the payload state.
func (r *Reader) finishHeader(h []byte) error {
	op := ws.OpCode(h[0] & maskOp)
	var length int64
	switch l7 := h[1] & maskLen; l7 {
	case len16:
		v := binary.BigEndian.Uint16(h[2:4])
		if v < len16 {
			return ErrBadLength
		}
		length = int64(v)
	case len64:
		v := binary.BigEndian.Uint64(h[2:10])
		if v>>63 != 0 || v <= 0xffff {
			return ErrBadLength
		}
		length = int64(v)
	default:
		length = int64(l7)
	}
	copy(r.mask[:], h[len(h)-4:])
	r.remain = length
	r.fin = h[0]&bitFin != 0
	if op.IsControl() {
		r.op = op
		r.cl = uint8(length)
		r.cn = 0
		r.state = stateControl
		return nil
	}
	if length > r.maxFrame {
		return ErrFrameTooLarge
	}
	if length > r.maxMessage-r.msgLen {
		return ErrMessageTooLarge
	}
	if op != ws.OpContinuation {
		r.msgOp = op
	}
	r.msgLen += length
	r.maskOff = 0
	r.state = stateData
	return nil
}
