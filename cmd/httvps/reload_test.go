package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/httvps/httvps/internal/testpeer"
)

// writeLeaf writes a new self-signed ECDSA certificate for 127.0.0.1 and
// localhost to certFile and its key to keyFile, and returns its DER.
func writeLeaf(t *testing.T, certFile, keyFile string) []byte {
	t.Helper()
	c := testpeer.NewCert(t, testpeer.CertSpec{Leaf: true})
	if err := c.WriteFiles(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	return c.Cert.Certificate[0]
}

func poolOf(t *testing.T, der []byte) *x509.CertPool {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	p.AddCert(c)
	return p
}

// waitLogLine waits until the log holds want, or fails.
func waitLogLine(t *testing.T, log *lockedBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(log.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("log never showed %q:\n%s", want, log)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitServes waits until both listeners hand new handshakes der.
func waitServes(t *testing.T, der []byte, addrs ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, a := range addrs {
		for {
			got := servedCert(t, a)
			if fingerprint(got) == fingerprint(der) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s serves %s, want %s", a, fingerprint(got), fingerprint(der))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// certNode is `httvps up` with its certificate from files and a real
// ss-server as its static member.
type certNode struct {
	u              *upProc
	gwAddr, ctlAdr string
	gwURL, token   string
	origin         *testpeer.Origin
}

const reloadMethod, reloadPassword = testpeer.DefaultMethod, "reload-test"

func startCertNode(t *testing.T, certFile, keyFile string, extra ...string) *certNode {
	t.Helper()
	needPeers(t, "ss-server")
	ss := testpeer.SSServer(t, reloadPassword, reloadMethod)
	n := &certNode{origin: testpeer.StartOrigin(t)}
	n.gwAddr = "127.0.0.1:" + strconv.Itoa(testpeer.FreePort(t))
	n.ctlAdr = "127.0.0.1:" + strconv.Itoa(testpeer.FreePort(t))
	n.gwURL = "wss://" + n.gwAddr
	dir := filepath.Join(t.TempDir(), "data")
	args := append([]string{"-data-dir", dir, "-listen", n.gwAddr, "-control-listen", n.ctlAdr,
		"-member", "static:" + ss + ":" + reloadMethod + ":" + reloadPassword, "-drain-timeout", "2s", "-log-level", "info",
		"-tls-cert", certFile, "-tls-key", keyFile}, extra...)
	n.u = startUp(t, args...)
	n.token = field(t, readSecretFile(t, filepath.Join(dir, "first-token.txt")), "token")
	return n
}

// liveSession is one Shadowsocks stream through the gateway to the origin,
// kept open across reloads; HTTP/1.1 keep-alive lets it carry several
// exchanges.
type liveSession struct {
	ws     *testpeer.WSConn
	sc     *testpeer.SSConn
	br     *bufio.Reader
	origin string
	leaf   []byte // the certificate this session was made with
}

func (n *certNode) openLive(t *testing.T, pool *x509.CertPool) *liveSession {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ws, sc, err := ssSession(ctx, n.gwURL, n.token, reloadMethod, reloadPassword, n.origin.Addr, pool)
	if err != nil {
		t.Fatalf("live session: %v", err)
	}
	t.Cleanup(func() { ws.Close() })
	l := &liveSession{ws: ws, sc: sc, br: bufio.NewReaderSize(sc, 64<<10), origin: n.origin.Addr,
		leaf: ws.NetConn().(*tls.Conn).ConnectionState().PeerCertificates[0].Raw}
	return l
}

// exchange uploads n bytes and downloads n others on the session, and
// checks both ends' SHA-256 match.
func (l *liveSession) exchange(t *testing.T, n int64, seed uint64) {
	t.Helper()
	l.ws.NetConn().SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(l.sc, "POST /upload HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n", l.origin, n)
	if _, err := io.CopyBuffer(l.sc, testpeer.PseudoRandom(n, seed), make([]byte, 64<<10)); err != nil {
		t.Fatalf("upload on the live session: %v", err)
	}
	resp, err := http.ReadResponse(l.br, nil)
	if err != nil {
		t.Fatalf("upload answer on the live session: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if sum, got, perr := testpeer.ParseUploadAnswer(string(body)); err != nil || perr != nil || got != n || sum != testpeer.PseudoRandomSHA256(n, seed) {
		t.Fatalf("upload on the live session: origin got %d bytes (%v %v), hash match %v", got, err, perr, sum == testpeer.PseudoRandomSHA256(n, seed))
	}

	fmt.Fprintf(l.sc, "GET /bytes/%d?seed=%d HTTP/1.1\r\nHost: %s\r\n\r\n", n, seed+1, l.origin)
	if resp, err = http.ReadResponse(l.br, nil); err != nil {
		t.Fatalf("download on the live session: %v", err)
	}
	h := sha256.New()
	got, err := io.Copy(h, resp.Body)
	resp.Body.Close()
	if err != nil || got != n || hex.EncodeToString(h.Sum(nil)) != testpeer.PseudoRandomSHA256(n, seed+1) {
		t.Fatalf("download on the live session: %d bytes, %v, or a hash mismatch", got, err)
	}
}

// SIGHUP reloads -tls-cert/-tls-key on both listeners; the session opened
// before keeps relaying; files that do not load leave the certificate in
// place.
func TestUpReloadCertificateOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	crt, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	first := writeLeaf(t, crt, key)
	n := startCertNode(t, crt, key, "-tls-watch", "0")
	waitServes(t, first, n.gwAddr, n.ctlAdr)

	live := n.openLive(t, poolOf(t, first))
	live.exchange(t, 300_000, 1)

	second := writeLeaf(t, crt, key)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLogLine(t, n.u.errs, "SIGHUP: tls certificates reloaded")
	waitServes(t, second, n.gwAddr, n.ctlAdr)
	live.exchange(t, 300_000, 3)
	fetchThrough(t, n.gwURL, n.token, reloadMethod, reloadPassword, n.origin, 100_000, poolOf(t, second))

	// A garbage certificate file: logged, the second one keeps serving.
	if err := os.WriteFile(crt, []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLogLine(t, n.u.errs, "SIGHUP: tls certificates do not load; keeping the previous ones")
	waitServes(t, second, n.gwAddr, n.ctlAdr)
	live.exchange(t, 300_000, 5)
	fetchThrough(t, n.gwURL, n.token, reloadMethod, reloadPassword, n.origin, 100_000, poolOf(t, second))
	if fingerprint(live.leaf) != fingerprint(first) {
		t.Errorf("the live session was made with %s, want %s", fingerprint(live.leaf), fingerprint(first))
	}
}

// k8sSecret lays files out as a Kubernetes secret volume does: the names
// are symlinks through ..data, which an update renames to a new directory.
type k8sSecret struct {
	dir string
	gen int
}

func (s *k8sSecret) paths() (crt, key string) {
	return filepath.Join(s.dir, "tls.crt"), filepath.Join(s.dir, "tls.key")
}

// update writes a new generation with write and swaps ..data to it.
func (s *k8sSecret) update(t *testing.T, write func(crt, key string)) {
	t.Helper()
	s.gen++
	gen := fmt.Sprintf("..gen_%d", s.gen)
	if err := os.Mkdir(filepath.Join(s.dir, gen), 0o700); err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(s.dir, gen, "tls.crt"), filepath.Join(s.dir, gen, "tls.key"))
	tmp := filepath.Join(s.dir, "..data_tmp")
	if err := os.Symlink(gen, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if s.gen == 1 {
		for _, f := range []string{"tls.crt", "tls.key"} {
			if err := os.Symlink(filepath.Join("..data", f), filepath.Join(s.dir, f)); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// A secret update (the ..data symlink swapped) is picked up by -tls-watch
// without a signal; a generation that does not load is logged and skipped.
func TestUpReloadCertificateOnFileChange(t *testing.T) {
	sec := &k8sSecret{dir: t.TempDir()}
	var first, second, third []byte
	sec.update(t, func(crt, key string) { first = writeLeaf(t, crt, key) })
	crt, key := sec.paths()
	n := startCertNode(t, crt, key, "-tls-watch", "50ms")
	waitServes(t, first, n.gwAddr, n.ctlAdr)

	live := n.openLive(t, poolOf(t, first))
	live.exchange(t, 300_000, 11)

	sec.update(t, func(crt, key string) { second = writeLeaf(t, crt, key) })
	waitServes(t, second, n.gwAddr, n.ctlAdr)
	waitLogLine(t, n.u.errs, "tls certificates reloaded after a file change")
	live.exchange(t, 300_000, 13)
	fetchThrough(t, n.gwURL, n.token, reloadMethod, reloadPassword, n.origin, 100_000, poolOf(t, second))

	// A generation whose certificate is garbage: logged, not served.
	sec.update(t, func(crt, key string) {
		writeLeaf(t, crt, key)
		if err := os.WriteFile(crt, []byte("garbage\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	})
	waitLogLine(t, n.u.errs, "tls certificate files changed but do not load; keeping the previous certificates")
	waitServes(t, second, n.gwAddr, n.ctlAdr)
	live.exchange(t, 300_000, 15)

	// The next good generation is served again.
	sec.update(t, func(crt, key string) { third = writeLeaf(t, crt, key) })
	waitServes(t, third, n.gwAddr, n.ctlAdr)
	live.exchange(t, 300_000, 17)
	fetchThrough(t, n.gwURL, n.token, reloadMethod, reloadPassword, n.origin, 100_000, poolOf(t, third))
}
