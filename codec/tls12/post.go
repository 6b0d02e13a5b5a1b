package tls12

// Alerts (RFC 5246 §7.2) are [level, description]:
//
//	0       1
//	+-------+-------------+
//	| level | description |  level 1 warning, 2 fatal
//	+-------+-------------+
//
// A HelloRequest or ClientHello after the handshake is a renegotiation
// attempt (RFC 5246 §7.4.1.1, §7.4.1.2): Open reports it as ErrRenegotiation.
const (
	alertWarning = 1
	alertFatal   = 2
)

// ParseAlert reads the content of an alert record. close_notify, at either
// level, gives ErrCloseNotify: the peer's stream ended cleanly, and anything
// it sends later must be ignored. Other warning alerts (user_canceled,
// no_renegotiation, ...) give nil: RFC 5246 §7.2 lets the connection go on.
// Fatal alerts are returned as AlertError; an unknown level is ErrDecode.
func ParseAlert(content []byte) error {
	if len(content) != 2 {
		return ErrDecode
	}
	if content[1] == AlertCloseNotify {
		return ErrCloseNotify
	}
	switch content[0] {
	case alertWarning:
		return nil
	case alertFatal:
		return AlertError(content[1])
	}
	return ErrDecode
}

// SealAlert appends an alert record: warning level for close_notify,
// user_canceled and no_renegotiation (RFC 5246 §7.2.2: "always a warning"),
// fatal otherwise. Like Seal, it does not allocate when dst has
// Overhead()+2 bytes of spare capacity.
func (s *Sealer) SealAlert(dst []byte, description uint8) ([]byte, error) {
	level := uint8(alertFatal)
	switch description {
	case AlertCloseNotify, AlertUserCanceled, AlertNoRenegotiation:
		level = alertWarning
	}
	msg := [2]byte{level, description}
	return s.Seal(dst, TypeAlert, msg[:])
}

// HelloRandom returns the random of the ClientHello (msgType 1) or
// ServerHello (msgType 2) that starts the plaintext handshake record rec
// (header included; at least its first 43 bytes): bytes 11..43, after the
// header, the 4-byte message header and the 2-byte client_version. random is
// a subslice of rec. A record that is not such a hello, or too short to hold
// the random (a hello fragmented into tiny records, which no real peer
// sends), is ErrNotHello; the record version's minor byte is not checked,
// as a ClientHello record may say 0x0301.
func HelloRandom(rec []byte) (msgType uint8, random []byte, err error) {
	const (
		msgHdr = 4
		verLen = 2
		start  = RecordHeaderLen + msgHdr + verLen
		end    = start + RandomLen
	)
	if len(rec) < end || rec[0] != TypeHandshake || rec[1] != 3 {
		return 0, nil, ErrNotHello
	}
	if int(rec[3])<<8|int(rec[4]) < end-RecordHeaderLen {
		return 0, nil, ErrNotHello
	}
	t := rec[RecordHeaderLen]
	mlen := int(rec[6])<<16 | int(rec[7])<<8 | int(rec[8])
	if (t != typeClientHello && t != typeServerHello) || mlen < verLen+RandomLen {
		return 0, nil, ErrNotHello
	}
	return t, rec[start:end], nil
}
