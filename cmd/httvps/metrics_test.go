package main

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/httvps/httvps/internal/testpeer"
)

// scrape GETs a /metrics page and returns its series ("name{labels}") and
// values; a series written twice fails the test (Prometheus rejects the
// whole scrape then).
func scrape(t *testing.T, hc *http.Client, url, bearer string) map[string]float64 {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	series := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if i < 0 || err != nil {
			t.Fatalf("%s: bad line %q", url, line)
		}
		if _, dup := series[line[:i]]; dup {
			t.Errorf("%s: series %s written twice", url, line[:i])
		}
		series[line[:i]] = v
	}
	return series
}

// family reports whether some series is named name.
func family(series map[string]float64, name string) bool {
	for s := range series {
		if n, _, _ := strings.Cut(s, "{"); n == name {
			return true
		}
	}
	return false
}

// `httvps up -admin-listen` serves the control plane's, the gateway's and
// the store-backed authenticator's series on one page, each once, with
// every family the Grafana dashboard queries; the control API's /metrics
// (admin key) serves the same.
func TestUpMetrics(t *testing.T) {
	needPeers(t, "ss-server")
	const method, password = testpeer.DefaultMethod, "metrics-test"
	ss := testpeer.SSServer(t, password, method)
	origin := testpeer.StartOrigin(t)
	dir := filepath.Join(t.TempDir(), "data")
	gwAddr := "127.0.0.1:" + strconv.Itoa(testpeer.FreePort(t))
	ctlAddr := "127.0.0.1:" + strconv.Itoa(testpeer.FreePort(t))
	admAddr := "127.0.0.1:" + strconv.Itoa(testpeer.FreePort(t))
	startUp(t, "-data-dir", dir, "-listen", gwAddr, "-control-listen", ctlAddr, "-admin-listen", admAddr,
		"-member", "static:"+ss+":"+method+":"+password, "-drain-timeout", "2s", "-log-level", "warn")
	token := field(t, readSecretFile(t, filepath.Join(dir, "first-token.txt")), "token")
	adminKey := readSecretFile(t, filepath.Join(dir, "admin.key"))
	pool := certPool(t, filepath.Join(dir, "ca.pem"))
	gwURL := "wss://" + gwAddr

	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer hc.CloseIdleConnections()
	metricsURL := "http://" + admAddr + "/metrics"
	before := scrape(t, hc, metricsURL, "")

	// Every family the dashboard queries is on the page.
	dash, err := os.ReadFile(filepath.Join("..", "..", "deploy", "grafana", "httvps-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile(`httvps_[a-z_]+`).FindAllString(string(dash), -1)
	if len(names) < 10 {
		t.Fatalf("dashboard names only %q", names)
	}
	seen := map[string]bool{}
	for _, name := range names {
		if !seen[name] && !family(before, name) {
			t.Errorf("the dashboard queries %s; httvps up does not export it", name)
		}
		seen[name] = true
	}
	for _, s := range []string{
		`httvps_gateway_store_up`, `httvps_gateway_store_token_cache_total{result="hit"}`,
		`httvps_gateway_store_token_cache_total{result="miss"}`, `httvps_gateway_store_denied_total{reason="unknown"}`,
		`httvps_gateway_sessions{path="tcp"}`, `httvps_gateway_handshakes_total{result="ok",path="tcp"}`,
		`httvps_control_requests_total{route="POST /v1/tokens",status="200"}`, `go_goroutines`,
		`httvps_control_pool_members{state="up"}`, `httvps_control_pool_health_checks_total{result="up"}`,
	} {
		if _, ok := before[s]; !ok {
			t.Errorf("no series %s", s)
		}
	}
	if before[`httvps_gateway_store_up`] != 1 {
		t.Errorf("httvps_gateway_store_up %v, want 1", before[`httvps_gateway_store_up`])
	}

	// The first session looks the token up in the store, the second finds
	// it in the cache, and an unknown token is denied.
	const miss, hit = `httvps_gateway_store_token_cache_total{result="miss"}`, `httvps_gateway_store_token_cache_total{result="hit"}`
	const unknown = `httvps_gateway_store_denied_total{reason="unknown"}`
	fetchThrough(t, gwURL, token, method, password, origin, 10_000, pool)
	afterFirst := scrape(t, hc, metricsURL, "")
	if afterFirst[miss] < before[miss]+1 {
		t.Errorf("cache misses %v after the first session, were %v", afterFirst[miss], before[miss])
	}
	fetchThrough(t, gwURL, token, method, password, origin, 10_000, pool)
	afterSecond := scrape(t, hc, metricsURL, "")
	if afterSecond[hit] < afterFirst[hit]+1 {
		t.Errorf("cache hits %v after the second session, were %v", afterSecond[hit], afterFirst[hit])
	}
	if afterSecond[`httvps_gateway_handshakes_total{result="ok",path="tcp"}`] < 2 {
		t.Errorf("gateway handshakes %v, want 2", afterSecond[`httvps_gateway_handshakes_total{result="ok",path="tcp"}`])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if ws, _, err := ssSession(ctx, gwURL, strings.Repeat("A", 43), method, password, origin.Addr, pool); err == nil {
		ws.Close()
		t.Fatal("an unknown token was admitted")
	}
	if got := scrape(t, hc, metricsURL, "")[unknown]; got < afterSecond[unknown]+1 {
		t.Errorf("denied unknown %v, was %v", got, afterSecond[unknown])
	}

	// The control API's /metrics: the same page behind the admin key.
	api := scrape(t, hc, "https://"+ctlAddr+"/metrics", adminKey)
	for s := range before {
		if strings.HasPrefix(s, "httvps_") {
			if _, ok := api[s]; !ok {
				t.Errorf("the control API's /metrics lacks %s", s)
			}
		}
	}
	if resp, err := hc.Get("https://" + ctlAddr + "/metrics"); err != nil || resp.StatusCode != 404 || resp.Header.Get("Server") != "nginx" {
		t.Errorf("control API /metrics without the admin key: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if resp, err := hc.Get("http://" + admAddr + p); err != nil || resp.StatusCode != 200 {
			t.Errorf("admin %s: %v %v", p, resp, err)
		} else {
			resp.Body.Close()
		}
	}
}
