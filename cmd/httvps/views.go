package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/httvps/httvps/control/api/wire"
)

// The JSON shapes of the control API's answers (docs/openapi.yaml), as far
// as the CLI shows them.

// The admin API's bodies, as package wire defines them for the server too.
type (
	memberJSON       = wire.MemberView
	memberListJSON   = wire.MemberList
	gatewayListJSON  = wire.GatewayList
	clientConfigJSON = wire.ClientConfig
	tokenListJSON    = wire.TokenList
	usageHistoryJSON = wire.UsageHistory
)

// tokenJSON is a token as the admin API shows it, with the fields only the
// answer to POST /v1/tokens carries.
type tokenJSON struct {
	wire.TokenView
	Token      string           `json:"token,omitempty"`
	AccessKeys *wire.AccessKeys `json:"access_keys,omitempty"`
}

// memberEndpoint is where a member's Shadowsocks traffic goes, for tables.
func memberEndpoint(m memberJSON) string {
	switch {
	case m.Static != nil:
		return fmt.Sprintf("%s:%d (%s)", m.Host, m.Static.Port, m.Static.Cipher)
	case m.SSManager != nil:
		return fmt.Sprintf("%s ports %d-%d", m.SSManager.ManagerAddr, m.SSManager.PortMin, m.SSManager.PortMax)
	case m.Outline != nil:
		return m.Outline.APIURL
	}
	return m.Host
}

// memberState is a member's state, for tables.
func memberState(m memberJSON) string {
	switch {
	case m.Draining:
		return "draining"
	case m.Health.CheckedAt == nil:
		return "unchecked"
	case m.Health.Up:
		return "up"
	}
	return "down"
}

// table writes aligned columns: a header row, then rows.
type table struct {
	tw *tabwriter.Writer
}

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	t.row(header...)
	return t
}

func (t *table) row(cols ...string) {
	for i, c := range cols {
		cols[i] = printable(c)
		if cols[i] == "" {
			cols[i] = "-"
		}
	}
	fmt.Fprintln(t.tw, strings.Join(cols, "\t"))
}

func (t *table) flush() { t.tw.Flush() }

// printable escapes what must not reach a terminal raw from API data:
// control characters (C0, DEL, C1) become \n, \t, \r, \xHH or \u00HH,
// bytes that are not UTF-8 \xHH. A newline would forge table rows and an
// escape sequence would drive the operator's terminal; the API refuses
// them in labels and names now, but a store may hold older ones, and a
// control plane's answers are not trusted that far. A label that holds a
// literal backslash sequence reads the same: --json is the exact form.
func printable(s string) string {
	if !needsEscape(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x80 && unicode.IsControl(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case unicode.IsControl(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

func needsEscape(s string) bool {
	for _, r := range s {
		// Invalid UTF-8 decodes as RuneError; a real U+FFFD is left alone
		// by printable.
		if unicode.IsControl(r) || r == utf8.RuneError {
			return true
		}
	}
	return false
}

// humanBytes is a size with a binary unit: 0 B, 1023 B, 1.5 KiB, 10 GiB.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit && n > -unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	f := float64(n)
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB", "PiB"} {
		f /= unit
		if f < unit && f > -unit || u == "PiB" {
			if f >= 100 || f <= -100 || f == float64(int64(f)) {
				return fmt.Sprintf("%.0f %s", f, u)
			}
			return fmt.Sprintf("%.1f %s", f, u)
		}
	}
	return ""
}

// humanTime is a UTC time to the second, or "-".
func humanTime(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05")
}

// ago is a short duration before now ("12s ago").
func ago(t time.Time, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

func limitOrUnlimited[T int | int64](v T, f func(T) string) string {
	if v <= 0 {
		return "unlimited"
	}
	return f(v)
}

// keyLegend says which client each printed key is for. The ss:// key
// carries plugin=v2ray-plugin, which the Outline apps ignore (they then
// send plain Shadowsocks to the TLS port and carry nothing), so the
// ssconf:// key is named as the one for them.
func keyLegend(w io.Writer, hasSS bool) {
	fmt.Fprintln(w, "Which key for which client:")
	fmt.Fprintln(w, "  ssconf  the Outline apps (paste it as the access key): the one for phones and desktops")
	if hasSS {
		fmt.Fprintln(w, "  ss      ss-local with v2ray-plugin only; the Outline apps ignore its plugin and carry nothing")
	}
	fmt.Fprintln(w, "  httvps  httvps connect (the native tunnel)")
}

// printDevices writes a token's live devices as a table: each gateway
// holding the device with its sessions there, or "grace Ns" once they
// ended.
func printDevices(w io.Writer, devs []wire.DeviceView, now time.Time) {
	tb := newTable(w, "DEVICE", "KIND", "SESSIONS", "FIRST-SEEN", "LAST-SEEN", "GATEWAYS")
	for _, d := range devs {
		var gws []string
		for _, g := range d.Gateways {
			hold := strconv.Itoa(g.Sessions)
			if g.GraceUntil != nil {
				hold = "grace " + g.GraceUntil.Sub(now).Round(time.Second).String()
			}
			gws = append(gws, printable(g.GatewayID)+" ("+hold+")")
		}
		tb.row(printable(d.Device), d.Kind, strconv.Itoa(d.Sessions), humanTime(&d.FirstSeen), ago(d.LastSeen, now), strings.Join(gws, ", "))
	}
	tb.flush()
}
