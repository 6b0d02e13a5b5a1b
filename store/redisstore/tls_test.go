package redisstore

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/httvps/httvps/store"
)

// TestRedissURL connects through TLS (rediss://) to a redis-server with a
// self-signed certificate, trusted through WithTLS.
func TestRedissURL(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed")
	}
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "redis-test"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)

	port := freePort(t)
	cmd := exec.Command(bin, "--port", "0", "--tls-port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-ca-cert-file", certFile,
		"--tls-auth-clients", "no", "--requirepass", "s3cret",
		"--dir", dir, "--save", "", "--appendonly", "no", "--loglevel", "warning")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	roots := x509.NewCertPool()
	cert, _ := x509.ParseCertificate(der)
	roots.AddCert(cert)
	url := fmt.Sprintf("rediss://:s3cret@127.0.0.1:%d/2", port)
	var s *Store
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err = New(context.Background(), url, WithTLS(&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("New over TLS: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer s.Close()
	tok := store.Token{ID: store.NewID(), Hash: store.HashToken("tls")}
	if err := s.CreateToken(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetTokenByHash(context.Background(), tok.Hash); err != nil {
		t.Fatal(err)
	}

	// Without trusting the certificate the store refuses to connect.
	if _, err := New(context.Background(), url); err == nil {
		t.Fatal("connected to an untrusted certificate")
	}
	// A wrong password is not shown in the error.
	_, err = New(context.Background(), fmt.Sprintf("rediss://:wrongpw@127.0.0.1:%d/2", port),
		WithTLS(&tls.Config{RootCAs: roots}))
	if err == nil || stringsContains(err.Error(), "wrongpw") {
		t.Fatalf("wrong password: err = %v", err)
	}
}
