package tls13

import (
	"errors"
	"strconv"
)

// Errors. Each names the alert AlertFor maps it to (RFC 8446 §6.2).
var (
	// ErrBadRecordMAC: a record failed AEAD authentication (bad_record_mac).
	ErrBadRecordMAC = errors.New("tls13: bad record MAC")
	// ErrRecordOverflow: TLSCiphertext.length over 2^14+256, or a decrypted
	// TLSInnerPlaintext over 2^14+1 bytes (record_overflow).
	ErrRecordOverflow = errors.New("tls13: record overflow")
	// ErrUnexpectedMessage: a record or message not allowed after the
	// handshake: outer type other than application_data, inner type other than
	// alert/handshake/application_data, all-zero inner plaintext, an empty
	// handshake record, a handshake message other than KeyUpdate, a KeyUpdate
	// not ending its record, or a record interleaved with a split handshake
	// message (unexpected_message).
	ErrUnexpectedMessage = errors.New("tls13: unexpected message")
	// ErrDecode: a malformed alert or KeyUpdate (decode_error).
	ErrDecode = errors.New("tls13: decode error")
	// ErrIllegalParameter: KeyUpdate.request_update neither 0 nor 1
	// (illegal_parameter, RFC 8446 §4.6.3).
	ErrIllegalParameter = errors.New("tls13: illegal parameter")
	// ErrSeqExhausted: the sequence number would wrap (RFC 8446 §5.3)
	// (internal_error).
	ErrSeqExhausted = errors.New("tls13: sequence number exhausted")
	// ErrRecordLength: Open was given a slice whose length is not the one in
	// its header; a caller bug (internal_error).
	ErrRecordLength = errors.New("tls13: record slice length differs from header")
	// ErrClosed: Clear was called.
	ErrClosed = errors.New("tls13: keys cleared")
	// ErrTooManyEmpty: more than MaxEmptyRecords records in a row carried no
	// application data (unexpected_message).
	ErrTooManyEmpty = errors.New("tls13: too many records without application data")
	// ErrPayloadTooLarge: Seal was given more than MaxPlaintext bytes.
	ErrPayloadTooLarge = errors.New("tls13: payload over 2^14 bytes")
	// ErrBadContent: Seal was asked for a record RFC 8446 §5.1 forbids: an
	// inner type other than alert/handshake/application_data, an empty
	// handshake record, or an alert record not holding exactly one alert.
	ErrBadContent = errors.New("tls13: record content not allowed")
	// ErrUnsupportedSuite: not one of the three TLS 1.3 AEAD suites.
	ErrUnsupportedSuite = errors.New("tls13: unsupported cipher suite")
	// ErrSecretLength: a traffic secret whose length is not the suite's hash length.
	ErrSecretLength = errors.New("tls13: traffic secret length does not match suite hash")

	// ErrCloseNotify: the peer sent close_notify; a clean end of its stream.
	ErrCloseNotify = errors.New("tls13: close_notify received")
	// ErrAlert matches (errors.Is) every AlertError.
	ErrAlert = errors.New("tls13: alert received")
)

// Alert descriptions (RFC 8446 §6).
const (
	AlertCloseNotify       uint8 = 0
	AlertUnexpectedMessage uint8 = 10
	AlertBadRecordMAC      uint8 = 20
	AlertRecordOverflow    uint8 = 22
	AlertIllegalParameter  uint8 = 47
	AlertDecodeError       uint8 = 50
	AlertInternalError     uint8 = 80
	AlertUserCanceled      uint8 = 90
)

// AlertError is an error alert received from the peer; its value is the
// description. errors.Is(err, ErrAlert) is true for it. No alert is sent back.
type AlertError uint8

func (e AlertError) Error() string {
	return "tls13: alert received: " + strconv.Itoa(int(e))
}

// Is makes errors.Is(e, ErrAlert) true.
func (e AlertError) Is(target error) bool { return target == ErrAlert }

// AlertFor returns the alert description to send before closing after err.
// ErrCloseNotify gives close_notify (the reply to the peer's); unknown errors
// give internal_error. After an AlertError send nothing: the peer has gone.
func AlertFor(err error) uint8 {
	switch {
	case errors.Is(err, ErrCloseNotify):
		return AlertCloseNotify
	case errors.Is(err, ErrBadRecordMAC):
		return AlertBadRecordMAC
	case errors.Is(err, ErrRecordOverflow):
		return AlertRecordOverflow
	case errors.Is(err, ErrUnexpectedMessage), errors.Is(err, ErrTooManyEmpty):
		return AlertUnexpectedMessage
	case errors.Is(err, ErrDecode):
		return AlertDecodeError
	case errors.Is(err, ErrIllegalParameter):
		return AlertIllegalParameter
	}
	return AlertInternalError
}
