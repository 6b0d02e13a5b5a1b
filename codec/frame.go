package codec

import "github.com/gobwas/ws"

// Frame header layout (RFC 6455 5.2), most significant bit first:
//
//	byte 0: FIN(1) RSV1(1) RSV2(1) RSV3(1) opcode(4)
//	byte 1: MASK(1) len7(7)
//	len7 == 126: 2 more bytes, big-endian 16-bit length
//	len7 == 127: 8 more bytes, big-endian 64-bit length, MSB 0
//	MASK == 1:   4 bytes of masking key, then the masked payload
//
// Clients always mask; servers never do.
const (
	bitFin  = 0x80
	bitsRsv = 0x70
	maskOp  = 0x0f
	bitMask = 0x80
	maskLen = 0x7f

	len16 = 126 // len7 value announcing a 16-bit length
	len64 = 127 // len7 value announcing a 64-bit length

	// MaxHeaderLen is the longest frame header: 2 + 8 length + 4 mask key.
	MaxHeaderLen = 14
	// MaxControlPayload is the largest payload a control frame may carry.
	MaxControlPayload = ws.MaxControlFramePayloadSize
)

// Default limits used when a Limits field is zero.
const (
	DefaultMaxFrame   = 1 << 20
	DefaultMaxMessage = 1 << 20
)
