package testpeer

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/httvps/httvps/internal/freeport"
)

// RedisSpec says how to run a redis-server; the zero value is an
// in-memory server on a free loopback port.
type RedisSpec struct {
	Port int    // 0: a free one (see FreePort)
	Dir  string // its working directory; "": t.TempDir() (RunRedis needs one)
	// Durable keeps an append-only file synced on every write, so that a
	// Kill loses nothing and Start finds the data again.
	Durable  bool
	Password string    // "": none (requirepass)
	TLS      *TestCert // nil: plaintext; else TLS only, on Port, with this certificate
	Args     []string  // more redis-server arguments (e.g. "--replicaof", host, port)
}

// Redis is a redis-server of the test's own on 127.0.0.1. Start, Kill and
// Signal are for the goroutine that started it.
type Redis struct {
	Port int
	Dir  string

	args   []string
	tls    *tls.Config // nil: plaintext
	pass   string
	cmd    *exec.Cmd // nil while killed
	out    *syncBuffer
	exited chan struct{} // closed when cmd has ended
}

// StartRedis runs redis-server to spec and returns once it answers PING.
// It skips the test when redis-server is not installed; at test end it
// kills the server and, if the test failed, logs its output.
func StartRedis(t testing.TB, spec RedisSpec) *Redis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skipf("testpeer: redis-server not installed: %v", err)
	}
	if spec.Dir == "" {
		spec.Dir = t.TempDir()
	}
	r, err := RunRedis(spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Kill()
		if t.Failed() {
			t.Logf("redis-server on %s output:\n%s", r.Addr(), r.Output())
		}
	})
	return r
}

// RunRedis is StartRedis for a server that outlives any one test (shared
// by a package's tests): the caller ends it with Kill. spec.Dir is
// required.
func RunRedis(spec RedisSpec) (*Redis, error) {
	if spec.Dir == "" {
		return nil, errors.New("testpeer: RunRedis needs a directory")
	}
	if spec.Port == 0 {
		p, err := freeport.TCPUDP()
		if err != nil {
			return nil, fmt.Errorf("testpeer: %w", err)
		}
		spec.Port = p
	}
	r := &Redis{Port: spec.Port, Dir: spec.Dir, pass: spec.Password, out: &syncBuffer{}}
	port := strconv.Itoa(spec.Port)
	r.args = []string{"--port", port, "--bind", "127.0.0.1", "--dir", spec.Dir,
		"--save", "", "--protected-mode", "no", "--loglevel", "warning", "--logfile", ""}
	if spec.Durable {
		r.args = append(r.args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		r.args = append(r.args, "--appendonly", "no")
	}
	if spec.Password != "" {
		r.args = append(r.args, "--requirepass", spec.Password)
	}
	if c := spec.TLS; c != nil {
		r.args[1] = "0" // no plaintext port
		r.args = append(r.args, "--tls-port", port, "--tls-cert-file", c.PEMFile, "--tls-key-file", c.KeyFile,
			"--tls-ca-cert-file", c.PEMFile, "--tls-auth-clients", "no")
		r.tls = &tls.Config{RootCAs: c.Pool, MinVersion: tls.VersionTLS12}
	}
	r.args = append(r.args, spec.Args...)
	if err := r.Start(); err != nil {
		r.Kill()
		return nil, err
	}
	return r, nil
}

// Addr is the server's "host:port".
func (r *Redis) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.Port)) }

// URL is the URL of its database 0: redis://, or rediss:// over TLS,
// with the password if there is one.
func (r *Redis) URL() string {
	scheme, user := "redis://", ""
	if r.tls != nil {
		scheme = "rediss://"
	}
	if r.pass != "" {
		user = ":" + r.pass + "@"
	}
	return scheme + user + r.Addr() + "/0"
}

// Output returns what the server printed so far, over all its runs.
func (r *Redis) Output() string { return r.out.String() }

// Start runs the server again after Kill, on the same port and directory,
// and returns once it answers PING (within 10 s).
func (r *Redis) Start() error {
	if r.cmd != nil {
		return errors.New("testpeer: redis-server already running")
	}
	cmd := exec.Command("redis-server", r.args...)
	cmd.Stdout, cmd.Stderr = r.out, r.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("testpeer: start redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	r.cmd, r.exited = cmd, exited
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if r.answers() {
			return nil
		}
		select {
		case <-exited:
			r.cmd = nil
			return fmt.Errorf("testpeer: redis-server on %s exited: %s", r.Addr(), r.Output())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("testpeer: redis-server on %s did not come up", r.Addr())
}

// answers reports whether the server answers PING (refused for want of
// the password counts).
func (r *Redis) answers() bool {
	d := &net.Dialer{Timeout: time.Second} // the TLS handshake included
	var c net.Conn
	var err error
	if r.tls != nil {
		c, err = (&tls.Dialer{NetDialer: d, Config: r.tls}).Dial("tcp", r.Addr())
	} else {
		c, err = d.Dial("tcp", r.Addr())
	}
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	fmt.Fprintf(c, "PING\r\n")
	line, _ := bufio.NewReader(c).ReadString('\n')
	return line == "+PONG\r\n" || strings.HasPrefix(line, "-NOAUTH")
}

// Kill ends the server abruptly, as a crash would, and waits for it. It
// does nothing when the server is not running.
func (r *Redis) Kill() {
	if r.cmd == nil {
		return
	}
	r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.exited
	r.cmd = nil
}

// Signal sends sig to the running server: SIGSTOP freezes it, SIGCONT
// lets it go on.
func (r *Redis) Signal(sig syscall.Signal) error {
	if r.cmd == nil {
		return errors.New("testpeer: redis-server not running")
	}
	return r.cmd.Process.Signal(sig)
}
