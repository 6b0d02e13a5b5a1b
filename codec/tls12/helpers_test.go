package tls12

import (
	"crypto/tls"
	"encoding/binary"
	"runtime"
	"testing"
)

// testSuites are the six suites the gateway allows; cert says which
// certificate type the interop tests need for them.
var testSuites = []struct {
	name string
	id   uint16
	cert string // "ecdsa" or "rsa"
	ossl string // OpenSSL cipher name
}{
	{"ECDSA-AES128GCM", tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, "ecdsa", "ECDHE-ECDSA-AES128-GCM-SHA256"},
	{"RSA-AES128GCM", tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, "rsa", "ECDHE-RSA-AES128-GCM-SHA256"},
	{"ECDSA-AES256GCM", tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, "ecdsa", "ECDHE-ECDSA-AES256-GCM-SHA384"},
	{"RSA-AES256GCM", tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, "rsa", "ECDHE-RSA-AES256-GCM-SHA384"},
	{"ECDSA-CHACHA20", tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, "ecdsa", "ECDHE-ECDSA-CHACHA20-POLY1305"},
	{"RSA-CHACHA20", tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, "rsa", "ECDHE-RSA-CHACHA20-POLY1305"},
}

// testKeys derives fixed keys for a suite from a fixed master secret.
func testKeys(id uint16, seed byte) (ck, civ, sk, siv []byte) {
	master := make([]byte, MasterSecretLen)
	cr, sr := make([]byte, RandomLen), make([]byte, RandomLen)
	for i := range master {
		master[i] = seed + byte(i)*7
	}
	for i := range cr {
		cr[i], sr[i] = byte(i), byte(255-i)
	}
	ck, civ, sk, siv, err := Keys(id, master, cr, sr)
	if err != nil {
		panic(err)
	}
	return ck, civ, sk, siv
}

// newPair returns a Sealer and an Opener for the same direction (the
// client's keys), both starting at seq.
func newPair(t testing.TB, id uint16, seq uint64) (*Sealer, *Opener) {
	t.Helper()
	k, iv, _, _ := testKeys(id, 1)
	s, err := NewSealer(id, k, iv, seq)
	if err != nil {
		t.Fatal(err)
	}
	o, err := NewOpener(id, k, iv, seq)
	if err != nil {
		t.Fatal(err)
	}
	return s, o
}

// rawRecord seals content at sequence number seq under any header (type,
// version; hdrLen overrides the length field when >= 0) and with any
// explicit nonce, bypassing Sealer's rules, to build records a broken peer
// could send. The additional data uses aadType and the real content length.
func rawRecord(s *Sealer, seq uint64, ct uint8, version uint16, content []byte, hdrLen int) []byte {
	k := s.keyState
	k.seq = seq
	if err := k.makeNonce(nil); err != nil {
		panic(err)
	}
	ex := k.suite.explicitLen
	n := ex + len(content) + tagLen
	if hdrLen >= 0 {
		n = hdrLen
	}
	rec := []byte{ct, byte(version >> 8), byte(version), byte(n >> 8), byte(n)}
	rec = append(rec, k.nonce[gcmFixedIVLen:gcmFixedIVLen+ex]...)
	aad := k.makeAAD(ct, len(content))
	binary.BigEndian.PutUint16(aad[9:], version)
	return k.aead.Live().Seal(rec, k.nonce[:], content, aad)
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

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
