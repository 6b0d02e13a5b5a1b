package pool

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/httvps/httvps/internal/testpeer"
	"github.com/httvps/httvps/store"
	"github.com/httvps/httvps/store/embedded"
)

const testMethod = "chacha20-ietf-poly1305"

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// ssManagerPeer is a real ss-manager on loopback.
type ssManagerPeer struct {
	Addr string // UDP manager address
	Dir  string // its working directory (pid and conf files)
	Proc *testpeer.Proc
}

// startSSManager runs `ss-manager --manager-address 127.0.0.1:P -s
// 127.0.0.1 -u -D dir` and waits until it answers ping.
func startSSManager(t *testing.T) *ssManagerPeer {
	t.Helper()
	return startSSManagerAt(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(testpeer.FreePort(t))))
}

// startSSManagerAt is startSSManager on a given manager address (a
// restart of a member).
func startSSManagerAt(t *testing.T, addr string) *ssManagerPeer {
	t.Helper()
	dir := t.TempDir()
	p := &ssManagerPeer{Addr: addr, Dir: dir}
	// ss-server children daemonize out of ss-manager's process group;
	// ss-manager stops them on SIGTERM, and this catches the rest. Run
	// after StartProc's own cleanup (cleanups run last-in first-out).
	t.Cleanup(func() { killPidFiles(dir) })
	p.Proc = testpeer.StartProc(t, "ss-manager", "--manager-address", p.Addr, "-s", "127.0.0.1", "-u", "-D", dir)
	b := &ssManager{cfg: store.SSManagerConfig{ManagerAddr: p.Addr}, timeout: 200 * time.Millisecond}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		_, err := b.stat(ctx)
		cancel()
		if err == nil {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("ss-manager not answering: %v\n%s", err, p.Proc.Output())
		}
		time.Sleep(30 * time.Millisecond)
	}
}

// Stop ends ss-manager, which stops its ss-servers, and waits until they
// are gone too: they inherit ss-manager's UDP socket, so a survivor would
// swallow pings instead of letting them be refused.
func (p *ssManagerPeer) Stop(t *testing.T) {
	t.Helper()
	pids := pidFiles(p.Dir)
	_ = syscall.Kill(p.Proc.Cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.Proc.Exited():
	case <-time.After(5 * time.Second):
		t.Fatal("ss-manager did not stop")
	}
	deadline := time.Now().Add(2 * time.Second)
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// Kill crashes ss-manager (SIGKILL to its process group, so it cannot
// stop its ss-servers), then kills the ss-servers that survive it, as a
// supervisor restarting the member would, and waits until all are gone.
func (p *ssManagerPeer) Kill(t *testing.T) {
	t.Helper()
	pids := pidFiles(p.Dir)
	_ = syscall.Kill(-p.Proc.Cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.Proc.Exited():
	case <-time.After(5 * time.Second):
		t.Fatal("ss-manager did not die")
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("ss-server %d survives SIGKILL", pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// alive reports whether pid runs (a zombie has released its sockets).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

func pidFiles(dir string) []int {
	files, _ := filepath.Glob(filepath.Join(dir, ".shadowsocks_*.pid"))
	var pids []int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
			pids = append(pids, pid)
		}
	}
	return pids
}

func killPidFiles(dir string) {
	for _, pid := range pidFiles(dir) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// portRange returns n consecutive ports that were all free for TCP and UDP
// a moment ago. They are picked below the usual ephemeral range
// (32768..60999), where other tests' outgoing connections do not land.
func portRange(t *testing.T, n int) (int, int) {
	t.Helper()
	free := func(port int) bool {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return false
		}
		ln.Close()
		pc, err := net.ListenPacket("udp", addr)
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

func newStore(t *testing.T) store.Store {
	t.Helper()
	s, err := embedded.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// fetchThrough downloads bytes from origin through the Shadowsocks server
// at upstream and checks their hash.
func fetchThrough(upstream, method, password string, origin *testpeer.Origin, size int64, seed uint64) error {
	c, err := testpeer.NewCipher(method, password)
	if err != nil {
		return err
	}
	tcp, err := net.DialTimeout("tcp", upstream, 5*time.Second)
	if err != nil {
		return err
	}
	defer tcp.Close()
	tcp.SetDeadline(time.Now().Add(15 * time.Second))
	sc, err := c.NewSSConn(tcp.(*net.TCPConn), origin.Addr)
	if err != nil {
		return err
	}
	sum, n, err := testpeer.HTTPGetSHA256(sc, origin.Addr, fmt.Sprintf("/bytes/%d?seed=%d", size, seed))
	if err != nil {
		return fmt.Errorf("through %s: %w", upstream, err)
	}
	if want := testpeer.PseudoRandomSHA256(size, seed); n != size || sum != want {
		return fmt.Errorf("through %s: %d bytes sha %s, want %d %s", upstream, n, sum, size, want)
	}
	return nil
}

// waitClosed waits until nothing accepts TCP at addr.
func waitClosed(addr string, timeout time.Duration) error {
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

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

func newPassword() string { return "pw-" + store.NewID() }

func splitPort(t *testing.T, addr string) (string, int) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return h, n
}
