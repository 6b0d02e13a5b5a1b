package certs

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// TestHandshake serves the store from a real crypto/tls listener and checks,
// per SNI, the chain a verifying client receives.
func TestHandshake(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	def, defLeaf := ca.writePair(t, dir, "default", leafSpec{dns: []string{"default.example"}})
	ec, ecLeaf := ca.writePair(t, dir, "ec", leafSpec{dns: []string{"site.example", "*.apps.example"}})
	rsa, rsaLeaf := ca.writePair(t, dir, "rsa", leafSpec{key: "rsa2048", dns: []string{"site.example", "*.apps.example", "legacy.example"}})
	ip, ipLeaf := ca.writePair(t, dir, "ip", leafSpec{key: "p384", ips: []string{"127.0.0.1"}})
	s, err := New([]Pair{def, ec, rsa, ip}, discardLogger())
	if err != nil {
		t.Fatal(err)
	}

	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: s.GetCertificate, MinVersion: tls.VersionTLS12})
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
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if c.(*tls.Conn).Handshake() == nil {
					io.Copy(io.Discard, c) // until the client closes
				}
			}()
		}
	}()

	rsaOnlyTLS12 := []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256}
	for _, tc := range []struct {
		name       string
		serverName string // "" dials the IP with no SNI
		maxVersion uint16
		suites     []uint16
		verify     bool
		want       *x509.Certificate
	}{
		{"ecdsa preferred", "site.example", 0, nil, true, ecLeaf},
		{"tls1.2 ecdsa", "site.example", tls.VersionTLS12, nil, true, ecLeaf},
		{"tls1.2 rsa-only client", "site.example", tls.VersionTLS12, rsaOnlyTLS12, true, rsaLeaf},
		{"wildcard", "x.apps.example", 0, nil, true, ecLeaf},
		{"wildcard rsa-only client", "x.apps.example", tls.VersionTLS12, rsaOnlyTLS12, true, rsaLeaf},
		{"rsa only name", "legacy.example", 0, nil, true, rsaLeaf},
		{"default by name", "default.example", 0, nil, true, defLeaf},
		{"no SNI, IP SAN", "", 0, nil, true, ipLeaf},
		{"unknown name gets the default", "unknown.example", 0, nil, false, defLeaf},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &tls.Config{
				RootCAs:      ca.rootsPool,
				ServerName:   tc.serverName,
				MaxVersion:   tc.maxVersion,
				CipherSuites: tc.suites,
			}
			if tc.serverName == "" {
				cfg.ServerName = "127.0.0.1" // verified against IP SANs; crypto/tls sends no SNI for an IP
			}
			if !tc.verify {
				cfg.InsecureSkipVerify = true
			}
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			st := conn.ConnectionState()
			if got := st.PeerCertificates[0]; !bytes.Equal(got.Raw, tc.want.Raw) {
				t.Fatalf("served %v %v, want %v", got.DNSNames, got.IPAddresses, tc.want.DNSNames)
			}
			if len(st.PeerCertificates) != 2 || !st.PeerCertificates[1].Equal(ca.inter) {
				t.Errorf("chain of %d, want leaf and intermediate", len(st.PeerCertificates))
			}
			if tc.verify && (len(st.VerifiedChains) == 0 || !st.VerifiedChains[0][len(st.VerifiedChains[0])-1].Equal(ca.root)) {
				t.Errorf("chain not verified to the root: %v", st.VerifiedChains)
			}
		})
	}

	t.Run("verifying client rejects the default for an unknown name", func(t *testing.T) {
		_, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: ca.rootsPool, ServerName: "unknown.example"})
		var hostErr x509.HostnameError
		if !errors.As(err, &hostErr) {
			t.Fatalf("err = %v, want a hostname error", err)
		}
	})
}
