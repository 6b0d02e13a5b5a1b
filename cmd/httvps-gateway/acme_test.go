package main

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/httvps/httvps/store/embedded"
)

// -acme without -redis keeps its state in an embedded store in -acme-dir;
// the gateway closes it at exit, so the next process (or a restart in
// the same one) can open it at once: bolt holds the file locked while
// it is open, and Open gives up after a second.
func TestACMEDirClosedAtExit(t *testing.T) {
	dir := t.TempDir()
	var log syncBuffer
	exit := make(chan int, 1)
	go func() {
		exit <- run(osSources([]string{
			"-listen", freePort(t), "-admin-listen", "", "-route", "s=127.0.0.1:9", "-drain-timeout", "1s",
			// Nothing answers there: ordering fails and is retried in the
			// background, which is all this test needs.
			"-acme", "-acme-domain", "vpn.example.com", "-acme-ca", "https://127.0.0.1:9/dir", "-acme-dir", dir,
		}), &log)
	}()
	waitLog(t, &log, "gateway starting")
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	select {
	case code := <-exit:
		if code != 0 {
			t.Fatalf("exit %d, want 0\n%s", code, log.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("still running 30 s after SIGTERM\n%s", log.String())
	}
	st, err := embedded.Open(filepath.Join(dir, "acme.db"))
	if err != nil {
		t.Fatalf("-acme-dir still held after the gateway returned: %v", err)
	}
	st.Close()
}
