package tls13

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/httvps/httvps/internal/testpeer"
)

var (
	certOnce sync.Once
	testCert tls.Certificate
)

func serverCert(t testing.TB) tls.Certificate {
	certOnce.Do(func() {
		c, err := testpeer.MakeCert(testpeer.CertSpec{
			DNSNames: []string{"localhost"}, NotAfter: time.Now().Add(time.Hour), Leaf: true,
		})
		if err != nil {
			panic(err)
		}
		testCert = c.Cert
	})
	return testCert
}

// keyLog collects the secrets crypto/tls writes to KeyLogWriter.
type keyLog struct {
	mu      sync.Mutex
	secrets map[string][]byte // label -> secret (one connection per keyLog)
}

func (k *keyLog) Write(p []byte) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, line := range strings.Split(strings.TrimSpace(string(p)), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		s, err := hex.DecodeString(f[2])
		if err != nil {
			return 0, err
		}
		if k.secrets == nil {
			k.secrets = map[string][]byte{}
		}
		k.secrets[f[0]] = s
	}
	return len(p), nil
}

// serverSession is what the gateway holds after the handshake: the raw
// socket and the record layer.
type serverSession struct {
	conn         net.Conn
	suite        uint16
	clientSecret []byte
	o            *Opener
	s            *Sealer
	h            HandshakeReader
	rbuf         []byte
	captured     [][]byte // first records as received, for fuzz seeds
	afterUpdate  uint64   // records opened under the client's updated key
}

// acceptTLS runs the crypto/tls server handshake on HandshakeConn and
// switches to Opener/Sealer on the raw connection.
func acceptTLS(t testing.TB, ln net.Listener) (*serverSession, error) {
	raw, err := ln.Accept()
	if err != nil {
		return nil, err
	}
	raw.SetDeadline(time.Now().Add(2 * time.Minute))
	kl := new(keyLog)
	cfg := &tls.Config{
		Certificates:           []tls.Certificate{serverCert(t)},
		MinVersion:             tls.VersionTLS13,
		SessionTicketsDisabled: true,
		KeyLogWriter:           kl,
	}
	tc := tls.Server(NewHandshakeConn(raw), cfg)
	if err := tc.Handshake(); err != nil {
		raw.Close()
		return nil, err
	}
	suite := tc.ConnectionState().CipherSuite
	kl.mu.Lock()
	cs, ss := kl.secrets["CLIENT_TRAFFIC_SECRET_0"], kl.secrets["SERVER_TRAFFIC_SECRET_0"]
	kl.mu.Unlock()
	o, err := NewOpener(suite, cs)
	if err != nil {
		return nil, err
	}
	s, err := NewSealer(suite, ss)
	if err != nil {
		return nil, err
	}
	return &serverSession{conn: raw, suite: suite, clientSecret: cs, o: o, s: s, rbuf: make([]byte, MaxRecordLen)}, nil
}

// next reads and opens one record, handling KeyUpdate. It returns the
// content and type; ku reports a KeyUpdate applied.
func (ss *serverSession) next() (content []byte, ct uint8, ku KeyUpdate, err error) {
	if _, err := io.ReadFull(ss.conn, ss.rbuf[:RecordHeaderLen]); err != nil {
		return nil, 0, 0, err
	}
	n, err := RecordLen(ss.rbuf)
	if err != nil {
		return nil, 0, 0, err
	}
	rec := ss.rbuf[:n]
	if _, err := io.ReadFull(ss.conn, rec[RecordHeaderLen:]); err != nil {
		return nil, 0, 0, err
	}
	if len(ss.captured) < 4 {
		ss.captured = append(ss.captured, bytes.Clone(rec))
	}
	content, ct, err = ss.o.Open(rec)
	if err != nil {
		return nil, 0, 0, err
	}
	ku, err = ss.h.Record(ct, content)
	if err != nil {
		return nil, 0, 0, err
	}
	if ku != NoKeyUpdate {
		if err := ss.o.Update(); err != nil {
			return nil, 0, 0, err
		}
	}
	if ct == TypeAlert {
		return content, ct, ku, ParseAlert(content)
	}
	return content, ct, ku, nil
}

// nextData returns the next application data, applying KeyUpdates on the way
// and counting them.
func (ss *serverSession) nextData(kus *int) ([]byte, error) {
	for {
		content, ct, ku, err := ss.next()
		if err != nil {
			return nil, err
		}
		if ku != NoKeyUpdate {
			*kus++
			if ku == KeyUpdateRequested {
				out, err := ss.s.SealKeyUpdate(nil, false)
				if err != nil {
					return nil, err
				}
				if _, err := ss.conn.Write(out); err != nil {
					return nil, err
				}
			}
		}
		if ct == TypeApplicationData {
			return content, nil
		}
	}
}

// streamBlock backs the test payloads: the payload of size n is
// streamBlock[n%1021 : n%1021+n].
var streamBlock = pattern(MaxPlaintext+1024, 42)

func payloadFor(n int) []byte { return streamBlock[n%1021 : n%1021+n] }

const (
	afterUpdateMarker = "server data under the updated key"
	postUpdateMarker  = "client data under the updated key"
)

// interopSizes are the record sizes each side sends: all of 0..2^14, or a
// stride through them with -short.
func interopSizes(short bool) []int {
	step := 1
	if short {
		step = 97
	}
	var sizes []int
	for n := 0; n <= MaxPlaintext; n += step {
		sizes = append(sizes, n)
	}
	if sizes[len(sizes)-1] != MaxPlaintext {
		sizes = append(sizes, MaxPlaintext)
	}
	return sizes
}

func streamHash(sizes []int, tail string) ([]byte, int) {
	h := sha256.New()
	total := 0
	for _, n := range sizes {
		h.Write(payloadFor(n))
		total += n
	}
	h.Write([]byte(tail))
	return h.Sum(nil), total + len(tail)
}

// goClientScript is the crypto/tls client's side: send a record of every
// size, read the server's records of every size, a KeyUpdate and a marker
// (the client answers the KeyUpdate on its own), send a marker under its
// new key, then expect close_notify and close.
func goClientScript(c *tls.Conn, sizes []int) error {
	if err := c.Handshake(); err != nil {
		return err
	}
	readErr := make(chan error, 1)
	go func() {
		want, total := streamHash(sizes, afterUpdateMarker)
		h := sha256.New()
		if _, err := io.CopyN(h, c, int64(total)); err != nil {
			readErr <- fmt.Errorf("client read: %w", err)
			return
		}
		if !bytes.Equal(h.Sum(nil), want) {
			readErr <- errors.New("client: server stream corrupted")
			return
		}
		readErr <- nil
	}()
	for _, n := range sizes {
		if n == 0 {
			continue // crypto/tls sends nothing for an empty Write
		}
		if _, err := c.Write(payloadFor(n)); err != nil {
			return fmt.Errorf("client write: %w", err)
		}
	}
	if err := <-readErr; err != nil {
		return err
	}
	if _, err := c.Write([]byte(postUpdateMarker)); err != nil {
		return err
	}
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		return fmt.Errorf("client: want EOF after close_notify, got %d bytes, %v", n, err)
	}
	return c.Close()
}

// serveScript is the server's side of goClientScript.
func serveScript(ss *serverSession, sizes []int) error {
	writeErr := make(chan error, 1)
	go func() {
		var out []byte
		flush := func() error {
			_, err := ss.conn.Write(out)
			out = out[:0]
			return err
		}
		for _, n := range sizes {
			var err error
			if out, err = ss.s.Seal(out, TypeApplicationData, payloadFor(n)); err != nil {
				writeErr <- err
				return
			}
			if len(out) > 64<<10 {
				if err := flush(); err != nil {
					writeErr <- err
					return
				}
			}
		}
		var err error
		if out, err = ss.s.SealKeyUpdate(out, true); err != nil {
			writeErr <- err
			return
		}
		if out, err = ss.s.Seal(out, TypeApplicationData, []byte(afterUpdateMarker)); err != nil {
			writeErr <- err
			return
		}
		writeErr <- flush()
	}()
	kus := 0
	for _, n := range sizes {
		if n == 0 {
			continue
		}
		got, err := ss.nextData(&kus)
		if err != nil {
			return fmt.Errorf("server read, record of %d: %w", n, err)
		}
		if !bytes.Equal(got, payloadFor(n)) {
			return fmt.Errorf("server: record of %d bytes arrived as %d bytes or corrupted", n, len(got))
		}
	}
	if err := <-writeErr; err != nil {
		return err
	}
	got, err := ss.nextData(&kus)
	if err != nil {
		return fmt.Errorf("server read marker: %w", err)
	}
	if string(got) != postUpdateMarker {
		return fmt.Errorf("server: marker %q", got)
	}
	if kus != 1 {
		return fmt.Errorf("server: %d KeyUpdates from client, want 1", kus)
	}
	// Records after the client's KeyUpdate, the marker among them, opened
	// only because Opener.Update switched keys: Seq counts them.
	ss.afterUpdate = ss.o.Seq()
	out, err := ss.s.SealAlert(nil, AlertCloseNotify)
	if err != nil {
		return err
	}
	if _, err := ss.conn.Write(out); err != nil {
		return err
	}
	if _, _, _, err := ss.next(); err != ErrCloseNotify {
		return fmt.Errorf("server: want the client's close_notify, got %v", err)
	}
	return nil
}

func goClientConfig() *tls.Config {
	return &tls.Config{
		InsecureSkipVerify:          true,
		MinVersion:                  tls.VersionTLS13,
		DynamicRecordSizingDisabled: true, // one Write of <= 2^14 bytes = one record
	}
}

func TestInteropGoClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sizes := interopSizes(testing.Short())
	clientErr := make(chan error, 1)
	go func() {
		c, err := tls.Dial("tcp", ln.Addr().String(), goClientConfig())
		if err != nil {
			clientErr <- err
			return
		}
		c.SetDeadline(time.Now().Add(2 * time.Minute))
		clientErr <- goClientScript(c, sizes)
	}()
	ss, err := acceptTLS(t, ln)
	if err != nil {
		t.Fatal(err)
	}
	defer ss.conn.Close()
	if err := serveScript(ss, sizes); err != nil {
		t.Fatal(err)
	}
	if err := <-clientErr; err != nil {
		t.Fatal(err)
	}
	t.Logf("suite %s, %d records each way, %d client records under its updated key",
		tls.CipherSuiteName(ss.suite), len(sizes), ss.afterUpdate)
	writeSeeds(t, ss, "go")
}

// TestInteropGoClientChaCha runs the crypto/tls client in a child process
// with GODEBUG=cpu.aes=off: a client without AES hardware lists
// ChaCha20-Poly1305 first, and the crypto/tls server honours that.
func TestInteropGoClientChaCha(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	short := "0"
	if testing.Short() {
		short = "1"
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestInteropHelperClient$")
	cmd.Env = append(os.Environ(), "GODEBUG=cpu.aes=off", "TLS13_HELPER_ADDR="+ln.Addr().String(), "TLS13_HELPER_SHORT="+short)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ss, err := acceptTLS(t, ln)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("%v\n%s", err, out.String())
	}
	defer ss.conn.Close()
	if ss.suite != tls.TLS_CHACHA20_POLY1305_SHA256 {
		t.Errorf("negotiated %s, want ChaCha20", tls.CipherSuiteName(ss.suite))
	}
	if err := serveScript(ss, interopSizes(short == "1")); err != nil {
		t.Error(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("client: %v\n%s", err, out.String())
	}
	t.Logf("suite %s, %d client records under its updated key", tls.CipherSuiteName(ss.suite), ss.afterUpdate)
	writeSeeds(t, ss, "go")
}

// TestInteropHelperClient is the child of TestInteropGoClientChaCha.
func TestInteropHelperClient(t *testing.T) {
	addr := os.Getenv("TLS13_HELPER_ADDR")
	if addr == "" {
		t.Skip("helper process only")
	}
	c, err := tls.Dial("tcp", addr, goClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	if err := goClientScript(c, interopSizes(os.Getenv("TLS13_HELPER_SHORT") == "1")); err != nil {
		t.Fatal(err)
	}
}
