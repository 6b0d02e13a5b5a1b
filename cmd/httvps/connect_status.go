package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/httvps/httvps/client"
)

// statusLine is the live line `httvps connect` keeps at the bottom of a
// terminal: log lines written through it clear the line first, and it is
// redrawn once a second. Off a terminal it only passes log lines on, and
// the status goes to the log once a minute when it changed.
type statusLine struct {
	w  io.Writer
	on bool

	mu    sync.Mutex // guards the writes and last
	last  string
	drawn bool
}

// Write passes a log line on, clearing the status line first.
func (s *statusLine) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.drawn {
		io.WriteString(s.w, "\r\x1b[K")
		s.drawn = false
	}
	return s.w.Write(p)
}

func (s *statusLine) draw(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	io.WriteString(s.w, "\r\x1b[K"+line)
	s.drawn = true
}

// finish leaves the cursor on a fresh line.
func (s *statusLine) finish() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.drawn {
		io.WriteString(s.w, "\n")
		s.drawn = false
	}
}

func (s *statusLine) run(ctx context.Context, sess *client.Session, listen string, log *slog.Logger) {
	every := time.Second
	if !s.on {
		every = time.Minute
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	var prev client.SessionStatus
	prevAt := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			st := sess.Status()
			line := formatStatus(st, prev, now.Sub(prevAt), listen)
			prev, prevAt = st, now
			if s.on {
				s.draw(line)
			} else if line != s.last {
				s.last = line
				log.Info("status", "gateway", st.Gateway, "connected", st.Connected, "rtt", st.RTT,
					"streams", st.Streams, "clients", st.Clients, "up", st.Up, "down", st.Down)
			}
		}
	}
}

// formatStatus is one line: gateway, RTT, open streams, bytes and rates.
func formatStatus(st, prev client.SessionStatus, dt time.Duration, listen string) string {
	var b strings.Builder
	state := "up"
	if !st.Connected {
		state = "down"
	}
	gw := st.Gateway
	if gw == "" {
		gw = "-"
	}
	fmt.Fprintf(&b, "%s %s %s", st.Transport, gw, state)
	if st.RTT > 0 {
		fmt.Fprintf(&b, "  rtt %s", st.RTT.Round(100*time.Microsecond))
	}
	fmt.Fprintf(&b, "  streams %d  clients %d  up %s %s  down %s %s  proxy %s",
		st.Streams, st.Clients, humanBytes(st.Up), rate(st.Up-prev.Up, dt), humanBytes(st.Down), rate(st.Down-prev.Down, dt), listen)
	switch {
	case st.Refusal != "":
		b.WriteString("  refused: " + printable(st.Refusal))
	case !st.Connected && st.Err != nil:
		b.WriteString("  " + printable(st.Err.Error()))
	}
	return b.String()
}

func rate(n int64, dt time.Duration) string {
	if dt <= 0 || n < 0 {
		return "(0 B/s)"
	}
	return "(" + humanBytes(int64(float64(n)/dt.Seconds())) + "/s)"
}
