package main

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A -listen port that is taken ends the process at once with exit 1: it
// never answers /healthz, so systemd and Kubernetes restart it instead of
// keeping a gateway that serves nothing.
func TestListenPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	adminAddr := freePort(t)
	var log syncBuffer
	exit := make(chan int, 1)
	go func() {
		exit <- run(osSources([]string{
			"-listen", ln.Addr().String(), "-route", "s=127.0.0.1:9", "-admin-listen", adminAddr,
		}), &log)
	}()
	select {
	case code := <-exit:
		if code != 1 {
			t.Fatalf("exit %d, want 1\n%s", code, log.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("still running with its port taken\n%s", log.String())
	}
	if !strings.Contains(log.String(), "address already in use") {
		t.Fatalf("the log does not say why:\n%s", log.String())
	}
	c := http.Client{Timeout: time.Second}
	if resp, err := c.Get("http://" + adminAddr + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatalf("/healthz answered %d after the gateway failed to listen", resp.StatusCode)
	}
}
