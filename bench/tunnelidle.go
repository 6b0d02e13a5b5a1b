package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/httvps/httvps/codec/mux"
)

// TunnelIdleResult is the idle-tunnel memory measurement of one peer:
// native tunnels with no stream open, one client connection each.
type TunnelIdleResult struct {
	Peer          string  `json:"peer"`
	Tunnels       int     `json:"tunnels"`
	Clients       int     `json:"client_processes"`
	SetupSeconds  float64 `json:"setup_seconds"`
	BaseRSSKiB    int64   `json:"base_rss_kib"`
	RSSKiB        int64   `json:"rss_kib"`
	PerTunnelKiB  float64 `json:"per_tunnel_kib"`
	RelayFDs      int     `json:"relay_fds"`
	CPUSetupMsPer float64 `json:"cpu_ms_setup_per_tunnel"`
}

// tunnelsPerClient keeps each client process under the 20,000-fd limit.
const tunnelsPerClient = 9600

// runTunnelIdle opens cfg.Tunnels idle tunnels through pe from child
// processes (the harness's "tunnels" subcommand) and reads the gateway's
// RSS growth per tunnel.
func runTunnelIdle(ctx context.Context, cfg *Config, ps *procSet, pe *peer, cert *benchCert, dst *[]TunnelIdleResult) error {
	r, err := startPair(ctx, cfg, ps, pe)
	if err != nil {
		return err
	}
	time.Sleep(time.Second)
	base, err := r.proc.Sample()
	if err != nil {
		return err
	}
	n := cfg.Tunnels
	clients := (n + tunnelsPerClient - 1) / tunnelsPerClient
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, clients)
	for i := range clients {
		k := n / clients
		if i < n%clients {
			k++
		}
		argv := []string{cfg.Self, "tunnels", "-addr", r.transport.Addr, "-token", pe.token,
			"-n", strconv.Itoa(k), "-src", strconv.Itoa(2 + i*idleSourceIPs)}
		if pe.tls != nil {
			argv = append(argv, "-ca", cert.CertFile, "-sni", tlsServerName)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, errs[i] = ps.startLine(fmt.Sprintf("tunnels%d", i), argv, "ready ", time.Duration(k)*5*time.Millisecond+60*time.Second)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	setup := time.Since(start)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(cfg.Settle):
	}
	x, err := r.proc.Sample()
	if err != nil {
		return err
	}
	res := TunnelIdleResult{Peer: pe.info.Name, Tunnels: n, Clients: clients, SetupSeconds: setup.Seconds(),
		BaseRSSKiB: base.RSSKiB, RSSKiB: x.RSSKiB, PerTunnelKiB: float64(x.RSSKiB-base.RSSKiB) / float64(n),
		RelayFDs: r.proc.FDs(), CPUSetupMsPer: x.CPUSince(base).Seconds() * 1000 / float64(n)}
	*dst = append(*dst, res)
	fmt.Fprintf(cfg.Log, "tunnel-idle %-17s %d tunnels (%d relay fds, %d client processes) in %.1fs: RSS %d -> %d KiB, %.2f KiB/tunnel\n",
		res.Peer, n, res.RelayFDs, clients, res.SetupSeconds, res.BaseRSSKiB, res.RSSKiB, res.PerTunnelKiB)
	return nil
}

// TunnelsConfig is what the "tunnels" subcommand opens.
type TunnelsConfig struct {
	Addr  string // gateway address
	Token string
	N     int    // tunnels to open
	Src   int    // first source address 127.0.0.Src (eight are used)
	CA    string // TLS: the gateway's certificate (PEM file); empty: plaintext
	SNI   string // TLS: server name
}

// ServeTunnels is the "tunnels" subcommand: it opens c.N native tunnels to
// c.Addr (each: the upgrade with the token, SETTINGS both ways), prints
// "ready N" and holds them until the harness kills it.
func ServeTunnels(c TunnelsConfig) int {
	tr := Transport{Addr: c.Addr, ReadBuffer: 256}
	if c.CA != "" {
		pem, err := os.ReadFile(c.CA)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		tr.TLS = &tls.Config{RootCAs: pool, ServerName: c.SNI, MinVersion: tls.VersionTLS13, CurvePreferences: []tls.CurveID{tls.X25519}}
	}
	tr = newMuxClient(tr, c.Token).tr
	conns := make([]Stream, c.N)
	var (
		next, ok atomic.Int64
		firstErr atomic.Value
		wg       sync.WaitGroup
	)
	ctx := context.Background()
	for range idleDialers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= c.N {
					return
				}
				t := tr
				t.LocalIP = net.IPv4(127, 0, 0, byte(c.Src+i%idleSourceIPs))
				s, err := openIdleTunnel(ctx, t)
				if err != nil {
					firstErr.CompareAndSwap(nil, fmt.Errorf("tunnel %d: %w", i, err))
					continue
				}
				conns[i] = s
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	if int(ok.Load()) != c.N {
		fmt.Fprintf(os.Stderr, "only %d of %d tunnels: %v\n", ok.Load(), c.N, firstErr.Load())
		return 1
	}
	fmt.Printf("ready %d\n", c.N)
	select {} // until the harness kills the process group
}

// openIdleTunnel upgrades a tunnel, sends SETTINGS and waits for the
// gateway's, so the tunnel is established when it returns.
func openIdleTunnel(ctx context.Context, tr Transport) (Stream, error) {
	s, _, err := tr.dial(ctx)
	if err != nil {
		return nil, err
	}
	s.SetDeadline(time.Now().Add(15 * time.Second))
	st := mux.DefaultSettings()
	st.MaxStreams = 0
	if _, err := s.Write(mux.AppendSettings(nil, st)); err != nil {
		s.Close()
		return nil, err
	}
	var p mux.Parser
	buf := make([]byte, 512)
	for {
		k, err := s.Read(buf)
		in := buf[:k]
		for len(in) > 0 {
			ev, used, perr := p.Next(in)
			in = in[used:]
			if perr != nil {
				s.Close()
				return nil, perr
			}
			if ev.Kind == mux.EventFrame && ev.Header.Type == mux.TypeSettings {
				s.SetDeadline(time.Time{})
				return s, nil
			}
			if ev.Kind == mux.EventNone {
				break
			}
		}
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("no SETTINGS from the gateway: %w", err)
		}
	}
}

// startLine runs argv and waits (up to timeout) for a stdout line starting
// with prefix; it returns the process and the rest of that line.
func (s *procSet) startLine(name string, argv []string, prefix string, timeout time.Duration) (*Process, string, error) {
	pr, pw := io.Pipe()
	p, err := s.start(name, argv, pw)
	if err != nil {
		return nil, "", err
	}
	linec := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), prefix); ok {
				select {
				case linec <- a:
				default:
				}
			}
		}
		io.Copy(io.Discard, pr)
	}()
	go func() { <-p.done; pw.Close() }()
	select {
	case a := <-linec:
		return p, a, nil
	case <-p.done:
		return nil, "", fmt.Errorf("bench: %s exited: %v: %s", name, p.err, p.tail)
	case <-time.After(timeout):
		p.Stop()
		return nil, "", fmt.Errorf("bench: %s: no %q line in %v", name, strings.TrimSpace(prefix), timeout)
	}
}
