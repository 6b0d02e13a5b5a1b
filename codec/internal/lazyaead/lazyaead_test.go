package lazyaead

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"testing"
)

func newGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

func TestLifecycle(t *testing.T) {
	var a AEAD
	if !a.Closed() || a.Park() {
		t.Fatal("zero value is not closed")
	}
	errClosed := errors.New("closed")
	if err := a.Ready(errClosed); err != errClosed {
		t.Fatalf("Ready on a closed AEAD: %v", err)
	}
	key := bytes.Repeat([]byte{7}, 16)
	if err := a.Set(newGCM, key); err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, 12)
	want := a.Live().Seal(nil, nonce, []byte("record"), nil)
	if !a.Park() || a.Park() || a.Live() != nil || !a.Parked() || a.Closed() {
		t.Fatal("Park: once true, then false; parked, not closed")
	}
	if err := a.Ready(errClosed); err != nil {
		t.Fatalf("Ready after Park: %v", err)
	}
	if got := a.Live().Seal(nil, nonce, []byte("record"), nil); !bytes.Equal(got, want) {
		t.Fatal("rebuilt AEAD seals differently")
	}
	a.Park()
	a.Wipe()
	if !a.Wiped() || a.Park() {
		t.Fatal("Wipe did not close and zero the key")
	}
	if err := a.Ready(errClosed); err != errClosed {
		t.Fatal("Ready revived a wiped AEAD")
	}
	if err := a.Set(newGCM, make([]byte, MaxKey+1)); err == nil {
		t.Fatal("a key over MaxKey was kept")
	}
}
