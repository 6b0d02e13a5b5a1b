package gateway

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/httvps/httvps/internal/testpeer"
)

// TestFallbackTLSKeyUpdate: a TLS 1.3 client handed to the fallback sends
// KeyUpdates, half of them asking for ours, between pieces of a 2 MiB
// upload that the fallback echoes; the echo comes back intact, and the
// gateway answers the requests with its own KeyUpdates (at least one, at
// most one per request) sealed by the relay's sealing step.
func TestFallbackTLSKeyUpdate(t *testing.T) {
	g, pool := startTLSGateway(t, testpeer.EchoServer(t), func(c *Config) { c.Fallback = testpeer.EchoServer(t) })
	raw, err := testpeer.DialRawTLS(g.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	body := make([]byte, 2<<20)
	rand.NewChaCha8([32]byte{7}).Read(body)
	sent := append([]byte("POST /x HTTP/1.1\r\nHost: x\r\n\r\n"), body...)
	want := sha256.Sum256(sent)
	got := make(chan []byte, 1)
	go func() {
		raw.TCP.SetReadDeadline(time.Now().Add(20 * time.Second))
		b, _ := io.ReadAll(io.LimitReader(raw, int64(len(sent))))
		got <- b
	}()
	requested := 0
	for i, p := 0, sent; len(p) > 0; i++ {
		k := min(len(p), 1+(i*7919)%30000)
		if _, err := raw.Write(p[:k]); err != nil {
			t.Fatal(err)
		}
		p = p[k:]
		if i > 0 && i%10 == 0 && len(p) > 0 {
			req := (i/10)%2 == 1
			if req {
				requested++
			}
			if err := raw.KeyUpdate(req); err != nil {
				t.Fatal(err)
			}
		}
	}
	b := <-got
	if len(b) != len(sent) || sha256.Sum256(b) != want {
		i := 0
		for i < min(len(b), len(sent)) && b[i] == sent[i] {
			i++
		}
		t.Fatalf("echo of %d bytes differs from the %d sent at byte %d (prefix equal: %v)", len(b), len(sent), i, bytes.HasPrefix(sent, b))
	}
	if n := raw.ServerKeyUpdates(); n < 1 || n > requested {
		t.Fatalf("gateway sent %d KeyUpdates for %d requests", n, requested)
	}
	raw.Close()
	waitFallbacks(t, g, 0)
}
