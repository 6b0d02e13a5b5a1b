package tls13

import (
	"crypto/cipher"
	"crypto/tls"
	"testing"
)

var testSuites = []struct {
	name string
	id   uint16
}{
	{"AES128GCM", tls.TLS_AES_128_GCM_SHA256},
	{"AES256GCM", tls.TLS_AES_256_GCM_SHA384},
	{"CHACHA20", tls.TLS_CHACHA20_POLY1305_SHA256},
}

// testSecret is a fixed traffic secret of the suite's hash length.
func testSecret(id uint16, seed byte) []byte {
	s, _ := lookupSuite(id)
	b := make([]byte, s.hashLen)
	for i := range b {
		b[i] = seed + byte(i)*7
	}
	return b
}

func newPair(t testing.TB, id uint16) (*Sealer, *Opener) {
	t.Helper()
	s, err := NewSealer(id, testSecret(id, 1))
	if err != nil {
		t.Fatal(err)
	}
	o, err := NewOpener(id, testSecret(id, 1))
	if err != nil {
		t.Fatal(err)
	}
	return s, o
}

// rawRecord seals any inner plaintext under any header at sequence number seq,
// bypassing Sealer's rules, to build records a broken peer could send. The
// AEAD and nonce come from the Sealer's derived state; hdrLen overrides the
// header length field when >= 0.
func rawRecord(s *Sealer, seq uint64, outerType uint8, version uint16, inner []byte, hdrLen int) []byte {
	var nonce [ivLen]byte
	nonce = s.iv
	for i := 0; i < 8; i++ {
		nonce[ivLen-1-i] ^= byte(seq >> (8 * i))
	}
	n := len(inner) + tagLen
	if hdrLen >= 0 {
		n = hdrLen
	}
	hdr := []byte{outerType, byte(version >> 8), byte(version), byte(n >> 8), byte(n)}
	var a cipher.AEAD = s.aead.Live()
	return a.Seal(hdr, nonce[:], inner, hdr)
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	x := uint32(seed)*2654435761 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}
