package tls12

import (
	"errors"
	"strconv"
)

// Errors. Each names the alert AlertFor maps it to (RFC 5246 §7.2).
var (
	// ErrBadRecordMAC: a record failed AEAD authentication, or its fragment
	// is shorter than explicit nonce and tag (bad_record_mac).
	ErrBadRecordMAC = errors.New("tls12: bad record MAC")
	// ErrRecordOverflow: TLSCiphertext.length over 2^14+2048, or a fragment
	// too long to decrypt to at most 2^14 bytes (record_overflow).
	ErrRecordOverflow = errors.New("tls12: record overflow")
	// ErrUnexpectedMessage: a record not allowed after the handshake:
	// change_cipher_spec or an unknown type, an empty handshake record, a
	// handshake message other than ClientHello or HelloRequest
	// (unexpected_message).
	ErrUnexpectedMessage = errors.New("tls12: unexpected message")
	// ErrRenegotiation: a ClientHello or HelloRequest after the handshake
	// (no_renegotiation, sent at warning level before closing).
	ErrRenegotiation = errors.New("tls12: renegotiation refused")
	// ErrProtocolVersion: a record version other than 0x0303
	// (protocol_version).
	ErrProtocolVersion = errors.New("tls12: record version not TLS 1.2")
	// ErrDecode: an alert record not holding exactly one alert, or an alert
	// level neither warning nor fatal (decode_error).
	ErrDecode = errors.New("tls12: decode error")
	// ErrSeqExhausted: the sequence number would wrap (RFC 5246 §6.1)
	// (internal_error).
	ErrSeqExhausted = errors.New("tls12: sequence number exhausted")
	// ErrRecordLength: Open was given a slice whose length is not the one in
	// its header, or RecordLen fewer than 5 bytes; a caller bug (internal_error).
	ErrRecordLength = errors.New("tls12: record slice length differs from header")
	// ErrClosed: Clear was called.
	ErrClosed = errors.New("tls12: keys cleared")
	// ErrPayloadTooLarge: Seal was given more than MaxPlaintext bytes.
	ErrPayloadTooLarge = errors.New("tls12: payload over 2^14 bytes")
	// ErrBadContent: Seal was asked for a record the gateway never sends
	// after the handshake: a type other than alert/application_data, or an
	// alert record not holding exactly one alert.
	ErrBadContent = errors.New("tls12: record content not allowed")
	// ErrUnsupportedSuite: not one of the six ECDHE AEAD suites.
	ErrUnsupportedSuite = errors.New("tls12: unsupported cipher suite")
	// ErrKeyLength: a master secret, random, key or IV of the wrong length.
	ErrKeyLength = errors.New("tls12: key material length does not match suite")
	// ErrNotHello: HelloRandom was given something other than a plaintext
	// handshake record starting with a ClientHello or ServerHello long enough
	// to hold its random.
	ErrNotHello = errors.New("tls12: not a ClientHello or ServerHello record")

	// ErrCloseNotify: the peer sent close_notify; a clean end of its stream.
	ErrCloseNotify = errors.New("tls12: close_notify received")
	// ErrAlert matches (errors.Is) every AlertError.
	ErrAlert = errors.New("tls12: alert received")
)

// Alert descriptions (RFC 5246 §7.2).
const (
	AlertCloseNotify       uint8 = 0
	AlertUnexpectedMessage uint8 = 10
	AlertBadRecordMAC      uint8 = 20
	AlertRecordOverflow    uint8 = 22
	AlertHandshakeFailure  uint8 = 40
	AlertIllegalParameter  uint8 = 47
	AlertDecodeError       uint8 = 50
	AlertProtocolVersion   uint8 = 70
	AlertInternalError     uint8 = 80
	AlertUserCanceled      uint8 = 90
	AlertNoRenegotiation   uint8 = 100
)

// AlertError is a fatal alert received from the peer; its value is the
// description. errors.Is(err, ErrAlert) is true for it. No alert is sent back.
type AlertError uint8

func (e AlertError) Error() string {
	return "tls12: alert received: " + strconv.Itoa(int(e))
}

// Is makes errors.Is(e, ErrAlert) true.
func (e AlertError) Is(target error) bool { return target == ErrAlert }

// AlertFor returns the alert description to send before closing after err.
// ErrCloseNotify gives close_notify (the reply to the peer's), ErrRenegotiation
// no_renegotiation (SealAlert sends both at warning level); unknown errors
// give internal_error. After an AlertError send nothing: the peer has gone.
func AlertFor(err error) uint8 {
	switch {
	case errors.Is(err, ErrCloseNotify):
		return AlertCloseNotify
	case errors.Is(err, ErrRenegotiation):
		return AlertNoRenegotiation
	case errors.Is(err, ErrBadRecordMAC):
		return AlertBadRecordMAC
	case errors.Is(err, ErrRecordOverflow):
		return AlertRecordOverflow
	case errors.Is(err, ErrUnexpectedMessage):
		return AlertUnexpectedMessage
	case errors.Is(err, ErrProtocolVersion):
		return AlertProtocolVersion
	case errors.Is(err, ErrDecode):
		return AlertDecodeError
	}
	return AlertInternalError
}
