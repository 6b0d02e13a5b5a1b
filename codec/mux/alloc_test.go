package mux

import (
	"math/rand/v2"
	"testing"
)

func TestParserNoAlloc(t *testing.T) {
	in, _ := genFrames(rand.New(rand.NewPCG(3, 4)), nil, 300, DefaultMaxFrame)
	data := AppendData(nil, 1, false, make([]byte, DefaultMaxFrame))
	run := func(name string, in []byte, chunk int) {
		var p Parser
		drain := func() {
			for b := in; len(b) > 0; {
				k := min(chunk, len(b))
				for c := b[:k]; len(c) > 0; {
					_, n, err := p.Next(c)
					if err != nil {
						t.Fatal(err)
					}
					c = c[n:]
				}
				b = b[k:]
			}
		}
		if a := testing.AllocsPerRun(20, drain); a != 0 {
			t.Errorf("%s: %v allocations per run, want 0", name, a)
		}
	}
	run("every type, whole", in, len(in))
	run("every type, 4 KiB reads", in, 4096)
	run("64 KiB DATA, bytewise", data, 1)
}

func TestAppendNoAlloc(t *testing.T) {
	buf := make([]byte, 0, 4096)
	payload := make([]byte, 1024)
	var id [8]byte
	a := testing.AllocsPerRun(100, func() {
		b := AppendSettings(buf[:0], DefaultSettings())
		b = AppendOpen(b, 1, KindTCP, false, payload[:100])
		b = AppendData(b, 1, false, payload)
		b = AppendDataHeader(b, 1, 10, true)
		b = AppendReset(b, 1, ResetCancel)
		b = AppendWindow(b, 0, 1)
		b = AppendPing(b, id, true)
		b = AppendGoAway(b, 1, GoAwayNoError)
		buf = b
	})
	if a != 0 {
		t.Fatalf("%v allocations per run, want 0", a)
	}
}
