package tls13

// Post-handshake messages. A server never asks for post-handshake client
// authentication and never receives tickets, so the only handshake message a
// client may send after Finished is KeyUpdate (RFC 8446 §4.6.3):
//
//	0      1            4
//	+------+------------+----------------+
//	|  24  | 00 00 01   | request_update |  0 update_not_requested
//	| type | uint24 len | uint8          |  1 update_requested
//	+------+------------+----------------+
//
// Alerts (RFC 8446 §6) are [level, description]; TLS 1.3 ignores the level.

const (
	typeKeyUpdate  = 24
	handshakeHdr   = 4 // msg_type, uint24 length
	keyUpdateBody  = 1
	keyUpdateTotal = handshakeHdr + keyUpdateBody
	updateNotReq   = 0
	updateReq      = 1
	alertWarning   = 1
	alertFatal     = 2
)

// KeyUpdate is what HandshakeReader.Record found (not the wire value).
type KeyUpdate uint8

const (
	// NoKeyUpdate: no complete message yet, or a record of another type.
	NoKeyUpdate KeyUpdate = iota
	// KeyUpdateNotRequested: call Opener.Update.
	KeyUpdateNotRequested
	// KeyUpdateRequested: call Opener.Update, and send SealKeyUpdate(dst,
	// false) before the next application data record (RFC 8446 §4.6.3).
	KeyUpdateRequested
)

// MaxEmptyRecords bounds the records in a row that carry no application data
// (empty application_data, handshake, user_canceled): each costs an AEAD
// operation, a KeyUpdate also a key schedule and ~3-5 KiB of garbage, and none
// moves the stream forward.
const MaxEmptyRecords = 16

// HandshakeReader follows post-handshake messages across records, holding at
// most the 4-byte header of a KeyUpdate split between records, and counts
// records without application data. The zero value is ready; it lives inside
// the session struct, with no heap of its own.
type HandshakeReader struct {
	hdr   [handshakeHdr]byte
	n     uint8
	empty uint8 // records in a row without application data
}

// Record takes every record Open returned, in order, with its content type.
// It returns ErrUnexpectedMessage for a handshake message other than KeyUpdate,
// for bytes after a KeyUpdate in the same record (a key change must fall on a
// record boundary, RFC 8446 §5.1), and for a record of another type arriving
// while a message is split (handshake messages are not interleaved); ErrDecode
// for a KeyUpdate length other than 1; ErrIllegalParameter for a
// request_update other than 0 or 1; ErrTooManyEmpty after more than
// MaxEmptyRecords records in a row without application data.
func (h *HandshakeReader) Record(contentType uint8, content []byte) (KeyUpdate, error) {
	if contentType == TypeApplicationData && len(content) > 0 {
		h.empty = 0
	} else if h.empty++; h.empty > MaxEmptyRecords {
		return NoKeyUpdate, ErrTooManyEmpty
	}
	if contentType != TypeHandshake {
		if h.n != 0 {
			return NoKeyUpdate, ErrUnexpectedMessage
		}
		return NoKeyUpdate, nil
	}
	for i := 0; i < len(content); i++ {
		b := content[i]
		if h.n < handshakeHdr {
			h.hdr[h.n] = b
			h.n++
			switch {
			case h.n == 1 && b != typeKeyUpdate:
				return NoKeyUpdate, ErrUnexpectedMessage
			case h.n == handshakeHdr && (h.hdr[1] != 0 || h.hdr[2] != 0 || h.hdr[3] != keyUpdateBody):
				return NoKeyUpdate, ErrDecode
			}
			continue
		}
		h.n = 0
		if i != len(content)-1 {
			return NoKeyUpdate, ErrUnexpectedMessage
		}
		switch b {
		case updateNotReq:
			return KeyUpdateNotRequested, nil
		case updateReq:
			return KeyUpdateRequested, nil
		}
		return NoKeyUpdate, ErrIllegalParameter
	}
	return NoKeyUpdate, nil
}

// Pending reports whether a handshake message is split across records.
func (h *HandshakeReader) Pending() bool { return h.n != 0 }

// ParseAlert reads the content of an alert record. close_notify gives
// ErrCloseNotify: the peer's stream ended cleanly, and anything it sends later
// must be ignored. user_canceled gives nil: RFC 8446 §6.1 has it followed by
// close_notify. Every other description, known or not, is an error alert
// (RFC 8446 §6) returned as AlertError. The level byte is ignored (§6).
func ParseAlert(content []byte) error {
	if len(content) != 2 {
		return ErrDecode
	}
	switch d := content[1]; d {
	case AlertCloseNotify:
		return ErrCloseNotify
	case AlertUserCanceled:
		return nil
	default:
		return AlertError(d)
	}
}

// SealAlert appends an alert record (warning level for close_notify and
// user_canceled, fatal otherwise). Like Seal, it does not allocate when dst
// has Overhead()+2 bytes of spare capacity.
func (s *Sealer) SealAlert(dst []byte, description uint8) ([]byte, error) {
	level := uint8(alertFatal)
	if description == AlertCloseNotify || description == AlertUserCanceled {
		level = alertWarning
	}
	msg := [2]byte{level, description}
	return s.Seal(dst, TypeAlert, msg[:])
}

// SealKeyUpdate appends a KeyUpdate record under the current key, then moves
// the Sealer to its next secret, so that every later record uses the new key.
// Set requestUpdate to ask the peer to update its sending key too; answer a
// peer's request with requestUpdate false.
func (s *Sealer) SealKeyUpdate(dst []byte, requestUpdate bool) ([]byte, error) {
	msg := [keyUpdateTotal]byte{typeKeyUpdate, 0, 0, keyUpdateBody, updateNotReq}
	if requestUpdate {
		msg[4] = updateReq
	}
	dst, err := s.Seal(dst, TypeHandshake, msg[:])
	if err != nil {
		return dst, err
	}
	return dst, s.Update()
}
