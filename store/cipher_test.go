package store_test

import (
	"testing"

	"github.com/httvps/httvps/internal/testpeer"
	"github.com/httvps/httvps/store"
)

// TestCiphers: the one cipher list (used by the token API, the pool
// backends and outlinefake) has its default first, and every method in it
// is one the test peers, like the client, can speak.
func TestCiphers(t *testing.T) {
	if store.Ciphers[0] != store.DefaultCipher {
		t.Errorf("Ciphers[0] = %q, DefaultCipher %q", store.Ciphers[0], store.DefaultCipher)
	}
	for _, m := range store.Ciphers {
		if !store.ValidCipher(m) {
			t.Errorf("ValidCipher(%q) = false", m)
		}
		if _, err := testpeer.NewCipher(m, "pw"); err != nil {
			t.Errorf("%s: %v", m, err)
		}
	}
	for _, m := range []string{"", "aes-256-cfb", "chacha20", "AES-256-GCM"} {
		if store.ValidCipher(m) {
			t.Errorf("ValidCipher(%q) = true", m)
		}
	}
}
