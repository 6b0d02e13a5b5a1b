package cliconf

import (
	"flag"
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "1048576": 1 << 20, "500MiB": 500 << 20, "10GiB": 10 << 30, "10G": 10 << 30, "10g": 10 << 30,
		"10GB": 10e9, "10 GB": 10e9, "2TB": 2e12, "64KB": 64e3, "64K": 64 << 10, "3MB": 3e6, "7B": 7,
	} {
		if got, err := ParseSize(in, 1<<50, "x"); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "GB", "-1", "1.5G", "10XB", "10 G B"} {
		if _, err := ParseSize(in, 1<<50, "x"); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
	if _, err := ParseSize("2GB", 1e9, "x"); err == nil {
		t.Error("2GB accepted over a 1e9 maximum")
	}
}

// A zero default is never shown: its meaning is in the help ("0 = 5s").
func TestUsageHidesZeroDefaults(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.Duration("wait", 0, "how long (0 = 5s)")
	fs.Int("n", 0, "how many (0 = 3)")
	fs.Bool("on", false, "turn it on")
	fs.Duration("every", time.Minute, "period")
	var out strings.Builder
	fs.SetOutput(&out)
	Spec{}.SetUsage(fs, "")
	fs.Usage()
	u := out.String()
	if strings.Contains(u, `(default "0s")`) || strings.Contains(u, "(default 0)") || strings.Contains(u, "(default false)") ||
		!strings.Contains(u, `(default "1m0s")`) {
		t.Fatalf("usage:\n%s", u)
	}
}
