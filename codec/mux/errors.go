package mux

import (
	"errors"
	"fmt"
)

// ErrProtocol is a frame or a frame sequence that breaks docs/03. Every
// error below that closes the tunnel with 1002 wraps it, so
// errors.Is(err, ErrProtocol) holds for all of them.
var ErrProtocol = errors.New("mux: protocol error")

// Protocol errors, each wrapping ErrProtocol. The Parser and the Parse*
// functions return the first five; the others are for the tunnel's state
// machine, which this package leaves to its callers.
var (
	ErrReservedBit    = fmt.Errorf("%w: reserved bit set", ErrProtocol)
	ErrStreamID       = fmt.Errorf("%w: wrong stream ID for the frame type", ErrProtocol)
	ErrFrameLength    = fmt.Errorf("%w: payload length wrong for the frame type", ErrProtocol)
	ErrBadSettings    = fmt.Errorf("%w: SETTINGS value out of range", ErrProtocol)
	ErrBadWindow      = fmt.Errorf("%w: WINDOW increment not in 1…2^31-1", ErrProtocol)
	ErrWindowOverflow = fmt.Errorf("%w: window beyond 2^31-1", ErrProtocol)
	ErrSettingsOrder  = fmt.Errorf("%w: SETTINGS not the first frame, or sent twice", ErrProtocol)
	ErrStreamOrder    = fmt.Errorf("%w: OPEN stream ID not above every earlier one", ErrProtocol)
	ErrUnknownStream  = fmt.Errorf("%w: frame for a stream never opened", ErrProtocol)
)

// ErrFrameTooLarge is a frame longer than the receiver accepts: MAX_FRAME
// for DATA and OPEN, MaxControl for every other type. Close code 1009.
var ErrFrameTooLarge = errors.New("mux: frame too large")

// Policy errors (close code 1008), for the tunnel's state machine.
var (
	ErrSessionWindow = errors.New("mux: peer sent beyond the session window")
	ErrControlBudget = errors.New("mux: control frames over budget")
)

// WebSocket close codes the tunnel ends with (RFC 6455 7.4.1).
const (
	CloseNormal      uint16 = 1000
	CloseGoingAway   uint16 = 1001
	CloseProtocol    uint16 = 1002
	CloseUnsupported uint16 = 1003
	ClosePolicy      uint16 = 1008
	CloseTooBig      uint16 = 1009
	CloseInternal    uint16 = 1011
)

var closeCodes = [...]struct {
	err  error
	code uint16
}{
	{ErrFrameTooLarge, CloseTooBig},
	{ErrSessionWindow, ClosePolicy},
	{ErrControlBudget, ClosePolicy},
	{ErrProtocol, CloseProtocol},
}

// CloseCode returns the WebSocket close code that ends a tunnel because of
// err: 1002 for protocol errors, 1009 for a frame too large, 1008 for the
// policy errors. Wrapped errors are recognised. A nil err gives 1000 and any
// error not from this package 1011.
func CloseCode(err error) uint16 {
	if err == nil {
		return CloseNormal
	}
	for _, c := range closeCodes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return CloseInternal
}
