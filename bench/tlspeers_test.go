package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestBenchCert checks both certificate types load as a key pair and verify
// for the name and address the clients use.
func TestBenchCert(t *testing.T) {
	for _, typ := range []string{CertECDSA, CertRSA} {
		t.Run(typ, func(t *testing.T) {
			c, err := writeBenchCert(t.TempDir(), typ)
			if err != nil {
				t.Fatal(err)
			}
			kp, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
			if err != nil {
				t.Fatal(err)
			}
			switch kp.PrivateKey.(type) {
			case *ecdsa.PrivateKey:
				if typ != CertECDSA {
					t.Fatalf("%s: got an ECDSA key", typ)
				}
			case *rsa.PrivateKey:
				if typ != CertRSA {
					t.Fatalf("%s: got an RSA key", typ)
				}
			}
			if _, err := kp.Leaf.Verify(x509VerifyOpts(c)); err != nil {
				t.Fatal(err)
			}
		})
	}
	if _, err := writeBenchCert(t.TempDir(), "dsa"); err == nil {
		t.Fatal("unknown type accepted")
	}
}

func TestParseStatPgrp(t *testing.T) {
	if g, err := parseStatPgrp([]byte("77 (a) b (c)) S 1 4242 77 0")); err != nil || g != 4242 {
		t.Fatalf("got %d, %v", g, err)
	}
	if _, err := parseStatPgrp([]byte("1 (x) S")); !errors.Is(err, errProcFormat) {
		t.Fatalf("truncated: %v", err)
	}
}

// TestTLSPeers starts every TLS peer that is installed exactly as the
// harness does and passes hashed streams both ways, an idle session and a
// connect-and-echo through each.
func TestTLSPeers(t *testing.T) {
	dir := t.TempDir()
	cert, err := writeBenchCert(dir, CertECDSA)
	if err != nil {
		t.Fatal(err)
	}
	gw := os.Getenv("HTTVPS_GATEWAY_BIN")
	if gw == "" {
		gw = buildGateway(t)
	}
	makers := map[string]func() (*peer, error){
		PeerHTTVPSTLS: func() (*peer, error) { return newHTTVPSTLSPeer(gw, nil, nil, cert) },
		PeerV2RayTLS:  func() (*peer, error) { return newV2RayTLSPeer("ss-v2ray-plugin", cert) },
		PeerNginxTLS:  func() (*peer, error) { return newNginxTLSPeer("/usr/sbin/nginx", dir, cert) },
	}
	for _, name := range []string{PeerHTTVPSTLS, PeerV2RayTLS, PeerNginxTLS} {
		t.Run(name, func(t *testing.T) {
			pe := makePeer(t, makers[name])
			ctx := context.Background()
			r := startPeer(t, pe)
			for _, dir := range []string{Upload, Download} {
				if _, err := transfer(ctx, r.transport, dir, 2, 4<<20, 16<<10, 20*time.Second); err != nil {
					t.Fatalf("%s: %v", dir, err)
				}
			}
			s, err := openIdle(ctx, r.transport)
			if err != nil {
				t.Fatalf("idle: %v", err)
			}
			s.Close()
			lat, suite, err := connectMany(ctx, r.transport, 20, 2)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(suite, "TLS 1.3 ") || lat[19].TLS <= 0 || lat[19].Upgrade < lat[19].TLS {
				t.Fatalf("suite %q, times %+v", suite, lat[19])
			}
			x, err := r.proc.Sample()
			if err != nil || x.RSSKiB <= 0 {
				t.Fatalf("sample %+v, %v", x, err)
			}
			if pe.group {
				// nginx: master and two workers.
				if _, n, err := ReadGroup(r.proc.Pid()); err != nil || n != 3 {
					t.Fatalf("nginx group: %d processes, %v", n, err)
				}
			}
		})
	}
}

// buildGateway builds cmd/httvps-gateway into a temporary directory.
func buildGateway(t *testing.T) string {
	t.Helper()
	out := t.TempDir()
	cmd := exec.Command("go", "build", "-o", out+"/", "../cmd/httvps-gateway")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("cannot build the gateway: %v: %s", err, b)
	}
	return out + "/httvps-gateway"
}

func TestPercentileAndConnectRatios(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	if p := percentileMs(ds, 50); p != 50 {
		t.Fatalf("p50 = %v", p)
	}
	if p := percentileMs(ds, 99); p != 99 {
		t.Fatalf("p99 = %v", p)
	}
	r := &Report{Connect: []ConnectResult{
		{Peer: PeerHTTVPSTLS, CPUmsPerConn: 0.3, PerSecond: 1500},
		{Peer: PeerNginxTLS, CPUmsPerConn: 0.5, PerSecond: 1000},
	}}
	r.finish()
	if len(r.ConnectRatios) != 1 || math.Abs(r.ConnectRatios[0].CPU-0.6) > 1e-9 || math.Abs(r.ConnectRatios[0].Rate-1.5) > 1e-9 {
		t.Fatalf("ratios %+v", r.ConnectRatios)
	}
}

// x509VerifyOpts verifies a leaf as the clients do.
func x509VerifyOpts(c *benchCert) x509.VerifyOptions {
	return x509.VerifyOptions{Roots: c.Pool, DNSName: tlsServerName}
}
