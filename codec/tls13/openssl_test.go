package tls13

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer collects a child's output while the test polls it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *lockedBuffer) waitFor(s string) error {
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(l.String(), s) {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out waiting for %q", s)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// TestInteropOpenSSL drives `openssl s_client` against the crypto/tls
// handshake + Opener/Sealer server for each suite: data both ways, a
// client-initiated KeyUpdate ("k"), a client KeyUpdate requesting ours ("K"),
// a server KeyUpdate requesting the client's, and close_notify both ways.
func TestInteropOpenSSL(t *testing.T) {
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	for _, ts := range testSuites {
		t.Run(ts.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			// No -quiet/-ign_eof: they turn off s_client's k/K commands.
			cmd := exec.Command(bin, "s_client", "-connect", ln.Addr().String(), "-tls1_3",
				"-ciphersuites", tls.CipherSuiteName(ts.id), "-servername", "localhost")
			out := new(lockedBuffer)
			cmd.Stdout, cmd.Stderr = out, out
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				stdin.Close()
				cmd.Process.Kill()
				cmd.Wait()
				if t.Failed() {
					t.Logf("s_client output:\n%s", out.String())
				}
			}()
			ss, err := acceptTLS(t, ln)
			if err != nil {
				t.Fatal(err)
			}
			defer ss.conn.Close()
			if ss.suite != ts.id {
				t.Fatalf("negotiated %s", tls.CipherSuiteName(ss.suite))
			}
			if err := openSSLScript(ss, stdin, out); err != nil {
				t.Fatal(err)
			}
			writeSeeds(t, ss, "openssl")
		})
	}
}

func openSSLScript(ss *serverSession, stdin io.Writer, out *lockedBuffer) error {
	send := func(recs ...string) error {
		var b []byte
		var err error
		for _, r := range recs {
			if r == "KU" {
				b, err = ss.s.SealKeyUpdate(b, true)
			} else {
				b, err = ss.s.Seal(b, TypeApplicationData, []byte(r))
			}
			if err != nil {
				return err
			}
		}
		_, err = ss.conn.Write(b)
		return err
	}
	type expect struct {
		ku   KeyUpdate
		data string
	}
	expectNext := func(want expect) error {
		content, ct, ku, err := ss.next()
		if err != nil {
			return err
		}
		if ku != want.ku || (want.ku == NoKeyUpdate && (ct != TypeApplicationData || string(content) != want.data)) {
			return fmt.Errorf("got type %d ku %d %q, want %+v", ct, ku, content, want)
		}
		return nil
	}
	line := func(s string) error { _, err := io.WriteString(stdin, s); return err }

	if err := send("from-server-1\n"); err != nil {
		return err
	}
	if err := out.waitFor("from-server-1"); err != nil {
		return err
	}
	steps := []struct {
		stdin string
		want  expect
	}{
		{"hello-1\n", expect{data: "hello-1\n"}},
		{"k\n", expect{ku: KeyUpdateNotRequested}},
		{"hello-2\n", expect{data: "hello-2\n"}},
		{"K\n", expect{ku: KeyUpdateRequested}},
	}
	for _, st := range steps {
		if err := line(st.stdin); err != nil {
			return err
		}
		if err := expectNext(st.want); err != nil {
			return fmt.Errorf("after %q: %w", st.stdin, err)
		}
	}
	// Answer the requested update, then data under our new key.
	b, err := ss.s.SealKeyUpdate(nil, false)
	if err != nil {
		return err
	}
	if _, err := ss.conn.Write(b); err != nil {
		return err
	}
	if err := send("from-server-2\n"); err != nil {
		return err
	}
	if err := out.waitFor("from-server-2"); err != nil {
		return err
	}
	// Our own update with request: OpenSSL answers with its KeyUpdate before
	// its next data.
	if err := send("KU", "from-server-3\n"); err != nil {
		return err
	}
	if err := out.waitFor("from-server-3"); err != nil {
		return err
	}
	if err := line("hello-3\n"); err != nil {
		return err
	}
	if err := expectNext(expect{ku: KeyUpdateNotRequested}); err != nil {
		return fmt.Errorf("answer to our KeyUpdate: %w", err)
	}
	if err := expectNext(expect{data: "hello-3\n"}); err != nil {
		return err
	}
	if c, ok := stdin.(io.Closer); ok {
		c.Close() // s_client sends close_notify on stdin EOF
	}
	if _, _, _, err := ss.next(); err != ErrCloseNotify {
		return fmt.Errorf("want close_notify, got %v", err)
	}
	b, err = ss.s.SealAlert(nil, AlertCloseNotify)
	if err != nil {
		return err
	}
	_, err = ss.conn.Write(b)
	return err
}
