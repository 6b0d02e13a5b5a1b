package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/internal/acmecert"
	"github.com/httvps/httvps/internal/testpeer"
	"github.com/httvps/httvps/store/embedded"
)

// acmeName is the name certificates are ordered for; Pebble's DNS server
// resolves every name to 127.0.0.1.
const acmeName = "vpn.httvps-test.example"

// acmeGateway is a TLS gateway whose certificate comes from Pebble through
// an acmecert.Manager validated on the gateway's own listener.
type acmeGateway struct {
	addr   string
	mgr    *acmecert.Manager
	pebble *testpeer.Pebble
	root   []byte // Pebble's issuing root, PEM
	roots  *x509.CertPool
	self   *testpeer.TestCert // the fallback
}

func startACMEGateway(t *testing.T, routes map[string]string) *acmeGateway {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	var tlsPort int
	fmt.Sscan(port, &tlsPort)
	pb := testpeer.StartPebble(t, testpeer.PebbleSpec{TLSPort: tlsPort, Validity: 24 * time.Hour})

	st, err := embedded.Open(filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	self := testpeer.SelfSignedCert(t)
	level := slog.LevelWarn
	if os.Getenv("E2E_GATEWAY_LOG") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	mgr, err := acmecert.New(acmecert.Config{
		Domains:  []string{acmeName},
		CA:       pb.Directory,
		CARoots:  pb.APIRoots,
		Store:    st,
		TLSAddr:  addr,
		Fallback: self.GetCertificate,
		Logger:   log,
	})
	if err != nil {
		t.Fatal(err)
	}
	auth, err := gateway.NewStaticAuth(routes)
	if err != nil {
		t.Fatal(err)
	}
	tc := &gateway.TLSConfig{GetCertificate: mgr.GetCertificate, ACMEChallenge: mgr.Challenge}
	g, err := gateway.New(gateway.Config{Auth: auth, TLS: tc, DrainTimeout: 2 * time.Second, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	testpeer.ServeGatewayOn(t, ln, g)
	t.Cleanup(mgr.Stop) // first: before the gateway shuts down
	if err := mgr.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	a := &acmeGateway{addr: addr, mgr: mgr, pebble: pb, self: self}
	a.waitServed(t, nil)
	a.root, a.roots = pb.Root(t)
	return a
}

// waitServed waits until the gateway serves an ACME certificate for
// acmeName other than old, and returns it.
func (a *acmeGateway) waitServed(t *testing.T, old *x509.Certificate) *x509.Certificate {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if c, ok := a.mgr.Served(acmeName); ok && (old == nil || c.SerialNumber.Cmp(old.SerialNumber) != 0) {
			return c
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("no certificate from Pebble within 2 minutes")
	return nil
}

// handshake returns the leaf a client trusting Pebble's root gets.
func (a *acmeGateway) handshake(t *testing.T) *x509.Certificate {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", a.addr, &tls.Config{RootCAs: a.roots, ServerName: acmeName})
	if err != nil {
		t.Fatalf("TLS to the gateway with Pebble's root: %v", err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}

// TestACMEPebble: the gateway obtains its certificate from Pebble by
// TLS-ALPN-01 on its own listener; openssl trusting Pebble's root verifies
// the chain; stock ss-local + v2ray-plugin relays through it; a renewal
// with a session open replaces the certificate for new handshakes while
// the open session goes on; a prober offering acme-tls/1 with no
// validation pending gets what nginx sends.
func TestACMEPebble(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	origin := testpeer.StartOrigin(t)
	ss := testpeer.SSServer(t, testpeer.DefaultPassword, testpeer.DefaultMethod)
	const ssSecret, echoSecret = "acmeSSsecret-91c2", "acmeEchoSecret-4e7d"
	a := startACMEGateway(t, map[string]string{ssSecret: ss, echoSecret: duplexPeer(t)})

	first := a.handshake(t)
	if first.Issuer.String() == first.Subject.String() || first.VerifyHostname(acmeName) != nil {
		t.Fatalf("served %v issued by %v: want Pebble's certificate for %s", first.Subject, first.Issuer, acmeName)
	}

	// openssl, trusting only Pebble's root, verifies the chain served.
	rootFile := filepath.Join(t.TempDir(), "pebble-root.pem")
	if err := os.WriteFile(rootFile, a.root, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "openssl", "s_client", "-connect", a.addr, "-servername", acmeName,
		"-CAfile", rootFile, "-verify_return_error", "-verify_hostname", acmeName, "-showcerts").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Verify return code: 0 (ok)") {
		t.Fatalf("openssl s_client: %v\n%s", err, out)
	}
	if n := strings.Count(string(out), "-----BEGIN CERTIFICATE-----"); n < 2 {
		t.Errorf("openssl saw %d certificates, want the leaf and Pebble's intermediate", n)
	}

	// A stock Outline-path client over the ACME certificate.
	socks := testpeer.SSLocalWithOpts(t, a.addr, testpeer.DefaultPassword, testpeer.DefaultMethod,
		fmt.Sprintf("tls;host=%s;path=/%s/tcp;mux=0;cert=%s", acmeName, ssSecret, rootFile))
	if err := testpeer.WaitSOCKSReady(socks, origin, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	const size = 4<<20 + 13
	got, n, err := curl(ctx, socks, origin.URL(fmt.Sprintf("/bytes/%d?seed=17", size)))
	if err != nil {
		t.Fatal(err)
	}
	if want := testpeer.PseudoRandomSHA256(size, 17); n != size || got != want {
		t.Fatalf("download through ss-local: %d bytes %s, want %d %s", n, got, size, want)
	}

	// A session opened before a renewal carries on after it.
	c, err := testpeer.DialWSS(ctx, "wss://"+a.addr+"/"+echoSecret+"/tcp", &tls.Config{RootCAs: a.roots, ServerName: acmeName})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := a.mgr.Renew(ctx, true); err != nil {
		t.Fatalf("forced renewal: %v", err)
	}
	renewed := a.waitServed(t, first)
	if now := a.handshake(t); now.SerialNumber.Cmp(renewed.SerialNumber) != 0 {
		t.Fatalf("after the renewal a new handshake got serial %x, want the renewed %x", now.SerialNumber, renewed.SerialNumber)
	}
	if err := duplexExchange(c, 5, 3<<20, 5<<20, true); err != nil {
		t.Fatalf("the session opened before the renewal: %v", err)
	}

	// Without a validation pending, acme-tls/1 alone gets alert 120.
	_, err = tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", a.addr,
		&tls.Config{ServerName: acmeName, NextProtos: []string{acmecert.ALPNProto}, InsecureSkipVerify: true})
	if err == nil || !strings.Contains(err.Error(), "no application protocol") {
		t.Fatalf("hello offering only acme-tls/1: %v, want alert 120 (no application protocol)", err)
	}
}
