package tls12

import (
	"runtime"
	"testing"
	"unsafe"
)

func TestOpenSealDoNotAllocate(t *testing.T) {
	for _, ts := range testSuites {
		s, o := newPair(t, ts.id, 1)
		p := pattern(MaxPlaintext, 1)
		buf := make([]byte, 0, MaxRecordLen)
		allocs := testing.AllocsPerRun(100, func() {
			rec, err := s.Seal(buf[:0], TypeApplicationData, p)
			if err != nil {
				t.Fatal(err)
			}
			content, _, err := o.Open(rec)
			if err != nil || len(content) != MaxPlaintext {
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

// TestMemoryPerSession reports what an idle session's Opener+Sealer pair
// keeps on the heap, per suite.
func TestMemoryPerSession(t *testing.T) {
	t.Logf("unsafe.Sizeof: Opener %d B, Sealer %d B", unsafe.Sizeof(Opener{}), unsafe.Sizeof(Sealer{}))
	for _, ts := range testSuites {
		const n = 1000
		keep := make([]any, 0, 2*n)
		k, iv, _, _ := testKeys(ts.id, 1)
		before := heapAlloc()
		for i := 0; i < n; i++ {
			s, err := NewSealer(ts.id, k, iv, 1)
			if err != nil {
				t.Fatal(err)
			}
			o, _ := NewOpener(ts.id, k, iv, 1)
			keep = append(keep, s, o)
		}
		after := heapAlloc()
		t.Logf("%s: %.0f B heap per Opener+Sealer pair (%d pairs)", ts.name, float64(after-before)/n, n)
		runtime.KeepAlive(keep)
	}
}
