package codec

import (
	"encoding/binary"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// ParseClose splits a Close frame's unmasked payload into its status code and
// reason (RFC 6455 5.5.1, 7.4). An empty payload gives 1005 (no status) and
// no error. A one-byte payload is ErrCloseLength; a code other than
// 1000-1003, 1007-1011 or 3000-4999 is ErrCloseCode; a reason that is not
// UTF-8 is ErrCloseReasonInvalid. reason aliases payload.
func ParseClose(payload []byte) (code ws.StatusCode, reason []byte, err error) {
	switch len(payload) {
	case 0:
		return ws.StatusNoStatusRcvd, nil, nil
	case 1:
		return 0, nil, ErrCloseLength
	}
	code = ws.StatusCode(binary.BigEndian.Uint16(payload))
	if !validWireCode(code) {
		return 0, nil, ErrCloseCode
	}
	reason = payload[2:]
	if !utf8.Valid(reason) {
		return 0, nil, ErrCloseReasonInvalid
	}
	return code, reason, nil
}

// validWireCode reports whether a peer may send code in a Close frame.
// 1004 is reserved, 1005/1006/1015 are for local use only, and 1012-2999 are
// not assigned by RFC 6455.
func validWireCode(code ws.StatusCode) bool {
	switch {
	case code >= 1000 && code <= 1003:
		return true
	case code >= 1007 && code <= 1011:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}
