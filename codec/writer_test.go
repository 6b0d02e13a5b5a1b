package codec

import (
	"bytes"
	"strings"
	"testing"

	"github.com/gobwas/ws"
)

func TestServerHeader(t *testing.T) {
	tests := []struct {
		name string
		op   ws.OpCode
		n    int
		want []byte
	}{
		{"empty", ws.OpBinary, 0, []byte{0x82, 0}},
		{"125", ws.OpText, 125, []byte{0x81, 125}},
		{"126", ws.OpBinary, 126, []byte{0x82, 126, 0, 126}},
		{"65535", ws.OpBinary, 65535, []byte{0x82, 126, 0xff, 0xff}},
		{"65536", ws.OpBinary, 65536, []byte{0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0}},
		{"pong", ws.OpPong, 3, []byte{0x8a, 3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ServerHeaderLen(tc.n); got != len(tc.want) {
				t.Fatalf("ServerHeaderLen(%d) = %d, want %d", tc.n, got, len(tc.want))
			}
			dst := make([]byte, 10)
			k := PutServerHeader(dst, tc.op, tc.n)
			if !bytes.Equal(dst[:k], tc.want) {
				t.Fatalf("header % x, want % x", dst[:k], tc.want)
			}
			// Cross-check against gobwas/ws's own encoder.
			var ref bytes.Buffer
			if err := ws.WriteHeader(&ref, ws.Header{Fin: true, OpCode: tc.op, Length: int64(tc.n)}); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(dst[:k], ref.Bytes()) {
				t.Fatalf("header % x, gobwas writes % x", dst[:k], ref.Bytes())
			}
		})
	}
}

func TestAppendServerFrame(t *testing.T) {
	for _, n := range []int{0, 5, 125, 126, 65535, 65536} {
		payload := []byte(pattern(n, 3))
		out := AppendServerFrame([]byte("prefix"), ws.OpBinary, payload)
		if !bytes.HasPrefix(out, []byte("prefix")) {
			t.Fatal("prefix lost")
		}
		f, err := ws.ReadFrame(bytes.NewReader(out[6:]))
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if !f.Header.Fin || f.Header.Masked || f.Header.OpCode != ws.OpBinary || !bytes.Equal(f.Payload, payload) {
			t.Fatalf("n=%d: frame %+v", n, f.Header)
		}
	}
}

func TestAppendClose(t *testing.T) {
	long := strings.Repeat("é", 100) // 200 bytes, two per rune
	tests := []struct {
		name   string
		code   ws.StatusCode
		reason string
		want   []byte
	}{
		{"normal", 1000, "", []byte{0x88, 2, 0x03, 0xe8}},
		{"with reason", 1002, "bad", []byte{0x88, 5, 0x03, 0xea, 'b', 'a', 'd'}},
		{"no status", ws.StatusNoStatusRcvd, "dropped", []byte{0x88, 0}},
		{"zero", 0, "", []byte{0x88, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := AppendClose(nil, tc.code, tc.reason); !bytes.Equal(got, tc.want) {
				t.Fatalf("% x, want % x", got, tc.want)
			}
		})
	}
	t.Run("long reason cut at a rune", func(t *testing.T) {
		out := AppendClose(nil, 1001, long)
		if len(out) > 2+MaxControlPayload || int(out[1]) != len(out)-2 {
			t.Fatalf("frame of %d bytes, length byte %d", len(out), out[1])
		}
		code, reason, err := ParseClose(out[2:])
		if err != nil || code != 1001 || string(reason) != strings.Repeat("é", 61) {
			t.Fatalf("(%d, %q, %v)", code, reason, err)
		}
	})
}

func TestAppendClientFrame(t *testing.T) {
	payload := []byte(pattern(70000, 9))
	orig := bytes.Clone(payload)
	mask := [4]byte{1, 2, 3, 4}
	for _, n := range []int{0, 1, 125, 126, 65535, 65536, 70000} {
		out := AppendClientFrame(nil, ws.OpText, n%2 == 0, mask, payload[:n])
		f, err := ws.ReadFrame(bytes.NewReader(out))
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if !f.Header.Masked || f.Header.Mask != mask || f.Header.Fin != (n%2 == 0) || f.Header.OpCode != ws.OpText {
			t.Fatalf("n=%d: header %+v", n, f.Header)
		}
		ws.Cipher(f.Payload, mask, 0)
		if !bytes.Equal(f.Payload, payload[:n]) {
			t.Fatalf("n=%d: payload differs", n)
		}
	}
	if !bytes.Equal(payload, orig) {
		t.Fatal("AppendClientFrame modified its payload argument")
	}
}

func TestWriterAllocs(t *testing.T) {
	dst := make([]byte, 0, 4096)
	payload := make([]byte, 1000)
	hdr := make([]byte, 10)
	cases := map[string]func(){
		"PutServerHeader":     func() { PutServerHeader(hdr, ws.OpBinary, 70000) },
		"AppendServerFrame":   func() { dst = AppendServerFrame(dst[:0], ws.OpBinary, payload) },
		"AppendClose":         func() { dst = AppendClose(dst[:0], 1000, "bye") },
		"AppendClientFrame":   func() { dst = AppendClientFrame(dst[:0], ws.OpBinary, true, testMask, payload) },
		"ServerHeaderLen+Put": func() { PutServerHeader(hdr[:ServerHeaderLen(200)], ws.OpText, 200) },
	}
	for name, fn := range cases {
		if a := testing.AllocsPerRun(100, fn); a != 0 {
			t.Errorf("%s: %v allocs per run", name, a)
		}
	}
}

func BenchmarkPutServerHeader(b *testing.B) {
	hdr := make([]byte, 10)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		PutServerHeader(hdr, ws.OpBinary, i&0x1ffff)
	}
}

func BenchmarkAppendServerFrame(b *testing.B) {
	payload := make([]byte, 16<<10)
	dst := make([]byte, 0, 17<<10)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		dst = AppendServerFrame(dst[:0], ws.OpBinary, payload)
	}
}
