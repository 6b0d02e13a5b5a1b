package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// Report is everything one Run measured.
type Report struct {
	Started    time.Time        `json:"started"`
	Seconds    float64          `json:"seconds"`
	Machine    Machine          `json:"machine"`
	Settings   Settings         `json:"settings"`
	Peers      []PeerInfo       `json:"peers"`
	Throughput []ThroughputCell `json:"throughput,omitempty"`
	Ratios     []Ratio          `json:"ratios,omitempty"`
	Idle       []IdleResult     `json:"idle,omitempty"`
	Slow       []SlowResult     `json:"slowreader,omitempty"`
	Notes      []string         `json:"notes,omitempty"`
	Errors     []string         `json:"errors,omitempty"`
}

// Machine describes where the figures were taken.
type Machine struct {
	NProc     int    `json:"nproc"`
	CPU       string `json:"cpu"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"go_version"`
	MemTotal  string `json:"mem_total"`
	FDLimit   uint64 `json:"fd_limit"`
	ClockTick int64  `json:"clock_ticks_per_s"`
}

// Settings are the sizes the run used.
type Settings struct {
	Scenarios     []string `json:"scenarios"`
	BytesPerCell  int64    `json:"bytes_per_cell"`
	Streams       []int    `json:"streams"`
	MessageBytes  int      `json:"message_bytes"`
	IdleSessions  int      `json:"idle_sessions"`
	IdleSettleSec float64  `json:"idle_settle_seconds"`
	SlowSeconds   float64  `json:"slow_seconds"`
	SlowRate      int64    `json:"slow_rate_bytes_per_s"`
	SlowBytes     int64    `json:"slow_offered_bytes"`
}

// Ratio compares httvps with a reference peer in one throughput cell.
type Ratio struct {
	Direction string  `json:"direction"`
	Streams   int     `json:"streams"`
	Versus    string  `json:"versus"`
	CPU       float64 `json:"cpu_ratio"`        // httvps CPU s/GiB ÷ versus
	MBps      float64 `json:"throughput_ratio"` // httvps MB/s ÷ versus
}

func newReport(cfg Config) *Report {
	var rl syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	m := Machine{
		NProc: runtime.NumCPU(), GoVersion: runtime.Version(), FDLimit: rl.Max,
		Kernel: readTrim("/proc/sys/kernel/osrelease"), ClockTick: clockTicks(),
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if kib, err := parseStatusKiB(b, "MemTotal"); err == nil {
			m.MemTotal = fmt.Sprintf("%.1f GiB", float64(kib)/(1<<20))
		}
	}
	return &Report{
		Started: time.Now(), Machine: m,
		Settings: Settings{
			Scenarios: cfg.Scenarios, BytesPerCell: cfg.Bytes, Streams: cfg.Streams,
			MessageBytes: cfg.Message, IdleSessions: cfg.Sessions, IdleSettleSec: cfg.Settle.Seconds(),
			SlowSeconds: cfg.SlowDuration.Seconds(), SlowRate: cfg.SlowRate, SlowBytes: cfg.SlowBytes,
		},
	}
}

func readTrim(p string) string {
	b, _ := os.ReadFile(p)
	return strings.TrimSpace(string(b))
}

func (r *Report) finish() {
	r.Seconds = time.Since(r.Started).Seconds()
	r.Ratios = nil
	for _, c := range r.Throughput {
		if c.Peer != PeerHTTVPS {
			continue
		}
		for _, o := range r.Throughput {
			if o.Peer == PeerHTTVPS || o.Direction != c.Direction || o.Streams != c.Streams {
				continue
			}
			r.Ratios = append(r.Ratios, Ratio{Direction: c.Direction, Streams: c.Streams, Versus: o.Peer,
				CPU: c.CPUPerGiB / o.CPUPerGiB, MBps: c.MBps / o.MBps})
		}
	}
}

// WriteText writes the human tables.
func (r *Report) WriteText(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	if len(r.Throughput) > 0 {
		fmt.Fprintf(w, "\nthroughput (%s per cell, %d-byte client messages)\n", humanBytes(r.Settings.BytesPerCell), r.Settings.MessageBytes)
		fmt.Fprintln(tw, "peer\tdirection\tstreams\tMB/s\tCPU s/GiB\tseconds\t")
		for _, c := range r.Throughput {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.1f\t%.2f\t%.2f\t\n", c.Peer, c.Direction, c.Streams, c.MBps, c.CPUPerGiB, c.Seconds)
		}
		tw.Flush()
	}
	if len(r.Ratios) > 0 {
		fmt.Fprintln(w, "\nhttvps vs peers (ratio of CPU s/GiB; ratio of MB/s)")
		fmt.Fprintln(tw, "direction\tstreams\tversus\tCPU ratio\tMB/s ratio\t")
		for _, x := range r.Ratios {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%.2f\t%.2f\t\n", x.Direction, x.Streams, x.Versus, x.CPU, x.MBps)
		}
		tw.Flush()
	}
	if len(r.Idle) > 0 {
		fmt.Fprintf(w, "\nidle sessions (upstream connected, %.0fs settle)\n", r.Settings.IdleSettleSec)
		fmt.Fprintln(tw, "peer\tsessions\trelay fds\tbase RSS KiB\tRSS KiB\tKiB/session\tsetup s\t")
		for _, x := range r.Idle {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%.2f\t%.1f\t\n", x.Peer, x.Sessions, x.RelayFDs, x.BaseRSSKiB, x.RSSKiB, x.PerSessionKiB, x.SetupSeconds)
		}
		tw.Flush()
	}
	if len(r.Slow) > 0 {
		fmt.Fprintf(w, "\nslow reader (upstream offers %s, client reads %.1f MiB/s for %.0fs)\n",
			humanBytes(r.Settings.SlowBytes), float64(r.Settings.SlowRate)/(1<<20), r.Settings.SlowSeconds)
		fmt.Fprintln(tw, "peer\tread MiB\tbase RSS MiB\tpeak growth MiB\tend growth MiB\t")
		for _, x := range r.Slow {
			fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t%.1f\t\n", x.Peer, float64(x.BytesRead)/(1<<20), float64(x.BaseRSSKiB)/1024, x.PeakGrowthMiB, x.EndGrowthMiB)
		}
		tw.Flush()
	}
	for _, n := range r.Notes {
		fmt.Fprintln(w, "note:", n)
	}
	for _, e := range r.Errors {
		fmt.Fprintln(w, "ERROR:", e)
	}
}

// WriteMarkdown writes the report as Markdown.
func (r *Report) WriteMarkdown(w io.Writer) {
	fmt.Fprintf(w, "# httvps-bench report %s\n\n", r.Started.UTC().Format(time.RFC3339))
	m := r.Machine
	fmt.Fprintf(w, "Machine: %d CPUs (%s), %s RAM, kernel %s, fd limit %d; harness %s; run took %.0f s.\n\n",
		m.NProc, m.CPU, m.MemTotal, m.Kernel, m.FDLimit, m.GoVersion, r.Seconds)
	fmt.Fprintln(w, "| peer | version | command |\n| --- | --- | --- |")
	for _, p := range r.Peers {
		fmt.Fprintf(w, "| %s | %s | `%s` |\n", p.Name, p.Version, p.Command)
	}
	if len(r.Throughput) > 0 {
		fmt.Fprintf(w, "\n## Throughput\n\n%s per cell, client messages/writes of %d bytes; CPU is the relay process's utime+stime.\n\n",
			humanBytes(r.Settings.BytesPerCell), r.Settings.MessageBytes)
		fmt.Fprintln(w, "| peer | direction | streams | MB/s | CPU s/GiB | seconds |\n| --- | --- | ---: | ---: | ---: | ---: |")
		for _, c := range r.Throughput {
			fmt.Fprintf(w, "| %s | %s | %d | %.1f | %.2f | %.2f |\n", c.Peer, c.Direction, c.Streams, c.MBps, c.CPUPerGiB, c.Seconds)
		}
	}
	if len(r.Ratios) > 0 {
		fmt.Fprintln(w, "\n| direction | streams | httvps vs | CPU ratio | MB/s ratio |\n| --- | ---: | --- | ---: | ---: |")
		for _, x := range r.Ratios {
			fmt.Fprintf(w, "| %s | %d | %s | %.2f | %.2f |\n", x.Direction, x.Streams, x.Versus, x.CPU, x.MBps)
		}
	}
	if len(r.Idle) > 0 {
		fmt.Fprintf(w, "\n## Idle sessions\n\nEach session reaches the sink (one byte answered end to end), then %.0f s settle; KiB/session = (RSS − RSS before connecting) / sessions.\n\n", r.Settings.IdleSettleSec)
		fmt.Fprintln(w, "| peer | sessions | relay fds | base RSS KiB | RSS KiB | KiB/session | setup s |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
		for _, x := range r.Idle {
			fmt.Fprintf(w, "| %s | %d | %d | %d | %d | %.2f | %.1f |\n", x.Peer, x.Sessions, x.RelayFDs, x.BaseRSSKiB, x.RSSKiB, x.PerSessionKiB, x.SetupSeconds)
		}
	}
	if len(r.Slow) > 0 {
		fmt.Fprintf(w, "\n## Slow reader\n\nThe upstream offers %s as fast as it can; the client reads %.1f MiB/s for %.0f s; relay RSS sampled every 100 ms.\n\n",
			humanBytes(r.Settings.SlowBytes), float64(r.Settings.SlowRate)/(1<<20), r.Settings.SlowSeconds)
		fmt.Fprintln(w, "| peer | read MiB | base RSS MiB | peak growth MiB | end growth MiB |\n| --- | ---: | ---: | ---: | ---: |")
		for _, x := range r.Slow {
			fmt.Fprintf(w, "| %s | %.1f | %.1f | %.1f | %.1f |\n", x.Peer, float64(x.BytesRead)/(1<<20), float64(x.BaseRSSKiB)/1024, x.PeakGrowthMiB, x.EndGrowthMiB)
		}
	}
	if len(r.Notes) > 0 || len(r.Errors) > 0 {
		fmt.Fprintln(w, "\n## Notes and errors")
		for _, n := range r.Notes {
			fmt.Fprintf(w, "\n- note: %s", n)
		}
		for _, e := range r.Errors {
			fmt.Fprintf(w, "\n- **error**: %s", e)
		}
		fmt.Fprintln(w)
	}
}

// WriteFiles writes report-<time>.json/.md and latest.json/.md into dir.
func (r *Report) WriteFiles(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	var md strings.Builder
	r.WriteMarkdown(&md)
	stamp := r.Started.UTC().Format("20060102T150405Z")
	var files []string
	for _, f := range []struct {
		name string
		data []byte
	}{
		{"report-" + stamp + ".json", append(js, '\n')},
		{"report-" + stamp + ".md", []byte(md.String())},
		{"latest.json", append(js, '\n')},
		{"latest.md", []byte(md.String())},
	} {
		p := filepath.Join(dir, f.name)
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			return files, err
		}
		files = append(files, p)
	}
	return files, nil
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20:
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%d bytes", n)
	}
}
