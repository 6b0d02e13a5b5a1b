package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/internal/testpeer"
)

// startTLSGateway is startGateway with a TLS listener on a fresh
// self-signed certificate for localhost/127.0.0.1.
func startTLSGateway(t testing.TB, cfg gateway.Config, routes map[string]string) (*gateway.Gateway, string, *testpeer.TestCert) {
	t.Helper()
	cert := testpeer.SelfSignedCert(t)
	if cfg.TLS == nil {
		cfg.TLS = &gateway.TLSConfig{}
	}
	cfg.TLS.GetCertificate = cert.GetCertificate
	g, addr := startGateway(t, cfg, routes)
	return g, addr, cert
}

func wssURL(gw, secret, kind string) string {
	return "wss://" + gw + "/" + secret + "/" + kind
}

// dialWSS opens a WebSocket over crypto/tls (at most maxVersion; 0: 1.3).
func dialWSS(t testing.TB, gw string, cert *testpeer.TestCert, secret string, maxVersion uint16) *testpeer.WSConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := testpeer.DialWSS(ctx, wssURL(gw, secret, "tcp"), cert.ClientConfig(maxVersion))
	if err != nil {
		if ctx.Err() != nil {
			logGoroutines(t)
		}
		t.Fatalf("dial wss: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// dialRawWS opens a RawTLS connection and a WebSocket over it.
func dialRawWS(t testing.TB, gw string, cert *testpeer.TestCert, secret string, maxVersion uint16) (*testpeer.RawTLS, *testpeer.WSConn) {
	t.Helper()
	raw, err := testpeer.DialRawTLS(gw, cert.ClientConfig(maxVersion))
	if err != nil {
		t.Fatalf("raw tls: %v", err)
	}
	t.Cleanup(func() { raw.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := testpeer.DialWSOver(ctx, wsURL(gw, secret, "tcp"), raw)
	if err != nil {
		t.Fatalf("upgrade over raw tls: %v", err)
	}
	return raw, c
}

// echoCheck sends n bytes of PseudoRandom(n, seed) as binary messages whose
// sizes frame(i) picks, calling between(i, sent) before message i (may be
// nil), then close 1000; it reads the echo at the same time and checks its
// length and hash, and the gateway's close 1000.
func echoCheck(c *testpeer.WSConn, n int64, seed uint64, frame func(i int) int, between func(i int, sent int64) error) error {
	sent := make(chan error, 1)
	go func() {
		src := testpeer.PseudoRandom(n, seed)
		buf := make([]byte, 0, 1<<20)
		var done int64
		for i := 0; done < n; i++ {
			if between != nil {
				if err := between(i, done); err != nil {
					sent <- err
					return
				}
			}
			k := int(min(int64(frame(i)), n-done))
			b := buf[:k]
			if k > cap(buf) {
				b = make([]byte, k)
			}
			if _, err := io.ReadFull(src, b); err != nil {
				sent <- err
				return
			}
			if err := c.WriteMessage(b); err != nil {
				sent <- fmt.Errorf("write after %d bytes: %w", done, err)
				return
			}
			done += int64(k)
		}
		sent <- c.CloseWrite()
	}()
	h := sha256.New()
	got, err := io.CopyBuffer(h, c, make([]byte, 256<<10))
	if err != nil {
		return fmt.Errorf("echo read after %d bytes: %w", got, err)
	}
	if err := <-sent; err != nil {
		return err
	}
	if want := testpeer.PseudoRandomSHA256(n, seed); got != n || hex.EncodeToString(h.Sum(nil)) != want {
		return fmt.Errorf("echo: %d of %d bytes, hash match %v", got, n, hex.EncodeToString(h.Sum(nil)) == want)
	}
	if code, _, _ := c.CloseCode(); code != ws.StatusNormalClosure {
		return fmt.Errorf("close code %d, want 1000", code)
	}
	return nil
}

func fixedFrames(size int) func(int) int { return func(int) int { return size } }

// expectAlert reads the server's records until an alert and checks it is
// want, then that the connection ends.
func expectAlert(raw *testpeer.RawTLS, want uint8) error {
	got, err := raw.ReadAlert(5 * time.Second)
	if err != nil {
		return fmt.Errorf("want alert %d, got %w", want, err)
	}
	if got != want {
		return fmt.Errorf("alert %d, want %d", got, want)
	}
	if err := raw.WaitTCPEOF(8 * time.Second); err != nil {
		return fmt.Errorf("after alert %d: %w", want, err)
	}
	return nil
}

// readUntilClosed reads c until the peer closes it (within timeout) and
// returns what it got.
func readUntilClosed(c net.Conn, timeout time.Duration) ([]byte, error) {
	c.SetReadDeadline(time.Now().Add(timeout))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return b, fmt.Errorf("still open after %v", timeout)
	}
	return b, nil
}
