package testpeer

// Record protection for RawTLS: TLS 1.3 (RFC 8446 §5, §7.1-7.3) for its
// three suites and TLS 1.2 AES-128-GCM (RFC 5246 §5, §6.2.3.3; RFC 5288),
// written from the RFCs for tests only.

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"

	"golang.org/x/crypto/chacha20poly1305"
)

type recordKeys struct {
	v12    bool
	aead   cipher.AEAD
	iv     []byte // TLS 1.3: 12-byte iv; TLS 1.2: 4-byte salt
	seq    uint64
	secret []byte // TLS 1.3 traffic secret
	hash   func() hash.Hash
	keyLen int
}

// ErrRecordAuth is a server record that failed authentication.
var ErrRecordAuth = errors.New("testpeer: record authentication failed")

func aesGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

func newTLS13Keys(suite uint16, secret []byte) (*recordKeys, error) {
	k := &recordKeys{}
	switch suite {
	case tls.TLS_AES_128_GCM_SHA256:
		k.hash, k.keyLen = sha256.New, 16
	case tls.TLS_AES_256_GCM_SHA384:
		k.hash, k.keyLen = sha512.New384, 32
	case tls.TLS_CHACHA20_POLY1305_SHA256:
		k.hash, k.keyLen = sha256.New, 32
	default:
		return nil, fmt.Errorf("testpeer: TLS 1.3 suite %x", suite)
	}
	if len(secret) != k.hash().Size() {
		return nil, fmt.Errorf("testpeer: traffic secret of %d bytes", len(secret))
	}
	return k, k.setSecret(secret)
}

// hkdfExpandLabel is HKDF-Expand-Label(secret, label, "", n) (RFC 8446 §7.1).
func hkdfExpandLabel(h func() hash.Hash, secret []byte, label string, n int) ([]byte, error) {
	info := []byte{byte(n >> 8), byte(n), byte(6 + len(label))}
	info = append(info, "tls13 "+label...)
	info = append(info, 0)
	return hkdf.Expand(h, secret, string(info), n)
}

func (k *recordKeys) setSecret(secret []byte) error {
	key, err := hkdfExpandLabel(k.hash, secret, "key", k.keyLen)
	if err != nil {
		return err
	}
	if k.iv, err = hkdfExpandLabel(k.hash, secret, "iv", 12); err != nil {
		return err
	}
	if k.keyLen == 32 && k.hash().Size() == 32 {
		k.aead, err = chacha20poly1305.New(key)
	} else {
		k.aead, err = aesGCM(key)
	}
	k.secret, k.seq = secret, 0
	return err
}

// update moves to the next TLS 1.3 traffic secret (RFC 8446 §7.2).
func (k *recordKeys) update() error {
	if k.v12 {
		return errors.New("testpeer: no KeyUpdate in TLS 1.2")
	}
	next, err := hkdfExpandLabel(k.hash, k.secret, "traffic upd", k.hash().Size())
	if err != nil {
		return err
	}
	return k.setSecret(next)
}

func (k *recordKeys) nonce13() []byte {
	n := append([]byte(nil), k.iv...)
	for i := 0; i < 8; i++ {
		n[11-i] ^= byte(k.seq >> (8 * i))
	}
	return n
}

// newTLS12Keys derives the client's and the server's keys for
// TLS_ECDHE_*_WITH_AES_128_GCM_SHA256 from the master secret (RFC 5246 §6.3).
// Both Finished messages used sequence number 0, so both start at 1.
func newTLS12Keys(suite uint16, master, clientRandom, serverRandom []byte) (client, server *recordKeys, err error) {
	if suite != tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 && suite != tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 {
		return nil, nil, fmt.Errorf("testpeer: TLS 1.2 suite %x", suite)
	}
	if len(master) != 48 || len(clientRandom) != 32 || len(serverRandom) != 32 {
		return nil, nil, errors.New("testpeer: missing TLS 1.2 secrets")
	}
	seed := append(append([]byte("key expansion"), serverRandom...), clientRandom...)
	kb := prf12(master, seed, 2*16+2*4)
	ca, err := aesGCM(kb[0:16])
	if err != nil {
		return nil, nil, err
	}
	sa, err := aesGCM(kb[16:32])
	if err != nil {
		return nil, nil, err
	}
	client = &recordKeys{v12: true, aead: ca, iv: kb[32:36], seq: 1}
	server = &recordKeys{v12: true, aead: sa, iv: kb[36:40], seq: 1}
	return client, server, nil
}

// prf12 is the TLS 1.2 PRF with SHA-256: P_SHA256(secret, label+seed).
func prf12(secret, seed []byte, n int) []byte {
	var out []byte
	a := seed
	for len(out) < n {
		m := hmac.New(sha256.New, secret)
		m.Write(a)
		a = m.Sum(nil)
		m = hmac.New(sha256.New, secret)
		m.Write(a)
		m.Write(seed)
		out = m.Sum(out)
	}
	return out[:n]
}

// seal appends one protected record to dst.
func (k *recordKeys) seal(dst []byte, ct uint8, content []byte, pad int) []byte {
	if k.v12 {
		var explicit [8]byte
		binary.BigEndian.PutUint64(explicit[:], k.seq)
		nonce := append(append([]byte(nil), k.iv...), explicit[:]...)
		aad := binary.BigEndian.AppendUint64(nil, k.seq)
		aad = append(aad, ct, 3, 3, byte(len(content)>>8), byte(len(content)))
		n := 8 + len(content) + k.aead.Overhead()
		dst = append(dst, ct, 3, 3, byte(n>>8), byte(n))
		dst = append(dst, explicit[:]...)
		dst = k.aead.Seal(dst, nonce, content, aad)
		k.seq++
		return dst
	}
	inner := append(append([]byte(nil), content...), ct)
	inner = append(inner, make([]byte, pad)...)
	n := len(inner) + k.aead.Overhead()
	hdr := []byte{RecordAppData, 3, 3, byte(n >> 8), byte(n)}
	dst = append(dst, hdr...)
	dst = k.aead.Seal(dst, k.nonce13(), inner, hdr)
	k.seq++
	return dst
}

// open authenticates one record (header included) and returns its content
// type and content.
func (k *recordKeys) open(rec []byte) (uint8, []byte, error) {
	if k.v12 {
		if len(rec) < 5+8+16 {
			return 0, nil, ErrRecordAuth
		}
		ct := rec[0]
		nonce := append(append([]byte(nil), k.iv...), rec[5:13]...)
		plen := len(rec) - 5 - 8 - 16
		aad := binary.BigEndian.AppendUint64(nil, k.seq)
		aad = append(aad, ct, 3, 3, byte(plen>>8), byte(plen))
		p, err := k.aead.Open(nil, nonce, rec[13:], aad)
		if err != nil {
			return 0, nil, fmt.Errorf("%w (TLS 1.2 type %d, seq %d)", ErrRecordAuth, ct, k.seq)
		}
		k.seq++
		return ct, p, nil
	}
	if rec[0] != RecordAppData {
		return 0, nil, fmt.Errorf("testpeer: outer record type %d after the handshake", rec[0])
	}
	inner, err := k.aead.Open(nil, k.nonce13(), rec[5:], rec[:5])
	if err != nil {
		return 0, nil, fmt.Errorf("%w (seq %d)", ErrRecordAuth, k.seq)
	}
	k.seq++
	i := len(inner) - 1
	for i >= 0 && inner[i] == 0 {
		i--
	}
	if i < 0 {
		return 0, nil, errors.New("testpeer: record without content type")
	}
	return inner[i], inner[:i], nil
}
