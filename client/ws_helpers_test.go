package client

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/internal/testpeer"
)

// waitLong bounds waits for conditions in these tests: generous, because
// the machine is busy; a passing wait returns at once.
const waitLong = 20 * time.Second

// startRealGateway runs the real gateway in-process on 127.0.0.1:0 with
// routes (secret → upstream), over TLS with a fresh self-signed certificate
// when tlsOn, and shuts it down at test end.
func startRealGateway(t testing.TB, tlsOn bool, routes map[string]string) (string, *testpeer.TestCert) {
	t.Helper()
	_, addr, cert := startRealGatewayG(t, tlsOn, routes)
	return addr, cert
}

// startRealGatewayG is startRealGateway that also returns the gateway.
func startRealGatewayG(t testing.TB, tlsOn bool, routes map[string]string) (*gateway.Gateway, string, *testpeer.TestCert) {
	t.Helper()
	return startRealGatewayCfg(t, tlsOn, routes, nil)
}

// startRealGatewayCfg is startRealGatewayG with edit applied to the
// gateway's Config.
func startRealGatewayCfg(t testing.TB, tlsOn bool, routes map[string]string, edit func(*gateway.Config)) (*gateway.Gateway, string, *testpeer.TestCert) {
	t.Helper()
	auth, err := gateway.NewStaticAuth(routes)
	if err != nil {
		t.Fatal(err)
	}
	cfg := gateway.Config{
		Auth:         auth,
		DrainTimeout: 2 * time.Second,
		Logger:       slog.New(slog.DiscardHandler),
	}
	var cert *testpeer.TestCert
	if tlsOn {
		cert = testpeer.SelfSignedCert(t)
		cfg.TLS = &gateway.TLSConfig{GetCertificate: cert.GetCertificate}
	}
	if edit != nil {
		edit(&cfg)
	}
	g, err := gateway.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return g, testpeer.ServeGateway(t, g), cert
}

// hashPeer is a TCP upstream for both-way hash checks. The client sends
// [8-byte seed][8-byte down] and then any bytes up to its FIN; the peer at
// once sends testpeer.PseudoRandom(down, seed) and then FIN, while hashing
// what it receives until the client's FIN, and reports that hash on the
// returned channel (one per connection).
type hashResult struct {
	sum [32]byte
	n   int64
	err error
}

func hashPeer(t testing.TB) (string, <-chan hashResult) {
	got := make(chan hashResult, 64)
	addr := testpeer.ListenTCP(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(2 * time.Minute))
		var hdr [16]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			got <- hashResult{err: err}
			return
		}
		sent := make(chan error, 1)
		go func() {
			_, err := io.CopyBuffer(c, testpeer.PseudoRandom(int64(binary.BigEndian.Uint64(hdr[8:])), binary.BigEndian.Uint64(hdr[:8])), make([]byte, 32<<10))
			c.CloseWrite()
			sent <- err
		}()
		h := sha256.New()
		n, err := io.CopyBuffer(h, c, make([]byte, 32<<10))
		if sendErr := <-sent; err == nil {
			err = sendErr
		}
		var r hashResult
		copy(r.sum[:], h.Sum(nil))
		r.n, r.err = n, err
		got <- r
	})
	return addr, got
}

// exchange runs one both-way transfer over s (a stream to a hashPeer):
// up bytes of PseudoRandom(up, seed+1) written with writes of wchunk bytes,
// then CloseWrite; it reads to EOF and checks the down bytes' hash, and
// returns the up bytes' expected hash for the peer's report.
func exchange(s StreamConn, seed uint64, down, up int64, wchunk int) (upSum string, err error) {
	var hdr [16]byte
	binary.BigEndian.PutUint64(hdr[:], seed)
	binary.BigEndian.PutUint64(hdr[8:], uint64(down))
	wrote := make(chan error, 1)
	go func() {
		if _, err := s.Write(hdr[:]); err != nil {
			wrote <- err
			return
		}
		if _, err := io.CopyBuffer(onlyWriter{s}, testpeer.PseudoRandom(up, seed+1), make([]byte, wchunk)); err != nil {
			wrote <- err
			return
		}
		wrote <- s.CloseWrite()
	}()
	h := sha256.New()
	n, rerr := io.CopyBuffer(h, onlyReader{s}, make([]byte, 32<<10))
	werr := <-wrote
	switch {
	case rerr != nil:
		return "", fmt.Errorf("read after %d bytes: %w", n, rerr)
	case werr != nil:
		return "", fmt.Errorf("write: %w", werr)
	case n != down:
		return "", fmt.Errorf("read %d bytes, want %d", n, down)
	case fmt.Sprintf("%x", h.Sum(nil)) != testpeer.PseudoRandomSHA256(down, seed):
		return "", fmt.Errorf("down bytes differ")
	}
	return testpeer.PseudoRandomSHA256(up, seed+1), nil
}

// checkPeer waits for the peer's report of one connection and compares it.
func checkPeer(t testing.TB, got <-chan hashResult, upSum string, up int64) {
	t.Helper()
	select {
	case r := <-got:
		if r.err != nil || r.n != up || fmt.Sprintf("%x", r.sum) != upSum {
			t.Fatalf("peer got %d bytes (err %v), hash match %v; want %d", r.n, r.err, fmt.Sprintf("%x", r.sum) == upSum, up)
		}
	case <-time.After(waitLong):
		t.Fatal("the peer never reported")
	}
}

// onlyWriter and onlyReader hide ReadFrom/WriteTo so the chunk sizes given
// to io.CopyBuffer are the ones the stream sees.
type onlyWriter struct{ io.Writer }
type onlyReader struct{ io.Reader }
