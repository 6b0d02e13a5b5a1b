package codec

import (
	"errors"

	"github.com/gobwas/ws"
)

// Protocol errors: the peer broke RFC 6455. CloseCode maps them to 1002.
var (
	ErrUnmasked           = errors.New("codec: client frame not masked")
	ErrReservedBits       = errors.New("codec: reserved bits set")
	ErrBadOpcode          = errors.New("codec: unknown opcode")
	ErrFragmentedControl  = errors.New("codec: fragmented control frame")
	ErrControlTooLarge    = errors.New("codec: control frame payload over 125 bytes")
	ErrStrayContinuation  = errors.New("codec: continuation frame without a started message")
	ErrMessageOpen        = errors.New("codec: new data frame inside a fragmented message")
	ErrBadLength          = errors.New("codec: invalid payload length encoding")
	ErrCloseLength        = errors.New("codec: close payload of one byte")
	ErrCloseCode          = errors.New("codec: invalid close code")
	ErrFrameTooLarge      = errors.New("codec: frame too large")
	ErrMessageTooLarge    = errors.New("codec: message too large")
	ErrTextFrame          = errors.New("codec: text frames refused")
	ErrCloseReasonInvalid = errors.New("codec: close reason not valid UTF-8")
)

var closeCodes = [...]struct {
	err  error
	code ws.StatusCode
}{
	{ErrFrameTooLarge, ws.StatusMessageTooBig},
	{ErrMessageTooLarge, ws.StatusMessageTooBig},
	{ErrTextFrame, ws.StatusUnsupportedData},
	{ErrCloseReasonInvalid, ws.StatusInvalidFramePayloadData},
	{ErrUnmasked, ws.StatusProtocolError},
	{ErrReservedBits, ws.StatusProtocolError},
	{ErrBadOpcode, ws.StatusProtocolError},
	{ErrFragmentedControl, ws.StatusProtocolError},
	{ErrControlTooLarge, ws.StatusProtocolError},
	{ErrStrayContinuation, ws.StatusProtocolError},
	{ErrMessageOpen, ws.StatusProtocolError},
	{ErrBadLength, ws.StatusProtocolError},
	{ErrCloseLength, ws.StatusProtocolError},
	{ErrCloseCode, ws.StatusProtocolError},
}

// CloseCode returns the status code to send in the close frame that answers
// err: 1002 for protocol errors, 1009 for limits, 1003 for refused text,
// 1007 for a close reason that is not UTF-8. Wrapped errors are recognised.
// A nil err gives 1000 and any error not from this package 1011.
func CloseCode(err error) ws.StatusCode {
	if err == nil {
		return ws.StatusNormalClosure
	}
	for _, c := range closeCodes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return ws.StatusInternalServerError
}
