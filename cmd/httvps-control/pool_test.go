package main

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/httvps/httvps/control/pool/outlinefake"
	"github.com/httvps/httvps/internal/testpeer"
)

// scrape returns the admin listener's /metrics as series → value.
func scrape(t *testing.T, adminAddr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

func waitMetric(t *testing.T, adminAddr, series string, ok func(float64) bool) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		m := scrape(t, adminAddr)
		if v, found := m[series]; found && ok(v) {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v (present %v) after 15s", series, m[series], func() bool { _, f := m[series]; return f }())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func atLeast(n float64) func(float64) bool { return func(v float64) bool { return v >= n } }
func equal(n float64) func(float64) bool   { return func(v float64) bool { return v == n } }

// The pool's series on a real httvps-control over a real Redis, with an
// Outline member (the fake): present with zeros at start, then moved by
// health rounds, a key repair, failed key calls, a pending deletion and,
// after a restart with -stray-grace, a stray key swept.
func TestRunPoolMetrics(t *testing.T) {
	addr := testpeer.StartRedis(t, testpeer.RedisSpec{}).Addr()
	fake := outlinefake.Start(t, outlinefake.Options{SSServer: true})
	args := []string{
		"-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0", "-admin-key", testKey,
		"-redis", "redis://" + addr + "/0", "-health-every", "100ms", "-replicas", "1",
		"-stray-grace", "300ms", "-log-level", "error",
	}
	p := start(t, args)
	c := &client{t: t, base: "http://" + p.apiAddr, hc: &http.Client{Timeout: 10 * time.Second}}

	m := scrape(t, p.adminAddr)
	for _, s := range []string{
		`httvps_control_pool_members{state="up"}`, `httvps_control_pool_members{state="down"}`,
		`httvps_control_pool_members{state="draining"}`, `httvps_control_pool_health_checks_total{result="up"}`,
		`httvps_control_pool_health_checks_total{result="down"}`, `httvps_control_pool_key_repairs_total`,
		`httvps_control_pool_stray_keys_deleted_total`, `httvps_control_pool_stray_keys`,
		`httvps_control_pool_pending_deletions`, `httvps_control_pool_keys`,
		`httvps_control_pool_key_errors_total{backend="outline-api",op="create"}`,
		`httvps_control_pool_key_errors_total{backend="ss-manager",op="delete"}`,
		`httvps_control_pool_key_errors_total{backend="static",op="create"}`,
	} {
		if v, ok := m[s]; !ok || v != 0 {
			t.Errorf("at start %s = %v (present %v), want 0", s, v, ok)
		}
	}

	code, body := c.do("POST", "/v1/pool/members", testKey, `{"name":"outline","backend":"outline-api","host":"127.0.0.1",`+
		`"outline":{"api_url":"`+fake.APIURL+`","cert_sha256":"`+fake.CertSHA256+`"}}`)
	if code != 201 {
		t.Fatalf("add member: %d %s", code, body)
	}
	var mem struct{ ID string }
	json.Unmarshal(body, &mem)
	issue := func() (int, string) {
		code, body := c.do("POST", "/v1/tokens", testKey, `{}`)
		var tok struct{ ID string }
		json.Unmarshal(body, &tok)
		return code, tok.ID
	}
	var toks []string
	for range 2 {
		code, id := issue()
		if code != 201 {
			t.Fatalf("issue token: %d", code)
		}
		toks = append(toks, id)
	}
	waitMetric(t, p.adminAddr, `httvps_control_pool_member_keys{member="`+mem.ID+`"}`, equal(2))
	m = waitMetric(t, p.adminAddr, `httvps_control_pool_health_checks_total{result="up"}`, atLeast(2))
	if m[`httvps_control_pool_members{state="up"}`] != 1 || m[`httvps_control_pool_keys`] != 2 {
		t.Errorf("members up %v, keys %v; want 1, 2", m[`httvps_control_pool_members{state="up"}`], m[`httvps_control_pool_keys`])
	}

	// A key lost behind the pool's back is re-created.
	if !fake.DropKey(toks[0]) {
		t.Fatal("no key to drop")
	}
	waitMetric(t, p.adminAddr, `httvps_control_pool_key_repairs_total`, equal(1))

	// The server fails: a placement fails, a revoked token's key cannot
	// be deleted, and the member goes down. A health check (every 100 ms)
	// may mark the member down before the placement reaches it, which
	// then is not tried at all: on a busy machine that race is retried,
	// with the server back up in between, until a placement was tried.
	for attempt := 1; ; attempt++ {
		fake.SetUnavailable(true)
		if code, _ := issue(); code != 503 {
			t.Errorf("token on a failing member: %d, want 503", code)
		}
		if scrape(t, p.adminAddr)[`httvps_control_pool_key_errors_total{backend="outline-api",op="create"}`] == 1 {
			break
		}
		if attempt == 10 {
			t.Fatal("10 placements on the failing member, none tried: it was always marked down first")
		}
		fake.SetUnavailable(false)
		waitMetric(t, p.adminAddr, `httvps_control_pool_members{state="up"}`, equal(1))
	}
	if code, body := c.do("DELETE", "/v1/tokens/"+toks[1], testKey, ""); code/100 != 2 {
		t.Fatalf("revoke: %d %s", code, body)
	}
	m = waitMetric(t, p.adminAddr, `httvps_control_pool_members{state="down"}`, equal(1))
	for s, want := range map[string]float64{
		`httvps_control_pool_key_errors_total{backend="outline-api",op="create"}`: 1,
		`httvps_control_pool_key_errors_total{backend="outline-api",op="delete"}`: 1,
		`httvps_control_pool_pending_deletions`:                                   1,
		`httvps_control_pool_members{state="up"}`:                                 0,
	} {
		if m[s] != want {
			t.Errorf("with the member failing %s = %v, want %v", s, m[s], want)
		}
	}
	waitMetric(t, p.adminAddr, `httvps_control_pool_health_checks_total{result="down"}`, atLeast(1))

	// Restarted (the pending deletion is lost) and the server back: the
	// revoked token's key is swept as a stray after -stray-grace.
	if code := p.terminate(); code != 0 {
		t.Fatalf("exit %d after SIGTERM", code)
	}
	fake.SetUnavailable(false)
	p = start(t, args)
	waitMetric(t, p.adminAddr, `httvps_control_pool_stray_keys_deleted_total`, equal(1))
	m = waitMetric(t, p.adminAddr, `httvps_control_pool_member_keys{member="`+mem.ID+`"}`, equal(1))
	if m[`httvps_control_pool_stray_keys`] != 0 || m[`httvps_control_pool_pending_deletions`] != 0 {
		t.Errorf("after the sweep: stray %v, pending %v", m[`httvps_control_pool_stray_keys`], m[`httvps_control_pool_pending_deletions`])
	}
	if keys := fake.Keys(); len(keys) != 1 || keys[0].ID != toks[0] {
		t.Errorf("the server holds %+v, want only token %s's key", keys, toks[0])
	}
	if code := p.terminate(); code != 0 {
		t.Fatalf("exit %d after SIGTERM", code)
	}
}
