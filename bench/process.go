package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/httvps/httvps/internal/freeport"
)

// Process is a child process the harness started: a relay or the sink.
type Process struct {
	Name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // exit status, valid after done
	tail *tailBuffer   // last bytes of stderr, for error messages
	// group makes Sample sum over the process group (nginx master and
	// workers) instead of reading the started process alone.
	group bool
	pgid  int // the group it joined; 0: a group of its own (pgid = pid)
}

// Pid is the child's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Sample reads the process's CPU time and RSS.
func (p *Process) Sample() (ProcSample, error) {
	if p.Exited() {
		return ProcSample{}, fmt.Errorf("bench: %s exited: %v: %s", p.Name, p.err, p.tail)
	}
	if p.group {
		s, _, err := ReadGroup(p.Pid())
		return s, err
	}
	return ReadProc(p.Pid())
}

// FDs counts the process's open fds (summed over the group for a group).
func (p *Process) FDs() int {
	if p.group {
		return groupFDs(p.Pid())
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.Pid()))
	if err != nil {
		return 0
	}
	return len(ents)
}

// Stop kills the process group and waits (bounded) for it to exit.
func (p *Process) Stop() {
	if p.Exited() {
		return
	}
	if p.pgid != 0 {
		syscall.Kill(p.Pid(), syscall.SIGKILL) // a member of another's group
	} else {
		syscall.Kill(-p.Pid(), syscall.SIGKILL)
	}
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
}

// procSet tracks every child so all of them die at the end, even on error.
type procSet struct {
	mu    sync.Mutex
	procs []*Process
}

func (s *procSet) add(p *Process) {
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
}

// stopAll kills every process still running.
func (s *procSet) stopAll() {
	s.mu.Lock()
	ps := s.procs
	s.procs = nil
	s.mu.Unlock()
	for _, p := range ps {
		p.Stop()
	}
}

// start runs argv in its own process group, killed if the harness dies
// (Pdeathsig), with SS_* variables removed so SIP003 plugins read only flags.
func (s *procSet) start(name string, argv []string, stdout io.Writer) (*Process, error) {
	return s.startOpts(name, argv, startOptions{Stdout: stdout})
}

// startOptions are the less common ways to start a child.
type startOptions struct {
	Stdout io.Writer
	Env    []string // extra KEY=VALUE environment
	// Pgid, when set, puts the child in that process group (a relay's
	// backend joins its front's group, so the pair is sampled and killed
	// as one) instead of a group of its own.
	Pgid int
}

func (s *procSet) startOpts(name string, argv []string, o startOptions) (*Process, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SS_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, o.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pgid: o.Pgid, Pdeathsig: syscall.SIGKILL}
	stdout := o.Stdout
	tail := &tailBuffer{max: 4096}
	cmd.Stderr = tail
	cmd.Stdout = stdout
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start %s: %w", name, err)
	}
	p := &Process{Name: name, cmd: cmd, done: make(chan struct{}), tail: tail, pgid: o.Pgid}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	s.add(p)
	return p, nil
}

// startSelf runs a subcommand of the harness binary that prints
// "listening ADDR" as its first stdout line, and returns ADDR.
func (s *procSet) startSelf(name string, argv []string) (*Process, string, error) {
	return s.startLine(name, argv, "listening ", 10*time.Second)
}

// waitListening polls addr until it accepts a TCP connection.
func waitListening(ctx context.Context, p *Process, addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if p.Exited() {
			return fmt.Errorf("bench: %s exited: %v: %s", p.Name, p.err, p.tail)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("bench: %s not listening on %s after 10s: %s", p.Name, addr, p.tail)
}

// freePort returns a loopback port that was free a moment ago.
// It comes from below the kernel's ephemeral range (see internal/freeport).
func freePort() (int, error) { return freeport.TCP() }

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}

var errPeerUnavailable = errors.New("bench: peer unavailable")
