package e2e

import (
	"context"
	"crypto/tls"
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/httvps/httvps/internal/acmecert"
	"github.com/httvps/httvps/internal/freeport"
	"github.com/httvps/httvps/internal/testpeer"
	"github.com/httvps/httvps/store/embedded"
)

// TestACMEHTTP01: with -acme-http the certificate comes by HTTP-01 on a
// plain-HTTP listener, and everything else sent there — every probe shape,
// and a challenge path with a token no order has — gets what a real nginx
// answers, byte for byte (Date apart), as on the gateways. Before, that
// listener was net/http's: "404 page not found" in text/plain, no Server.
func TestACMEHTTP01(t *testing.T) {
	httpPort, err := freeport.TCP()
	if err != nil {
		t.Fatal(err)
	}
	tlsPort, err := freeport.TCP() // nothing listens: only HTTP-01 can pass
	if err != nil {
		t.Fatal(err)
	}
	pb := testpeer.StartPebble(t, testpeer.PebbleSpec{TLSPort: tlsPort, HTTPPort: httpPort, Validity: 24 * time.Hour})
	st, err := embedded.Open(filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	self := testpeer.SelfSignedCert(t)
	httpAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort))
	mgr, err := acmecert.New(acmecert.Config{
		Domains:  []string{acmeName},
		CA:       pb.Directory,
		CARoots:  pb.APIRoots,
		Store:    st,
		HTTPAddr: httpAddr,
		Fallback: self.GetCertificate,
		Logger:   ctlLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mgr.Stop)
	if err := mgr.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, ok := mgr.Served(acmeName); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no certificate by HTTP-01 within 2 minutes")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if c, err := mgr.GetCertificate(&tls.ClientHelloInfo{ServerName: acmeName}); err != nil || c.Leaf == nil && len(c.Certificate) == 0 {
		t.Fatalf("the obtained certificate is not served: %v", err)
	}
	cert := testpeer.SelfSignedCert(t)
	ngx := startNginx(t, cert)
	match, total := compareWithNginx(t, ngx, cert, httpAddr, "", "")
	t.Logf("HTTP-01 listener: %d of %d probes answered as nginx does", match, total)
}
