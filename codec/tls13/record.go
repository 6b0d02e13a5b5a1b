package tls13

import "slices"

// Record layout (RFC 8446 §5.1, §5.2), as sent after the handshake:
//
//	0      1        3        5
//	+------+--------+--------+---------------------------------------------+
//	| 23   | 03 03  | length | AEAD(content || inner type || zeros) || tag |
//	| type | legacy | uint16 | length bytes, at most 2^14+256              |
//	+------+--------+--------+---------------------------------------------+
//
// The 5-byte header is the AEAD additional data.
const (
	RecordHeaderLen = 5
	MaxPlaintext    = 1 << 14            // TLSPlaintext.length limit
	MaxCiphertext   = MaxPlaintext + 256 // TLSCiphertext.length limit
	// MaxRecordLen is the largest record a peer may send: header + MaxCiphertext.
	MaxRecordLen = RecordHeaderLen + MaxCiphertext
)

// Content types (RFC 8446 §5.1).
const (
	TypeChangeCipherSpec uint8 = 20
	TypeAlert            uint8 = 21
	TypeHandshake        uint8 = 22
	TypeApplicationData  uint8 = 23
)

// RecordLen checks a record header (the first 5 bytes of hdr; fewer is
// ErrRecordLength) and returns the length of the whole record, header
// included, so the caller knows how many bytes to gather before Open. After the handshake every
// record's outer type is application_data: anything else, change_cipher_spec
// included (RFC 8446 §5), is ErrUnexpectedMessage. A length over
// MaxCiphertext is ErrRecordOverflow. legacy_record_version is not checked:
// RFC 8446 §5.1 says it MUST be ignored; it is still authenticated as part of
// the additional data, so a rewritten version fails Open.
func RecordLen(hdr []byte) (int, error) {
	if len(hdr) < RecordHeaderLen {
		return 0, ErrRecordLength
	}
	if hdr[0] != TypeApplicationData {
		return 0, ErrUnexpectedMessage
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

// NewOpener returns an Opener for a TLS 1.3 suite (tls.TLS_AES_128_GCM_SHA256,
// tls.TLS_AES_256_GCM_SHA384 or tls.TLS_CHACHA20_POLY1305_SHA256) and the
// peer's application traffic secret; the first record has sequence number 0.
// secret is copied.
func NewOpener(suite uint16, secret []byte) (*Opener, error) {
	o := new(Opener)
	if err := o.init(suite, secret); err != nil {
		return nil, err
	}
	return o, nil
}

// Open decrypts the record rec (header included, exactly RecordLen bytes) in
// place. It returns the content, a subslice of rec valid until rec is
// reused, and its inner content type with the zero padding stripped
// (RFC 8446 §5.4). It checks the rules that apply to a single record:
//   - any AEAD failure, a ciphertext shorter than the tag included:
//     ErrBadRecordMAC (rec's body is then garbage);
//   - inner plaintext over 2^14+1 bytes: ErrRecordOverflow;
//   - no non-zero byte, or an inner type other than alert, handshake or
//     application_data, or an empty handshake record: ErrUnexpectedMessage;
//   - an alert record not exactly one 2-byte alert: ErrDecode.
//
// Empty application_data records are valid and returned. Open does not
// allocate, except to rebuild the AEAD on the first record after Park.
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
	if err := o.makeNonce(); err != nil {
		return nil, 0, err
	}
	body := rec[RecordHeaderLen:]
	if len(body) < tagLen {
		return nil, 0, ErrBadRecordMAC
	}
	inner, err := o.aead.Live().Open(body[:0], o.nonce[:], body, rec[:RecordHeaderLen])
	if err != nil {
		return nil, 0, ErrBadRecordMAC
	}
	o.seq++
	if len(inner) > MaxPlaintext+1 {
		return nil, 0, ErrRecordOverflow
	}
	i := len(inner) - 1
	for i >= 0 && inner[i] == 0 {
		i--
	}
	if i < 0 {
		return nil, 0, ErrUnexpectedMessage
	}
	ct, content := inner[i], inner[:i]
	switch ct {
	case TypeApplicationData:
	case TypeHandshake:
		// RFC 8446 §5.1: no zero-length handshake fragments.
		if len(content) == 0 {
			return nil, 0, ErrUnexpectedMessage
		}
	case TypeAlert:
		// RFC 8446 §5.1: an alert record holds exactly one alert.
		if len(content) != 2 {
			return nil, 0, ErrDecode
		}
	default:
		return nil, 0, ErrUnexpectedMessage
	}
	return content, ct, nil
}

// Update moves to the peer's next traffic secret after its KeyUpdate
// (RFC 8446 §7.2) and restarts the sequence number at 0. The old secret is
// zeroed (best effort: the old AEAD's key schedule is left to the GC).
func (o *Opener) Update() error {
	if o.err != nil {
		return o.err
	}
	return o.update()
}

// Seq is the sequence number of the next record to open.
func (o *Opener) Seq() uint64 { return o.seq }

// Park lets go of the AEAD's expanded key state (about 700 bytes for
// AES-GCM) while the connection is idle; the next Open rebuilds it from the
// kept key, at the cost of one key expansion and one allocation. Nothing
// else changes: sequence numbers, secrets and errors are kept. It reports
// whether anything was dropped (false when already parked or cleared).
func (o *Opener) Park() bool { return o.park() }

// Clear zeroes the secret and iv and drops the AEAD when the session ends;
// every later call returns ErrClosed.
func (o *Opener) Clear() {
	o.wipe()
	o.err = ErrClosed
}

// Sealer encrypts the records of one direction (the server's, for a server).
// It is not safe for concurrent use.
type Sealer struct {
	keyState
}

// NewSealer is NewOpener's counterpart for our own traffic secret.
func NewSealer(suite uint16, secret []byte) (*Sealer, error) {
	s := new(Sealer)
	if err := s.init(suite, secret); err != nil {
		return nil, err
	}
	return s, nil
}

// Overhead is what Seal adds to a payload: header, inner content type, tag.
func (s *Sealer) Overhead() int { return RecordHeaderLen + 1 + tagLen }

// Seal appends to dst one record of inner content type ct carrying payload
// (at most MaxPlaintext bytes; no padding is added) and returns the extended
// slice. It does not allocate when cap(dst)-len(dst) >= len(payload)+Overhead()
// (and the AEAD is not parked: see Park).
// payload may overlap dst in any way, so the payload can be built in place at
// dst[len(dst)+RecordHeaderLen:] before the call. ct must be
// TypeApplicationData (any length, zero included), TypeHandshake (not empty)
// or TypeAlert (exactly 2 bytes), else ErrBadContent (RFC 8446 §5.1). On
// error dst is returned unchanged and no sequence number is used.
func (s *Sealer) Seal(dst []byte, ct uint8, payload []byte) ([]byte, error) {
	if len(payload) > MaxPlaintext {
		return dst, ErrPayloadTooLarge
	}
	switch {
	case ct == TypeApplicationData:
	case ct == TypeHandshake && len(payload) > 0:
	case ct == TypeAlert && len(payload) == 2:
	default:
		return dst, ErrBadContent
	}
	if err := s.makeNonce(); err != nil {
		return dst, err
	}
	off := len(dst)
	n := len(payload) + 1 + tagLen
	dst = slices.Grow(dst, RecordHeaderLen+n)[:off+RecordHeaderLen+n]
	body := dst[off+RecordHeaderLen:]
	// Move the payload first: it may sit where the header goes.
	copy(body, payload)
	body[len(payload)] = ct
	hdr := dst[off : off+RecordHeaderLen]
	hdr[0], hdr[1], hdr[2] = TypeApplicationData, 3, 3
	hdr[3], hdr[4] = byte(n>>8), byte(n)
	s.aead.Live().Seal(body[:0], s.nonce[:], body[:len(payload)+1], hdr)
	s.seq++
	return dst, nil
}

// Update moves to our next traffic secret; call it right after sealing a
// KeyUpdate (SealKeyUpdate does both).
func (s *Sealer) Update() error { return s.update() }

// Seq is the sequence number of the next record to seal.
func (s *Sealer) Seq() uint64 { return s.seq }

// Park is Opener.Park for the sending direction; the next Seal rebuilds.
func (s *Sealer) Park() bool { return s.park() }

// Clear zeroes the secret and iv and drops the AEAD when the session ends;
// every later Seal or Update returns ErrClosed.
func (s *Sealer) Clear() { s.wipe() }

// Skip advances the sequence number past n records that another
// implementation sealed with this key before handing the connection over
// (crypto/tls's NewSessionTicket after the handshake).
func (s *Sealer) Skip(n uint64) { s.seq += n }
