package e2e

// The ACME fleet test: two httvps-gateway processes with -acme on one
// redis-server share the ACME account, certificate, challenge data and
// ordering lock. Pebble validates TLS-ALPN-01 on one port only, which
// reaches gateway A; gateway B orders, so the validation of B's order is
// answered by A from the challenge data in Redis (certmagic's distributed
// solving).

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/httvps/httvps/internal/acmecert"
	"github.com/httvps/httvps/internal/testpeer"
)

// fleetWait bounds every wait of the fleet test on the CA, the store or
// a gateway: generous, since each is a poll that ends as soon as the
// awaited state is there.
const fleetWait = 2 * time.Minute

var gatewayBuild struct {
	once sync.Once
	path string
	err  error
}

// gatewayBin builds cmd/httvps-gateway once per run (TestMain removes it).
func gatewayBin(t testing.TB) string {
	t.Helper()
	gatewayBuild.once.Do(func() {
		dir, err := os.MkdirTemp("", "httvps-e2e-gw-")
		if err != nil {
			gatewayBuild.err = err
			return
		}
		gatewayBuild.path = filepath.Join(dir, "httvps-gateway")
		if out, err := exec.Command("go", "build", "-o", gatewayBuild.path, "../cmd/httvps-gateway").CombinedOutput(); err != nil {
			gatewayBuild.err = fmt.Errorf("go build ../cmd/httvps-gateway: %w\n%s", err, out)
		}
	})
	if gatewayBuild.err != nil {
		t.Fatal(gatewayBuild.err)
	}
	return gatewayBuild.path
}

// validationRelay owns the port Pebble validates on and passes every
// connection to the gateway named by setTarget, holding connections that
// arrive before it (Pebble waits up to 15 s for a validation handshake).
// So the test learns that an order is in flight (the first validation
// connection) before the gateway that answers it exists.
type validationRelay struct {
	ln       net.Listener
	accepted atomic.Int32
	first    chan struct{} // closed at the first connection
	ready    chan struct{} // closed by setTarget
	target   string        // written once, before ready is closed
	once     sync.Once
}

func startValidationRelay(t *testing.T) *validationRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &validationRelay{ln: ln, first: make(chan struct{}), ready: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if r.accepted.Add(1) == 1 {
				close(r.first)
			}
			wg.Go(func() { r.pipe(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return r
}

func (r *validationRelay) port() int { return r.ln.Addr().(*net.TCPAddr).Port }

func (r *validationRelay) setTarget(addr string) {
	r.once.Do(func() {
		r.target = addr
		close(r.ready)
	})
}

func (r *validationRelay) pipe(c net.Conn) {
	defer c.Close()
	select {
	case <-r.ready:
	case <-time.After(15 * time.Second): // Pebble has given up by now
		return
	}
	u, err := net.DialTimeout("tcp", r.target, 5*time.Second)
	if err != nil {
		return
	}
	defer u.Close()
	deadline := time.Now().Add(30 * time.Second)
	c.SetDeadline(deadline)
	u.SetDeadline(deadline)
	done := make(chan struct{})
	go func() {
		io.Copy(u, c)
		u.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	io.Copy(c, u)
	c.(*net.TCPConn).CloseWrite()
	<-done
}

// fleetGateway is one httvps-gateway process of the fleet.
type fleetGateway struct {
	name string
	addr string
	proc *testpeer.Proc
}

// startFleetGateway runs httvps-gateway -acme on the fleet's Redis with
// static routes, and waits until it listens.
func startFleetGateway(t *testing.T, name, redisURL string, pb *testpeer.Pebble, routes map[string]string) *fleetGateway {
	t.Helper()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(testpeer.FreePort(t)))
	_, port, _ := net.SplitHostPort(addr)
	args := []string{
		"-listen", addr, "-admin-listen", "",
		"-redis", redisURL, "-public-url", "wss://" + acmeName + ":" + port, "-gateway-id", name,
		"-acme", "-acme-domain", acmeName, "-acme-ca", pb.Directory, "-acme-ca-root", pb.APIRootFile,
		"-acme-check-every", "1s",
		"-log-level", "debug",
	}
	for secret, upstream := range routes {
		args = append(args, "-route", secret+"="+upstream)
	}
	p := testpeer.StartProc(t, gatewayBin(t), args...)
	g := &fleetGateway{name: name, addr: addr, proc: p}
	deadline := time.Now().Add(fleetWait)
	for testpeer.WaitListening(addr, 200*time.Millisecond) != nil {
		select {
		case <-p.Exited():
			t.Fatalf("gateway %s exited:\n%s", name, p.Output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway %s not listening on %s:\n%s", name, addr, p.Output())
		}
	}
	return g
}

// leaf is the certificate a client trusting only roots gets with SNI
// acmeName, or the handshake's error.
func (g *fleetGateway) leaf(roots *x509.CertPool) (*x509.Certificate, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", g.addr, &tls.Config{RootCAs: roots, ServerName: acmeName})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

// waitLeaf polls until the gateway serves a certificate that verifies
// under roots and is not old (by serial), and returns it.
func (g *fleetGateway) waitLeaf(t *testing.T, roots *x509.CertPool, old *x509.Certificate) *x509.Certificate {
	t.Helper()
	deadline := time.Now().Add(fleetWait)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-g.proc.Exited():
			t.Fatalf("gateway %s exited:\n%s", g.name, g.proc.Output())
		default:
		}
		c, err := g.leaf(roots)
		if err == nil && (old == nil || c.SerialNumber.Cmp(old.SerialNumber) != 0) {
			return c
		}
		if err == nil {
			err = fmt.Errorf("still serving serial %x", c.SerialNumber)
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("gateway %s: no new certificate from Pebble within %v (last: %v)", g.name, fleetWait, last)
	return nil
}

// count is how many lines the gateway logged with msg and every one of
// attrs (key=value as slog's text handler writes them).
func (g *fleetGateway) count(msg string, attrs ...string) int {
	n := 0
	for _, line := range strings.Split(g.proc.Output(), "\n") {
		if !strings.Contains(line, "msg=\""+msg+"\"") {
			continue
		}
		all := true
		for _, a := range attrs {
			all = all && strings.Contains(line, " "+a)
		}
		if all {
			n++
		}
	}
	return n
}

// relay checks a hash-checked duplex stream through the gateway over the
// ACME certificate.
func (g *fleetGateway) relay(t *testing.T, roots *x509.CertPool, secret string, seed uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), fleetWait)
	defer cancel()
	c, err := testpeer.DialWSS(ctx, "wss://"+g.addr+"/"+secret+"/tcp", &tls.Config{RootCAs: roots, ServerName: acmeName})
	if err != nil {
		t.Fatalf("gateway %s: %v", g.name, err)
	}
	defer c.Close()
	c.NetConn().SetDeadline(time.Now().Add(fleetWait))
	if err := duplexExchange(c, seed, 2<<20, 3<<20, true); err != nil {
		t.Fatalf("gateway %s: relay over the ACME certificate: %v", g.name, err)
	}
}

// TestACMEFleet: gateway B orders the certificate, Pebble's validation
// lands on gateway A (started only once B's order is being validated),
// which answers it from the shared store; Pebble issues exactly one
// certificate and both gateways serve it and relay over it. A forced
// renewal by another member of the fleet (in this process, on the same
// Redis) is validated on A again, and both gateways pick the renewed
// certificate up from the store without a restart.
func TestACMEFleet(t *testing.T) {
	origin := testpeer.StartOrigin(t)
	ss := testpeer.SSServer(t, testpeer.DefaultPassword, testpeer.DefaultMethod)
	const ssSecret, echoSecret = "fleetSSsecret-6b1a", "fleetEchoSecret-03f9"
	routes := map[string]string{ssSecret: ss, echoSecret: duplexPeer(t)}
	redis := startCtlRedis(t)
	relay := startValidationRelay(t)
	pb := testpeer.StartPebble(t, testpeer.PebbleSpec{TLSPort: relay.port(), Validity: 24 * time.Hour})
	rootPEM, roots := pb.Root(t)

	// B first: it takes the name's lock and orders. A starts only when
	// Pebble's validation of B's order has arrived, so A cannot have
	// ordered; it finds the lock taken and waits.
	b := startFleetGateway(t, "gw-b", redis.URL(), pb, routes)
	select {
	case <-relay.first:
	case <-b.proc.Exited():
		t.Fatalf("gateway B exited:\n%s", b.proc.Output())
	case <-time.After(fleetWait):
		t.Fatalf("no validation from Pebble within %v: B did not order\n%s", fleetWait, b.proc.Output())
	}
	a := startFleetGateway(t, "gw-a", redis.URL(), pb, routes)
	relay.setTarget(a.addr)

	leafB := b.waitLeaf(t, roots, nil)
	leafA := a.waitLeaf(t, roots, nil)
	if leafA.SerialNumber.Cmp(leafB.SerialNumber) != 0 {
		t.Fatalf("A serves serial %x, B %x: want one certificate for the fleet", leafA.SerialNumber, leafB.SerialNumber)
	}
	if err := leafA.VerifyHostname(acmeName); err != nil {
		t.Fatal(err)
	}
	if got := pb.Issued(); len(got) != 1 || got[0] != fmt.Sprintf("%x", leafA.SerialNumber) {
		t.Fatalf("Pebble issued %v, want exactly the served %x", got, leafA.SerialNumber)
	}
	if nb, na := b.count("acme: certificate obtained"), a.count("acme: certificate obtained"); nb != 1 || na != 0 {
		t.Fatalf("certificates obtained: B %d, A %d; want B 1, A 0", nb, na)
	}
	// Pebble validates from several perspectives: each of its
	// connections reached A, which found the challenge in the store.
	if n, na := relay.accepted.Load(), a.count("served key authentication certificate", "distributed=true"); n == 0 || int(n) != na {
		t.Fatalf("%d validation connections reached A, which answered %d from the store; want all", n, na)
	}
	if nb := b.count("served key authentication certificate"); nb != 0 {
		t.Fatalf("B answered %d validations: Pebble should reach A only", nb)
	}

	// Both relay over that certificate: the echo path on each, and stock
	// ss-local + v2ray-plugin through A.
	a.relay(t, roots, echoSecret, 31)
	b.relay(t, roots, echoSecret, 37)
	rootFile := filepath.Join(t.TempDir(), "pebble-root.pem")
	if err := os.WriteFile(rootFile, rootPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	socks := testpeer.SSLocalWithOpts(t, a.addr, testpeer.DefaultPassword, testpeer.DefaultMethod,
		fmt.Sprintf("tls;host=%s;path=/%s/tcp;mux=0;cert=%s", acmeName, ssSecret, rootFile))
	if err := testpeer.WaitSOCKSReady(socks, origin, fleetWait); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), fleetWait)
	defer cancel()
	const size = 3<<20 + 7
	got, n, err := curl(ctx, socks, origin.URL(fmt.Sprintf("/bytes/%d?seed=23", size)))
	if err != nil {
		t.Fatal(err)
	}
	if want := testpeer.PseudoRandomSHA256(size, 23); n != size || got != want {
		t.Fatalf("download through ss-local and A: %d bytes %s, want %d %s", n, got, size, want)
	}

	// A forced renewal by a third member on the same Redis; its
	// validation reaches A too.
	st := openCtlStore(t, redis)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	self := testpeer.SelfSignedCert(t)
	c, err := acmecert.New(acmecert.Config{
		Domains: []string{acmeName}, CA: pb.Directory, CARoots: pb.APIRoots, Store: st,
		TLSAddr: relay.ln.Addr().String(), Fallback: self.GetCertificate, Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	if err := c.Renew(ctx, true); err != nil {
		t.Fatalf("forced renewal: %v", err)
	}
	renewed, ok := c.Served(acmeName)
	if !ok || renewed.SerialNumber.Cmp(leafA.SerialNumber) == 0 {
		t.Fatalf("the renewal gave no new certificate (%v)", ok)
	}
	if got := pb.Issued(); len(got) != 2 || got[1] != fmt.Sprintf("%x", renewed.SerialNumber) {
		t.Fatalf("Pebble issued %v, want the first and the renewed %x", got, renewed.SerialNumber)
	}
	for _, g := range []*fleetGateway{a, b} {
		if now := g.waitLeaf(t, roots, leafA); now.SerialNumber.Cmp(renewed.SerialNumber) != 0 {
			t.Fatalf("gateway %s serves %x after the renewal, want the renewed %x", g.name, now.SerialNumber, renewed.SerialNumber)
		}
	}
	if n := len(pb.Issued()); n != 2 {
		t.Fatalf("Pebble issued %d certificates, want 2: a gateway ordered again instead of loading the renewal", n)
	}
	a.relay(t, roots, echoSecret, 41)
	b.relay(t, roots, echoSecret, 43)
}
