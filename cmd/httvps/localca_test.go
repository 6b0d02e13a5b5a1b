package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/httvps/httvps/client"
	"github.com/httvps/httvps/internal/certs"
	"github.com/httvps/httvps/internal/testpeer"
)

// appleMaxDays is Apple's limit on a TLS leaf under a private root.
const appleMaxDays = 825

func testLog(t *testing.T) (*slog.Logger, *lockedBuffer) {
	b := &lockedBuffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// readChain returns the certificates of a PEM file, in order.
func readChain(t *testing.T, file string) []*x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []*x509.Certificate
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			return out
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
}

func fileMode(t *testing.T, file string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// checkLeaf checks what platforms require of the served chain: a leaf
// that is not a CA, for server auth, at most 825 days (397 here), valid a
// little before now, covering names, followed by the CA, verifying
// against the CA alone.
func checkLeaf(t *testing.T, chain []*x509.Certificate, ca *x509.Certificate, now time.Time, names ...string) {
	t.Helper()
	if len(chain) != 2 || !bytes.Equal(chain[1].Raw, ca.Raw) {
		t.Fatalf("served chain has %d certificates, want the leaf and the CA", len(chain))
	}
	leaf := chain[0]
	if leaf.Subject.String() == ca.Subject.String() {
		t.Errorf("leaf named as its CA (%s): OpenSSL takes it for self-signed", leaf.Subject)
	}
	if leaf.IsCA || !leaf.BasicConstraintsValid || leaf.KeyUsage&x509.KeyUsageCertSign != 0 {
		t.Errorf("leaf: IsCA %v, basic constraints %v, key usage %b: want a leaf", leaf.IsCA, leaf.BasicConstraintsValid, leaf.KeyUsage)
	}
	if len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Errorf("leaf EKU %v, want server auth", leaf.ExtKeyUsage)
	}
	if d := leaf.NotAfter.Sub(leaf.NotBefore); d != 397*24*time.Hour || d > appleMaxDays*24*time.Hour {
		t.Errorf("leaf valid for %v, want 397 days (≤ %d)", d, appleMaxDays)
	}
	if !leaf.NotBefore.Before(now) || leaf.NotBefore.Before(now.Add(-2*time.Hour)) {
		t.Errorf("leaf not before %v, want a little before %v", leaf.NotBefore, now)
	}
	if _, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || leaf.SignatureAlgorithm != x509.ECDSAWithSHA256 {
		t.Errorf("leaf key %T signed with %v", leaf.PublicKey, leaf.SignatureAlgorithm)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for _, n := range names {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: n, Roots: roots, CurrentTime: now}); err != nil {
			t.Errorf("leaf for %s does not verify against the CA: %v", n, err)
		}
	}
}

// TestLocalCAFirstStart: a new data directory gets a CA (its key 0600)
// and a leaf it signed, which is not a CA and lives 397 days.
func TestLocalCAFirstStart(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	log, logs := testLog(t)
	ca, err := ensureLocalCerts(dir, "vpn.example.com", now, log)
	if err != nil {
		t.Fatal(err)
	}
	c := readChain(t, filepath.Join(dir, "ca.pem"))
	if len(c) != 1 || !c[0].IsCA || c[0].Subject.CommonName != "httvps up local CA vpn.example.com" ||
		c[0].KeyUsage&x509.KeyUsageCertSign == 0 || !c[0].MaxPathLenZero || c[0].CheckSignatureFrom(c[0]) != nil {
		t.Fatalf("ca.pem: %+v", c)
	}
	if !bytes.Equal(c[0].Raw, ca.cert.Raw) {
		t.Error("ca.pem is not the CA in use")
	}
	checkLeaf(t, readChain(t, filepath.Join(dir, "leaf.pem")), c[0], now, "vpn.example.com", "localhost", "127.0.0.1", "::1")
	for name, want := range map[string]os.FileMode{"ca.pem": 0o644, "ca-key.pem": 0o600, "leaf.pem": 0o644, "leaf-key.pem": 0o600} {
		if m := fileMode(t, filepath.Join(dir, name)); m != want {
			t.Errorf("%s: mode %v, want %v", name, m, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "cert.pem")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cert.pem written on a new data directory: %v", err)
	}
	leaf := readChain(t, filepath.Join(dir, "leaf.pem"))[0]
	for _, want := range []string{"local CA: clients trust this certificate", "sha256=" + fingerprint(c[0].Raw),
		"issued a TLS certificate from the local CA", "sha256=" + fingerprint(leaf.Raw), "why=\"none yet\""} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs.String(), "level=WARN") || strings.Contains(logs.String(), "PRIVATE") {
		t.Errorf("log:\n%s", logs)
	}
}

// TestLocalCAReissue: the leaf is issued again, from the same CA, when it
// does not load, does not cover -public-host, is within 30 days of
// expiry or was not issued by the CA; otherwise it is kept.
func TestLocalCAReissue(t *testing.T) {
	now := time.Now()
	discard := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		name  string
		host  string
		at    time.Time
		spoil func(t *testing.T, dir string)
		again bool
	}{
		{name: "kept", host: "vpn.example.com", at: now.Add(time.Hour)},
		{name: "kept 31 days before expiry", host: "vpn.example.com", at: now.Add(365 * 24 * time.Hour)},
		{name: "within 30 days of expiry", host: "vpn.example.com", at: now.Add(368 * 24 * time.Hour), again: true},
		{name: "expired", host: "vpn.example.com", at: now.Add(400 * 24 * time.Hour), again: true},
		{name: "another -public-host", host: "203.0.113.9", at: now, again: true},
		{name: "leaf deleted", host: "vpn.example.com", at: now, again: true, spoil: func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "leaf.pem"))
		}},
		{name: "key of another leaf", host: "vpn.example.com", at: now, again: true, spoil: func(t *testing.T, dir string) {
			key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err := writeKey(filepath.Join(dir, "leaf-key.pem"), key); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "issued by another CA", host: "vpn.example.com", at: now, again: true, spoil: func(t *testing.T, dir string) {
			other, err := ensureLocalCerts(t.TempDir(), "vpn.example.com", now, discard)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{"leaf.pem", "leaf-key.pem"} {
				b, _ := os.ReadFile(other.file(f))
				os.WriteFile(filepath.Join(dir, f), b, 0o600)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := ensureLocalCerts(dir, "vpn.example.com", now, discard); err != nil {
				t.Fatal(err)
			}
			ca1, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
			leaf1, _ := os.ReadFile(filepath.Join(dir, "leaf.pem"))
			if tc.spoil != nil {
				tc.spoil(t, dir)
			}
			if _, err := ensureLocalCerts(dir, tc.host, tc.at, discard); err != nil {
				t.Fatal(err)
			}
			if ca2, _ := os.ReadFile(filepath.Join(dir, "ca.pem")); !bytes.Equal(ca1, ca2) {
				t.Error("the CA changed")
			}
			leaf2, _ := os.ReadFile(filepath.Join(dir, "leaf.pem"))
			if again := !bytes.Equal(leaf1, leaf2); again != tc.again {
				t.Fatalf("leaf issued again: %v, want %v", again, tc.again)
			}
			issued := now
			if tc.again {
				issued = tc.at
			}
			checkLeaf(t, readChain(t, filepath.Join(dir, "leaf.pem")), readChain(t, filepath.Join(dir, "ca.pem"))[0], issued, tc.host)
		})
	}
}

// TestLocalCAExpiring: a CA within 30 days of its end is replaced at start,
// with a warning (clients must be handed the new file), and a new leaf.
func TestLocalCAExpiring(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	if _, err := ensureLocalCerts(dir, "vpn.example.com", now, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	ca1 := readChain(t, filepath.Join(dir, "ca.pem"))[0]
	later := ca1.NotAfter.Add(-20 * 24 * time.Hour)
	log, logs := testLog(t)
	if _, err := ensureLocalCerts(dir, "vpn.example.com", later, log); err != nil {
		t.Fatal(err)
	}
	ca2 := readChain(t, filepath.Join(dir, "ca.pem"))[0]
	if bytes.Equal(ca1.Raw, ca2.Raw) {
		t.Fatal("an expiring CA was kept")
	}
	checkLeaf(t, readChain(t, filepath.Join(dir, "leaf.pem")), ca2, later, "vpn.example.com")
	if !strings.Contains(logs.String(), `level=WARN msg="made a new local CA; clients must trust this file"`) {
		t.Errorf("log:\n%s", logs)
	}
}

// writeLegacyCert writes what `httvps up` generated before the local CA:
// one self-signed ECDSA certificate, its own CA, in cert.pem and key.pem.
func writeLegacyCert(t *testing.T, dir, host string, notAfter time.Time, isCA bool) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dns, ips := certNames(host)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(7),
		Subject:               pkix.Name{CommonName: host, Organization: []string{"httvps up"}},
		DNSNames:              dns,
		IPAddresses:           ips,
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  isCA,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeKey(filepath.Join(dir, "key.pem"), key); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), pemCert(der), 0o644); err != nil {
		t.Fatal(err)
	}
	return der
}

// TestLocalCAUpgrade: the self-signed CA certificate of an older `up`
// becomes the local CA, so a client holding that file (curl --cacert,
// v2ray-plugin cert=) or a key pinning it keeps working; its key moves to
// ca-key.pem and cert.pem is left as it was.
func TestLocalCAUpgrade(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	old := writeLegacyCert(t, dir, "vpn.example.com", now.Add(10*365*24*time.Hour), true)
	oldPEM, _ := os.ReadFile(filepath.Join(dir, "cert.pem"))
	oldKey, _ := os.ReadFile(filepath.Join(dir, "key.pem"))
	log, logs := testLog(t)
	ca, err := ensureLocalCerts(dir, "vpn.example.com", now, log)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ca.cert.Raw, old) {
		t.Fatal("the old certificate did not become the CA")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "ca.pem")); !bytes.Equal(b, oldPEM) {
		t.Error("ca.pem is not the old cert.pem")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "ca-key.pem")); !bytes.Equal(b, oldKey) || fileMode(t, filepath.Join(dir, "ca-key.pem")) != 0o600 {
		t.Error("ca-key.pem is not the old key.pem, mode 0600")
	}
	if _, err := os.Stat(filepath.Join(dir, "key.pem")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("key.pem still there: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "cert.pem")); !bytes.Equal(b, oldPEM) {
		t.Error("cert.pem changed")
	}
	oldCert, _ := x509.ParseCertificate(old)
	checkLeaf(t, readChain(t, filepath.Join(dir, "leaf.pem")), oldCert, now, "vpn.example.com", "127.0.0.1")
	// So an old key's pin (the SHA-256 of the old certificate) is the
	// CA's, which the served chain carries (client.checkPin accepts it).
	if !strings.Contains(logs.String(), "the self-signed certificate of an older httvps up is now the local CA") {
		t.Errorf("log:\n%s", logs)
	}
	// A second start keeps it all.
	leaf1, _ := os.ReadFile(filepath.Join(dir, "leaf.pem"))
	if _, err := ensureLocalCerts(dir, "vpn.example.com", now, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "ca.pem")); !bytes.Equal(b, oldPEM) {
		t.Error("the CA changed on the next start")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "leaf.pem")); !bytes.Equal(b, leaf1) {
		t.Error("the leaf changed on the next start")
	}
}

// TestLocalCAUpgradeUnusable: an old certificate that cannot be the CA (it
// is about to expire, or is no CA) is left alone and a new CA made.
func TestLocalCAUpgradeUnusable(t *testing.T) {
	now := time.Now()
	for name, old := range map[string]struct {
		notAfter time.Time
		isCA     bool
	}{
		"expiring": {now.Add(10 * 24 * time.Hour), true},
		"not a CA": {now.Add(300 * 24 * time.Hour), false},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			der := writeLegacyCert(t, dir, "vpn.example.com", old.notAfter, old.isCA)
			log, logs := testLog(t)
			ca, err := ensureLocalCerts(dir, "vpn.example.com", now, log)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(ca.cert.Raw, der) {
				t.Fatal("the old certificate became the CA")
			}
			if _, err := os.Stat(filepath.Join(dir, "key.pem")); err != nil {
				t.Errorf("key.pem: %v", err)
			}
			if !strings.Contains(logs.String(), "the certificate of an older httvps up cannot be the CA") {
				t.Errorf("log:\n%s", logs)
			}
		})
	}
}

// TestLeafRenewalLiveConnection: at a tick with the leaf due, a new leaf
// from the same CA is served to new handshakes through the certs.Store,
// while a connection made before keeps working; a tick with nothing due
// changes nothing.
func TestLeafRenewalLiveConnection(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	discard := slog.New(slog.DiscardHandler)
	// Issued 370 days ago: 27 days left, so the first check renews it.
	ca, err := ensureLocalCerts(dir, "localhost", now.Add(-370*24*time.Hour), discard)
	if err != nil {
		t.Fatal(err)
	}
	store, err := certs.New([]certs.Pair{ca.pair()}, discard)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: store.GetCertificate})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	dial := func() *tls.Conn {
		t.Helper()
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: roots, ServerName: "localhost"})
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(20 * time.Second))
		return c
	}
	echo := func(c *tls.Conn, msg string) {
		t.Helper()
		if _, err := io.WriteString(c, msg); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
			t.Fatalf("echo %q: %q %v", msg, got, err)
		}
	}
	live := dial()
	defer live.Close()
	echo(live, "before")
	old := live.ConnectionState().PeerCertificates[0]

	ticks := make(chan time.Time)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	log, logs := testLog(t)
	go func() { ca.renewOnTicks(ctx, ticks, time.Now, store, log); close(done) }()
	defer func() { cancel(); <-done }()
	// The second send is taken only once the first tick is handled.
	ticks <- now
	ticks <- now

	fresh := dial()
	defer fresh.Close()
	chain := fresh.ConnectionState().PeerCertificates
	if bytes.Equal(chain[0].Raw, old.Raw) {
		t.Fatal("the due leaf is still served")
	}
	checkLeaf(t, chain, ca.cert, now, "localhost")
	if chain[0].NotAfter.Before(now.Add(396 * 24 * time.Hour)) {
		t.Errorf("new leaf ends %v", chain[0].NotAfter)
	}
	echo(fresh, "new")
	echo(live, "after")
	if !bytes.Equal(live.ConnectionState().PeerCertificates[0].Raw, old.Raw) {
		t.Error("the live connection's certificate changed")
	}
	if !strings.Contains(logs.String(), "issued a TLS certificate from the local CA") || !strings.Contains(logs.String(), "sha256="+fingerprint(chain[0].Raw)) {
		t.Errorf("log:\n%s", logs)
	}

	// Nothing due: the leaf stays.
	ticks <- now
	ticks <- now
	again := dial()
	defer again.Close()
	if !bytes.Equal(again.ConnectionState().PeerCertificates[0].Raw, chain[0].Raw) {
		t.Error("a leaf that was not due was replaced")
	}
}

// TestFingerprintMatchesOpenSSL: the printed form is openssl's.
func TestFingerprintMatchesOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	dir := t.TempDir()
	ca, err := ensureLocalCerts(dir, "localhost", time.Now(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("openssl", "x509", "-in", ca.file("ca.pem"), "-noout", "-fingerprint", "-sha256").Output()
	if err != nil {
		t.Fatal(err)
	}
	_, want, _ := strings.Cut(strings.TrimSpace(string(out)), "=")
	if got := fingerprint(ca.cert.Raw); got != want || len(got) != 95 {
		t.Errorf("fingerprint %s, openssl %s", got, want)
	}
}

// checkServedChain checks the banner's certificate lines against the files
// and what addrs serve: the CA file and its fingerprint, the leaf's, the
// chain (leaf, then the CA) that Go and `openssl s_client -CAfile CA
// -verify_return_error` verify.
func checkServedChain(t *testing.T, banner, caFile string, addrs ...string) {
	t.Helper()
	if got := field(t, banner, "CA"); got != caFile {
		t.Errorf("banner CA %q, want %s", got, caFile)
	}
	caDER, err := firstCertDER(caFile)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	if got := field(t, banner, "CA SHA-256"); got != fingerprint(caDER) {
		t.Errorf("banner CA SHA-256 %s, want %s", got, fingerprint(caDER))
	}
	leafFile := filepath.Join(filepath.Dir(caFile), "leaf.pem")
	if got := field(t, banner, "leaf"); got != leafFile {
		t.Errorf("banner leaf %q, want %s", got, leafFile)
	}
	leafDER, _ := firstCertDER(leafFile)
	if got := field(t, banner, "leaf SHA-256"); got != fingerprint(leafDER) {
		t.Errorf("banner leaf SHA-256 %s, want %s (leaf.pem)", got, fingerprint(leafDER))
	}
	pool := certPool(t, caFile)
	for _, addr := range addrs {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatalf("%s: TLS with the CA file: %v", addr, err)
		}
		chain := c.ConnectionState().PeerCertificates
		c.Close()
		checkLeaf(t, chain, ca, time.Now(), "127.0.0.1", "localhost")
		if !bytes.Equal(chain[0].Raw, leafDER) {
			t.Errorf("%s serves another leaf than leaf.pem", addr)
		}
		if _, err := exec.LookPath("openssl"); err != nil {
			continue
		}
		host, _, _ := net.SplitHostPort(addr)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		cmd := exec.CommandContext(ctx, "openssl", "s_client", "-connect", addr, "-CAfile", caFile,
			"-verify_return_error", "-verify_ip", host, "-no-CApath", "-no-CAstore")
		cmd.Stdin = strings.NewReader("")
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil || !strings.Contains(string(out), "Verify return code: 0 (ok)") {
			t.Errorf("%s: openssl s_client -CAfile %s -verify_return_error: %v\n%s", addr, caFile, err, out)
		}
	}
}

// httvpsKeyThrough uses the httvps:// key `up` printed as the reference
// client does: the key pins the CA; the client config comes from the
// control API and the gateway accepts the WebSocket, both serving a leaf
// the CA signed. A key that pinned the leaf itself (as keys of an older
// `up` did) still connects; a wrong pin does not.
func httvpsKeyThrough(t *testing.T, text, token, caFile string) {
	t.Helper()
	k, err := client.ParseKey(text)
	if err != nil {
		t.Fatal(err)
	}
	caDER, _ := firstCertDER(caFile)
	if sum := sha256.Sum256(caDER); !bytes.Equal(k.Pin, sum[:]) {
		t.Fatalf("httvps:// key pins %s, want the CA's %s", hex.EncodeToString(k.Pin), hex.EncodeToString(sum[:]))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cfg, err := (&client.Fetcher{}).ClientConfig(ctx, k)
	if err != nil {
		t.Fatalf("client config with the CA pin: %v", err)
	}
	k, err = k.WithConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	gw := k.Gateways[0]
	leafDER, _ := firstCertDER(filepath.Join(filepath.Dir(caFile), "leaf.pem"))
	leafPin := sha256.Sum256(leafDER)
	wrong := bytes.Clone(leafPin[:])
	wrong[0] ^= 1
	for _, tc := range []struct {
		name string
		pin  []byte
		ok   bool
	}{{"CA pin", k.Pin, true}, {"leaf pin", leafPin[:], true}, {"wrong pin", wrong, false}} {
		gw.Pin = tc.pin
		c, _, err := client.DialWS(ctx, gw, "/"+token+"/tcp", client.WSOptions{})
		if err == nil {
			c.Close()
		}
		if tc.ok && err != nil || !tc.ok && !errors.Is(err, client.ErrPinMismatch) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

// TestUpRenewsLeaf: a running `up` whose leaf falls due issues a new one
// from the same CA and serves it, while a session made before goes on.
func TestUpRenewsLeaf(t *testing.T) {
	needPeers(t, "ss-server")
	defer func(d time.Duration) { leafCheckEvery = d }(leafCheckEvery)
	leafCheckEvery = 20 * time.Millisecond
	const method, password = testpeer.DefaultMethod, "renew"
	ss := testpeer.SSServer(t, password, method)
	origin := testpeer.StartOrigin(t)
	dir := t.TempDir()
	gwAddr := "127.0.0.1:" + strconv.Itoa(testpeer.FreePort(t))
	ctlAddr := "127.0.0.1:" + strconv.Itoa(testpeer.FreePort(t))
	u := startUp(t, "-data-dir", dir, "-listen", gwAddr, "-control-listen", ctlAddr,
		"-member", "static:"+ss+":"+method+":"+password, "-drain-timeout", "1s", "-log-level", "info")
	token := field(t, readSecretFile(t, filepath.Join(dir, "first-token.txt")), "token")
	caFile := filepath.Join(dir, "ca.pem")
	ca1, _ := os.ReadFile(caFile)
	pool := certPool(t, caFile)
	first := servedCert(t, gwAddr)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ws, sc, err := ssSession(ctx, "wss://"+gwAddr, token, method, password, origin.Addr, pool)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	// Keep-alive requests on the one session, before and after.
	br := bufio.NewReader(sc)
	get := func(n int64) {
		t.Helper()
		fmt.Fprintf(sc, "GET /bytes/%d HTTP/1.1\r\nHost: %s\r\n\r\n", n, origin.Addr)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("download on the live session: %v", err)
		}
		h := sha256.New()
		got, err := io.Copy(h, resp.Body)
		resp.Body.Close()
		if err != nil || got != n || hex.EncodeToString(h.Sum(nil)) != testpeer.PseudoRandomSHA256(n, 0) {
			t.Fatalf("download on the live session: %d bytes, %v", got, err)
		}
	}
	get(10_000)

	// The leaf on disk falls due: one with 27 days left, from the same CA.
	ca, err := loadCA(caFile, filepath.Join(dir, "ca-key.pem"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ca.dir, ca.host = dir, "127.0.0.1"
	if _, err := ca.issueLeaf(time.Now().Add(-370 * 24 * time.Hour)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	var served *x509.Certificate
	for {
		c, err := tls.Dial("tcp", gwAddr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		served = c.ConnectionState().PeerCertificates[0]
		c.Close()
		if !bytes.Equal(served.Raw, first) && served.NotAfter.After(time.Now().Add(396*24*time.Hour)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the due leaf was not renewed:\n%s", u.errs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if b, _ := os.ReadFile(caFile); !bytes.Equal(b, ca1) {
		t.Error("the CA changed")
	}
	get(20_000) // the session made before the renewal goes on
	fetchThrough(t, "wss://"+gwAddr, token, method, password, origin, 30_000, pool)
	if again := servedCert(t, ctlAddr); !bytes.Equal(again, served.Raw) {
		t.Error("the control API serves another certificate than the gateway")
	}
	waitLogLine(t, u.errs, "issued a TLS certificate from the local CA")
}

// TestUpUpgradesOldDataDir: `up` on the data directory of an older `up`
// serves a leaf under the old certificate, so a client still holding the
// old cert.pem (curl --cacert, cert=) verifies it, Go and openssl alike.
func TestUpUpgradesOldDataDir(t *testing.T) {
	dir := t.TempDir()
	old := writeLegacyCert(t, dir, "127.0.0.1", time.Now().Add(10*365*24*time.Hour), true)
	oldFile := filepath.Join(dir, "cert.pem")
	gwAddr := "127.0.0.1:" + strconv.Itoa(testpeer.FreePort(t))
	ctlAddr := "127.0.0.1:" + strconv.Itoa(testpeer.FreePort(t))
	u := startUp(t, "-data-dir", dir, "-listen", gwAddr, "-control-listen", ctlAddr, "-drain-timeout", "1s", "-log-level", "info")
	caFile := filepath.Join(dir, "ca.pem")
	if der, _ := firstCertDER(caFile); !bytes.Equal(der, old) {
		t.Fatal("ca.pem is not the old certificate")
	}
	if got := field(t, u.out.String(), "CA SHA-256"); got != fingerprint(old) {
		t.Errorf("banner CA SHA-256 %s, want the old certificate's %s", got, fingerprint(old))
	}
	checkServedChain(t, u.out.String(), caFile, gwAddr, ctlAddr)
	// The old file itself, as a client that copied it holds it.
	pool := certPool(t, oldFile)
	for _, addr := range []string{gwAddr, ctlAddr} {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatalf("%s with the old cert.pem: %v", addr, err)
		}
		c.Close()
	}
	waitLogLine(t, u.errs, "the self-signed certificate of an older httvps up is now the local CA")
}
