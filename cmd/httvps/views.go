package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// The JSON shapes of the control API's answers (docs/openapi.yaml), as far
// as the CLI shows them.

type usageJSON struct {
	Up    int64 `json:"up"`
	Down  int64 `json:"down"`
	Total int64 `json:"total"`
}

type accessKeysJSON struct {
	SS     string `json:"ss,omitempty"`
	SSConf string `json:"ssconf"`
	HTTVPS string `json:"httvps"`
}

type tokenJSON struct {
	ID          string     `json:"id"`
	Label       string     `json:"label"`
	CreatedAt   time.Time  `json:"created_at"`
	ExpiresAt   *time.Time `json:"expires_at"`
	QuotaBytes  int64      `json:"quota_bytes"`
	MaxSessions int        `json:"max_sessions"`
	Cipher      string     `json:"cipher"`
	Status      string     `json:"status"`
	RevokedAt   *time.Time `json:"revoked_at,omitempty"`
	Assignments []struct {
		MemberID string `json:"member_id"`
		Upstream string `json:"upstream"`
	} `json:"assignments"`
	Usage    *usageJSON `json:"usage,omitempty"`
	Sessions *int       `json:"sessions,omitempty"`
	// Only in the answer to POST /v1/tokens.
	Token      string          `json:"token,omitempty"`
	AccessKeys *accessKeysJSON `json:"access_keys,omitempty"`
}

type tokenListJSON struct {
	Tokens     []tokenJSON `json:"tokens"`
	NextCursor string      `json:"next_cursor"`
}

type memberJSON struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Backend string `json:"backend"`
	Host    string `json:"host"`
	Outline *struct {
		APIURL     string `json:"api_url"`
		CertSHA256 string `json:"cert_sha256"`
	} `json:"outline,omitempty"`
	SSManager *struct {
		ManagerAddr string `json:"manager_addr"`
		PortMin     int    `json:"port_min"`
		PortMax     int    `json:"port_max"`
	} `json:"ss_manager,omitempty"`
	Static *struct {
		Port   int    `json:"port"`
		Cipher string `json:"cipher"`
	} `json:"static,omitempty"`
	Draining bool `json:"draining"`
	Health   struct {
		Up        bool       `json:"up"`
		CheckedAt *time.Time `json:"checked_at"`
		LastError string     `json:"last_error,omitempty"`
		Keys      int        `json:"keys"`
		Load      float64    `json:"load"`
	} `json:"health"`
	CreatedAt time.Time `json:"created_at"`
}

type memberListJSON struct {
	Members []memberJSON `json:"members"`
}

type gatewayJSON struct {
	ID            string    `json:"id"`
	PublicURL     string    `json:"public_url"`
	Sessions      int       `json:"sessions"`
	Started       time.Time `json:"started"`
	LastHeartbeat time.Time `json:"last_heartbeat"`
	ExpiresAt     time.Time `json:"expires_at"`
	Live          bool      `json:"live"`
}

type gatewayListJSON struct {
	Gateways []gatewayJSON `json:"gateways"`
}

type clientConfigJSON struct {
	TokenID    string         `json:"token_id"`
	Gateways   []string       `json:"gateways"`
	Cipher     string         `json:"cipher"`
	Secret     string         `json:"secret"`
	AccessKeys accessKeysJSON `json:"access_keys"`
}

// endpoint is where a member's Shadowsocks traffic goes, for tables.
func (m memberJSON) endpoint() string {
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

func (m memberJSON) state() string {
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
		// A tab or newline in a label would break the columns.
		cols[i] = strings.Map(func(r rune) rune {
			if r == '\t' || r == '\n' || r == '\r' {
				return ' '
			}
			return r
		}, c)
		if cols[i] == "" {
			cols[i] = "-"
		}
	}
	fmt.Fprintln(t.tw, strings.Join(cols, "\t"))
}

func (t *table) flush() { t.tw.Flush() }

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
