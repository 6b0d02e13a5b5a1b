package mux

import (
	"encoding/binary"
	"slices"
	"strconv"
)

// Every frame starts with a 9-byte header, integers big-endian:
//
//	+-----------------------------------------------+---------------+
//	|                 Length (24)                   |   Type (8)    |
//	+---------------+-+---------------------------------------------+
//	|   Flags (8)   |R|              Stream ID (31)                 |
//	+---------------+-+---------------------------------------------+
//	|                     Payload (Length bytes) …
const HeaderLen = 9

// Limits of the frame format.
const (
	// MaxControl is the largest payload of every frame type but DATA and
	// OPEN, unknown types included.
	MaxControl = 256
	// MaxLength is the largest Length the 24-bit field holds, and so the
	// largest MAX_FRAME a peer may announce.
	MaxLength = 1<<24 - 1
	// MinMaxFrame is the smallest MAX_FRAME a peer may announce.
	MinMaxFrame = 16384
	// MaxStreamID is the largest stream ID (31 bits; the top bit is R).
	MaxStreamID = 1<<31 - 1
	// MaxWindow is the largest a flow-control window may grow, and the
	// largest WINDOW increment.
	MaxWindow = 1<<31 - 1
	// MaxSettings is the most (id, value) pairs one SETTINGS frame carries.
	MaxSettings = 16
	// MaxUDPPacket is the largest DATA payload on a udp stream.
	MaxUDPPacket = 65507
)

// Defaults a side assumes until the peer's SETTINGS arrive.
const (
	DefaultStreamWindow  = 262144
	DefaultSessionWindow = 4194304
	DefaultMaxFrame      = 65536
	DefaultMaxStreams    = 256
	Version              = 1 // the protocol version of this package (subprotocol httvps.v1)
)

// Subprotocol is the WebSocket subprotocol that selects this version.
const Subprotocol = "httvps.v1"

// Type is a frame's type byte.
type Type uint8

const (
	// TypeSettings, stream 0. Payload: n × (id u16, value u32), n <= 16.
	TypeSettings Type = 0x0
	// TypeOpen, stream != 0. Payload: kind u8, then optional first data.
	// Flags: FlagFIN.
	TypeOpen Type = 0x1
	// TypeData, stream != 0. Payload: stream bytes, or one udp packet.
	// Flags: FlagFIN.
	TypeData Type = 0x2
	// TypeReset, stream != 0. Payload: code u32.
	TypeReset Type = 0x3
	// TypeWindow, any stream (0: the session). Payload: increment u32,
	// 1…2^31-1.
	TypeWindow Type = 0x4
	// TypePing, stream 0. Payload: 8-byte id. Flags: FlagACK.
	TypePing Type = 0x5
	// TypeGoAway, stream 0. Payload: last stream id u32, code u32.
	TypeGoAway Type = 0x6
)

// Frame flags. Flags not defined for a type are sent as 0 and ignored.
const (
	FlagFIN = 0x1 // OPEN, DATA: the sender has finished sending on the stream
	FlagACK = 0x1 // PING: this is the answer
)

func (t Type) String() string {
	switch t {
	case TypeSettings:
		return "SETTINGS"
	case TypeOpen:
		return "OPEN"
	case TypeData:
		return "DATA"
	case TypeReset:
		return "RESET"
	case TypeWindow:
		return "WINDOW"
	case TypePing:
		return "PING"
	case TypeGoAway:
		return "GOAWAY"
	}
	return "TYPE(" + strconv.Itoa(int(t)) + ")"
}

// Kind is a stream's kind, the first payload byte of its OPEN.
type Kind uint8

const (
	KindTCP Kind = 1 // a Shadowsocks TCP byte stream, flow-controlled
	KindUDP Kind = 2 // one Shadowsocks UDP packet per DATA frame, not flow-controlled
)

func (k Kind) String() string {
	switch k {
	case KindTCP:
		return "tcp"
	case KindUDP:
		return "udp"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// ResetCode is a RESET frame's code. Unknown codes are treated as ResetCancel.
type ResetCode uint32

const (
	ResetCancel      ResetCode = 1 // the sender no longer wants the stream
	ResetRefused     ResetCode = 2 // not processed: safe to retry on another tunnel
	ResetConnect     ResetCode = 3 // no member of the token could be connected
	ResetFlowControl ResetCode = 4 // the peer sent more than the stream's window
	ResetUpstream    ResetCode = 5 // the member reset or failed mid-stream
	ResetProtocol    ResetCode = 6 // a bad frame for this stream
	ResetInternal    ResetCode = 7 // anything else
)

var resetNames = [...]string{"", "CANCEL", "REFUSED", "CONNECT", "FLOW_CONTROL", "UPSTREAM", "PROTOCOL", "INTERNAL"}

func (c ResetCode) String() string {
	if c >= 1 && int(c) < len(resetNames) {
		return resetNames[c]
	}
	return "RESET(" + strconv.FormatUint(uint64(c), 10) + ")"
}

// Known reports whether c is one of the codes of this version; a receiver
// treats any other as ResetCancel.
func (c ResetCode) Known() bool { return c >= ResetCancel && c <= ResetInternal }

// GoAwayCode is a GOAWAY frame's code.
type GoAwayCode uint32

const (
	GoAwayNoError  GoAwayCode = 0 // drain, idle
	GoAwayProtocol GoAwayCode = 1
	GoAwayInternal GoAwayCode = 2
)

func (c GoAwayCode) String() string {
	switch c {
	case GoAwayNoError:
		return "NO_ERROR"
	case GoAwayProtocol:
		return "PROTOCOL"
	case GoAwayInternal:
		return "INTERNAL"
	}
	return "GOAWAY(" + strconv.FormatUint(uint64(c), 10) + ")"
}

// Header is a decoded frame header.
type Header struct {
	Length uint32 // payload bytes after the header (24 bits)
	Type   Type
	Flags  uint8
	Stream uint32 // 31 bits
}

// FIN reports whether the header's FIN flag is set (OPEN and DATA only).
func (h Header) FIN() bool {
	return h.Flags&FlagFIN != 0 && (h.Type == TypeData || h.Type == TypeOpen)
}

// PutHeader writes h into b[:HeaderLen]. The R bit is written as 0; Length
// must fit 24 bits (it panics otherwise: a longer frame cannot be framed).
func PutHeader(b []byte, h Header) {
	if h.Length > MaxLength {
		panic("mux: frame length over 2^24-1")
	}
	_ = b[HeaderLen-1]
	b[0] = byte(h.Length >> 16)
	b[1] = byte(h.Length >> 8)
	b[2] = byte(h.Length)
	b[3] = byte(h.Type)
	b[4] = h.Flags
	binary.BigEndian.PutUint32(b[5:], h.Stream&MaxStreamID)
}

// grow extends dst by n bytes and returns the extended slice and the new
// part. It allocates only if cap(dst) is too small.
func grow(dst []byte, n int) ([]byte, []byte) {
	l := len(dst)
	dst = slices.Grow(dst, n)[:l+n]
	return dst, dst[l:]
}

func appendHeader(dst []byte, length int, t Type, flags uint8, stream uint32) ([]byte, []byte) {
	if length < 0 || length > MaxLength {
		panic("mux: frame length over 2^24-1")
	}
	dst, b := grow(dst, HeaderLen+length)
	PutHeader(b, Header{Length: uint32(length), Type: t, Flags: flags, Stream: stream})
	return dst, b[HeaderLen:]
}

func finFlag(fin bool) uint8 {
	if fin {
		return FlagFIN
	}
	return 0
}

// The Append functions append one whole frame to dst and return the
// extended slice. They allocate only when cap(dst) is too small. Sizes are
// the caller's to respect: DATA and OPEN payloads at most the peer's
// MAX_FRAME (a length over 2^24-1 panics).

// AppendSettings appends a SETTINGS frame stating every field of s.
func AppendSettings(dst []byte, s Settings) []byte {
	dst, p := appendHeader(dst, 5*6, TypeSettings, 0, 0)
	for i, v := range [...]uint32{s.Version, s.MaxStreams, s.StreamWindow, s.SessionWindow, s.MaxFrame} {
		binary.BigEndian.PutUint16(p[i*6:], uint16(i+1))
		binary.BigEndian.PutUint32(p[i*6+2:], v)
	}
	return dst
}

// AppendOpen appends an OPEN of stream with kind k and first data (may be empty).
func AppendOpen(dst []byte, stream uint32, k Kind, fin bool, data []byte) []byte {
	dst, p := appendHeader(dst, 1+len(data), TypeOpen, finFlag(fin), stream)
	p[0] = byte(k)
	copy(p[1:], data)
	return dst
}

// AppendData appends a DATA frame carrying data.
func AppendData(dst []byte, stream uint32, fin bool, data []byte) []byte {
	dst, p := appendHeader(dst, len(data), TypeData, finFlag(fin), stream)
	copy(p, data)
	return dst
}

// AppendDataHeader appends only the header of a DATA frame whose n payload
// bytes the caller writes next (for example read straight from a socket).
func AppendDataHeader(dst []byte, stream uint32, n int, fin bool) []byte {
	if n < 0 || n > MaxLength {
		panic("mux: frame length over 2^24-1")
	}
	dst, b := grow(dst, HeaderLen)
	PutHeader(b, Header{Length: uint32(n), Type: TypeData, Flags: finFlag(fin), Stream: stream})
	return dst
}

// AppendReset appends a RESET of stream with code c.
func AppendReset(dst []byte, stream uint32, c ResetCode) []byte {
	dst, p := appendHeader(dst, 4, TypeReset, 0, stream)
	binary.BigEndian.PutUint32(p, uint32(c))
	return dst
}

// AppendWindow appends a WINDOW granting inc bytes on stream (0: the session).
func AppendWindow(dst []byte, stream uint32, inc uint32) []byte {
	dst, p := appendHeader(dst, 4, TypeWindow, 0, stream)
	binary.BigEndian.PutUint32(p, inc)
	return dst
}

// AppendPing appends a PING with id, or its answer when ack is set.
func AppendPing(dst []byte, id [8]byte, ack bool) []byte {
	var f uint8
	if ack {
		f = FlagACK
	}
	dst, p := appendHeader(dst, 8, TypePing, f, 0)
	copy(p, id[:])
	return dst
}

// AppendGoAway appends a GOAWAY accepting no stream above last.
func AppendGoAway(dst []byte, last uint32, c GoAwayCode) []byte {
	dst, p := appendHeader(dst, 8, TypeGoAway, 0, 0)
	binary.BigEndian.PutUint32(p, last&MaxStreamID)
	binary.BigEndian.PutUint32(p[4:], uint32(c))
	return dst
}
