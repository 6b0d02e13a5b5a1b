package console

import (
	"fmt"
	"html/template"
	"strings"

	"github.com/httvps/httvps/control/api/wire"
)

// Chart geometry (SVG user units; the SVG scales to its box).
const (
	chartW, chartH = 720, 240
	chartLeft      = 70 // room for the y labels
	chartBottom    = 28 // room for the x labels
	chartTop       = 12
)

// usageChart draws h as stacked bars (up, then down) in SVG, on the
// server: the page needs no script. Every bar carries a <title> with its
// exact numbers, the SVG a <desc> with the total, for screen readers.
func usageChart(h wire.UsageHistory, title string) template.HTML {
	esc := template.HTMLEscapeString
	var b strings.Builder
	var peak int64
	for _, k := range h.Buckets {
		peak = max(peak, k.Total)
	}
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-labelledby="chart-title chart-desc" data-total="%d" xmlns="http://www.w3.org/2000/svg">`, chartW, chartH, h.Total.Total)
	fmt.Fprintf(&b, `<title id="chart-title">%s</title><desc id="chart-desc">%s in total (%d bytes: %d up, %d down) from %s to %s.</desc>`,
		esc(title), esc(humanBytes(h.Total.Total)), h.Total.Total, h.Total.Up, h.Total.Down,
		h.From.UTC().Format("2006-01-02 15:04"), h.To.UTC().Format("2006-01-02 15:04 UTC"))
	plotW, plotH := float64(chartW-chartLeft-4), float64(chartH-chartTop-chartBottom)
	baseY := float64(chartTop) + plotH
	// Axes and the peak's gridline.
	fmt.Fprintf(&b, `<line class="axis" x1="%d" y1="%.1f" x2="%d" y2="%.1f"/>`, chartLeft, baseY, chartW-4, baseY)
	fmt.Fprintf(&b, `<line class="grid" x1="%d" y1="%d" x2="%d" y2="%d"/>`, chartLeft, chartTop, chartW-4, chartTop)
	fmt.Fprintf(&b, `<text class="label" x="%d" y="%d" text-anchor="end">%s</text>`, chartLeft-6, chartTop+4, esc(humanBytes(peak)))
	fmt.Fprintf(&b, `<text class="label" x="%d" y="%.1f" text-anchor="end">0</text>`, chartLeft-6, baseY+4)
	n := len(h.Buckets)
	if n > 0 {
		slot := plotW / float64(n)
		bw := max(slot*0.8, 1)
		layout := "01-02 15:00"
		if h.Step == "day" {
			layout = "2006-01-02"
		}
		for i, k := range h.Buckets {
			x := float64(chartLeft) + float64(i)*slot + (slot-bw)/2
			upH, downH := 0.0, 0.0
			if peak > 0 {
				upH = plotH * float64(k.Up) / float64(peak)
				downH = plotH * float64(k.Down) / float64(peak)
			}
			fmt.Fprintf(&b, `<g><title>%s: %s (%d bytes up, %d down)</title>`, k.Start.UTC().Format(layout), esc(humanBytes(k.Total)), k.Up, k.Down)
			fmt.Fprintf(&b, `<rect class="down" x="%.1f" y="%.1f" width="%.1f" height="%.1f"/>`, x, baseY-downH, bw, downH)
			fmt.Fprintf(&b, `<rect class="up" x="%.1f" y="%.1f" width="%.1f" height="%.1f"/></g>`, x, baseY-downH-upH, bw, upH)
		}
		fmt.Fprintf(&b, `<text class="label" x="%d" y="%d">%s</text>`, chartLeft, chartH-8, esc(h.Buckets[0].Start.UTC().Format(layout)))
		fmt.Fprintf(&b, `<text class="label" x="%d" y="%d" text-anchor="end">%s</text>`, chartW-4, chartH-8, esc(h.Buckets[n-1].Start.UTC().Format(layout)))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}
