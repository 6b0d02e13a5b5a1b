package tls12

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
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

// hexLines is n bytes of lowercase hex lines: no line or read chunk starts
// with one of s_client's command letters (Q, R, k, K).
func hexLines(n int, seed byte) []byte {
	var b []byte
	for len(b) < n {
		b = append(b, hex.EncodeToString(pattern(31, seed))...)
		b = append(b, '\n')
		seed++
	}
	return b[: n-1 : n-1]
}

// TestInteropOpenSSL drives `openssl s_client -tls1_2 -cipher X` against the
// crypto/tls handshake + Opener/Sealer server for each suite: 256 KiB piped
// from the client, 1 MiB in records of many sizes to it, then either a
// client renegotiation ("R"), refused with a warning no_renegotiation, or
// the end of s_client's input, which sends close_notify.
func TestInteropOpenSSL(t *testing.T) {
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	for i, ts := range testSuites {
		renegotiate := i%2 == 0
		t.Run(ts.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			// No -quiet/-ign_eof: they turn off s_client's R command and
			// its close_notify at the end of input.
			cmd := exec.Command(bin, "s_client", "-connect", ln.Addr().String(), "-tls1_2",
				"-cipher", ts.ossl, "-servername", "localhost")
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
					t.Logf("s_client output (tail):\n%s", tail(out.String(), 2000))
				}
			}()
			ss, err := acceptTLS12(ln)
			if err != nil {
				t.Fatal(err)
			}
			defer ss.conn.Close()
			if ss.suite != ts.id {
				t.Fatalf("negotiated %x", ss.suite)
			}
			if err := out.waitFor("Verify return code"); err != nil {
				t.Fatal(err)
			}

			// Client to server: s_client sends each stdin read as a record.
			up := hexLines(256<<10, 7)
			go stdin.Write(up)
			h := sha256.New()
			got := 0
			for got < len(up) {
				content, ct, err := ss.next()
				if err != nil {
					t.Fatalf("after %d bytes: %v", got, err)
				}
				if ct != TypeApplicationData {
					t.Fatalf("type %d", ct)
				}
				h.Write(content)
				got += len(content)
			}
			if want := sha256.Sum256(up); !bytes.Equal(h.Sum(nil), want[:]) || got != len(up) {
				t.Fatalf("client stream corrupted: %d bytes", got)
			}

			// Server to client in records of every size class, then a marker.
			down := hexLines(1<<20, 9)
			marker := fmt.Sprintf("END-OF-%s\n", ts.name)
			var wire []byte
			for rest, n := down, 1; len(rest) > 0; n = (n*37 + 11) % (MaxPlaintext + 1) {
				k := min(len(rest), n)
				if wire, err = ss.s.Seal(wire, TypeApplicationData, rest[:k]); err != nil {
					t.Fatal(err)
				}
				rest = rest[k:]
			}
			if wire, err = ss.s.Seal(wire, TypeApplicationData, []byte(marker)); err != nil {
				t.Fatal(err)
			}
			if _, err := ss.conn.Write(wire); err != nil {
				t.Fatal(err)
			}
			if err := out.waitFor(marker); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), string(down)) {
				t.Fatal("s_client printed the server stream corrupted")
			}

			if renegotiate {
				io.WriteString(stdin, "R\n")
				_, _, err := ss.next()
				if err != ErrRenegotiation {
					t.Fatalf("after R: %v, want ErrRenegotiation", err)
				}
				alert, err := ss.s.SealAlert(nil, AlertFor(err))
				if err != nil {
					t.Fatal(err)
				}
				ss.conn.Write(alert)
				ss.conn.Close()
				if err := out.waitFor("RENEGOTIATING"); err != nil {
					t.Fatal(err)
				}
				t.Logf("renegotiation refused with a warning no_renegotiation")
			} else {
				stdin.Close()
				if _, _, err := ss.next(); err != ErrCloseNotify {
					t.Fatalf("after end of input: %v, want ErrCloseNotify", err)
				}
			}
			writeSeeds(t, ss, "openssl", i)
		})
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
