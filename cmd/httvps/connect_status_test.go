package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/httvps/httvps/client"
)

func TestFormatStatus(t *testing.T) {
	prev := client.SessionStatus{Status: client.Status{Up: 1 << 20, Down: 2 << 20}}
	st := client.SessionStatus{Transport: "outline", Clients: 2, Status: client.Status{
		Gateway: "gw.example.com:443", Connected: true, RTT: 1234 * time.Microsecond, Streams: 3, Up: 2 << 20, Down: 4 << 20}}
	got := formatStatus(st, prev, time.Second, "127.0.0.1:1080")
	for _, want := range []string{"outline gw.example.com:443 up", "rtt 1.2ms", "streams 3", "clients 2", "up 2 MiB (1 MiB/s)", "down 4 MiB (2 MiB/s)", "proxy 127.0.0.1:1080"} {
		if !strings.Contains(got, want) {
			t.Errorf("status %q lacks %q", got, want)
		}
	}
	st.Connected, st.Err = false, errors.New("dial\x1b[2J failed")
	if got := formatStatus(st, st, time.Second, "l"); !strings.Contains(got, " down ") || strings.Contains(got, "\x1b") {
		t.Errorf("down status %q (escape must not reach the terminal)", got)
	}
	st.Refusal = "the token has used its data quota (403 quota_exceeded)"
	if got := formatStatus(st, st, time.Second, "l"); !strings.Contains(got, "refused: the token has used its data quota") {
		t.Errorf("refused status %q", got)
	}
}
