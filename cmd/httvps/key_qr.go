package main

import (
	"strings"

	qrcode "github.com/skip2/go-qrcode"
)

// qrQuiet is the light border around the code, in modules (the standard
// asks for 4; scanners read 2 well and it saves terminal width).
const qrQuiet = 2

// renderQR draws text as a QR code with half-block characters, two module
// rows per line. Light modules are drawn as blocks, so the code reads
// right on the usual dark terminal background.
func renderQR(text string) (string, error) {
	q, err := qrcode.New(text, qrcode.Medium)
	if err != nil {
		return "", err
	}
	q.DisableBorder = true
	return drawModules(q.Bitmap()), nil
}

// drawModules renders a bitmap (true = dark) with the quiet zone.
func drawModules(bm [][]bool) string {
	n := len(bm)
	size := n + 2*qrQuiet
	dark := func(y, x int) bool {
		y, x = y-qrQuiet, x-qrQuiet
		return y >= 0 && x >= 0 && y < n && x < n && bm[y][x]
	}
	var b strings.Builder
	for y := 0; y < size; y += 2 {
		for x := 0; x < size; x++ {
			top, bottom := !dark(y, x), y+1 < size && !dark(y+1, x) // light?
			switch {
			case top && bottom:
				b.WriteString("█")
			case top:
				b.WriteString("▀")
			case bottom:
				b.WriteString("▄")
			default:
				b.WriteByte(' ')
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}
