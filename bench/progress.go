package bench

import (
	"bytes"
	"fmt"
	"io"
	"sync"
	"time"
)

// liveLog is the progress display on a terminal: one status line (step k
// of n, scenario, peer, elapsed, time left) redrawn in place every second,
// with the log's other lines printed above it.
type liveLog struct {
	mu     sync.Mutex
	w      io.Writer
	status string
	stop   chan struct{}
	render func() string
}

func newLiveLog(w io.Writer) *liveLog { return &liveLog{w: w} }

// Write prints whole lines above the status line.
func (l *liveLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.status != "" {
		fmt.Fprint(l.w, "\r\033[K")
	}
	l.w.Write(p)
	if len(p) > 0 && !bytes.HasSuffix(p, []byte("\n")) {
		l.w.Write([]byte("\n"))
	}
	if l.status != "" {
		fmt.Fprint(l.w, l.status)
	}
	return len(p), nil
}

// run redraws the status from render every second until close.
func (l *liveLog) run(render func() string) {
	l.stop = make(chan struct{})
	l.render = render
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-t.C:
				l.redraw()
			}
		}
	}()
}

func (l *liveLog) redraw() {
	s := l.render()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.status = s
	fmt.Fprint(l.w, "\r\033[K"+s)
}

// close clears the status line.
func (l *liveLog) close() {
	if l.stop != nil {
		close(l.stop)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.status != "" {
		fmt.Fprint(l.w, "\r\033[K")
		l.status = ""
	}
}

// progressState is where the run is, for the progress line.
type progressState struct {
	mu       sync.Mutex
	k, n     int
	st       step
	name     string
	runs     int
	start    time.Time
	stepAt   time.Time
	estDone  float64 // estimated seconds of the steps done
	estTotal float64
	estStep  float64
}

// left is the time left: the estimate of what remains, scaled by how the
// run has gone against its estimate so far.
func (p *progressState) left(now time.Time) time.Duration {
	scale := 1.0
	if p.estDone > 0 {
		scale = (p.stepAt.Sub(p.start).Seconds()) / p.estDone
	}
	rem := (p.estTotal - p.estDone) * scale
	// The current step's share already spent.
	rem -= min(now.Sub(p.stepAt).Seconds(), p.estStep*scale)
	return time.Duration(max(rem, 0) * float64(time.Second)).Round(time.Second)
}

func (p *progressState) line(now time.Time) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	run := ""
	if p.runs > 1 {
		run = fmt.Sprintf("run %d/%d, ", p.st.run, p.runs)
	}
	return fmt.Sprintf("== [%d/%d] %s%s on %s (elapsed %s, about %s left)", p.k+1, p.n, run, p.st.sc, p.name,
		now.Sub(p.start).Round(time.Second), p.left(now))
}
