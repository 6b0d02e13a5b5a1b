package certs

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestLoadRejects(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	good, _ := ca.writePair(t, dir, "good", leafSpec{dns: []string{"ok.example"}})
	for _, tc := range []struct {
		name string
		spec leafSpec
		is   error
		want string // substring of the message
	}{
		{"expired", leafSpec{dns: []string{"a.example"}, notBefore: -48 * time.Hour, notAfter: -time.Hour}, ErrExpired, "expired on"},
		{"not yet valid", leafSpec{dns: []string{"a.example"}, notBefore: time.Hour, notAfter: 48 * time.Hour}, ErrNotYetValid, "not valid yet until"},
		{"rsa 1024", leafSpec{key: "rsa1024", dns: []string{"a.example"}}, ErrWeakKey, "1024 bits"},
		{"p521", leafSpec{key: "p521", dns: []string{"a.example"}}, ErrKeyType, "P-521"},
		{"no SANs", leafSpec{}, ErrNoNames, "subject alternative name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad, _ := ca.writePair(t, dir, strings.ReplaceAll(tc.name, " ", "_"), tc.spec)
			_, err := New([]Pair{good, bad}, discardLogger())
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), bad.CertFile) {
				t.Fatalf("err = %v, want %v naming %s and containing %q", err, tc.is, bad.CertFile, tc.want)
			}
		})
	}

	t.Run("key of another certificate", func(t *testing.T) {
		other, _ := ca.writePair(t, dir, "other", leafSpec{key: "rsa2048", dns: []string{"b.example"}})
		_, err := New([]Pair{{CertFile: good.CertFile, KeyFile: other.KeyFile}}, discardLogger())
		if err == nil || !strings.Contains(err.Error(), good.CertFile) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		_, err := New([]Pair{{CertFile: filepath.Join(dir, "nope.crt"), KeyFile: good.KeyFile}}, discardLogger())
		if !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("not PEM", func(t *testing.T) {
		junk := filepath.Join(dir, "junk.crt")
		writeFile(t, junk, []byte("not a certificate"))
		if _, err := New([]Pair{{CertFile: junk, KeyFile: good.KeyFile}}, discardLogger()); err == nil {
			t.Fatal("junk accepted")
		}
	})
	t.Run("every failure reported", func(t *testing.T) {
		_, err := New([]Pair{{CertFile: "/nonexistent/a.crt", KeyFile: "/nonexistent/a.key"}, {CertFile: "/nonexistent/b.crt", KeyFile: "/nonexistent/b.key"}}, discardLogger())
		if err == nil || !strings.Contains(err.Error(), "a.crt") || !strings.Contains(err.Error(), "b.crt") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("no pairs", func(t *testing.T) {
		if _, err := New(nil, discardLogger()); !errors.Is(err, ErrNoPairs) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestLoadLogs(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	soon, _ := ca.writePair(t, dir, "soon", leafSpec{dns: []string{"soon.example"}, notAfter: 3 * 24 * time.Hour})
	rsa, _ := ca.writePair(t, dir, "rsa", leafSpec{key: "rsa2048", dns: []string{"rsa.example"}, ips: []string{"192.0.2.7"}})
	log, buf := testLogger(t)
	if _, err := New([]Pair{soon, rsa}, log); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"level=WARN msg=\"tls certificate expires soon\"", "soon.example", "key=\"ECDSA P-256\"",
		"msg=\"tls certificate loaded\"", "rsa.example", "192.0.2.7", "key=\"RSA 2048\"", "not_after=",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "PRIVATE") || strings.Contains(out, "BEGIN") {
		t.Errorf("log shows PEM material:\n%s", out)
	}
}

// Client capabilities as crypto/tls sees them in a ClientHello.
var (
	ecdsaClient = []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256, tls.ECDSAWithP384AndSHA384, tls.Ed25519, tls.PSSWithSHA256, tls.PKCS1WithSHA256}
	rsaClient   = []tls.SignatureScheme{tls.PSSWithSHA256, tls.PSSWithSHA384, tls.PKCS1WithSHA256}
)

func TestSelect(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	specs := []leafSpec{
		{dns: []string{"default.example"}},
		{dns: []string{"a.example.com", "*.wild.example.com"}},
		{key: "rsa2048", dns: []string{"a.example.com", "b.example.com", "*.wild.example.com"}},
		{key: "rsa2048", dns: []string{"Upper.Example.com"}, ips: []string{"192.0.2.1", "2001:db8::1"}},
		{key: "ed25519", dns: []string{"ed.example.com", "edonly.example.com"}},
		{key: "p384", dns: []string{"a.example.com", "ed.example.com"}}, // same rank as #1: the earlier pair wins
	}
	var pairs []Pair
	for i, s := range specs {
		p, _ := ca.writePair(t, dir, "c"+strconv.Itoa(i), s)
		pairs = append(pairs, p)
	}
	s, err := New(pairs, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	want := make([]*tls.Certificate, len(pairs))
	for i, c := range s.set.Load().all {
		want[i] = c
	}

	for _, tc := range []struct {
		name    string
		sni     string
		schemes []tls.SignatureScheme
		want    int
	}{
		{"exact, ecdsa client", "a.example.com", ecdsaClient, 1},
		{"exact, rsa-only client", "a.example.com", rsaClient, 2},
		{"case and trailing dot", "A.Example.COM.", ecdsaClient, 1},
		{"rsa only cert", "b.example.com", ecdsaClient, 2},
		{"wildcard, ecdsa client", "x.wild.example.com", ecdsaClient, 1},
		{"wildcard, rsa-only client", "x.wild.example.com", rsaClient, 2},
		{"wildcard covers one label only", "y.x.wild.example.com", ecdsaClient, 0},
		{"wildcard does not cover its base", "wild.example.com", ecdsaClient, 0},
		{"upper-case SAN", "upper.example.com", ecdsaClient, 3},
		{"ecdsa before ed25519", "ed.example.com", ecdsaClient, 5},
		{"ed25519 only", "edonly.example.com", ecdsaClient, 4},
		{"nothing fits the client: first by rank", "ed.example.com", rsaClient, 5},
		{"unknown name", "unknown.test", ecdsaClient, 0},
		{"unknown name, rsa-only client", "unknown.test", rsaClient, 0},
		{"no SNI, no connection", "", ecdsaClient, 0},
		{"IP literal in SNI", "192.0.2.1", ecdsaClient, 3},
		{"IPv6 literal in SNI", "2001:db8::1", ecdsaClient, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.GetCertificate(&tls.ClientHelloInfo{
				ServerName:        tc.sni,
				SupportedVersions: []uint16{tls.VersionTLS13},
				SignatureSchemes:  tc.schemes,
			})
			if err != nil {
				t.Fatal(err)
			}
			if got != want[tc.want] {
				t.Errorf("got %v, want pair %d %v", got.Leaf.DNSNames, tc.want, want[tc.want].Leaf.DNSNames)
			}
		})
	}
}

func TestReload(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	p, first := ca.writePair(t, dir, "site", leafSpec{dns: []string{"site.example"}})
	log, buf := testLogger(t)
	s, err := New([]Pair{p}, log)
	if err != nil {
		t.Fatal(err)
	}
	hello := &tls.ClientHelloInfo{ServerName: "site.example", SupportedVersions: []uint16{tls.VersionTLS13}, SignatureSchemes: ecdsaClient}
	served := func() *x509.Certificate {
		t.Helper()
		c, err := s.GetCertificate(hello)
		if err != nil {
			t.Fatal(err)
		}
		return c.Leaf
	}

	// A new pair with one more name: swapped in.
	_, second := ca.writePair(t, dir, "site", leafSpec{dns: []string{"site.example", "new.example"}})
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := served(); !bytes.Equal(got.Raw, second.Raw) || bytes.Equal(got.Raw, first.Raw) {
		t.Fatalf("after reload serving %v", got.DNSNames)
	}
	hello.ServerName = "new.example"
	if got := served(); !bytes.Equal(got.Raw, second.Raw) {
		t.Fatalf("new name not indexed: %v", got.DNSNames)
	}

	// A truncated certificate, then an expired one: the second pair stays.
	certPEM, _ := os.ReadFile(p.CertFile)
	writeFile(t, p.CertFile, certPEM[:len(certPEM)/2])
	if err := s.Reload(); err == nil {
		t.Fatal("truncated certificate loaded")
	}
	if got := served(); !bytes.Equal(got.Raw, second.Raw) {
		t.Fatalf("failed reload replaced the set: %v", got.DNSNames)
	}
	ca.writePair(t, dir, "site", leafSpec{dns: []string{"site.example"}, notBefore: -48 * time.Hour, notAfter: -time.Minute})
	if err := s.Reload(); !errors.Is(err, ErrExpired) {
		t.Fatalf("reload of expired: %v", err)
	}
	if got := served(); !bytes.Equal(got.Raw, second.Raw) {
		t.Fatalf("failed reload replaced the set: %v", got.DNSNames)
	}
	if n := strings.Count(buf.String(), "tls certificate loaded"); n != 2 {
		t.Errorf("%d load lines, want 2 (New and the one good reload):\n%s", n, buf.String())
	}
}

// The store is read on every handshake while reloads run; -race checks
// the swap is clean.
func TestReloadWhileServing(t *testing.T) {
	ca := newCA(t)
	p, _ := ca.writePair(t, t.TempDir(), "site", leafSpec{dns: []string{"site.example"}})
	s, err := New([]Pair{p}, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 50 {
			if err := s.Reload(); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	hello := &tls.ClientHelloInfo{ServerName: "site.example"}
	for {
		select {
		case <-done:
			return
		default:
		}
		if c, _ := s.GetCertificate(hello); c == nil || c.Leaf.DNSNames[0] != "site.example" {
			t.Fatalf("served %v", c)
		}
	}
}

// certs is picked by cmd/* only, and imports nothing of ours.
func TestImportsStandardLibraryOnly(t *testing.T) {
	files, _ := filepath.Glob("*.go")
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		ast, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range ast.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if first, _, _ := strings.Cut(path, "/"); strings.Contains(first, ".") {
				t.Errorf("%s imports %s", f, path)
			}
		}
	}
}
