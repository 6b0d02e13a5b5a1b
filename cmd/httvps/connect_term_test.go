package main

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/httvps/httvps/internal/testpeer"
)

// ptyPair opens a pseudo-terminal: the master to read what was drawn, the
// slave as connect's stderr.
func ptyPair(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetUint32(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(int(n)), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Skipf("pty slave: %v", err)
	}
	return m, s
}

// On a terminal connect keeps a status line (redrawn in place) below its
// log lines.
func TestConnectStatusLineOnTerminal(t *testing.T) {
	needPeers(t, "ss-server")
	ss := testpeer.SSServer(t, "term-pass", "aes-128-gcm")
	master, slave := ptyPair(t)
	var mu sync.Mutex
	var drawn bytes.Buffer
	read := make(chan struct{})
	go func() {
		defer close(read)
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			mu.Lock()
			drawn.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	listen := "127.0.0.1:" + strconv.Itoa(testpeer.FreePort(t))
	key := "ss://aes-128-gcm:term-pass@" + ss
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"connect", "-listen", listen, key}, env{stdout: slave, stderr: slave, lookupEnv: noEnv})
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		s := drawn.String()
		mu.Unlock()
		if strings.Contains(s, "\r\x1b[Kdirect "+ss+" up  ") && strings.Contains(s, "streams 0  clients 0") && strings.Contains(s, "proxy listening") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no status line on the terminal:\n%q", s)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d", code)
	}
	slave.Close()
	master.Close()
	<-read
}
