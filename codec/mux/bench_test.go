package mux

import "testing"

// BenchmarkParserData64K: the bulk path, 64 KiB DATA frames, fed whole and
// in 16 KiB reads (a frame then spans reads).
func BenchmarkParserData64K(b *testing.B) {
	var in []byte
	for range 16 {
		in = AppendData(in, 1, false, make([]byte, DefaultMaxFrame))
	}
	for _, bc := range []struct {
		name  string
		chunk int
	}{{"whole", len(in)}, {"16KiB", 16384}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(in)))
			var p Parser
			for b.Loop() {
				for r := in; len(r) > 0; {
					c := r[:min(bc.chunk, len(r))]
					r = r[len(c):]
					for len(c) > 0 {
						_, n, err := p.Next(c)
						if err != nil {
							b.Fatal(err)
						}
						c = c[n:]
					}
				}
			}
		})
	}
}

// BenchmarkParserSmall: a mix of small frames (window credit, pings, short
// data), the interactive path.
func BenchmarkParserSmall(b *testing.B) {
	var in []byte
	for i := range 64 {
		in = AppendWindow(in, uint32(i), 4096)
		in = AppendData(in, uint32(i+1), false, make([]byte, 64))
		in = AppendPing(in, [8]byte{}, true)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	var p Parser
	for b.Loop() {
		for c := in; len(c) > 0; {
			_, n, err := p.Next(c)
			if err != nil {
				b.Fatal(err)
			}
			c = c[n:]
		}
	}
}

func BenchmarkAppendSmall(b *testing.B) {
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendWindow(buf[:0], 1, 32768)
		buf = AppendDataHeader(buf, 1, 1400, false)
		buf = AppendPing(buf, [8]byte{1}, false)
	}
}
