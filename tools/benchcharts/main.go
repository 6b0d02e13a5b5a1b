// Command benchcharts draws the charts of an httvps-bench report (its JSON)
// with gonum.org/v1/plot, as SVG and PNG, into a directory. httvps-bench
// builds and runs it after writing its report; it is a module of its own so
// the main module does not depend on the plotting library.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// report is the part of httvps-bench's JSON report that is drawn.
type report struct {
	Started string `json:"started"`
	Machine struct {
		NProc int    `json:"nproc"`
		CPU   string `json:"cpu"`
	} `json:"machine"`
	Settings struct {
		Mode string `json:"mode"`
	} `json:"settings"`
	Throughput    []cell       `json:"throughput"`
	TLSThroughput []cell       `json:"tls_throughput"`
	Idle          []idle       `json:"idle"`
	TLSIdle       []idle       `json:"tls_idle"`
	TunnelIdle    []tunnelIdle `json:"tunnel_idle"`
	Latency       []latency    `json:"latency"`
	FirstByte     []firstByte  `json:"first_byte"`
	Connect       []connect    `json:"tls_connect"`
	Flood         []flood      `json:"handshake_flood"`
	UDP           []udp        `json:"udp"`
}

type flood struct {
	Peer       string  `json:"peer"`
	QuietMBps  float64 `json:"quiet_mb_per_s"`
	FloodMBps  float64 `json:"flood_mb_per_s"`
	QuietP99Ms float64 `json:"quiet_p99_ms"`
	FloodP99Ms float64 `json:"flood_p99_ms"`
}

type udp struct {
	Peer          string  `json:"peer"`
	Associations  int     `json:"associations"`
	PPS           float64 `json:"round_trips_per_s"`
	CPUPerMillion float64 `json:"cpu_s_per_million"`
}

type cell struct {
	Peer      string  `json:"peer"`
	Direction string  `json:"direction"`
	Streams   int     `json:"streams"`
	MBps      float64 `json:"mb_per_s"`
	CPUPerGiB float64 `json:"cpu_s_per_gib"`
}

type idle struct {
	Peer          string  `json:"peer"`
	Sessions      int     `json:"sessions"`
	PerSessionKiB float64 `json:"per_session_kib"`
}

type tunnelIdle struct {
	Peer         string  `json:"peer"`
	Tunnels      int     `json:"tunnels"`
	PerTunnelKiB float64 `json:"per_tunnel_kib"`
}

type latency struct {
	Peer    string  `json:"peer"`
	Streams int     `json:"streams"`
	P50     float64 `json:"p50_ms"`
	P99     float64 `json:"p99_ms"`
	P999    float64 `json:"p999_ms"`
}

type firstByte struct {
	Peer string  `json:"peer"`
	P50  float64 `json:"p50_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p999_ms"`
}

type connect struct {
	Peer      string  `json:"peer"`
	CPUms     float64 `json:"cpu_ms_per_connection"`
	PerSecond float64 `json:"connections_per_s"`
	Hogs      int     `json:"cpu_hogs"`
}

// series is one colour of a grouped bar chart: a value per category (NaN:
// none).
type series struct {
	name   string
	values []float64
}

func main() {
	in := flag.String("in", "", "httvps-bench JSON report")
	out := flag.String("out", "", "directory for the charts (default: the report's)")
	flag.Parse()
	if *in == "" {
		fmt.Fprintln(os.Stderr, "usage: benchcharts -in report.json [-out DIR]")
		os.Exit(2)
	}
	if *out == "" {
		*out = filepath.Dir(*in)
	}
	b, err := os.ReadFile(*in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchcharts:", err)
		os.Exit(1)
	}
	var r report
	if err := json.Unmarshal(b, &r); err != nil {
		fmt.Fprintln(os.Stderr, "benchcharts:", err)
		os.Exit(1)
	}
	files, err := drawAll(&r, *out)
	for _, f := range files {
		fmt.Println(f)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchcharts:", err)
		os.Exit(1)
	}
}

// drawAll writes every chart the report has data for.
func drawAll(r *report, dir string) ([]string, error) {
	started := r.Started
	if t, err := time.Parse(time.RFC3339Nano, r.Started); err == nil {
		started = t.UTC().Format("2006-01-02 15:04 UTC")
	}
	sub := fmt.Sprintf("httvps-bench %s, %d CPUs (%s)", started, r.Machine.NProc, r.Machine.CPU)
	if r.Settings.Mode != "" {
		sub += ", " + r.Settings.Mode + " run"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var files []string
	var errs []error
	save := func(name, title, ylabel string, cats []string, ss []series) {
		if len(cats) == 0 {
			return
		}
		fs, err := barChart(dir, name, title+"\n"+sub, ylabel, cats, ss)
		files = append(files, fs...)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	for _, t := range []struct {
		name, title string
		cells       []cell
	}{{"throughput", "Throughput, plaintext peers", r.Throughput}, {"tls-throughput", "Throughput, TLS peers", r.TLSThroughput}} {
		cats, byCell := cellSeries(t.cells, func(c cell) float64 { return c.MBps })
		save(t.name, t.title+" (MB/s, higher is better)", "MB/s", cats, byCell)
		cats, byCell = cellSeries(t.cells, func(c cell) float64 { return c.CPUPerGiB })
		save(t.name+"-cpu", t.title+": relay CPU per GiB (lower is better)", "CPU s/GiB", cats, byCell)
	}
	if len(r.Idle)+len(r.TLSIdle)+len(r.TunnelIdle) > 0 {
		var cats []string
		var v []float64
		// The bar chart shows each peer at its largest N; idle-n all of them.
		all := append(slices.Clone(r.Idle), r.TLSIdle...)
		largest := map[string]idle{}
		var order []string
		for _, x := range all {
			if _, ok := largest[x.Peer]; !ok {
				order = append(order, x.Peer)
			}
			if x.Sessions >= largest[x.Peer].Sessions {
				largest[x.Peer] = x
			}
		}
		for _, p := range order {
			x := largest[p]
			cats = append(cats, fmt.Sprintf("%s (%d)", x.Peer, x.Sessions))
			v = append(v, x.PerSessionKiB)
		}
		if len(all) > len(order) {
			fs, err := idleLines(dir, "idle-n", "Relay memory per idle session against N (lower is better)\n"+sub, order, all, r.TunnelIdle)
			files = append(files, fs...)
			if err != nil {
				errs = append(errs, fmt.Errorf("idle-n: %w", err))
			}
		}
		for _, x := range r.TunnelIdle {
			cats = append(cats, fmt.Sprintf("%s tunnels (%d)", x.Peer, x.Tunnels))
			v = append(v, x.PerTunnelKiB)
		}
		save("idle", "Relay memory per idle session (RSS growth; lower is better)", "KiB per session", cats, []series{{"KiB/session", v}})
	}
	var counts []int
	for _, l := range r.Latency {
		if !slices.Contains(counts, l.Streams) {
			counts = append(counts, l.Streams)
		}
	}
	for _, n := range counts {
		var cats []string
		ss := []series{{name: "p50"}, {name: "p99"}, {name: "p99.9"}}
		for _, l := range r.Latency {
			if l.Streams != n {
				continue
			}
			cats = append(cats, l.Peer)
			ss[0].values = append(ss[0].values, l.P50)
			ss[1].values = append(ss[1].values, l.P99)
			ss[2].values = append(ss[2].values, l.P999)
		}
		save(fmt.Sprintf("latency-%d", n), fmt.Sprintf("Round trip of a small message, %d concurrently active streams (lower is better)", n), "ms", cats, ss)
	}
	if len(r.FirstByte) > 0 {
		var cats []string
		ss := []series{{name: "p50"}, {name: "p99"}, {name: "p99.9"}}
		for _, f := range r.FirstByte {
			cats = append(cats, f.Peer)
			ss[0].values = append(ss[0].values, f.P50)
			ss[1].values = append(ss[1].values, f.P99)
			ss[2].values = append(ss[2].values, f.P999)
		}
		save("first-byte", "Time to first byte of a new session (lower is better)", "ms", cats, ss)
	}
	if len(r.Connect) > 0 {
		var cats []string
		quiet, busy := series{name: "quiet"}, series{name: "busy (CPU hogs)"}
		idx := map[string]int{}
		for _, c := range r.Connect {
			i, ok := idx[c.Peer]
			if !ok {
				i = len(cats)
				idx[c.Peer] = i
				cats = append(cats, c.Peer)
				quiet.values = append(quiet.values, math.NaN())
				busy.values = append(busy.values, math.NaN())
			}
			if c.Hogs == 0 {
				quiet.values[i] = c.CPUms
			} else {
				busy.values[i] = c.CPUms
			}
		}
		save("tls-connect-cpu", "New TLS session: relay CPU per connection (lower is better)", "CPU ms/connection", cats, []series{quiet, busy})
	}
	if len(r.Flood) > 0 {
		var cats []string
		mq, mf := series{name: "without flood"}, series{name: "during the flood"}
		pq, pf := series{name: "without flood"}, series{name: "during the flood"}
		for _, f := range r.Flood {
			cats = append(cats, f.Peer)
			mq.values, mf.values = append(mq.values, f.QuietMBps), append(mf.values, f.FloodMBps)
			pq.values, pf.values = append(pq.values, f.QuietP99Ms), append(pf.values, f.FloodP99Ms)
		}
		save("flood-throughput", "Handshake flood: established sessions' download (MB/s, higher is better)", "MB/s", cats, []series{mq, mf})
		save("flood-p99", "Handshake flood: established sessions' p99 round trip (lower is better)", "ms", cats, []series{pq, pf})
	}
	if len(r.UDP) > 0 {
		var cats, keys []string
		for _, u := range r.UDP {
			if !slices.Contains(cats, u.Peer) {
				cats = append(cats, u.Peer)
			}
			if k := fmt.Sprintf("%d associations", u.Associations); !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
		for _, m := range []struct {
			name, title, ylabel string
			f                   func(udp) float64
		}{{"udp", "Shadowsocks UDP round trips per second (higher is better)", "round trips/s", func(u udp) float64 { return u.PPS }},
			{"udp-cpu", "Shadowsocks UDP: relay CPU per million round trips (lower is better)", "CPU s/million", func(u udp) float64 { return u.CPUPerMillion }}} {
			ss := make([]series, len(keys))
			for i, k := range keys {
				ss[i] = series{name: k, values: make([]float64, len(cats))}
				for j := range cats {
					ss[i].values[j] = math.NaN()
				}
			}
			for _, u := range r.UDP {
				ss[slices.Index(keys, fmt.Sprintf("%d associations", u.Associations))].values[slices.Index(cats, u.Peer)] = m.f(u)
			}
			save(m.name, m.title, m.ylabel, cats, ss)
		}
	}
	return files, errors.Join(errs...)
}

// idleLines draws KiB per session against sessions, a line per peer (and
// per tunnel peer, KiB per idle tunnel), on log-scaled N.
func idleLines(dir, name, title string, order []string, all []idle, tunnels []tunnelIdle) ([]string, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "idle sessions N (log scale)"
	p.Y.Label.Text = "KiB per session"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Y.Min = 0
	p.Legend.Top = true
	p.Legend.Left = true
	type line struct {
		name string
		pts  plotter.XYs
	}
	var lines []line
	for _, peer := range order {
		l := line{name: peer}
		for _, x := range all {
			if x.Peer == peer {
				l.pts = append(l.pts, plotter.XY{X: float64(x.Sessions), Y: x.PerSessionKiB})
			}
		}
		lines = append(lines, l)
	}
	byTunnel := map[string]int{}
	for _, x := range tunnels {
		i, ok := byTunnel[x.Peer]
		if !ok {
			i = len(lines)
			byTunnel[x.Peer] = i
			lines = append(lines, line{name: x.Peer + " (idle tunnels)"})
		}
		lines[i].pts = append(lines[i].pts, plotter.XY{X: float64(x.Tunnels), Y: x.PerTunnelKiB})
	}
	top := 0.0
	for i, l := range lines {
		slices.SortFunc(l.pts, func(a, b plotter.XY) int { return int(a.X - b.X) })
		for _, pt := range l.pts {
			top = max(top, pt.Y)
		}
		lp, pts, err := plotter.NewLinePoints(l.pts)
		if err != nil {
			return nil, err
		}
		c := palette[i%len(palette)]
		lp.Color, pts.Color = c, c
		pts.Shape = markers[(i/len(palette))%len(markers)]
		if i >= len(palette) {
			lp.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
		}
		p.Add(lp, pts)
		p.Legend.Add(l.name, lp, pts)
	}
	p.Y.Max = top * 1.6 // room for the legend
	p.Add(plotter.NewGrid())
	var files []string
	for _, ext := range []string{".svg", ".png"} {
		f := filepath.Join(dir, name+ext)
		if err := p.Save(10*vg.Inch, 6*vg.Inch, f); err != nil {
			return files, err
		}
		files = append(files, f)
	}
	return files, nil
}

// markers tell lines of the same colour apart.
var markers = []draw.GlyphDrawer{draw.CircleGlyph{}, draw.SquareGlyph{}, draw.TriangleGlyph{}}

// cellSeries turns throughput cells into categories (peers, in order) and a
// series per (direction, streams).
func cellSeries(cells []cell, f func(cell) float64) ([]string, []series) {
	var cats, keys []string
	for _, c := range cells {
		if !slices.Contains(cats, c.Peer) {
			cats = append(cats, c.Peer)
		}
		k := fmt.Sprintf("%s x%d", c.Direction, c.Streams)
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	ss := make([]series, len(keys))
	for i, k := range keys {
		ss[i] = series{name: k, values: make([]float64, len(cats))}
		for j := range cats {
			ss[i].values[j] = math.NaN()
		}
	}
	for _, c := range cells {
		i := slices.Index(keys, fmt.Sprintf("%s x%d", c.Direction, c.Streams))
		ss[i].values[slices.Index(cats, c.Peer)] = f(c)
	}
	return cats, ss
}

// palette is a colour-blind-safe set (Okabe–Ito).
var palette = []color.RGBA{
	{0x00, 0x72, 0xB2, 0xff}, {0xE6, 0x9F, 0x00, 0xff}, {0x00, 0x9E, 0x73, 0xff}, {0xD5, 0x5E, 0x00, 0xff},
	{0x56, 0xB4, 0xE9, 0xff}, {0xCC, 0x79, 0xA7, 0xff}, {0xF0, 0xE4, 0x42, 0xff}, {0x00, 0x00, 0x00, 0xff},
}

// barChart draws grouped bars (a group per category, a bar per series) and
// saves DIR/NAME.svg and DIR/NAME.png.
func barChart(dir, name, title, ylabel string, cats []string, ss []series) ([]string, error) {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = ylabel
	p.Y.Min = 0
	p.Legend.Top = true
	p.X.Tick.Label.Rotation = math.Pi / 6
	p.X.Tick.Label.XAlign = draw.XRight
	p.X.Tick.Label.YAlign = draw.YCenter
	// Headroom above the tallest bar for the legend.
	top := 0.0
	for _, s := range ss {
		for _, v := range s.values {
			if !math.IsNaN(v) && !math.IsInf(v, 0) {
				top = max(top, v)
			}
		}
	}
	if top > 0 {
		p.Y.Max = top * (1.1 + 0.1*float64(len(ss)))
	}
	groupW := vg.Points(float64(min(60, 600/max(len(cats), 1))))
	barW := groupW / vg.Length(len(ss))
	for i, s := range ss {
		vals := make(plotter.Values, len(s.values))
		for j, v := range s.values {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				v = 0 // no figure: no bar
			}
			vals[j] = v
		}
		b, err := plotter.NewBarChart(vals, barW)
		if err != nil {
			return nil, err
		}
		b.LineStyle.Width = 0
		b.Color = palette[i%len(palette)]
		b.Offset = barW*vg.Length(i) - groupW/2 + barW/2
		p.Add(b)
		if len(ss) > 1 {
			p.Legend.Add(s.name, b)
		}
	}
	p.Add(plotter.NewGrid())
	p.NominalX(cats...)
	var files []string
	for _, ext := range []string{".svg", ".png"} {
		f := filepath.Join(dir, name+ext)
		if err := p.Save(vg.Length(max(8, 0.9*float64(len(cats))))*vg.Inch, 5*vg.Inch, f); err != nil {
			return files, err
		}
		files = append(files, f)
	}
	return files, nil
}
