package bench

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Certificate types for the TLS peers.
const (
	CertECDSA = "ecdsa" // ECDSA P-256
	CertRSA   = "rsa"   // RSA-2048
)

// tlsServerName is the name the certificate is issued to and every client
// sends as SNI.
const tlsServerName = "localhost"

// benchCert is the one self-signed certificate every TLS peer serves in a
// run, so handshakes cost the same signature on every peer.
type benchCert struct {
	Type     string
	CertFile string // PEM certificate
	KeyFile  string // PEM private key (PKCS#8)
	DER      []byte // the certificate, DER (its SHA-256 is the httvps:// pin)
	Pool     *x509.CertPool
}

// writeBenchCert generates a self-signed certificate of type typ for
// localhost and 127.0.0.1 into dir.
func writeBenchCert(dir, typ string) (*benchCert, error) {
	var (
		key crypto.Signer
		err error
	)
	switch typ {
	case CertECDSA:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case CertRSA:
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		return nil, fmt.Errorf("bench: unknown certificate type %q (ecdsa or rsa)", typ)
	}
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: tlsServerName},
		DNSNames:              []string{tlsServerName},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // self-signed: its own trust anchor
	}
	if typ == CertRSA {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	c := &benchCert{Type: typ, CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem")}
	if err := os.WriteFile(c.CertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(c.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	c.DER = der
	c.Pool = x509.NewCertPool()
	c.Pool.AddCert(leaf)
	return c, nil
}

// clientTLS is the client configuration for every TLS peer: TLS 1.3 only,
// X25519 only (OpenSSL 3.0 in nginx has no hybrid post-quantum group, and a
// Go server would otherwise pick X25519MLKEM768, which costs more), the
// certificate verified against the run's own pool, and no session cache, so
// every connection is a full handshake.
func (c *benchCert) clientTLS() *tls.Config {
	return &tls.Config{
		RootCAs:          c.Pool,
		ServerName:       tlsServerName,
		MinVersion:       tls.VersionTLS13,
		MaxVersion:       tls.VersionTLS13,
		CurvePreferences: []tls.CurveID{tls.X25519},
	}
}
