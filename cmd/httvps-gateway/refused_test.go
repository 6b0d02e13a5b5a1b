package main

import (
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// A session refused because its token is at its session limit gets the
// decoy like any other refusal, but the operator sees why: the
// rejected-handshake metric counts it as reason="sessions" (not "secret"),
// and a debug line says so, without the secret.
func TestRefusalReasonReachesMetricAndLog(t *testing.T) {
	ctx, url, _, _, secret, _ := redisWithToken(t, 1)

	addr, adminAddr := freePort(t), freePort(t)
	var log syncBuffer
	exit := make(chan int, 1)
	go func() {
		exit <- run(osSources([]string{
			"-redis", url, "-public-url", "wss://gw.example:443", "-gateway-id", "gw-refusal",
			"-listen", addr, "-admin-listen", adminAddr, "-drain-timeout", "1s", "-log-level", "debug",
			"-addr-handshakes", "-1", "-addr-rate", "-1",
		}), &log)
	}()
	waitLog(t, &log, "gateway serving")
	defer func() {
		syscall.Kill(os.Getpid(), syscall.SIGTERM)
		<-exit
	}()
	sessions := func() int {
		t.Helper()
		resp, err := http.Get("http://" + adminAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		m := regexp.MustCompile(`(?m)^httvps_gateway_handshakes_rejected_total\{reason="sessions"\} (\d+)$`).FindSubmatch(b)
		if m == nil {
			t.Fatalf("no sessions reason in /metrics:\n%s", b)
		}
		n, _ := strconv.Atoi(string(m[1]))
		return n
	}

	d := ws.Dialer{Timeout: 5 * time.Second}
	first, _, _, err := d.Dial(ctx, "ws://"+addr+"/"+secret+"/tcp")
	if err != nil {
		t.Fatalf("first session: %v\n%s", err, log.String())
	}
	defer first.Close()
	before := sessions()
	if c, _, _, err := d.Dial(ctx, "ws://"+addr+"/"+secret+"/tcp"); err == nil {
		c.Close()
		t.Fatal("a second session admitted past max_sessions 1")
	}
	if after := sessions(); after != before+1 {
		t.Fatalf(`reason="sessions" went %d → %d, want one more`, before, after)
	}
	waitLog(t, &log, "session refused")
	var line string
	for _, l := range strings.Split(log.String(), "\n") {
		if strings.Contains(l, "session refused") {
			line = l
		}
	}
	if !strings.Contains(line, "reason=sessions") || !strings.Contains(line, "path=tcp") {
		t.Fatalf("debug line %q", line)
	}
	if strings.Contains(log.String(), secret) {
		t.Fatal("the token secret is in the log")
	}
}
