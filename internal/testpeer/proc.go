// Package testpeer starts real peers on loopback for tests (ss-server,
// ss-local with v2ray-plugin, redis-server, an HTTP origin whose bytes have
// known hashes, the gateway itself in-process), makes their self-signed
// certificates, and gives tests the clients to drive them: SOCKS5, a
// WebSocket client with half-close, and a small independent Shadowsocks
// AEAD. Every helper takes a testing.TB, bounds its waits and registers its
// cleanup.
package testpeer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/httvps/httvps/internal/freeport"
)

// FreePort returns a loopback port that was free for both TCP and UDP a
// moment ago.
// It comes from below the kernel's ephemeral range (see internal/freeport),
// so no outgoing connection can take it before the peer binds it.
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := freeport.TCPUDP()
	if err != nil {
		t.Fatalf("testpeer: %v", err)
	}
	return p
}

// WaitListening dials addr until a TCP connect succeeds or timeout passes.
func WaitListening(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("testpeer: %s not listening after %v: %w", addr, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// syncBuffer collects a process's output for the test log.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 1<<20 { // keep the log bounded
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Proc is a peer process started by StartProc.
type Proc struct {
	Cmd    *exec.Cmd
	out    *syncBuffer
	exited chan struct{}
	err    error // valid after exited is closed
}

// Output returns what the process printed so far.
func (p *Proc) Output() string { return p.out.String() }

// Exited is closed when the process has ended.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// StartProc runs name with args in its own process group. At test end it
// sends SIGTERM to the process, then SIGKILL to its group (v2ray-plugin is a
// grandchild of the test), and logs the output if the test failed.
func StartProc(t testing.TB, name string, args ...string) *Proc {
	t.Helper()
	return startProcEnv(t, nil, name, args...)
}

// startProcEnv is StartProc with env added to the test's environment.
func startProcEnv(t testing.TB, env []string, name string, args ...string) *Proc {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("testpeer: %s not installed: %v", name, err)
	}
	p := &Proc{out: &syncBuffer{}, exited: make(chan struct{})}
	p.Cmd = exec.Command(path, args...)
	p.Cmd.Stdout, p.Cmd.Stderr = p.out, p.out
	if env != nil {
		p.Cmd.Env = append(p.Cmd.Environ(), env...) // the test's own, plus env
	}
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("testpeer: start %s: %v", name, err)
	}
	go func() {
		p.err = p.Cmd.Wait()
		close(p.exited)
	}()
	pid := p.Cmd.Process.Pid
	t.Cleanup(func() {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(2 * time.Second):
		}
		_ = syscall.Kill(-pid, syscall.SIGKILL) // the group: plugins included
		<-p.exited
		if t.Failed() {
			t.Logf("%s %v output:\n%s", name, args, p.Output())
		}
	})
	return p
}

// waitProcListening waits for addr, failing early if the process exits.
func waitProcListening(p *Proc, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		select {
		case <-p.exited:
			return fmt.Errorf("testpeer: %s exited: %v: %s", p.Cmd.Path, p.err, p.Output())
		default:
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(fmt.Errorf("testpeer: %s not listening on %s", p.Cmd.Path, addr), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// LockedBuffer is a bytes.Buffer that one goroutine may write (a process's
// output, a logger) while the test reads it.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
