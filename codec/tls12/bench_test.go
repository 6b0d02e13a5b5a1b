package tls12

import "testing"

// benchSuites are the three AEADs; the certificate type makes no difference
// to the record layer.
var benchSuites = []int{0, 2, 4}

// BenchmarkSeal and BenchmarkOpen move full 16 KiB records.
func BenchmarkSeal(b *testing.B) {
	for _, i := range benchSuites {
		ts := testSuites[i]
		b.Run(ts.name, func(b *testing.B) {
			s, _ := newPair(b, ts.id, 1)
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

func BenchmarkOpen(b *testing.B) {
	for _, i := range benchSuites {
		ts := testSuites[i]
		b.Run(ts.name, func(b *testing.B) {
			s, o := newPair(b, ts.id, 1)
			// Seal each record before opening it (the Opener only accepts
			// the next sequence number), timing the Open alone.
			p := pattern(MaxPlaintext, 1)
			buf := make([]byte, 0, MaxRecordLen)
			b.ReportAllocs()
			b.SetBytes(MaxPlaintext)
			for b.Loop() {
				b.StopTimer()
				rec, _ := s.Seal(buf[:0], TypeApplicationData, p)
				b.StartTimer()
				if _, _, err := o.Open(rec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
