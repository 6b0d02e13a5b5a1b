package tls13

import "testing"

func BenchmarkSeal16K(b *testing.B) {
	for _, ts := range testSuites {
		b.Run(ts.name, func(b *testing.B) {
			s, _ := newPair(b, ts.id)
			p := pattern(MaxPlaintext, 1)
			buf := make([]byte, 0, MaxRecordLen)
			b.ReportAllocs()
			b.SetBytes(MaxPlaintext)
			for b.Loop() {
				if _, err := s.Seal(buf[:0], TypeApplicationData, p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOpen16K opens the same sealed record again and again: each loop
// restores the ciphertext (a 16 KiB copy) and rewinds the sequence number.
func BenchmarkOpen16K(b *testing.B) {
	for _, ts := range testSuites {
		b.Run(ts.name, func(b *testing.B) {
			s, o := newPair(b, ts.id)
			rec, _ := s.Seal(nil, TypeApplicationData, pattern(MaxPlaintext, 1))
			work := make([]byte, len(rec))
			b.ReportAllocs()
			b.SetBytes(MaxPlaintext)
			for b.Loop() {
				copy(work, rec)
				o.seq = 0
				if _, _, err := o.Open(work); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOpenSmall shows the fixed cost per record (100-byte payloads).
func BenchmarkOpenSmall(b *testing.B) {
	for _, ts := range testSuites {
		b.Run(ts.name, func(b *testing.B) {
			s, o := newPair(b, ts.id)
			rec, _ := s.Seal(nil, TypeApplicationData, pattern(100, 1))
			work := make([]byte, len(rec))
			b.ReportAllocs()
			b.SetBytes(100)
			for b.Loop() {
				copy(work, rec)
				o.seq = 0
				if _, _, err := o.Open(work); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkUpdate(b *testing.B) {
	for _, ts := range testSuites {
		b.Run(ts.name, func(b *testing.B) {
			s, _ := newPair(b, ts.id)
			b.ReportAllocs()
			for b.Loop() {
				if err := s.Update(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
