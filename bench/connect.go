package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ConnectResult is the new-session cost of one TLS peer: each connection is
// a full TLS handshake, the WebSocket upgrade (none for nginx-tls), the
// relay's upstream dial, one byte echoed by the sink, and a close.
type ConnectResult struct {
	Peer         string  `json:"peer"`
	CertType     string  `json:"cert_type"`
	Suite        string  `json:"tls_suite"`
	Connections  int     `json:"connections"`
	Workers      int     `json:"workers"`
	Seconds      float64 `json:"seconds"`
	PerSecond    float64 `json:"connections_per_s"`
	CPUSeconds   float64 `json:"cpu_seconds"`
	CPUmsPerConn float64 `json:"cpu_ms_per_connection"`
	// ClientCPUmsPerConn is the harness's own CPU per session (its client
	// shares the machine's cores with the relay, so it bounds conn/s too).
	ClientCPUmsPerConn float64 `json:"client_cpu_ms_per_connection"`
	// Latencies from the start of the TCP dial, in milliseconds: TLS
	// handshake complete, and the echoed byte back (the whole setup).
	HandshakeP50  float64 `json:"handshake_ms_p50"`
	HandshakeP99  float64 `json:"handshake_ms_p99"`
	SetupP50      float64 `json:"setup_ms_p50"`
	SetupP99      float64 `json:"setup_ms_p99"`
	HandshakeP999 float64 `json:"handshake_ms_p999"`
	SetupP999     float64 `json:"setup_ms_p999"`
	// Hogs is the CPU hogs that ran throughout (tls-connect-busy); 0 is
	// the quiet tls-connect.
	Hogs int `json:"cpu_hogs,omitempty"`
	// Runs > 1: medians over that many runs, with CPU's and rate's ranges.
	Runs      int   `json:"runs,omitempty"`
	CPURange  *Span `json:"cpu_ms_per_connection_range,omitempty"`
	RateRange *Span `json:"connections_per_s_range,omitempty"`
}

// load names the run's load for the report: "quiet" or "busy (N hogs)".
func (r ConnectResult) load() string {
	if r.Hogs == 0 {
		return "quiet"
	}
	return fmt.Sprintf("busy (%d hogs)", r.Hogs)
}

// ConnectRatio compares httvps-tls with another TLS peer on new sessions.
type ConnectRatio struct {
	Versus string  `json:"versus"`
	Hogs   int     `json:"cpu_hogs,omitempty"` // as ConnectResult.Hogs
	CPU    float64 `json:"cpu_ratio"`          // httvps-tls CPU ms/connection ÷ versus
	Rate   float64 `json:"rate_ratio"`         // httvps-tls connections/s ÷ versus
	// Tail is httvps-tls handshake p99.9 ÷ versus.
	Tail float64 `json:"handshake_p999_ratio"`
}

func (r ConnectRatio) load() string { return ConnectResult{Hogs: r.Hogs}.load() }

// connectWarmup connections run before the clock starts (lazy
// initialisation, first worker spawn).
const connectWarmup = 50

// connectReadBuffer is the WebSocket read buffer of a tls-connect session.
const connectReadBuffer = 512

// runConnect measures new sessions on pe; with hogs > 0 that many CPU hogs
// spin from before the warm-up until the CPU sample after the last session.
func runConnect(ctx context.Context, cfg *Config, ps *procSet, pe *peer, hogs int, rep *Report) error {
	r, err := startPair(ctx, cfg, ps, pe)
	if err != nil {
		return err
	}
	if hogs > 0 {
		stop, err := startHogs(ps, cfg.Self, hogs)
		if err != nil {
			return err
		}
		defer stop()
	}
	// Each session reads one byte: a WebSocket client needs no 64 KiB read
	// buffer for it (allocating one per session made the harness's
	// collector, on the relay's cores, a share of every WebSocket peer's
	// figure that the raw TLS peers did not pay).
	tr := r.transport
	tr.ReadBuffer = connectReadBuffer
	if _, _, err := connectMany(ctx, tr, connectWarmup, cfg.ConnectWorkers); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	time.Sleep(300 * time.Millisecond)
	before, err := r.proc.Sample()
	if err != nil {
		return err
	}
	start, selfBefore := time.Now(), selfCPU()
	lat, suite, err := connectMany(ctx, tr, cfg.ConnectCount, cfg.ConnectWorkers)
	wall, self := time.Since(start), selfCPU()-selfBefore
	if err != nil {
		return err
	}
	// The relay finishes tearing the last sessions down after the client
	// has its byte; let that land in the figure too.
	time.Sleep(300 * time.Millisecond)
	after, err := r.proc.Sample()
	if err != nil {
		return err
	}
	cpu := after.CPUSince(before).Seconds()
	hs := make([]time.Duration, len(lat))
	su := make([]time.Duration, len(lat))
	for i, l := range lat {
		hs[i], su[i] = l.TLS, l.Upgrade
	}
	res := ConnectResult{
		Peer: pe.info.Name, CertType: cfg.CertType, Suite: suite,
		Connections: cfg.ConnectCount, Workers: cfg.ConnectWorkers,
		Seconds: wall.Seconds(), PerSecond: float64(cfg.ConnectCount) / wall.Seconds(),
		CPUSeconds: cpu, CPUmsPerConn: cpu * 1000 / float64(cfg.ConnectCount),
		ClientCPUmsPerConn: self.Seconds() * 1000 / float64(cfg.ConnectCount),
		HandshakeP50:       percentileMs(hs, 50), HandshakeP99: percentileMs(hs, 99),
		SetupP50: percentileMs(su, 50), SetupP99: percentileMs(su, 99),
		HandshakeP999: percentileMs(hs, 99.9), SetupP999: percentileMs(su, 99.9),
		Hogs: hogs,
	}
	rep.Connect = append(rep.Connect, res)
	fmt.Fprintf(cfg.Log, "tls-connect %s %-10s %d conns: %.0f/s, %.3f CPU ms/conn (client %.3f), handshake p50 %.2f p99 %.2f p99.9 %.2f ms, setup p50 %.2f p99 %.2f p99.9 %.2f ms (%s)\n",
		res.load(), res.Peer, res.Connections, res.PerSecond, res.CPUmsPerConn, res.ClientCPUmsPerConn, res.HandshakeP50, res.HandshakeP99, res.HandshakeP999,
		res.SetupP50, res.SetupP99, res.SetupP999, res.Suite)
	return nil
}

// connectMany opens n sessions, workers at a time, each one after the
// other within its worker. In each latency, TLS is the handshake time and
// Upgrade the time to the echoed byte, both from the start of the dial.
func connectMany(ctx context.Context, tr Transport, n, workers int) ([]dialTimes, string, error) {
	lat := make([]dialTimes, n)
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		mu    sync.Mutex
		errs  []error
		suite string
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := tr
			t.LocalIP = net.IPv4(127, 0, 0, byte(2+w%idleSourceIPs))
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				d, s, err := connectOne(ctx, t)
				if err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("connection %d: %w", i, err))
					mu.Unlock()
					if len(errs) > 10 {
						return
					}
					continue
				}
				lat[i] = d
				if i == 0 {
					mu.Lock()
					suite = s
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, "", fmt.Errorf("%d of %d connections failed: %w", len(errs), n, err)
	}
	if ctx.Err() != nil {
		return nil, "", ctx.Err()
	}
	return lat, suite, nil
}

// connectOne opens a session, has one byte echoed through it, and closes.
func connectOne(ctx context.Context, tr Transport) (dialTimes, string, error) {
	start := time.Now()
	s, d, err := tr.dial(ctx)
	if err != nil {
		return d, "", err
	}
	defer s.Close()
	s.SetDeadline(time.Now().Add(10 * time.Second))
	msg := append(modeHeader(ModeEcho, 0), 'x')
	if _, err := s.Write(msg); err != nil {
		return d, "", err
	}
	var b [1]byte
	if _, err := io.ReadFull(s, b[:]); err != nil || b[0] != 'x' {
		return d, "", fmt.Errorf("echo: got %q: %v", b[0], err)
	}
	d.Upgrade = time.Since(start)
	return d, streamSuite(s), nil
}

// percentileMs is the p-th percentile (nearest rank) in milliseconds.
func percentileMs(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.5) - 1
	i = min(max(i, 0), len(s)-1)
	return float64(s[i]) / float64(time.Millisecond)
}

// selfCPU is the CPU time this process has used, user and system, all
// threads.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
