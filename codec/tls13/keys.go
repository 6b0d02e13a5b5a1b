package tls13

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"hash"

	"github.com/httvps/httvps/codec/internal/lazyaead"
	"golang.org/x/crypto/chacha20poly1305"
)

const (
	ivLen     = 12 // RFC 8446 §5.3: iv_length = max(8, N_MIN) = 12 for all three AEADs
	tagLen    = 16 // all three AEADs
	maxSecret = 48 // SHA-384
)

type suiteInfo struct {
	keyLen  int
	hashLen int
	hash    func() hash.Hash
	aead    func(key []byte) (cipher.AEAD, error)
}

func newAESGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

func lookupSuite(id uint16) (*suiteInfo, error) {
	switch id {
	case tls.TLS_AES_128_GCM_SHA256:
		return &suiteAES128, nil
	case tls.TLS_AES_256_GCM_SHA384:
		return &suiteAES256, nil
	case tls.TLS_CHACHA20_POLY1305_SHA256:
		return &suiteChaCha, nil
	}
	return nil, ErrUnsupportedSuite
}

var (
	suiteAES128 = suiteInfo{16, sha256.Size, sha256.New, newAESGCM}
	suiteAES256 = suiteInfo{32, sha512.Size384, sha512.New384, newAESGCM}
	suiteChaCha = suiteInfo{chacha20poly1305.KeySize, sha256.Size, sha256.New, chacha20poly1305.New}
)

// expandLabel is HKDF-Expand-Label(secret, label, "", length) (RFC 8446 §7.1).
// HkdfLabel = uint16 length || opaque label<7..255> = "tls13 "+label ||
// opaque context<0..255> = "".
func expandLabel(h func() hash.Hash, secret []byte, label string, length int) ([]byte, error) {
	var buf [2 + 1 + 6 + 32 + 1]byte
	info := append(buf[:0], byte(length>>8), byte(length), byte(6+len(label)))
	info = append(info, "tls13 "...)
	info = append(info, label...)
	info = append(info, 0)
	return hkdf.Expand(h, secret, string(info), length)
}

// keyState is one direction's traffic keys; Opener and Sealer embed it.
// The AEAD can be parked while the connection is idle (see Opener.Park).
type keyState struct {
	aead      lazyaead.AEAD
	suite     *suiteInfo
	seq       uint64
	iv        [ivLen]byte
	nonce     [ivLen]byte // scratch kept here so the nonce does not escape per record
	secretLen uint8
	secret    [maxSecret]byte
}

// park drops the AEAD until the next record. It reports whether there was
// one to drop.
func (k *keyState) park() bool { return k.aead.Park() }

// ready makes the AEAD live: ErrClosed after wipe, a rebuild after park.
func (k *keyState) ready() error { return k.aead.Ready(ErrClosed) }

// setSecret installs secret and derives key and iv from it (RFC 8446 §7.3).
func (k *keyState) setSecret(secret []byte) error {
	if len(secret) != k.suite.hashLen {
		return ErrSecretLength
	}
	key, err := expandLabel(k.suite.hash, secret, "key", k.suite.keyLen)
	if err != nil {
		return err
	}
	defer clear(key)
	iv, err := expandLabel(k.suite.hash, secret, "iv", ivLen)
	if err != nil {
		return err
	}
	defer clear(iv)
	if err := k.aead.Set(k.suite.aead, key); err != nil {
		return err
	}
	copy(k.iv[:], iv)
	clear(k.secret[:])
	k.secretLen = uint8(copy(k.secret[:], secret))
	k.seq = 0
	return nil
}

func (k *keyState) init(suite uint16, secret []byte) error {
	s, err := lookupSuite(suite)
	if err != nil {
		return err
	}
	k.suite = s
	return k.setSecret(secret)
}

// update moves to the next traffic secret (RFC 8446 §7.2):
// secret' = HKDF-Expand-Label(secret, "traffic upd", "", Hash.length).
func (k *keyState) update() error {
	if k.aead.Closed() {
		return ErrClosed
	}
	next, err := expandLabel(k.suite.hash, k.secret[:k.secretLen], "traffic upd", k.suite.hashLen)
	if err != nil {
		return err
	}
	defer clear(next)
	return k.setSecret(next)
}

// makeNonce writes iv XOR the left-padded big-endian seq into k.nonce
// (RFC 8446 §5.3). The caller advances seq once the record is done. The last
// usable seq is 2^64-2, so seq itself never wraps.
func (k *keyState) makeNonce() error {
	if err := k.ready(); err != nil {
		return err
	}
	if k.seq == ^uint64(0) {
		return ErrSeqExhausted
	}
	k.nonce = k.iv
	s := k.seq
	for i := ivLen - 1; i >= ivLen-8; i-- {
		k.nonce[i] ^= byte(s)
		s >>= 8
	}
	return nil
}

// wipe zeroes what this package holds of the keys. The AEAD's own copy (the
// AES key schedule or ChaCha20 key) is unreachable and left to the GC.
func (k *keyState) wipe() {
	clear(k.secret[:])
	clear(k.iv[:])
	clear(k.nonce[:])
	k.aead.Wipe()
}
