package tls13

import (
	"strings"
	"testing"
	"unsafe"
)

func TestOpenSealDoNotAllocate(t *testing.T) {
	for _, ts := range testSuites {
		s, o := newPair(t, ts.id)
		var h HandshakeReader
		p := pattern(MaxPlaintext, 1)
		buf := make([]byte, 0, MaxRecordLen)
		allocs := testing.AllocsPerRun(100, func() {
			rec, err := s.Seal(buf[:0], TypeApplicationData, p)
			if err != nil {
				t.Fatal(err)
			}
			content, ct, err := o.Open(rec)
			if err != nil || len(content) != MaxPlaintext {
				t.Fatal(err)
			}
			if _, err := h.Record(ct, content); err != nil {
				t.Fatal(err)
			}
			rec, _ = s.SealAlert(buf[:0], AlertUserCanceled)
			content, _, _ = o.Open(rec)
			if ParseAlert(content) != nil {
				t.Fatal("alert")
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per Seal+Open", ts.name, allocs)
		}
		// Error paths must not allocate either: a flood of bad records is cheap.
		bad := make([]byte, 64)
		o2 := new(Opener)
		allocs = testing.AllocsPerRun(100, func() {
			*o2 = Opener{keyState: o.keyState}
			copy(bad, []byte{23, 3, 3, 0, 59})
			if _, _, err := o2.Open(bad); err != ErrBadRecordMAC {
				t.Fatal(err)
			}
			_ = AlertFor(ErrBadRecordMAC)
			_ = ParseAlert([]byte{2, 40})
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per failed Open", ts.name, allocs)
		}
	}
}

// TestMemoryPerSession bounds what an idle session's Opener+Sealer pair
// keeps on the heap, per suite (heap bytes, so not machine-speed
// dependent). Measured with go1.26 on amd64: 1872 B for AES-GCM (the AES
// key schedules and GHASH tables), 400 B for ChaCha20-Poly1305; the bounds
// leave about a third for other Go versions and architectures.
func TestMemoryPerSession(t *testing.T) {
	t.Logf("unsafe.Sizeof: Opener %d B, Sealer %d B, HandshakeReader %d B",
		unsafe.Sizeof(Opener{}), unsafe.Sizeof(Sealer{}), unsafe.Sizeof(HandshakeReader{}))
	for _, ts := range testSuites {
		const n = 1000
		keep := make([]any, 0, 2*n)
		before := heapAlloc()
		for i := 0; i < n; i++ {
			s, o := newPair(t, ts.id)
			keep = append(keep, s, o)
		}
		after := heapAlloc()
		per := (float64(after) - float64(before)) / n
		t.Logf("%s: %.0f B heap per Opener+Sealer pair (%d pairs)", ts.name, per, n)
		if limit := pairHeapLimit(ts.name); per > limit {
			t.Errorf("%s: %.0f B heap per Opener+Sealer pair, bound %.0f", ts.name, per, limit)
		}
		runtimeKeepAlive(keep)
	}
}

// pairHeapLimit is TestMemoryPerSession's bound for a suite.
func pairHeapLimit(suite string) float64 {
	if strings.Contains(suite, "CHACHA") {
		return 560
	}
	return 2500
}
