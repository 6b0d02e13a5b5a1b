package main

import (
	"bytes"
	"context"
	"crypto"
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
	"io/fs"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/httvps/httvps/internal/certs"
)

// Without -tls-cert, `httvps up` keeps a small CA of its own in the data
// directory and serves a leaf it signs, followed by the CA. Clients trust
// the CA (curl --cacert, v2ray-plugin cert=, httvps -cacert, the pin= of
// httvps:// keys); platforms refuse long-lived leaves (Apple: 825 days
// under a private root, 398 under a public one), so the leaf is short and
// re-issued from the same CA, and the clients' trust outlives it.
const (
	caCertName   = "ca.pem"
	caKeyName    = "ca-key.pem"
	leafCertName = "leaf.pem" // the chain served: the leaf, then the CA
	leafKeyName  = "leaf-key.pem"
	// legacyCertName and legacyKeyName hold what `httvps up` generated
	// before: one self-signed CA certificate, served itself.
	legacyCertName = "cert.pem"
	legacyKeyName  = "key.pem"

	caValidity   = 10 * 365 * 24 * time.Hour // a private root, handed out once
	leafValidity = 397 * 24 * time.Hour      // under every platform's limit
	// certRenewBefore: a leaf (or, at start, the CA) this close to expiry
	// is replaced.
	certRenewBefore = 30 * 24 * time.Hour
	// certBackdate covers clients whose clock is a little behind.
	certBackdate = time.Hour
)

// leafCheckEvery is how often a running `up` checks its leaf.
var leafCheckEvery = 24 * time.Hour

// localCA is the data directory's CA, with what it needs to issue the
// leaf for host.
type localCA struct {
	dir, host string
	cert      *x509.Certificate
	key       crypto.Signer
}

func (ca *localCA) file(name string) string { return filepath.Join(ca.dir, name) }

// pair is the served chain and its key.
func (ca *localCA) pair() certs.Pair {
	return certs.Pair{CertFile: ca.file(leafCertName), KeyFile: ca.file(leafKeyName)}
}

// ensureLocalCerts opens (or makes) the CA in dir and makes sure its leaf
// is fit to serve for host at now, issuing a new one if not; both are
// logged with their fingerprints.
func ensureLocalCerts(dir, host string, now time.Time, log *slog.Logger) (*localCA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ca, err := openLocalCA(dir, host, now, log)
	if err != nil {
		return nil, err
	}
	log.Info("local CA: clients trust this certificate", "file", ca.file(caCertName),
		"sha256", fingerprint(ca.cert.Raw), "not_after", ca.cert.NotAfter.UTC())
	renewed, err := ca.ensureLeaf(now, log)
	if err != nil {
		return nil, err
	}
	if !renewed {
		if pair, err := tls.LoadX509KeyPair(ca.file(leafCertName), ca.file(leafKeyName)); err == nil {
			log.Info("TLS certificate kept (issued by the local CA)", "file", ca.file(leafCertName),
				"sha256", fingerprint(pair.Leaf.Raw), "not_after", pair.Leaf.NotAfter.UTC())
		}
	}
	return ca, nil
}

// openLocalCA loads the CA kept in dir. Without one, the self-signed CA
// certificate an older `up` generated (cert.pem) becomes the CA, so
// clients that trust it keep working; failing that, a new CA is made.
func openLocalCA(dir, host string, now time.Time, log *slog.Logger) (*localCA, error) {
	certFile, keyFile := filepath.Join(dir, caCertName), filepath.Join(dir, caKeyName)
	ca, err := loadCA(certFile, keyFile, now)
	var why string
	switch {
	case err == nil:
		ca.dir, ca.host = dir, host
		return ca, nil
	case errors.Is(err, fs.ErrNotExist):
		oldCert, oldKey := filepath.Join(dir, legacyCertName), filepath.Join(dir, legacyKeyName)
		old, oerr := loadCA(oldCert, oldKey, now)
		if oerr == nil {
			old.dir, old.host = dir, host
			if err := writeFileAtomic(certFile, pemCert(old.cert.Raw), 0o644); err != nil {
				return nil, err
			}
			if err := os.Rename(oldKey, keyFile); err != nil {
				return nil, err
			}
			log.Info("the self-signed certificate of an older httvps up is now the local CA; clients that trust it keep working",
				"ca_file", certFile, "was", oldCert, "note", oldCert+" is left in place, the same certificate; delete it once no client names that file")
			return old, nil
		}
		why = "first start"
		if !errors.Is(oerr, fs.ErrNotExist) {
			why = "the certificate of an older httvps up cannot be the CA: " + oerr.Error()
		}
	default:
		why = "the old one cannot be used: " + err.Error()
	}
	ca, err = newLocalCA(dir, host, now)
	if err != nil {
		return nil, fmt.Errorf("making the local CA: %w", err)
	}
	level := slog.LevelInfo
	if why != "first start" {
		level = slog.LevelWarn // clients must be handed the new ca.pem
	}
	log.Log(context.Background(), level, "made a new local CA; clients must trust this file", "file", certFile, "why", why)
	return ca, nil
}

// loadCA loads a CA certificate and its key, and checks it can sign
// leaves for a while yet.
func loadCA(certFile, keyFile string, now time.Time) (*localCA, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	c := pair.Leaf
	key, ok := pair.PrivateKey.(crypto.Signer)
	switch {
	case !ok:
		return nil, fmt.Errorf("%s: the key cannot sign", keyFile)
	case !c.IsCA || c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageCertSign == 0:
		return nil, fmt.Errorf("%s is not a CA certificate", certFile)
	case c.CheckSignatureFrom(c) != nil:
		return nil, fmt.Errorf("%s is not self-signed", certFile)
	case c.NotAfter.Sub(now) < certRenewBefore:
		return nil, fmt.Errorf("%s expires on %s", certFile, c.NotAfter.UTC().Format(time.DateOnly))
	}
	return &localCA{cert: c, key: key}, nil
}

// newLocalCA makes an ECDSA P-256 CA for host and writes it to dir. It
// signs leaves only (path length 0).
func newLocalCA(dir, host string, now time.Time) (*localCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	notBefore := now.Add(-certBackdate)
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(),
		Subject:               pkix.Name{CommonName: "httvps up local CA " + host, Organization: []string{"httvps up"}},
		NotBefore:             notBefore,
		NotAfter:              notBefore.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	if err := writeKey(filepath.Join(dir, caKeyName), key); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(dir, caCertName), pemCert(der), 0o644); err != nil {
		return nil, err
	}
	return &localCA{dir: dir, host: host, cert: cert, key: key}, nil
}

// leafDue says why the leaf in dir must be issued again at now, or ""
// when it can be served on.
func (ca *localCA) leafDue(now time.Time) string {
	pair, err := tls.LoadX509KeyPair(ca.file(leafCertName), ca.file(leafKeyName))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "none yet"
	case err != nil:
		return "the old one does not load: " + err.Error()
	}
	leaf := pair.Leaf
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now}); err != nil {
		return "the old one does not verify against " + caCertName + ": " + err.Error()
	}
	switch {
	case leaf.IsCA:
		return "the old one is a CA certificate"
	case len(pair.Certificate) != 2 || !bytes.Equal(pair.Certificate[1], ca.cert.Raw):
		return "the old chain is not the leaf and " + caCertName
	case leaf.VerifyHostname(ca.host) != nil:
		return "the old one does not cover -public-host " + ca.host
	case leaf.NotAfter.Sub(now) < certRenewBefore:
		return "the old one expires on " + leaf.NotAfter.UTC().Format(time.DateOnly)
	}
	return ""
}

// ensureLeaf issues a new leaf when leafDue says so; renewed says it did.
func (ca *localCA) ensureLeaf(now time.Time, log *slog.Logger) (renewed bool, err error) {
	why := ca.leafDue(now)
	if why == "" {
		return false, nil
	}
	leaf, err := ca.issueLeaf(now)
	if err != nil {
		return false, fmt.Errorf("issuing the TLS certificate: %w", err)
	}
	log.Info("issued a TLS certificate from the local CA", "file", ca.file(leafCertName), "why", why,
		"sha256", fingerprint(leaf.Raw), "not_after", leaf.NotAfter.UTC())
	return true, nil
}

// issueLeaf writes a new leaf (new key) for the names of certNames,
// valid from a little before now for leafValidity, but not past the CA.
// The key is written first: a crash between the two leaves a pair that
// does not load, which the next check replaces.
func (ca *localCA) issueLeaf(now time.Time) (*x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	notBefore := now.Add(-certBackdate)
	notAfter := notBefore.Add(leafValidity)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	dns, ips := certNames(ca.host)
	tmpl := &x509.Certificate{
		SerialNumber: newSerial(),
		// Not the CA's name: the CA of an older `up` is named {O=httvps up,
		// CN=host}, and OpenSSL takes a leaf named as its issuer for
		// self-signed.
		Subject:               pkix.Name{CommonName: ca.host},
		DNSNames:              dns,
		IPAddresses:           ips,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, // and not a CA
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	if err := writeKey(ca.file(leafKeyName), key); err != nil {
		return nil, err
	}
	chain := append(pemCert(der), pemCert(ca.cert.Raw)...)
	if err := writeFileAtomic(ca.file(leafCertName), chain, 0o644); err != nil {
		return nil, err
	}
	return leaf, nil
}

// renewEvery runs renewOnTicks with a ticker until ctx is done.
func (ca *localCA) renewEvery(ctx context.Context, every time.Duration, s *certs.Store, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	ca.renewOnTicks(ctx, t.C, time.Now, s, log)
}

// renewOnTicks checks the leaf at each tick and, when it is due, issues a
// new one from the same CA and reloads s: later handshakes get it, live
// connections keep theirs. Any failure keeps the served certificate.
func (ca *localCA) renewOnTicks(ctx context.Context, ticks <-chan time.Time, now func() time.Time, s *certs.Store, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticks:
		}
		t := now()
		if ca.cert.NotAfter.Sub(t) < certRenewBefore {
			log.Warn("the local CA expires soon; restart httvps up to make a new one, then hand clients the new file",
				"file", ca.file(caCertName), "not_after", ca.cert.NotAfter.UTC())
		}
		renewed, err := ca.ensureLeaf(t, log)
		if err != nil {
			log.Error("renewing the TLS certificate failed; the served one is kept", "err", err)
			continue
		}
		if !renewed {
			continue
		}
		if err := s.Reload(); err != nil {
			log.Error("the renewed TLS certificate does not load; the served one is kept", "err", err)
		}
	}
}

// printCerts writes the banner's lines about the generated certificates:
// the CA clients trust and the leaf served now (its DER), each with its
// fingerprint.
func (ca *localCA) printCerts(w io.Writer, served []byte) {
	fmt.Fprintf(w, "  CA            %s (clients trust this file: -cacert, HTTVPS_CACERT, v2ray-plugin cert=)\n", ca.file(caCertName))
	fmt.Fprintf(w, "  CA SHA-256    %s\n", fingerprint(ca.cert.Raw))
	expires := ""
	if leaf, err := x509.ParseCertificate(served); err == nil {
		expires = ", expires " + leaf.NotAfter.UTC().Format(time.DateOnly)
	}
	fmt.Fprintf(w, "  leaf          %s (served; issued by the CA, renewed automatically%s)\n", ca.file(leafCertName), expires)
	fmt.Fprintf(w, "  leaf SHA-256  %s\n", fingerprint(served))
}

// fingerprint is the SHA-256 of a certificate's DER as browsers and
// `openssl x509 -fingerprint -sha256` show it: colon-separated
// upper-case hex.
func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// writeKey writes key as PKCS #8 PEM, mode 0600.
func writeKey(file string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writeFileAtomic(file, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

func newSerial() *big.Int {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return serial
}
