package api

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/httvps/httvps/internal/testpeer"
	"github.com/httvps/httvps/store/redisstore"
)

func readResponse(t *testing.T, resp *http.Response) response {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp, b}
}

// adminRoutes are one request per admin route.
var adminRoutes = []struct{ method, path, body string }{
	{"POST", "/v1/tokens", `{}`},
	{"GET", "/v1/tokens", ""},
	{"GET", "/v1/tokens/x", ""},
	{"DELETE", "/v1/tokens/x", ""},
	{"POST", "/v1/pool/members", `{}`},
	{"GET", "/v1/pool/members", ""},
	{"POST", "/v1/pool/members/x/drain", ""},
	{"DELETE", "/v1/pool/members/x", ""},
	{"GET", "/v1/gateways", ""},
	{"GET", "/metrics", ""},
}

func TestAdminAuth(t *testing.T) {
	h := newHarness(t, embeddedStore(t))
	for _, rt := range adminRoutes {
		for name, auth := range map[string]string{
			"missing": "",
			"wrong":   strings.Repeat("k", len(testAdminKey)),
			"prefix":  testAdminKey[:len(testAdminKey)-1],
			"longer":  testAdminKey + "x",
		} {
			t.Run(rt.method+" "+rt.path+" "+name, func(t *testing.T) {
				wantDecoy(t, h.do(rt.method, rt.path, auth, rt.body))
			})
		}
		// Another scheme carrying the right key is still refused.
		req, _ := http.NewRequest(rt.method, h.base+rt.path, nil)
		req.Header.Set("Authorization", "Basic "+testAdminKey)
		resp, err := h.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		wantDecoy(t, readResponse(t, resp))
	}
	// A client token is not an admin key.
	c := h.createToken(`{}`)
	wantDecoy(t, h.do("GET", "/v1/tokens", c.Token, ""))
	// Two Authorization headers, one of them the key: refused.
	req, _ := http.NewRequest("GET", h.base+"/v1/gateways", nil)
	req.Header.Add("Authorization", "Bearer "+testAdminKey)
	req.Header.Add("Authorization", "Bearer x")
	resp, err := h.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	wantDecoy(t, readResponse(t, resp))
	// Operators learn why.
	m := string(h.admin("GET", "/metrics", "").body)
	if !strings.Contains(m, `httvps_control_refused_total{reason="admin_key"} 52`+"\n") {
		t.Errorf("refusals not counted by reason:\n%s", grepLines(m, "refused"))
	}
	// Scheme is case-insensitive.
	req, _ = http.NewRequest("GET", h.base+"/v1/gateways", nil)
	req.Header.Set("Authorization", "bearer "+testAdminKey)
	resp, err = h.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if r := readResponse(t, resp); r.StatusCode != 200 {
		t.Errorf("lower-case scheme: %d %s", r.StatusCode, r.body)
	}
}

func TestMethodNotAllowedAndNotFound(t *testing.T) {
	h := newHarness(t, embeddedStore(t))
	for _, tc := range []struct{ method, path, allow string }{
		{"PUT", "/v1/tokens", "GET, OPTIONS, POST"},
		{"PUT", "/v1/tokens/abc", "DELETE, GET, OPTIONS, PATCH"},
		{"GET", "/v1/pool/members/abc/drain", "OPTIONS, POST"},
		{"POST", "/v1/client/config", "GET, OPTIONS"},
		{"DELETE", "/v1/outline/abc", "GET, OPTIONS"},
	} {
		r := h.admin(tc.method, tc.path, "")
		wantError(t, r, 405, "method_not_allowed")
		if got := r.Header.Get("Allow"); normalizeAllow(got) != normalizeAllow(tc.allow) {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, got, tc.allow)
		}
	}
	// Without the key, all of these are unknown.
	for _, tc := range []struct{ method, path string }{
		{"PUT", "/v1/tokens"}, {"POST", "/v1/client/config"}, {"DELETE", "/v1/outline/abc"},
		{"OPTIONS", "/v1/tokens"},
	} {
		wantDecoy(t, h.do(tc.method, tc.path, "", ""))
	}
	if r := h.do("HEAD", "/v1/client/config", "", ""); r.StatusCode != 404 || r.Header.Get("Server") != "nginx" ||
		r.Header.Get("Content-Length") != strconv.Itoa(len(decoyPage)) || len(r.body) != 0 {
		t.Errorf("HEAD: %d %v %q", r.StatusCode, r.Header, r.body)
	}
	r := h.admin("OPTIONS", "/v1/tokens", "")
	if r.StatusCode != 204 || normalizeAllow(r.Header.Get("Allow")) != normalizeAllow("GET, OPTIONS, POST") {
		t.Errorf("OPTIONS: %d, Allow %q", r.StatusCode, r.Header.Get("Allow"))
	}
	for _, p := range []string{"/", "/v1", "/v1/tokens/", "/v2/tokens", "/v1/tokens/a/b", "/v1/outline/", "/v1/outline/a/../../tokens"} {
		wantError(t, h.admin("GET", p, ""), 404, "not_found")
		wantDecoy(t, h.do("GET", p, "", ""))
	}
}

func normalizeAllow(s string) string {
	parts := strings.Split(s, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	// The router lists methods in registration order; compare as sets.
	m := map[string]bool{}
	for _, p := range parts {
		m[p] = true
	}
	return fmt.Sprint(m)
}

// TestBodyTooLarge sends a declared oversized body on a raw socket: the
// server answers 413 with the JSON error before reading it.
func TestBodyTooLarge(t *testing.T) {
	h := newHarness(t, embeddedStore(t), func(c *Config) { c.MaxBodyBytes = 1024 })
	addr := strings.TrimPrefix(h.base, "http://")
	for _, n := range []int{1025, 10 << 20} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(conn, "POST /v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", testAdminKey, n)
		if n < 4096 {
			conn.Write([]byte(strings.Repeat(" ", n)))
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		wantError(t, readResponse(t, resp), 413, "payload_too_large")
		conn.Close()
	}
	// Without the key, a body over nginx's 1 MiB gets nginx's 413.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "POST /v1/tokens HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", 2<<20)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := readResponse(t, resp); r.StatusCode != 413 || r.Header.Get("Server") != "nginx" || !strings.Contains(string(r.body), "<center><h1>413 Request Entity Too Large</h1></center>") {
		t.Errorf("stranger's large body: %d %q %s", r.StatusCode, r.Header.Get("Server"), r.body)
	}
	// A body just under the limit is read (and rejected on its merits).
	body := `{"label":"` + strings.Repeat("x", 1000) + `"}`
	wantError(t, h.admin("POST", "/v1/tokens", body), 400, "invalid_argument")
}

func TestHealthReadyAndMetrics(t *testing.T) {
	h := newHarness(t, embeddedStore(t))
	// The probes are the operator listener's (internal/admin); here they
	// need the key like the admin API.
	for _, p := range []string{"/healthz", "/readyz"} {
		if r := h.admin("GET", p, ""); r.StatusCode != 200 {
			t.Errorf("%s: %d %s", p, r.StatusCode, r.body)
		}
		wantDecoy(t, h.do("GET", p, "", ""))
	}
	h.admin("GET", "/v1/tokens", "")
	h.admin("GET", "/v1/nothing", "")
	r := h.admin("GET", "/metrics", "")
	if r.StatusCode != 200 {
		t.Fatalf("metrics: %d", r.StatusCode)
	}
	for _, want := range []string{
		`httvps_control_requests_total{route="GET /v1/tokens",status="200"} 1`,
		`httvps_control_requests_total{route="unmatched",status="404"} 1`,
		`httvps_control_request_duration_seconds_bucket{route="GET /v1/tokens",le=`,
		// Created at start-up, before any request.
		`httvps_control_requests_total{route="POST /v1/pool/members",status="200"} 0`,
		`go_goroutines`,
	} {
		if !strings.Contains(string(r.body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(string(r.body), "/v1/nothing") {
		t.Error("metrics carry a raw path")
	}

	open := newHarness(t, embeddedStore(t), func(c *Config) { c.OpenMetrics = true })
	if r := open.do("GET", "/metrics", "", ""); r.StatusCode != 200 {
		t.Errorf("OpenMetrics: %d", r.StatusCode)
	}
	wantDecoy(t, h.do("GET", "/metrics", "", ""))
}

// TestStoreDown stops Redis under a running server: everything that needs
// the store answers 503 "unavailable"; /healthz stays 200.
func TestStoreDown(t *testing.T) {
	rp := testpeer.StartRedis(t, testpeer.RedisSpec{})
	st, err := redisstore.New(context.Background(), rp.URL(), redisstore.WithTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	redis.SetLogger(silentRedisLog{})
	h := newHarness(t, st, func(c *Config) { c.StoreTimeout = time.Second })
	c := h.createToken(`{}`)
	rp.Kill()

	for _, rt := range []struct{ method, path, auth, body string }{
		{"POST", "/v1/tokens", testAdminKey, `{}`},
		{"GET", "/v1/tokens", testAdminKey, ""},
		{"GET", "/v1/tokens/" + c.ID, testAdminKey, ""},
		{"DELETE", "/v1/tokens/" + c.ID, testAdminKey, ""},
		{"GET", "/v1/pool/members", testAdminKey, ""},
		{"GET", "/v1/gateways", testAdminKey, ""},
		{"GET", "/readyz", testAdminKey, ""},
	} {
		t.Run(rt.method+" "+rt.path, func(t *testing.T) {
			wantError(t, h.do(rt.method, rt.path, rt.auth, rt.body), 503, "unavailable")
		})
	}
	// The client routes' callers have not proven they hold a token: the
	// decoy, and the cause in the log.
	wantDecoy(t, h.do("GET", "/v1/client/config", c.Token, ""))
	wantDecoy(t, h.do("GET", "/v1/outline/"+c.Token, "", ""))
	if r := h.admin("GET", "/healthz", ""); r.StatusCode != 200 {
		t.Errorf("healthz with the store down: %d", r.StatusCode)
	}
}

// TestInMemoryListener drives Serve through fasthttp's in-memory listener
// with fasthttp's own client.
func TestInMemoryListener(t *testing.T) {
	srv, err := New(Config{Store: embeddedStore(t), Pool: &fakePool{}, AdminKey: testAdminKey, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ln := fasthttputil.NewInmemoryListener()
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())
	c := &fasthttp.Client{Dial: func(string) (net.Conn, error) { return ln.Dial() }}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://ctl.test/v1/tokens")
	req.Header.SetMethod("POST")
	req.Header.Set("Authorization", "Bearer "+testAdminKey)
	req.Header.SetContentType("application/json")
	req.SetBodyString(`{"label":"mem"}`)
	if err := c.Do(req, resp); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode() != 201 {
		t.Fatalf("create: %d %s", resp.StatusCode(), resp.Body())
	}
	// Without PublicURL the keys name the request's host.
	if !strings.Contains(string(resp.Body()), `"ssconf":"ssconf://ctl.test/v1/outline/`) {
		t.Errorf("ssconf without PublicURL: %s", resp.Body())
	}
}

func TestNewRejects(t *testing.T) {
	st := embeddedStore(t)
	for name, cfg := range map[string]Config{
		"no store":      {Pool: &fakePool{}, AdminKey: testAdminKey},
		"no pool":       {Store: st, AdminKey: testAdminKey},
		"short key":     {Store: st, Pool: &fakePool{}, AdminKey: "short"},
		"bad url":       {Store: st, Pool: &fakePool{}, AdminKey: testAdminKey, PublicURL: "ctl.example.com"},
		"url query":     {Store: st, Pool: &fakePool{}, AdminKey: testAdminKey, PublicURL: "https://ctl.example.com/?a=b"},
		"negative body": {Store: st, Pool: &fakePool{}, AdminKey: testAdminKey, MaxBodyBytes: -1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

type silentRedisLog struct{}

func (silentRedisLog) Printf(context.Context, string, ...any) {}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestGuardPassesBodies: requests with the admin key go through the Guard
// to the API with their bodies intact, chunked or not, pipelined with
// refused ones on one connection.
func TestGuardPassesBodies(t *testing.T) {
	h := newHarness(t, embeddedStore(t))
	addr := strings.TrimPrefix(h.base, "http://")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	auth := "Authorization: Bearer " + testAdminKey + "\r\n"
	body := `{"label":"chunked-` + strings.Repeat("x", 40) + `"}`
	req := "POST /v1/tokens HTTP/1.1\r\nHost: x\r\n" + auth + "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
		fmt.Sprintf("%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n", 10, body[:10], len(body)-10, body[10:]) +
		"GET /v1/tokens HTTP/1.1\r\nHost: x\r\n\r\n" + // no key: the decoy
		"POST /v1/tokens HTTP/1.1\r\nHost: x\r\n" + auth + "Content-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"label\":\"plain\"}" +
		"GET /v1/tokens HTTP/1.1\r\nHost: x\r\n" + auth + "Connection: close\r\n\r\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	var got []response
	for range 4 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", len(got)+1, err)
		}
		got = append(got, readResponse(t, resp))
	}
	if got[0].StatusCode != 201 || !strings.Contains(string(got[0].body), "chunked-xxxx") {
		t.Errorf("chunked create: %d %s", got[0].StatusCode, got[0].body)
	}
	wantDecoy(t, got[1])
	if got[2].StatusCode != 201 {
		t.Errorf("create: %d %s", got[2].StatusCode, got[2].body)
	}
	if got[3].StatusCode != 200 || !strings.Contains(string(got[3].body), `"plain"`) || !strings.Contains(string(got[3].body), "chunked-") {
		t.Errorf("list: %d %s", got[3].StatusCode, got[3].body)
	}
}
