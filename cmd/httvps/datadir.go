package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const (
	adminKeyBytes = 32 // 43 base64url characters
	// certValidity is long: clients pin the generated certificate itself
	// (v2ray-plugin's cert=, curl --cacert), so a renewal means handing
	// out a new file.
	certValidity = 10 * 365 * 24 * time.Hour
	// certRenewBefore: a generated certificate this close to expiry is
	// replaced at start.
	certRenewBefore = 30 * 24 * time.Hour
)

// writeFileAtomic writes data to name with mode perm through a temporary
// file, so a crash never leaves half a key behind.
func writeFileAtomic(name string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}

// loadOrCreateAdminKey reads the admin key from file, or creates the file
// (0600) with a random key. created says the key is new.
func loadOrCreateAdminKey(file string) (key string, created bool, err error) {
	b, err := os.ReadFile(file)
	switch {
	case err == nil:
		key = strings.TrimSpace(string(b))
		if len(key) < 32 {
			return "", false, fmt.Errorf("admin key in %s is shorter than 32 characters", file)
		}
		if fi, err := os.Stat(file); err == nil && fi.Mode().Perm()&0o077 != 0 {
			return "", false, fmt.Errorf("admin key file %s is readable by others (mode %v); chmod 600 it", file, fi.Mode().Perm())
		}
		return key, false, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", false, err
	}
	raw := make([]byte, adminKeyBytes)
	rand.Read(raw) // never fails (crypto/rand panics instead)
	key = base64.RawURLEncoding.EncodeToString(raw)
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return "", false, err
	}
	if err := writeFileAtomic(file, []byte(key+"\n"), 0o600); err != nil {
		return "", false, fmt.Errorf("writing the admin key: %w", err)
	}
	return key, true, nil
}

// certNames are the names the generated certificate covers: the public
// host and loopback, so local clients and `up` itself can verify it.
func certNames(publicHost string) (dns []string, ips []net.IP) {
	dns = []string{"localhost"}
	ips = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	if ip := net.ParseIP(publicHost); ip != nil {
		if !ip.IsLoopback() {
			ips = append(ips, ip)
		}
	} else if publicHost != "localhost" {
		dns = append(dns, publicHost)
	}
	return dns, ips
}

// ensureCert keeps the generated certificate in dir when it still loads,
// covers publicHost and is not about to expire; otherwise it generates a
// new self-signed ECDSA P-256 one. why is non-empty when a certificate was
// (re)generated.
func ensureCert(dir, publicHost string, now time.Time) (certFile, keyFile, why string, err error) {
	certFile, keyFile = filepath.Join(dir, certName), filepath.Join(dir, keyName)
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		why = "first start"
	case err != nil:
		why = "the old one does not load: " + err.Error()
	case pair.Leaf.VerifyHostname(publicHost) != nil:
		why = "the old one does not cover -public-host " + publicHost
	case pair.Leaf.NotAfter.Sub(now) < certRenewBefore:
		why = "the old one expires on " + pair.Leaf.NotAfter.UTC().Format(time.DateOnly)
	default:
		return certFile, keyFile, "", nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", "", err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return "", "", "", err
	}
	dns, ips := certNames(publicHost)
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: publicHost, Organization: []string{"httvps up"}},
		DNSNames:     dns,
		IPAddresses:  ips,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(certValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		// Its own root: curl --cacert, openssl and v2ray-plugin's cert=
		// accept a self-signed certificate only as a CA.
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", "", err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", "", err
	}
	if err := writeFileAtomic(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return "", "", "", err
	}
	if err := writeFileAtomic(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", "", "", err
	}
	return certFile, keyFile, why, nil
}
