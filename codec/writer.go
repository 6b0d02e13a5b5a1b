package codec

import (
	"encoding/binary"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// ServerHeaderLen returns the length of an unmasked header for a payload of
// n bytes: 2, 4 or 10.
func ServerHeaderLen(n int) int {
	switch {
	case n < len16:
		return 2
	case n <= 0xffff:
		return 4
	default:
		return 10
	}
}

// PutServerHeader writes an unmasked FIN header with opcode op for a payload
// of n >= 0 bytes at dst[0:] and returns the bytes written. dst must hold
// ServerHeaderLen(n) bytes, so the caller can reserve the room in front of a
// payload it is about to read in place.
func PutServerHeader(dst []byte, op ws.OpCode, n int) int {
	return putHeader(dst, bitFin|byte(op), 0, n)
}

// putHeader writes the first byte b0, then the length with the mask bit
// mbit, in the shortest form RFC 6455 allows.
func putHeader(dst []byte, b0, mbit byte, n int) int {
	switch {
	case n < len16:
		_ = dst[1]
		dst[0] = b0
		dst[1] = mbit | byte(n)
		return 2
	case n <= 0xffff:
		_ = dst[3]
		dst[0] = b0
		dst[1] = mbit | len16
		binary.BigEndian.PutUint16(dst[2:4], uint16(n))
		return 4
	default:
		_ = dst[9]
		dst[0] = b0
		dst[1] = mbit | len64
		binary.BigEndian.PutUint64(dst[2:10], uint64(n))
		return 10
	}
}

// AppendServerFrame appends one unmasked FIN frame to dst. It allocates only
// when dst lacks the capacity.
func AppendServerFrame(dst []byte, op ws.OpCode, payload []byte) []byte {
	var h [10]byte
	k := PutServerHeader(h[:], op, len(payload))
	dst = append(dst, h[:k]...)
	return append(dst, payload...)
}

// AppendClose appends a complete server Close frame. The reason is cut at a
// rune boundary so that the payload fits in 125 bytes; it should be valid
// UTF-8, or the peer will fail the connection with 1007. A code of 0 or 1005
// (no status, never valid on the wire) gives an empty payload and drops the
// reason.
func AppendClose(dst []byte, code ws.StatusCode, reason string) []byte {
	if code == 0 || code == ws.StatusNoStatusRcvd {
		return append(dst, bitFin|byte(ws.OpClose), 0)
	}
	if room := MaxControlPayload - 2; len(reason) > room {
		cut := room
		for cut > 0 && !utf8.RuneStart(reason[cut]) {
			cut--
		}
		reason = reason[:cut]
	}
	dst = append(dst, bitFin|byte(ws.OpClose), byte(2+len(reason)), byte(code>>8), byte(code))
	return append(dst, reason...)
}

// AppendClientFrame appends one masked frame as a client sends it, for tests
// and the bench client. fin=false starts or continues a fragmented message.
// payload is left untouched; the masked copy is in the appended bytes.
func AppendClientFrame(dst []byte, op ws.OpCode, fin bool, mask [4]byte, payload []byte) []byte {
	b0 := byte(op) & maskOp
	if fin {
		b0 |= bitFin
	}
	var h [MaxHeaderLen]byte
	k := putHeader(h[:], b0, bitMask, len(payload))
	k += copy(h[k:], mask[:])
	dst = append(dst, h[:k]...)
	start := len(dst)
	dst = append(dst, payload...)
	ws.Cipher(dst[start:], mask, 0)
	return dst
}
