package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Keys are cached per type: RSA generation dominates test time otherwise,
// and nothing here depends on two certificates having different keys.
var (
	keysMu sync.Mutex
	keys   = map[string]crypto.Signer{}
	serial atomic.Int64
)

func testKey(t testing.TB, kind string) crypto.Signer {
	t.Helper()
	keysMu.Lock()
	defer keysMu.Unlock()
	if k, ok := keys[kind]; ok {
		return k
	}
	var k crypto.Signer
	var err error
	switch kind {
	case "p256":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "p384":
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "p521":
		k, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "ed25519":
		_, k, err = ed25519.GenerateKey(rand.Reader)
	case "rsa2048":
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case "rsa1024":
		k, err = rsa.GenerateKey(rand.Reader, 1024)
	default:
		t.Fatalf("unknown key kind %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	keys[kind] = k
	return k
}

// testCA is a root and an intermediate; leaves are signed by the
// intermediate and their files carry it, as a real chain file does.
type testCA struct {
	root      *x509.Certificate
	inter     *x509.Certificate
	interKey  crypto.Signer
	interDER  []byte
	rootsPool *x509.CertPool
}

func newCA(t testing.TB) *testCA {
	t.Helper()
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	interKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := func(cn string) *x509.Certificate {
		return &x509.Certificate{
			SerialNumber:          big.NewInt(serial.Add(1)),
			Subject:               pkix.Name{CommonName: cn},
			NotBefore:             now.Add(-time.Hour),
			NotAfter:              now.Add(24 * time.Hour),
			KeyUsage:              x509.KeyUsageCertSign,
			BasicConstraintsValid: true,
			IsCA:                  true,
		}
	}
	rootTmpl := caTmpl("test root")
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(rootDER)
	interDER, err := x509.CreateCertificate(rand.Reader, caTmpl("test intermediate"), root, interKey.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	inter, _ := x509.ParseCertificate(interDER)
	pool := x509.NewCertPool()
	pool.AddCert(root)
	return &testCA{root: root, inter: inter, interKey: interKey, interDER: interDER, rootsPool: pool}
}

type leafSpec struct {
	key       string // testKey kind; "" means p256
	dns       []string
	ips       []string
	notBefore time.Duration // relative to now; 0 means an hour ago
	notAfter  time.Duration // relative to now; 0 means in 30 days
}

// issue returns the chain PEM (leaf, intermediate), the key PEM and the leaf.
func (ca *testCA) issue(t testing.TB, s leafSpec) (certPEM, keyPEM []byte, leaf *x509.Certificate) {
	t.Helper()
	if s.key == "" {
		s.key = "p256"
	}
	if s.notBefore == 0 {
		s.notBefore = -time.Hour
	}
	if s.notAfter == 0 {
		s.notAfter = 30 * 24 * time.Hour
	}
	key := testKey(t, s.key)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject:      pkix.Name{CommonName: "leaf"},
		NotBefore:    now.Add(s.notBefore),
		NotAfter:     now.Add(s.notAfter),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     s.dns,
	}
	if _, ok := key.(*rsa.PrivateKey); ok {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	for _, ip := range s.ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.inter, key.Public(), ca.interKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ = x509.ParseCertificate(der)
	var chain bytes.Buffer
	pem.Encode(&chain, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	pem.Encode(&chain, &pem.Block{Type: "CERTIFICATE", Bytes: ca.interDER})
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return chain.Bytes(), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), leaf
}

// writePair issues a leaf into dir/name.crt and dir/name.key.
func (ca *testCA) writePair(t testing.TB, dir, name string, s leafSpec) (Pair, *x509.Certificate) {
	t.Helper()
	certPEM, keyPEM, leaf := ca.issue(t, s)
	p := Pair{CertFile: filepath.Join(dir, name+".crt"), KeyFile: filepath.Join(dir, name+".key")}
	writeFile(t, p.CertFile, certPEM)
	writeFile(t, p.KeyFile, keyPEM)
	return p, leaf
}

func writeFile(t testing.TB, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(name, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// logBuffer is a goroutine-safe log sink for asserting on log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func testLogger(t testing.TB) (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
