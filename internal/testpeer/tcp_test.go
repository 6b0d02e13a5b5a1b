package testpeer

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"
)

// TestEchoServer: bytes come back, then the server's FIN after ours; a
// DeadAddr refuses.
func TestEchoServer(t *testing.T) {
	c, err := net.DialTimeout("tcp", EchoServer(t), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	if b, err := io.ReadAll(c); err != nil || string(b) != "ping" {
		t.Fatalf("echo %q, %v", b, err)
	}
	if c, err := net.DialTimeout("tcp", DeadAddr(t), 5*time.Second); err == nil {
		c.Close()
		t.Fatal("DeadAddr accepted a connection")
	}
}

// TestNewCert: the files load as a pair, and the spec's names and expiry
// are the certificate's.
func TestNewCert(t *testing.T) {
	c := SelfSignedCert(t)
	if _, err := tls.LoadX509KeyPair(c.PEMFile, c.KeyFile); err != nil {
		t.Fatal(err)
	}
	if err := c.Cert.Leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Error(err)
	}
	expired := NewCert(t, CertSpec{DNSNames: []string{"site.example"}, NotAfter: time.Now().Add(-time.Hour)})
	if l := expired.Cert.Leaf; l.VerifyHostname("site.example") != nil || !l.NotAfter.Before(time.Now()) || !l.NotBefore.Before(l.NotAfter) {
		t.Errorf("expired cert: names %v, valid %v to %v", l.DNSNames, l.NotBefore, l.NotAfter)
	}
}
