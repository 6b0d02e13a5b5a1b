package e2e

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/httvps/httvps/control/pool/outlinefake"
	"github.com/httvps/httvps/internal/testpeer"
)

// startCtlSSManager runs `ss-manager --manager-address 127.0.0.1:P -s
// 127.0.0.1 -u -D dir` and waits until it answers ping. Its ss-server
// children leave its process group, so their pid files are killed at the
// end too.
func startCtlSSManager(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(testpeer.FreePort(t)))
	// Registered first, so it runs after StartProc's cleanup (LIFO).
	t.Cleanup(func() {
		for _, pid := range ctlPidFiles(dir) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	p := testpeer.StartProc(t, "ss-manager", "--manager-address", addr, "-s", "127.0.0.1", "-u", "-D", dir)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ssManagerPing(addr) == nil {
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("ss-manager on %s not answering ping:\n%s", addr, p.Output())
		}
		time.Sleep(30 * time.Millisecond)
	}
}

func ssManagerPing(addr string) error {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	b := make([]byte, 4096)
	n, err := c.Read(b)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(string(b[:n]), "stat:") {
		return fmt.Errorf("ping answered %q", b[:n])
	}
	return nil
}

// ctlPortRange returns n consecutive ports free for TCP and UDP a moment
// ago, below the ephemeral range so other tests' outgoing connections do
// not land there.
func ctlPortRange(t *testing.T, n int) (int, int) {
	t.Helper()
	free := func(port int) bool {
		a := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		ln, err := net.Listen("tcp", a)
		if err != nil {
			return false
		}
		ln.Close()
		pc, err := net.ListenPacket("udp", a)
		if err != nil {
			return false
		}
		pc.Close()
		return true
	}
next:
	for range 100 {
		base := 20000 + rand.IntN(12000-n)
		for p := base; p < base+n; p++ {
			if !free(p) {
				continue next
			}
		}
		return base, base + n - 1
	}
	t.Fatalf("no %d consecutive free ports", n)
	return 0, 0
}

// waitPortClosed waits until nothing accepts TCP at addr.
func waitPortClosed(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return nil
		}
		c.Close()
		if time.Now().After(deadline) {
			return fmt.Errorf("%s still accepting after %v", addr, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// An ss-manager member added through the API gets the token's key on a
// port of its own (its own ss-server), traffic flows through both
// gateways, and revoking the token closes the session and the port.
func TestControlSSManagerMember(t *testing.T) {
	f := startCtlFleet(t, 2)
	mgr := startCtlSSManager(t)
	lo, hi := ctlPortRange(t, 8)
	m := f.ctl.addMember(map[string]any{"name": "ssm-1", "backend": "ss-manager", "host": "127.0.0.1",
		"ss_manager": map[string]any{"manager_addr": mgr, "port_min": lo, "port_max": hi}})
	if m.Backend != "ss-manager" {
		t.Fatalf("member %+v", m)
	}
	tok := f.ctl.issue(map[string]any{"label": "ssm", "cipher": "aes-256-gcm"})
	if len(tok.Assignments) != 1 || tok.Assignments[0].MemberID != m.ID {
		t.Fatalf("assignments %+v, want one on %s", tok.Assignments, m.ID)
	}
	up := tok.Assignments[0].Upstream
	host, ps, _ := net.SplitHostPort(up)
	if port, _ := strconv.Atoi(ps); host != "127.0.0.1" || port < lo || port > hi {
		t.Fatalf("upstream %s outside 127.0.0.1:%d-%d", up, lo, hi)
	}
	for i, g := range []*ctlGateway{f.a, f.b} {
		if err := g.fetch(tok, f.origin, 2<<20, uint64(40+i)); err != nil {
			t.Fatal(err)
		}
	}
	live := f.openLive(t, tok, 128<<10)
	ctlEventually(t, 3*ctlHealthEvery, "the key counted in the member's health", func() bool {
		return f.ctl.member(m.ID).Health.Keys == 1
	})

	f.revokeAndWatch(t, tok, live)
	if err := waitPortClosed(up, 5*time.Second); err != nil {
		t.Fatalf("the revoked key's ss-server: %v", err)
	}
	for _, g := range []*ctlGateway{f.a, f.b} {
		if err := g.decoy(tok.Token); err != nil {
			t.Error(err)
		}
	}
}

// An Outline server (the Management API fake, with a real ss-server per
// key) added through the API with api_url and cert_sha256 gets the token's
// key; traffic flows through both gateways; revoking deletes the key.
func TestControlOutlineMember(t *testing.T) {
	f := startCtlFleet(t, 2)
	fake := outlinefake.Start(t, outlinefake.Options{SSServer: true})
	r := f.ctl.admin("POST", "/v1/pool/members", map[string]any{"name": "outline-1", "backend": "outline-api", "host": fake.Host,
		"outline": map[string]any{"api_url": fake.APIURL, "cert_sha256": strings.ToUpper(fake.CertSHA256)}}, http.StatusCreated, nil)
	secretPath := fake.APIURL[strings.LastIndexByte(fake.APIURL, '/'):]
	if strings.Contains(string(r.body), secretPath) {
		t.Errorf("the member's answer shows the API's secret path: %s", r.body)
	}
	tok := f.ctl.issue(map[string]any{"label": "outline", "cipher": "chacha20-ietf-poly1305"})
	keys := fake.Keys()
	// Named "httvps <installation mark> <token ID>" (docs/05).
	if len(keys) != 1 || keys[0].ID != tok.ID || !strings.HasPrefix(keys[0].Name, "httvps ") || !strings.HasSuffix(keys[0].Name, " "+tok.ID) || keys[0].Password != tok.Secret || keys[0].Method != tok.Cipher {
		t.Fatalf("Outline keys %+v for token %s", keys, tok.ID)
	}
	if want := net.JoinHostPort(fake.Host, strconv.Itoa(keys[0].Port)); len(tok.Assignments) != 1 || tok.Assignments[0].Upstream != want {
		t.Fatalf("assignments %+v, want upstream %s", tok.Assignments, want)
	}
	for i, g := range []*ctlGateway{f.a, f.b} {
		if err := g.fetch(tok, f.origin, 2<<20, uint64(50+i)); err != nil {
			t.Fatal(err)
		}
	}
	live := f.openLive(t, tok, 128<<10)
	f.revokeAndWatch(t, tok, live)
	ctlEventually(t, 3*time.Second, "the key deleted on the Outline server", func() bool { return len(fake.Keys()) == 0 })
	for _, g := range []*ctlGateway{f.a, f.b} {
		if err := g.decoy(tok.Token); err != nil {
			t.Error(err)
		}
	}
}
