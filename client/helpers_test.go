package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/Jigsaw-Code/outline-sdk/transport/shadowsocks"

	"github.com/httvps/httvps/internal/testpeer"
)

const testPassword = "client-test-password"

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// hashN reads exactly n bytes of r and returns their hex SHA-256.
func hashN(r io.Reader, n int64) (string, error) {
	h := sha256.New()
	if _, err := io.CopyN(h, r, n); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// goSSServer is a Shadowsocks server made of outline-sdk's stream Reader
// and Writer: it reads the target address from the decrypted stream,
// dials it, and relays with half-close (an EOF from the client becomes a
// FIN to the target, and the target's FIN ends the encrypted stream), which
// ss-server does not do. handle, when set, replaces the dial: it gets the
// decrypted stream and the address.
func goSSServer(t *testing.T, method, password string, handle func(r io.Reader, w io.Writer, addr string)) string {
	t.Helper()
	key, err := shadowsocks.NewEncryptionKey(method, password)
	if err != nil {
		t.Fatal(err)
	}
	return testpeer.ListenTCP(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(2 * time.Minute))
		r := shadowsocks.NewReader(c, key)
		w := shadowsocks.NewWriter(c, key)
		var atyp [1]byte
		if _, err := io.ReadFull(r, atyp[:]); err != nil {
			return
		}
		addr, err := readSOCKSAddr(r, atyp[0])
		if err != nil {
			t.Errorf("go ss server: %v", err)
			return
		}
		if handle != nil {
			handle(r, w, addr)
			return
		}
		up, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		defer up.Close()
		var wg sync.WaitGroup
		wg.Go(func() {
			io.Copy(w, up)
			c.CloseWrite()
		})
		io.Copy(up, r)
		up.(*net.TCPConn).CloseWrite()
		wg.Wait()
	})
}

// startProxy serves a Proxy over d on a loopback port.
func startProxy(t *testing.T, d Dialer, user, pass string) string {
	t.Helper()
	p, err := NewProxy(ProxyConfig{Dialer: d, Username: user, Password: pass})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { p.Serve(ln); close(done) }()
	t.Cleanup(func() { p.Close(); <-done })
	return ln.Addr().String()
}
