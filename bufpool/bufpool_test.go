package bufpool

import (
	"fmt"
	"strings"
	"testing"
)

func TestGetClasses(t *testing.T) {
	tests := []struct {
		n    int
		want int
	}{
		{-1, 2 << 10},
		{0, 2 << 10},
		{1, 2 << 10},
		{2 << 10, 2 << 10},
		{2<<10 + 1, 16 << 10},
		{16 << 10, 16 << 10},
		{16<<10 + 1, 64 << 10},
		{64 << 10, 64 << 10},
		{64<<10 + 1, 256 << 10},
		{256 << 10, 256 << 10},
		{256<<10 + 1, 256<<10 + 1}, // past the classes: exact, not pooled
		{1 << 20, 1 << 20},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.n), func(t *testing.T) {
			b := Get(tc.n)
			if len(*b) != tc.want || cap(*b) != tc.want {
				t.Fatalf("Get(%d): len %d cap %d, want %d", tc.n, len(*b), cap(*b), tc.want)
			}
			Put(b)
		})
	}
}

func TestPutRestoresLength(t *testing.T) {
	b := Get(100)
	*b = (*b)[:10]
	Put(b)
	// Not guaranteed to be the same buffer, but whichever comes back must be whole.
	b = Get(100)
	if len(*b) != 2<<10 {
		t.Fatalf("len %d after reslice and Put", len(*b))
	}
	Put(b)
}

func mustPanic(t *testing.T, what string, fn func()) {
	t.Helper()
	defer func() {
		r := recover()
		if r == nil {
			t.Fatalf("%s: no panic", what)
		}
		if !strings.Contains(fmt.Sprint(r), "bufpool:") {
			t.Fatalf("%s: panic %v", what, r)
		}
	}()
	fn()
}

// Debug-mode tests change global state and must not run in parallel.
func TestDebug(t *testing.T) {
	SetDebug(true)
	defer SetDebug(false)

	a, big := Get(10), Get(1<<20)
	if got := Outstanding(); got != 2 {
		t.Fatalf("Outstanding = %d, want 2", got)
	}
	Put(a)
	Put(big)
	if got := Outstanding(); got != 0 {
		t.Fatalf("Outstanding = %d after Put, want 0", got)
	}

	mustPanic(t, "double Put", func() { Put(a) })
	mustPanic(t, "foreign buffer", func() {
		s := make([]byte, 2<<10)
		Put(&s)
	})
	mustPanic(t, "re-wrapped double Put", func() {
		b := Get(10)
		c := *b
		Put(b)
		Put(&c)
	})

	b := Get(10)
	(*b)[0] = 1
	Put(b)
	if (*b)[0] != poison {
		t.Fatal("debug Put did not poison the buffer")
	}
	Put(nil)
	if got := Outstanding(); got != 0 {
		t.Fatalf("Outstanding = %d at end", got)
	}
}

func TestOutstandingOffWithoutDebug(t *testing.T) {
	b := Get(10)
	defer Put(b)
	if got := Outstanding(); got != 0 {
		t.Fatalf("Outstanding = %d with debug off", got)
	}
}

func TestGetPutAllocs(t *testing.T) {
	for _, n := range []int{1, 16 << 10, 100 << 10, 256 << 10} {
		allocs := testing.AllocsPerRun(1000, func() {
			Put(Get(n))
		})
		if allocs != 0 {
			t.Errorf("Get(%d)/Put: %v allocs per run", n, allocs)
		}
	}
}

func BenchmarkGetPut(b *testing.B) {
	for _, n := range []int{2 << 10, 64 << 10} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					buf := Get(n)
					(*buf)[0] = 1
					Put(buf)
				}
			})
		})
	}
}
