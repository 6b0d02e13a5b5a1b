package client

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/internal/testpeer"
)

// pinCA is a private CA, as `httvps up` keeps one.
type pinCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newPinCA(t *testing.T) *pinCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &pinCA{cert: c, key: key}
}

// chain is a leaf for localhost and 127.0.0.1 signed by ca, ending at
// notAfter, served with the CA certificate sent (a copy of) after it.
func (ca *pinCA) chain(t *testing.T, notAfter time.Time, sent *x509.Certificate) *tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der, sent.Raw}, PrivateKey: key}
}

func sum(der []byte) []byte { s := sha256.Sum256(der); return s[:] }

// TestWSPinnedCA: a key that pins a CA connects to a gateway serving a
// leaf the CA signed with the CA after it (httvps up's chain), for the
// names the leaf covers; a key that pins the leaf connects whatever the
// names; a leaf the pinned CA did not sign does not pass, even with a copy
// of the pinned CA in the chain, nor does an expired one.
func TestWSPinnedCA(t *testing.T) {
	ca, rogue := newPinCA(t), newPinCA(t)
	good := ca.chain(t, time.Now().Add(time.Hour), ca.cert)
	for _, tc := range []struct {
		name  string
		serve *tls.Certificate
		pin   []byte
		sni   string
		ok    bool
	}{
		{"CA pin", good, sum(ca.cert.Raw), "", true},
		{"CA pin, SNI localhost", good, sum(ca.cert.Raw), "localhost", true},
		{"leaf pin (older keys)", good, sum(good.Certificate[0]), "", true},
		{"leaf pin, a name the leaf does not cover", good, sum(good.Certificate[0]), "other.example", true},
		{"CA pin, a name the leaf does not cover", good, sum(ca.cert.Raw), "other.example", false},
		{"CA pin, leaf of another CA with the pinned CA sent along", rogue.chain(t, time.Now().Add(time.Hour), ca.cert), sum(ca.cert.Raw), "", false},
		{"CA pin, expired leaf", ca.chain(t, time.Now().Add(-time.Minute), ca.cert), sum(ca.cert.Raw), "", false},
		{"pin of no certificate sent", good, sum(rogue.cert.Raw), "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			serve := tc.serve
			_, addr, _ := startRealGatewayCfg(t, false, map[string]string{"s": testpeer.EchoServer(t)}, func(c *gateway.Config) {
				c.TLS = &gateway.TLSConfig{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return serve, nil }}
			})
			c, _, err := DialWS(dialCtx(t), Gateway{Addr: addr, TLS: true, SNI: tc.sni, Pin: tc.pin}, "/s/tcp", WSOptions{})
			if !tc.ok {
				if err == nil {
					c.Close()
					t.Fatal("connected")
				}
				if !errors.Is(err, ErrPinMismatch) {
					t.Fatalf("err %v, want ErrPinMismatch", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s := NewWSStream(c)
			if _, err := s.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, 4)
			if _, err := io.ReadFull(s, got); err != nil || string(got) != "ping" {
				t.Fatalf("echo %q %v", got, err)
			}
		})
	}
}

// TestFetcherPinnedCA: the client config is fetched from a control plane
// serving a leaf signed by the pinned CA, by IP address too (whose
// handshake carries no server name: the leaf must still cover it).
func TestFetcherPinnedCA(t *testing.T) {
	ca, rogue := newPinCA(t), newPinCA(t)
	for _, tc := range []struct {
		name  string
		serve *tls.Certificate
		pin   []byte
		ok    bool
	}{
		{"CA pin", ca.chain(t, time.Now().Add(time.Hour), ca.cert), sum(ca.cert.Raw), true},
		{"leaf of another CA with the pinned CA sent along", rogue.chain(t, time.Now().Add(time.Hour), ca.cert), sum(ca.cert.Raw), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{*tc.serve}})
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, `{"token_id":"t1","gateways":["wss://127.0.0.1:1"],"cipher":"aes-128-gcm","secret":"s"}`)
			})}
			go srv.Serve(ln)
			defer srv.Close()
			ctx, cancel := context.WithTimeout(context.Background(), waitLong)
			defer cancel()
			k := &Key{Token: "tok", Control: "https://" + ln.Addr().String(), Pin: tc.pin}
			cfg, err := (&Fetcher{}).ClientConfig(ctx, k)
			if tc.ok != (err == nil) {
				t.Fatalf("err %v, want ok %v", err, tc.ok)
			}
			if tc.ok && cfg.TokenID != "t1" {
				t.Fatalf("config %+v", cfg)
			}
		})
	}
}
