package tls12

import "slices"

// Record layout (RFC 5246 §6.2.3.3, RFC 5288 §3, RFC 7905 §2), as sent after
// the handshake:
//
//	0      1        3        5              13 (GCM) / 5 (ChaCha20)
//	+------+--------+--------+--------------+----------------------------+
//	| type | 03 03  | length | GCM: seq (8) | AEAD(content) || tag (16)  |
//	|      | uint16 | uint16 | explicit     |                            |
//	+------+--------+--------+--------------+----------------------------+
//
// The additional data is seq_num(8) || type || version || plaintext length.
const (
	RecordHeaderLen = 5
	MaxPlaintext    = 1 << 14             // TLSPlaintext.length limit
	MaxCiphertext   = MaxPlaintext + 2048 // TLSCiphertext.length limit (RFC 5246 §6.2.3)
	// MaxRecordLen is the largest record RecordLen accepts: header +
	// MaxCiphertext. An AEAD record that can decrypt is at most
	// RecordHeaderLen + MaxPlaintext + 24 bytes; Open refuses longer ones
	// without decrypting.
	MaxRecordLen = RecordHeaderLen + MaxCiphertext
)

// Content types (RFC 5246 §6.2.1).
const (
	TypeChangeCipherSpec uint8 = 20
	TypeAlert            uint8 = 21
	TypeHandshake        uint8 = 22
	TypeApplicationData  uint8 = 23
)

// Handshake message types a peer may send after the handshake, both
// renegotiation (RFC 5246 §7.4).
const (
	typeHelloRequest = 0
	typeClientHello  = 1
	typeServerHello  = 2
)

// RecordLen checks a record header (the first 5 bytes of hdr; fewer is
// ErrRecordLength) and returns the length of the whole record, header
// included, so the caller knows how many bytes to gather before Open. After
// the handshake the type must be alert, handshake or application_data
// (change_cipher_spec or anything else is ErrUnexpectedMessage), the version
// 0x0303 (ErrProtocolVersion), the length at most MaxCiphertext
// (ErrRecordOverflow).
func RecordLen(hdr []byte) (int, error) {
	if len(hdr) < RecordHeaderLen {
		return 0, ErrRecordLength
	}
	switch hdr[0] {
	case TypeAlert, TypeHandshake, TypeApplicationData:
	default:
		return 0, ErrUnexpectedMessage
	}
	if hdr[1] != 3 || hdr[2] != 3 {
		return 0, ErrProtocolVersion
	}
	n := int(hdr[3])<<8 | int(hdr[4])
	if n > MaxCiphertext {
		return 0, ErrRecordOverflow
	}
	return RecordHeaderLen + n, nil
}

// Opener decrypts the records of one direction (the client's, for a server).
// It is not safe for concurrent use. Once Open fails, every later call
// returns the same error: the connection must be closed.
type Opener struct {
	keyState
	err error
}

// NewOpener returns an Opener for one of the six ECDHE AEAD suites, the
// peer's write key and IV (from Keys), and the sequence number of its next
// record: 1 right after the handshake, whose Finished used 0. key and iv are
// copied.
func NewOpener(suite uint16, key, iv []byte, seq uint64) (*Opener, error) {
	o := new(Opener)
	if err := o.init(suite, key, iv, seq); err != nil {
		return nil, err
	}
	return o, nil
}

// Open decrypts the record rec (header included, exactly RecordLen bytes) in
// place. It returns the content, a subslice of rec valid until rec is
// reused, and the record's content type. It checks the rules that apply to a
// single record:
//   - any AEAD failure, a fragment shorter than explicit nonce + tag:
//     ErrBadRecordMAC (rec's body is then garbage);
//   - a fragment too long to hold at most 2^14 bytes: ErrRecordOverflow,
//     without decrypting;
//   - a handshake record: ErrRenegotiation if it starts a ClientHello or
//     HelloRequest, else ErrUnexpectedMessage (empty ones included);
//   - an alert record not exactly one 2-byte alert: ErrDecode.
//
// Empty application_data records are valid (RFC 5246 §6.2.1) and returned.
// Open does not allocate, except to rebuild the AEAD on the first record
// after Park.
func (o *Opener) Open(rec []byte) (content []byte, contentType uint8, err error) {
	if o.err != nil {
		return nil, 0, o.err
	}
	content, contentType, err = o.open(rec)
	if err != nil {
		o.err = err
	}
	return content, contentType, err
}

func (o *Opener) open(rec []byte) ([]byte, uint8, error) {
	n, err := RecordLen(rec)
	if err != nil {
		return nil, 0, err
	}
	if n != len(rec) {
		return nil, 0, ErrRecordLength
	}
	if err := o.ready(); err != nil {
		return nil, 0, err
	}
	ct := rec[0]
	ex := o.suite.explicitLen
	body := rec[RecordHeaderLen:]
	if len(body) < ex+tagLen {
		return nil, 0, ErrBadRecordMAC
	}
	plen := len(body) - ex - tagLen
	if plen > MaxPlaintext {
		return nil, 0, ErrRecordOverflow
	}
	if err := o.makeNonce(body[:ex]); err != nil {
		return nil, 0, err
	}
	sealed := body[ex:]
	content, err := o.aead.Live().Open(sealed[:0], o.nonce[:], sealed, o.makeAAD(ct, plen))
	if err != nil {
		return nil, 0, ErrBadRecordMAC
	}
	o.seq++
	switch ct {
	case TypeHandshake:
		// Every handshake message after Finished is refused; the first byte
		// of the record is the type of the next message.
		if len(content) > 0 && (content[0] == typeClientHello || content[0] == typeHelloRequest) {
			return nil, 0, ErrRenegotiation
		}
		return nil, 0, ErrUnexpectedMessage
	case TypeAlert:
		// Alerts are never split or coalesced in practice; like TLS 1.3
		// (RFC 8446 §5.1), an alert record must hold exactly one.
		if len(content) != 2 {
			return nil, 0, ErrDecode
		}
	}
	return content, ct, nil
}

// Seq is the sequence number of the next record to open.
func (o *Opener) Seq() uint64 { return o.seq }

// Park lets go of the AEAD's expanded key state (about 700 bytes for
// AES-GCM) while the connection is idle; the next Open rebuilds it from the
// kept key, at the cost of one key expansion and one allocation. Sequence
// numbers, keys and errors are kept. It reports whether anything was
// dropped (false when already parked or cleared).
func (o *Opener) Park() bool { return o.park() }

// Clear zeroes the IV and drops the AEAD when the session ends; every later
// call returns ErrClosed.
func (o *Opener) Clear() {
	o.wipe()
	o.err = ErrClosed
}

// Sealer encrypts the records of one direction (the server's, for a server).
// It is not safe for concurrent use.
type Sealer struct {
	keyState
}

// NewSealer is NewOpener's counterpart for our own write key and IV; seq is
// 1 right after the handshake.
func NewSealer(suite uint16, key, iv []byte, seq uint64) (*Sealer, error) {
	s := new(Sealer)
	if err := s.init(suite, key, iv, seq); err != nil {
		return nil, err
	}
	return s, nil
}

// Overhead is what Seal adds to a payload: header, explicit nonce (8 bytes
// for GCM, none for ChaCha20-Poly1305), tag.
func (s *Sealer) Overhead() int { return RecordHeaderLen + s.suite.explicitLen + tagLen }

// Seal appends to dst one record of type ct carrying payload (at most
// MaxPlaintext bytes) and returns the extended slice. It does not allocate
// when cap(dst)-len(dst) >= len(payload)+Overhead() and the AEAD is not
// parked (see Park). payload may overlap dst
// in any way (it is moved into place before anything is written). ct must be
// TypeApplicationData (any length, zero included) or TypeAlert (exactly 2
// bytes), else ErrBadContent. The GCM explicit nonce is the sequence number,
// so it never repeats under a key. On error dst is returned unchanged and no
// sequence number is used.
func (s *Sealer) Seal(dst []byte, ct uint8, payload []byte) ([]byte, error) {
	if len(payload) > MaxPlaintext {
		return dst, ErrPayloadTooLarge
	}
	switch {
	case ct == TypeApplicationData:
	case ct == TypeAlert && len(payload) == 2:
	default:
		return dst, ErrBadContent
	}
	if err := s.makeNonce(nil); err != nil {
		return dst, err
	}
	ex := s.suite.explicitLen
	off := len(dst)
	n := ex + len(payload) + tagLen
	dst = slices.Grow(dst, RecordHeaderLen+n)[:off+RecordHeaderLen+n]
	body := dst[off+RecordHeaderLen:]
	// Move the payload first: it may sit where the header or nonce go.
	copy(body[ex:], payload)
	copy(body[:ex], s.nonce[gcmFixedIVLen:])
	hdr := dst[off : off+RecordHeaderLen]
	hdr[0], hdr[1], hdr[2] = ct, 3, 3
	hdr[3], hdr[4] = byte(n>>8), byte(n)
	plain := body[ex : ex+len(payload)]
	s.aead.Live().Seal(plain[:0], s.nonce[:], plain, s.makeAAD(ct, len(payload)))
	s.seq++
	return dst, nil
}

// Seq is the sequence number of the next record to seal.
func (s *Sealer) Seq() uint64 { return s.seq }

// Park is Opener.Park for the sending direction; the next Seal rebuilds.
func (s *Sealer) Park() bool { return s.park() }

// Clear zeroes the IV and drops the AEAD when the session ends; every later
// Seal returns ErrClosed.
func (s *Sealer) Clear() { s.wipe() }
