package e2e

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/httvps/httvps/control/api"
	"github.com/httvps/httvps/control/pool"
	"github.com/httvps/httvps/internal/testpeer"
)

// TestControlDecoyMatchesNginx: the control API is public (keys may point
// at it), so a stranger must not tell it from the gateways' nginx: every
// probe shape gets, plaintext, over TLS and in the clear on its TLS port,
// the bytes a real nginx 1.22 answers (Date apart), and the connection is
// closed or kept alive as nginx does. Before the Guard the API answered
// with its JSON errors, a 401 with WWW-Authenticate naming the realm
// "httvps", a 204 with Allow to OPTIONS, and nothing at all to plain HTTP
// on its TLS port.
func TestControlDecoyMatchesNginx(t *testing.T) {
	cert := testpeer.SelfSignedCert(t)
	ngx := startNginx(t, cert)
	st := openCtlStore(t, startCtlRedis(t))
	mgr := pool.New(st, pool.Config{Replicas: 1, HealthEvery: ctlHealthEvery, Logger: ctlLogger()})
	srv, err := api.New(api.Config{Store: st, Pool: mgr, AdminKey: "e2e-admin-key-" + nginxProbeSecret + "-0123456789abcdef", Logger: ctlLogger()})
	if err != nil {
		t.Fatal(err)
	}
	plainLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tlsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { mgr.Run(ctx) })
	wg.Go(func() { srv.Serve(plainLn) })
	wg.Go(func() {
		srv.ServeTLS(tlsLn, &tls.Config{GetCertificate: cert.GetCertificate, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}})
	})
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		srv.Shutdown(sctx)
		cancel()
		wg.Wait()
	})
	match, total := compareWithNginx(t, ngx, cert, plainLn.Addr().String(), tlsLn.Addr().String(), tlsLn.Addr().String())
	t.Logf("%d of %d probes (%d shapes) answered as nginx does", match, total, len(probeShapes))
}
