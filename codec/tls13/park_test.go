package tls13

import (
	"bytes"
	"testing"
)

// TestParkIsInvisible: a Sealer and Opener parked before every record (and
// across a KeyUpdate) produce and accept exactly the records of a pair that
// never parks.
func TestParkIsInvisible(t *testing.T) {
	for _, ts := range testSuites {
		t.Run(ts.name, func(t *testing.T) {
			ref, _ := newPair(t, ts.id)
			s, o := newPair(t, ts.id)
			for i := range 6 {
				if i == 3 {
					s.Park()
					o.Park()
					if err := ref.Update(); err != nil {
						t.Fatal(err)
					}
					if err := s.Update(); err != nil {
						t.Fatal(err)
					}
					if err := o.Update(); err != nil {
						t.Fatal(err)
					}
				}
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
				o.Park() // twice is the same as once
				p, ct, err := o.Open(got)
				if err != nil || ct != TypeApplicationData || !bytes.Equal(p, msg) {
					t.Fatalf("record %d: open after Park: ct %d err %v", i, ct, err)
				}
			}
		})
	}
}

// TestParkFreesAndRebuilds: Park drops the AEAD, the next record rebuilds it
// (one allocation), and records in between cost nothing.
func TestParkFreesAndRebuilds(t *testing.T) {
	s, o := newPair(t, testSuites[0].id)
	if !s.Park() || s.Park() {
		t.Fatal("Park reports true once, then false")
	}
	if s.aead.Live() != nil || !s.aead.Parked() {
		t.Fatal("Park kept the AEAD")
	}
	buf := make([]byte, 0, 4096)
	rec, err := s.Seal(buf, TypeApplicationData, []byte("x"))
	if err != nil || s.aead.Live() == nil {
		t.Fatalf("Seal after Park: %v", err)
	}
	if _, _, err := o.Open(rec); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() {
		s.Park()
		s.Seal(buf[:0], TypeApplicationData, []byte("x"))
	}); n == 0 {
		t.Fatal("rebuilding a parked AEAD did not allocate: Park freed nothing")
	}
}

// TestParkThenClear: a cleared Sealer or Opener stays closed whether or not
// it was parked, and Park after Clear does not reopen it.
func TestParkThenClear(t *testing.T) {
	s, o := newPair(t, testSuites[0].id)
	rec, _ := s.Seal(nil, TypeApplicationData, []byte("x"))
	s.Park()
	o.Park()
	s.Clear()
	o.Clear()
	if s.Park() || o.Park() {
		t.Fatal("Park after Clear reported keys to drop")
	}
	if _, err := s.Seal(nil, TypeApplicationData, []byte("y")); err != ErrClosed {
		t.Fatalf("Seal after Clear: %v", err)
	}
	if err := s.Update(); err != ErrClosed {
		t.Fatalf("Update after Clear: %v", err)
	}
	if _, _, err := o.Open(rec); err != ErrClosed {
		t.Fatalf("Open after Clear: %v", err)
	}
	if !s.aead.Wiped() || !o.aead.Wiped() {
		t.Fatal("key not zeroed by Clear")
	}
}
