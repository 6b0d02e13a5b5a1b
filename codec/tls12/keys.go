package tls12

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/binary"
	"hash"

	"github.com/httvps/httvps/codec/internal/lazyaead"
	"golang.org/x/crypto/chacha20poly1305"
)

const (
	MasterSecretLen = 48 // RFC 5246 §8.1
	RandomLen       = 32 // RFC 5246 §7.4.1.2

	tagLen         = 16 // all three AEADs
	nonceLen       = 12 // all three AEADs
	explicitLen    = 8  // RFC 5288 §3: GCMNonce.nonce_explicit
	gcmFixedIVLen  = 4  // RFC 5288 §3: GCMNonce.salt
	chachaFixedLen = 12 // RFC 7905 §2
)

type suiteInfo struct {
	keyLen      int
	ivLen       int // fixed IV: the key block's client/server_write_IV
	explicitLen int // per-record nonce bytes sent in the fragment
	hash        func() hash.Hash
	aead        func(key []byte) (cipher.AEAD, error)
}

func newAESGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

var (
	suiteAES128 = suiteInfo{16, gcmFixedIVLen, explicitLen, sha256.New, newAESGCM}
	// RFC 5288 §3: the *_SHA384 GCM suites use P_SHA384 as their PRF.
	suiteAES256 = suiteInfo{32, gcmFixedIVLen, explicitLen, sha512.New384, newAESGCM}
	suiteChaCha = suiteInfo{chacha20poly1305.KeySize, chachaFixedLen, 0, sha256.New, chacha20poly1305.New}
)

func lookupSuite(id uint16) (*suiteInfo, error) {
	switch id {
	case tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256:
		return &suiteAES128, nil
	case tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384:
		return &suiteAES256, nil
	case tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256:
		return &suiteChaCha, nil
	}
	return nil, ErrUnsupportedSuite
}

// prf fills out with PRF(secret, label, seed1+seed2) = P_hash(secret,
// label+seed1+seed2) (RFC 5246 §5): A(0) = seed, A(i) = HMAC(secret,
// A(i-1)), output HMAC(secret, A(1)+seed) || HMAC(secret, A(2)+seed) || ...
func prf(h func() hash.Hash, secret []byte, label string, seed1, seed2, out []byte) {
	mac := hmac.New(h, secret)
	seed := func() {
		mac.Write([]byte(label))
		mac.Write(seed1)
		mac.Write(seed2)
	}
	seed()
	a := mac.Sum(nil)
	var block []byte
	for len(out) > 0 {
		mac.Reset()
		mac.Write(a)
		seed()
		block = mac.Sum(block[:0])
		out = out[copy(out, block):]
		mac.Reset()
		mac.Write(a)
		a = mac.Sum(a[:0])
	}
	clear(a)
	clear(block)
}

// Keys derives the traffic keys of an AEAD suite (RFC 5246 §6.3):
// key_block = PRF(master, "key expansion", server_random + client_random),
// split as client_write_key, server_write_key, client_write_IV,
// server_write_IV (AEAD suites have no MAC keys). The IVs are 4 bytes for
// AES-GCM (RFC 5288 §3) and 12 for ChaCha20-Poly1305 (RFC 7905 §2). The four
// slices share one new array; Clear them when the Opener and Sealer exist.
func Keys(suite uint16, master, clientRandom, serverRandom []byte) (clientKey, clientIV, serverKey, serverIV []byte, err error) {
	s, err := lookupSuite(suite)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	if len(master) != MasterSecretLen || len(clientRandom) != RandomLen || len(serverRandom) != RandomLen {
		return nil, nil, nil, nil, ErrKeyLength
	}
	kb := make([]byte, 2*s.keyLen+2*s.ivLen)
	prf(s.hash, master, "key expansion", serverRandom, clientRandom, kb)
	k, v := s.keyLen, s.ivLen
	return kb[0:k:k], kb[2*k : 2*k+v : 2*k+v], kb[k : 2*k : 2*k], kb[2*k+v : 2*k+2*v : 2*k+2*v], nil
}

// keyState is one direction's traffic keys; Opener and Sealer embed it.
// The AEAD can be parked while the connection is idle (see Opener.Park).
type keyState struct {
	aead  lazyaead.AEAD
	suite *suiteInfo
	seq   uint64
	// nonce holds the fixed IV (GCM: bytes 0..3, ChaCha: all 12) and is
	// completed per record; kept here, with aad, so neither escapes per record.
	iv    [nonceLen]byte
	nonce [nonceLen]byte
	aad   [aadLen]byte
}

// park drops the AEAD until the next record. It reports whether there was
// one to drop.
func (k *keyState) park() bool { return k.aead.Park() }

// ready makes the AEAD live: ErrClosed after wipe, a rebuild after park.
func (k *keyState) ready() error { return k.aead.Ready(ErrClosed) }

// aadLen: seq_num(8) || type(1) || version(2) || length(2) (RFC 5246 §6.2.3.3).
const aadLen = 13

func (k *keyState) init(suite uint16, key, iv []byte, seq uint64) error {
	s, err := lookupSuite(suite)
	if err != nil {
		return err
	}
	if len(key) != s.keyLen || len(iv) != s.ivLen {
		return ErrKeyLength
	}
	if err := k.aead.Set(s.aead, key); err != nil {
		return err
	}
	k.suite, k.seq = s, seq
	copy(k.iv[:], iv)
	return nil
}

// makeNonce writes the record nonce for k.seq into k.nonce: GCM takes the
// explicit nonce (8 bytes; nil: the big-endian seq, what Seal sends) after
// the 4-byte salt (RFC 5288 §3); ChaCha20 XORs the big-endian seq into the
// last 8 bytes of the IV (RFC 7905 §2).
// The last usable seq is 2^64-2, so seq itself never wraps.
func (k *keyState) makeNonce(explicit []byte) error {
	if err := k.ready(); err != nil {
		return err
	}
	if k.seq == ^uint64(0) {
		return ErrSeqExhausted
	}
	k.nonce = k.iv
	if k.suite.explicitLen != 0 {
		if explicit == nil {
			binary.BigEndian.PutUint64(k.nonce[gcmFixedIVLen:], k.seq)
		} else {
			copy(k.nonce[gcmFixedIVLen:], explicit)
		}
		return nil
	}
	s := k.seq
	for i := nonceLen - 1; i >= nonceLen-8; i-- {
		k.nonce[i] ^= byte(s)
		s >>= 8
	}
	return nil
}

// makeAAD fills k.aad for a record of type ct whose plaintext is n bytes.
func (k *keyState) makeAAD(ct uint8, n int) []byte {
	binary.BigEndian.PutUint64(k.aad[:8], k.seq)
	k.aad[8], k.aad[9], k.aad[10] = ct, 3, 3
	k.aad[11], k.aad[12] = byte(n>>8), byte(n)
	return k.aad[:]
}

// wipe zeroes what this package holds of the keys. The AEAD's own copy (the
// AES key schedule or ChaCha20 key) is unreachable and left to the GC.
func (k *keyState) wipe() {
	clear(k.iv[:])
	clear(k.nonce[:])
	k.aead.Wipe()
}
