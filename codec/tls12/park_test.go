package tls12

import (
	"bytes"
	"testing"
)

// TestParkIsInvisible: a Sealer and Opener parked before every record
// produce and accept exactly the records of a pair that never parks.
func TestParkIsInvisible(t *testing.T) {
	for _, ts := range testSuites {
		t.Run(ts.name, func(t *testing.T) {
			ref, _ := newPair(t, ts.id, 1)
			s, o := newPair(t, ts.id, 1)
			for i := range 5 {
				msg := pattern(100+i*1000, byte(i))
				want, err := ref.Seal(nil, TypeApplicationData, msg)
				if err != nil {
					t.Fatal(err)
				}
				s.Park()
				got, err := s.Seal(nil, TypeApplicationData, msg)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("record %d differs after Park", i)
				}
				o.Park()
				o.Park()
				p, ct, err := o.Open(got)
				if err != nil || ct != TypeApplicationData || !bytes.Equal(p, msg) {
					t.Fatalf("record %d: open after Park: ct %d err %v", i, ct, err)
				}
			}
		})
	}
}

func TestParkFreesAndThenClear(t *testing.T) {
	s, o := newPair(t, testSuites[0].id, 1)
	if !s.Park() || s.Park() {
		t.Fatal("Park reports true once, then false")
	}
	if s.aead.Live() != nil || !s.aead.Parked() {
		t.Fatal("Park kept the AEAD")
	}
	rec, err := s.Seal(nil, TypeApplicationData, []byte("x"))
	if err != nil || s.aead.Live() == nil {
		t.Fatalf("Seal after Park: %v", err)
	}
	o.Park()
	s.Park()
	s.Clear()
	o.Clear()
	o.Park()
	if _, err := s.Seal(nil, TypeApplicationData, []byte("y")); err != ErrClosed {
		t.Fatalf("Seal after Clear: %v", err)
	}
	if _, _, err := o.Open(rec); err != ErrClosed {
		t.Fatalf("Open after Clear: %v", err)
	}
	if !s.aead.Wiped() || !o.aead.Wiped() {
		t.Fatal("key not zeroed by Clear")
	}
}
