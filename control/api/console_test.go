package api

import (
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/httvps/httvps/control/console"
)

// consoleClient talks to the console as a browser would, without
// following redirects.
type consoleClient struct {
	h      *harness
	cookie string // the session cookie's value
	csrf   string
}

func (h *harness) console() *consoleClient { return &consoleClient{h: h} }

// req sends a request with the session cookie (if any) and extra headers.
func (c *consoleClient) req(method, path string, form url.Values, hdr map[string]string) response {
	c.h.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, c.h.base+path, body)
	if err != nil {
		c.h.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if c.cookie != "" {
		req.Header.Set("Cookie", console.CookieName+"="+c.cookie)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	hc := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Do(req)
	if err != nil {
		c.h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp, b}
}

// otherFirst is s with another first character (a near miss).
func otherFirst(s string) string {
	if s[0] == 'x' {
		return "y" + s[1:]
	}
	return "x" + s[1:]
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// signIn signs in with the admin key and reads the CSRF token off the
// first page.
func (c *consoleClient) signIn() {
	c.h.t.Helper()
	r := c.req("POST", console.SignInPath(testAdminKey), url.Values{"key": {testAdminKey}}, nil)
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/console/" {
		c.h.t.Fatalf("sign-in: %d %q %s", r.StatusCode, r.Header.Get("Location"), r.body)
	}
	for _, sc := range r.Cookies() {
		if sc.Name == console.CookieName {
			c.cookie = sc.Value
		}
	}
	p := c.req("GET", "/console/", nil, nil)
	m := csrfField.FindSubmatch(p.body)
	if p.StatusCode != 200 || m == nil {
		c.h.t.Fatalf("tokens page after sign-in: %d %s", p.StatusCode, p.body)
	}
	c.csrf = string(m[1])
}

// wantConsoleHeaders checks the security headers of a console page.
func wantConsoleHeaders(t *testing.T, r response) {
	t.Helper()
	want := map[string]string{
		"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
		"X-Frame-Options":         "DENY",
		"Referrer-Policy":         "same-origin",
		"X-Content-Type-Options":  "nosniff",
		"Cache-Control":           "no-store",
	}
	for k, v := range want {
		if got := r.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if strings.Contains(string(r.body), "<script>") || strings.Contains(string(r.body), " style=") {
		t.Errorf("page has an inline script or style")
	}
}

func TestConsoleWithoutSessionGetsDecoy(t *testing.T) {
	h := newHarness(t, embeddedStore(t))
	c := h.console()
	paths := []string{"/console/", "/console/tokens/abc", "/console/pool", "/console/gateways", "/console/assets/console.css",
		"/console/signin/wrong", console.SignInPath("another admin key of enough length"), "/u/unknown-token", "/u/unknown-token/console.css"}
	for _, p := range paths {
		wantDecoy(t, c.req("GET", p, nil, nil))
	}
	wantDecoy(t, c.req("POST", "/console/tokens", url.Values{"label": {"x"}}, nil))
	wantDecoy(t, c.req("POST", "/console/signout", url.Values{}, nil))
	wantDecoy(t, c.req("POST", "/u/unknown-token", url.Values{}, nil))
	c.cookie = "forged-session-cookie-value"
	wantDecoy(t, c.req("GET", "/console/", nil, nil))
	// The admin key as a bearer opens the API, not the console.
	r := h.do("GET", "/console/", testAdminKey, "")
	wantDecoy(t, r)
}

func TestConsoleSignInAndOut(t *testing.T) {
	h := newHarness(t, embeddedStore(t))
	c := h.console()
	path := console.SignInPath(testAdminKey)
	r := c.req("GET", path, nil, nil)
	if r.StatusCode != 200 || !strings.Contains(string(r.body), `<label for="key">Admin key</label>`) {
		t.Fatalf("sign-in page: %d %s", r.StatusCode, r.body)
	}
	wantConsoleHeaders(t, r)
	if r := c.req("GET", path+"/console.css", nil, nil); r.StatusCode != 200 || r.Header.Get("Content-Type") != "text/css; charset=utf-8" {
		t.Errorf("sign-in page's style sheet: %d %q", r.StatusCode, r.Header.Get("Content-Type"))
	}
	if r := c.req("POST", path, url.Values{"key": {"wrong key"}}, nil); r.StatusCode != http.StatusUnauthorized || len(r.Header.Values("Set-Cookie")) != 0 {
		t.Errorf("wrong key: %d, Set-Cookie %q", r.StatusCode, r.Header.Values("Set-Cookie"))
	}
	if r := c.req("PUT", path, nil, nil); r.StatusCode != http.StatusMethodNotAllowed || r.Header.Get("Allow") != "GET, POST" {
		t.Errorf("PUT sign-in: %d Allow %q", r.StatusCode, r.Header.Get("Allow"))
	}
	r = c.req("POST", path, url.Values{"key": {testAdminKey}}, nil)
	sc := r.Header.Get("Set-Cookie")
	for _, attr := range []string{console.CookieName + "=", "; Path=/", "; Max-Age=3600", "; Secure", "; HttpOnly", "; SameSite=Strict"} {
		if !strings.Contains(sc, attr) {
			t.Errorf("Set-Cookie %q lacks %q", sc, attr)
		}
	}
	if strings.Contains(strings.ToLower(sc), "domain=") {
		t.Errorf("Set-Cookie %q has a Domain (the __Host- prefix forbids it)", sc)
	}
	c.signIn()
	for _, p := range []string{"/console/", "/console/pool", "/console/gateways"} {
		r := c.req("GET", p, nil, nil)
		if r.StatusCode != 200 {
			t.Errorf("GET %s: %d %s", p, r.StatusCode, r.body)
		}
		wantConsoleHeaders(t, r)
	}
	if r := c.req("GET", "/console/nope", nil, nil); r.StatusCode != 404 || r.Header.Get("Server") == "nginx" {
		t.Errorf("unknown console page for the operator: %d", r.StatusCode)
	}
	if r := c.req("GET", "/console/tokens/nope", nil, nil); r.StatusCode != 404 || !strings.Contains(string(r.body), "not found") {
		t.Errorf("unknown token for the operator: %d %s", r.StatusCode, r.body)
	}
	// Signing out needs the form token too, then the cookie is dead.
	if r := c.req("POST", "/console/signout", url.Values{}, nil); r.StatusCode != http.StatusForbidden {
		t.Errorf("sign-out without the form token: %d", r.StatusCode)
	}
	r = c.req("POST", "/console/signout", url.Values{"csrf": {c.csrf}}, nil)
	if r.StatusCode != http.StatusSeeOther || !strings.Contains(r.Header.Get("Set-Cookie"), "Max-Age=0") {
		t.Errorf("sign-out: %d %q", r.StatusCode, r.Header.Get("Set-Cookie"))
	}
	wantDecoy(t, c.req("GET", "/console/", nil, nil))
}

func TestConsoleSessionExpires(t *testing.T) {
	h := newHarness(t, embeddedStore(t))
	c := h.console()
	c.signIn()
	h.clock.Advance(console.DefaultSessionTTL + time.Second)
	wantDecoy(t, c.req("GET", "/console/", nil, nil))
}

func TestConsoleSignInRateLimited(t *testing.T) {
	h := newHarness(t, embeddedStore(t))
	c := h.console()
	path := console.SignInPath(testAdminKey)
	for i := range console.DefaultSignInPerAddr {
		if r := c.req("POST", path, url.Values{"key": {"wrong"}}, nil); r.StatusCode != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d", i+1, r.StatusCode)
		}
	}
	// Past the limit even the right key is refused, until the window ends.
	r := c.req("POST", path, url.Values{"key": {testAdminKey}}, nil)
	if r.StatusCode != http.StatusTooManyRequests || r.Header.Get("Retry-After") != "60" || len(r.Header.Values("Set-Cookie")) != 0 {
		t.Fatalf("over the limit: %d Retry-After %q", r.StatusCode, r.Header.Get("Retry-After"))
	}
	h.clock.Advance(console.SignInWindow)
	c.signIn()
}

func TestConsoleChangesNeedCSRF(t *testing.T) {
	h := newHarness(t, embeddedStore(t))
	c := h.console()
	c.signIn()
	form := url.Values{"label": {"csrf"}, "quota": {"5"}, "quota_unit": {"MiB"}}
	cases := []struct {
		name string
		csrf string
		hdr  map[string]string
	}{
		{"no form token", "", nil},
		{"wrong form token", otherFirst(c.csrf), nil},
		{"other origin", c.csrf, map[string]string{"Origin": "https://evil.example"}},
		{"cross-site fetch", c.csrf, map[string]string{"Sec-Fetch-Site": "cross-site"}},
	}
	for _, tc := range cases {
		f := url.Values{}
		for k, v := range form {
			f[k] = v
		}
		if tc.csrf != "" {
			f.Set("csrf", tc.csrf)
		}
		if r := c.req("POST", "/console/tokens", f, tc.hdr); r.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", tc.name, r.StatusCode)
		}
	}
	if l := decode[struct{ Tokens []any }](t, h.admin("GET", "/v1/tokens", "")); len(l.Tokens) != 0 {
		t.Fatalf("a refused change created %d tokens", len(l.Tokens))
	}
	form.Set("csrf", c.csrf)
	r := c.req("POST", "/console/tokens", form, map[string]string{"Origin": h.base, "Sec-Fetch-Site": "same-origin"})
	if r.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %s", r.StatusCode, r.body)
	}
	l := decode[struct {
		Tokens []struct {
			ID         string `json:"id"`
			Label      string `json:"label"`
			QuotaBytes int64  `json:"quota_bytes"`
		}
	}](t, h.admin("GET", "/v1/tokens", ""))
	if len(l.Tokens) != 1 || l.Tokens[0].Label != "csrf" || l.Tokens[0].QuotaBytes != 5<<20 {
		t.Fatalf("tokens after create: %+v", l.Tokens)
	}
	for _, want := range []string{`id="qr-ssconf"`, `value="ssconf://ctl.example.com:8443/v1/outline/`, `id="key-httvps"`, "shown <strong>once</strong>", `id="user-link" href="https://ctl.example.com:8443/u/`} {
		if !strings.Contains(string(r.body), want) {
			t.Errorf("created page lacks %q", want)
		}
	}
	// Revoke through the console.
	id := l.Tokens[0].ID
	if r := c.req("POST", "/console/tokens/"+id+"/revoke", url.Values{"csrf": {c.csrf}}, nil); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke: %d %s", r.StatusCode, r.body)
	}
	if v := decode[struct{ Status string }](t, h.admin("GET", "/v1/tokens/"+id, "")); v.Status != "revoked" {
		t.Errorf("status after revoke %q", v.Status)
	}
}

func TestConsoleMethodNotAllowed(t *testing.T) {
	h := newHarness(t, embeddedStore(t))
	c := h.console()
	c.signIn()
	cases := []struct{ method, path, allow string }{
		{"GET", "/console/tokens", "POST"},
		{"POST", "/console/", "GET"},
		{"DELETE", "/console/pool", "GET, POST"},
		{"GET", "/console/tokens/abc/revoke", "POST"},
		{"GET", "/console/signout", "POST"},
		{"POST", "/console/gateways", "GET"},
	}
	for _, tc := range cases {
		var form url.Values
		if tc.method == "POST" {
			form = url.Values{"csrf": {c.csrf}}
		}
		r := c.req(tc.method, tc.path, form, nil)
		if r.StatusCode != http.StatusMethodNotAllowed || r.Header.Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d Allow %q, want 405 %q", tc.method, tc.path, r.StatusCode, r.Header.Get("Allow"), tc.allow)
		}
	}
}

func TestConsoleUserPage(t *testing.T) {
	h := newHarness(t, embeddedStore(t))
	tok := h.createToken(`{"label":"alice","quota_bytes":1048576,"quota_period":"month"}`)
	c := h.console()
	r := c.req("GET", "/u/"+tok.Token, nil, nil)
	if r.StatusCode != 200 {
		t.Fatalf("user page: %d %s", r.StatusCode, r.body)
	}
	wantConsoleHeaders(t, r)
	body := string(r.body)
	for _, want := range []string{tok.AccessKeys.SSConf, `id="qr-ssconf"`, `id="qr-httvps"`, `data-bytes="0"`, `id="user-remaining" data-bytes="1048576"`, "Outline"} {
		if !strings.Contains(body, strings.ReplaceAll(want, "&", "&amp;")) {
			t.Errorf("user page lacks %q", want)
		}
	}
	if strings.Contains(body, "/console/") {
		t.Errorf("user page links to the console")
	}
	if r := c.req("GET", "/u/"+tok.Token+"/console.css", nil, nil); r.StatusCode != 200 {
		t.Errorf("user page style sheet: %d", r.StatusCode)
	}
	wantDecoy(t, c.req("GET", "/u/"+tok.Token[:len(tok.Token)-1]+"x", nil, nil))
	h.admin("DELETE", "/v1/tokens/"+tok.ID, "")
	wantDecoy(t, c.req("GET", "/u/"+tok.Token, nil, nil))
}

func TestConsoleTokenActions(t *testing.T) {
	h := newHarness(t, embeddedStore(t))
	tok := h.createToken(`{"label":"bob"}`)
	c := h.console()
	c.signIn()
	post := func(path string, f url.Values) response {
		t.Helper()
		if f == nil {
			f = url.Values{}
		}
		f.Set("csrf", c.csrf)
		return c.req("POST", path, f, nil)
	}
	type view struct {
		QuotaBytes  int64  `json:"quota_bytes"`
		QuotaPeriod string `json:"quota_period"`
		MaxDevices  int    `json:"max_devices"`
		MaxSessions int    `json:"max_sessions"`
		Status      string `json:"status"`
	}
	base := "/console/tokens/" + tok.ID

	// Edit: only the fields given change.
	r := post(base+"/edit", url.Values{"quota": {"2"}, "quota_unit": {"MiB"}, "quota_period": {"week"}, "max_devices": {"2"}})
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != base+"?done=edit" {
		t.Fatalf("edit: %d %q %s", r.StatusCode, r.Header.Get("Location"), r.body)
	}
	if v := decode[view](t, h.admin("GET", "/v1/tokens/"+tok.ID, "")); v.QuotaBytes != 2<<20 || v.QuotaPeriod != "week" || v.MaxDevices != 2 || v.MaxSessions != 0 {
		t.Fatalf("after edit: %+v", v)
	}
	if r := c.req("GET", base+"?done=edit", nil, nil); r.StatusCode != 200 || !strings.Contains(string(r.body), "The limits were changed.") {
		t.Errorf("token page after edit: %d", r.StatusCode)
	}
	for name, f := range map[string]url.Values{
		"negative quota": {"quota": {"-1"}, "quota_unit": {"B"}},
		"bad unit":       {"quota": {"1"}, "quota_unit": {"PB"}},
		"huge quota":     {"quota": {"9223372036854775807"}, "quota_unit": {"GiB"}},
		"bad devices":    {"max_devices": {"two"}},
		"nothing":        {},
	} {
		if r := post(base+"/edit", f); r.StatusCode != http.StatusBadRequest {
			t.Errorf("edit with %s: %d, want 400", name, r.StatusCode)
		}
	}
	// The API's own refusals come through with its status and message.
	if r := post(base+"/edit", url.Values{"quota_period": {"fortnight"}}); r.StatusCode != http.StatusBadRequest || !strings.Contains(string(r.body), "quota_period") {
		t.Errorf("edit with a bad period: %d %s", r.StatusCode, r.body)
	}
	if r := post("/console/tokens/no-such-token/edit", url.Values{"max_devices": {"1"}}); r.StatusCode != http.StatusNotFound {
		t.Errorf("edit of an unknown token: %d", r.StatusCode)
	}

	// Reset and the history chart.
	if r := post(base+"/reset", nil); r.StatusCode != http.StatusSeeOther {
		t.Errorf("reset: %d %s", r.StatusCode, r.body)
	}
	for _, step := range []string{"hour", "day"} {
		r := c.req("GET", base+"?step="+step, nil, nil)
		if r.StatusCode != 200 || !strings.Contains(string(r.body), `<svg class="chart"`) || !strings.Contains(string(r.body), "by "+step) {
			t.Errorf("token page by %s: %d", step, r.StatusCode)
		}
	}

	// Rotate: new keys shown once, the old token stops.
	r = post(base+"/rotate", nil)
	m := regexp.MustCompile(`id="key-token" class="keytext" type="text" readonly value="([^"]+)"`).FindSubmatch(r.body)
	if r.StatusCode != 200 || m == nil || string(m[1]) == tok.Token {
		t.Fatalf("rotate: %d, new token %q", r.StatusCode, m)
	}
	if r := h.do("GET", "/v1/client/config", tok.Token, ""); r.StatusCode != 404 {
		t.Errorf("old token after rotate: %d", r.StatusCode)
	}
	if r := h.do("GET", "/v1/client/config", string(m[1]), ""); r.StatusCode != 200 {
		t.Errorf("new token after rotate: %d", r.StatusCode)
	}

	// Malformed ids never reach the API.
	for _, p := range []string{"/console/tokens/a.b", "/console/tokens/" + strings.Repeat("x", 65), "/console/tokens/a/b/c"} {
		if r := c.req("GET", p, nil, nil); r.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d", p, r.StatusCode)
		}
	}

	// Filters: status and search.
	h.createToken(`{"label":"carol"}`)
	if r := c.req("GET", "/console/?q=CAR", nil, nil); !strings.Contains(string(r.body), ">carol<") || strings.Contains(string(r.body), ">bob<") {
		t.Errorf("search for CAR:\n%s", r.body)
	}
	post(base+"/revoke", nil)
	if r := c.req("GET", "/console/?status=revoked", nil, nil); !strings.Contains(string(r.body), ">bob<") || strings.Contains(string(r.body), ">carol<") {
		t.Errorf("revoked filter:\n%s", r.body)
	}
	if r := c.req("GET", base, nil, nil); strings.Contains(string(r.body), "/revoke") {
		t.Errorf("a revoked token's page still offers changes")
	}
}

func TestConsolePoolAndGateways(t *testing.T) {
	h := newHarness(t, embeddedStore(t))
	c := h.console()
	c.signIn()
	post := func(path string, f url.Values) response {
		t.Helper()
		f.Set("csrf", c.csrf)
		return c.req("POST", path, f, nil)
	}
	// The members API's refusals (the fake pool refuses every member and
	// knows none) come through.
	if r := post("/console/pool", url.Values{"name": {"x"}, "backend": {"static"}, "host": {"127.0.0.1"}, "port": {"8388"}, "cipher": {"chacha20-ietf-poly1305"}, "password": {"p"}}); r.StatusCode != http.StatusBadRequest {
		t.Errorf("add refused by the pool: %d %s", r.StatusCode, r.body)
	}
	if r := post("/console/pool", url.Values{"name": {"x"}, "backend": {"wireguard"}}); r.StatusCode != http.StatusBadRequest || !strings.Contains(string(r.body), "outline-api, ss-manager or static") {
		t.Errorf("add with an unknown backend: %d", r.StatusCode)
	}
	for _, action := range []string{"drain", "undrain", "remove"} {
		if r := post("/console/pool/nope/"+action, url.Values{}); r.StatusCode != http.StatusNotFound {
			t.Errorf("%s of an unknown member: %d", action, r.StatusCode)
		}
	}
	if r := post("/console/pool/nope/explode", url.Values{}); r.StatusCode != http.StatusNotFound {
		t.Errorf("unknown member action: %d", r.StatusCode)
	}
	h.heartbeat("gw-one", "wss://gw1.example.com", 42, time.Minute)
	r := c.req("GET", "/console/gateways", nil, nil)
	if r.StatusCode != 200 || !strings.Contains(string(r.body), "<td>gw-one</td><td>wss://gw1.example.com</td>") || !strings.Contains(string(r.body), "<td>42</td><td>0.0</td>") {
		t.Errorf("gateways page: %d\n%s", r.StatusCode, r.body)
	}
	if r := c.req("GET", "/console/assets/console.js", nil, nil); r.StatusCode != 200 || r.Header.Get("Content-Type") != "text/javascript; charset=utf-8" {
		t.Errorf("script: %d %q", r.StatusCode, r.Header.Get("Content-Type"))
	}
	if r := c.req("GET", "/console/assets/layout.html", nil, nil); r.StatusCode != 404 {
		t.Errorf("a template served as an asset: %d", r.StatusCode)
	}
}
