package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	_ "image/png"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/gobwas/ws"
	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"

	"github.com/httvps/httvps/control/console"
)

// The console in a real browser: headless Chromium (Debian's chromium,
// which scripts/deps.sh installs) driven over the DevTools protocol by
// chromedp. Skipped, with the reason, only where Chromium cannot start.

// browserTimeout bounds the whole browser session; Chromium's start is
// slow on a busy 2-core machine, the steps after it are not.
const browserTimeout = 60 * time.Second

// stepTimeout bounds one step (a page load and a wait), so a failing step
// leaves time to read the page.
const stepTimeout = 20 * time.Second

// startBrowser starts headless Chromium and returns a context to run
// actions in, or skips the test.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (scripts/deps.sh installs it)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // tests run as root in containers, where the sandbox cannot start
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.WindowSize(1200, 900),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	tctx, tcancel := context.WithTimeout(ctx, browserTimeout)
	t.Cleanup(func() { tcancel(); cancel(); acancel() })
	start := time.Now()
	if err := chromedp.Do(tctx); err != nil {
		t.Skipf("chromium cannot start here: %v", err)
	}
	t.Logf("chromium started in %v", time.Since(start).Round(time.Millisecond))
	return tctx
}

// artifactDir is where the screenshots go: $HTTVPS_ARTIFACTS/<test>, or
// a temporary directory (logged).
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if base := os.Getenv("HTTVPS_ARTIFACTS"); base != "" {
		dir = filepath.Join(base, t.Name())
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("screenshots in %s", dir)
	return dir
}

// shot saves a full-page PNG screenshot as dir/name.png.
func shot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	b, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// decodeQR reads the QR code in a PNG screenshot.
func decodeQR(png []byte) (string, error) {
	img, _, err := image.Decode(bytes.NewReader(png))
	if err != nil {
		return "", err
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		return "", err
	}
	res, err := qrcode.NewQRCodeReader().Decode(bmp, nil)
	if err != nil {
		return "", err
	}
	return res.GetText(), nil
}

// dataBytes reads the exact byte count an element carries in data-bytes.
func dataBytes(ctx context.Context, sel string) (int64, error) {
	a, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(sel), "data-bytes"))
	if err != nil {
		return 0, err
	}
	if !a.Exists {
		return 0, fmt.Errorf("%s has no data-bytes", sel)
	}
	return strconv.ParseInt(a.Value, 10, 64)
}

// TestConsoleInBrowser: sign in, create a token with a quota, scan its QR
// code, move data through a gateway with it, read the usage off the
// token's page and chart and off the user's page, revoke it from the
// console (its live session ends within a second), and check that no
// console page loads without the cookie and a change without the form
// token is refused.
func TestConsoleInBrowser(t *testing.T) {
	f := startCtlFleet(t, 1)
	pw := "console-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	addr, _ := ctlSSServer(t, pw)
	f.ctl.addMember(staticMember("static-1", addr, pw))
	ctx := startBrowser(t)
	dir := artifactDir(t)
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, stepTimeout)
		defer cancel()
		if err := chromedp.Do(sctx, steps...); err != nil {
			body, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
			t.Fatalf("%s: %v; the page says: %q", what, err, body)
		}
	}
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return v
	}
	value := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Value(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("value of %s: %v", sel, err)
		}
		return v
	}
	// labelled checks that every field of the page has a label.
	labelled := func(page string) {
		t.Helper()
		bare, err := chromedp.Run(ctx, chromedp.Evaluate[string](`Array.from(document.querySelectorAll("input:not([type=hidden]), select, textarea")).filter(e => e.labels.length == 0).map(e => e.id || e.name).join(" ")`))
		if err != nil || bare != "" {
			t.Errorf("%s: fields without a label: %q (%v)", page, bare, err)
		}
	}
	qrOf := func(sel string) string {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.Screenshot(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("screenshot of %s: %v", sel, err)
		}
		s, err := decodeQR(png)
		if err != nil {
			t.Fatalf("decoding the QR code %s: %v", sel, err)
		}
		return s
	}

	// Sign in.
	run("sign-in page", chromedp.Navigate(f.ctl.url+console.SignInPath(f.ctl.adminKey)), chromedp.WaitVisible(chromedp.ID("key")))
	shot(t, ctx, dir, "console-signin")
	labelled("sign-in")
	// By keyboard: the key, then Enter submits the form.
	run("sign in", chromedp.SendKeys(chromedp.ID("key"), f.ctl.adminKey+"\r"), chromedp.WaitVisible(chromedp.ID("tokens")))

	// Create a token with a quota of 64 MiB a day.
	const quota = 64 << 20
	run("create a token",
		chromedp.SendKeys(chromedp.ID("label"), "browser"),
		chromedp.SendKeys(chromedp.ID("quota"), "64"),
		chromedp.SetValue(chromedp.ID("quota_unit"), "MiB"),
		chromedp.SetValue(chromedp.ID("quota_period"), "day"),
		chromedp.SetValue(chromedp.ID("max_devices"), "3"),
		chromedp.Click(chromedp.ID("create")),
		chromedp.WaitVisible(chromedp.ID("qr-ssconf")))
	shot(t, ctx, dir, "console-created")
	tokenStr := value("#key-token")
	scanned := qrOf("#qr-ssconf")
	// The key the API returns for this token, as the client reads it.
	r, err := f.ctl.do("GET", "/v1/client/config", tokenStr, nil)
	if err != nil || r.status != http.StatusOK {
		t.Fatalf("client config of the console's token: %v %v", r, err)
	}
	var cc struct {
		TokenID    string `json:"token_id"`
		Cipher     string `json:"cipher"`
		Secret     string `json:"secret"`
		QuotaBytes int64  `json:"quota_bytes"`
		MaxDevices int    `json:"max_devices"`
		AccessKeys struct {
			SSConf string `json:"ssconf"`
			HTTVPS string `json:"httvps"`
		} `json:"access_keys"`
	}
	if err := json.Unmarshal(r.body, &cc); err != nil {
		t.Fatal(err)
	}
	if scanned != cc.AccessKeys.SSConf || cc.QuotaBytes != quota || cc.MaxDevices != 3 {
		t.Fatalf("QR code says %q, the API %q (quota %d, devices %d)", scanned, cc.AccessKeys.SSConf, cc.QuotaBytes, cc.MaxDevices)
	}
	httvpsShown := value("#key-httvps")
	if httvpsShown != cc.AccessKeys.HTTVPS {
		t.Errorf("httvps key shown %q, API %q", httvpsShown, cc.AccessKeys.HTTVPS)
	}

	// Move data through gateway B with that key.
	tok := ctlToken{ctlTokenView: ctlTokenView{ID: cc.TokenID, Cipher: cc.Cipher, Token: tokenStr}, Secret: cc.Secret}
	const moved = 1 << 20
	sc, err := f.b.ss(tok, f.echo)
	if err != nil {
		t.Fatal(err)
	}
	if err := ctlEcho(sc, moved, 13); err != nil {
		t.Fatal(err)
	}
	// The gateways flush usage in batches: wait until the API counts both
	// directions (ciphertext, so a little more than the payload).
	var used int64
	ctlEventually(t, 20*time.Second, "the moved bytes and the live session counted", func() bool {
		v := f.ctl.token(cc.TokenID)
		used = v.Usage.Total
		return used >= 2*moved && v.Sessions != nil && *v.Sessions == 1
	})
	run("token page", chromedp.Navigate(f.ctl.url+"/console/tokens/"+cc.TokenID), chromedp.WaitVisible(chromedp.ID("usage")))
	shown, err := dataBytes(ctx, "#usage")
	if err != nil {
		t.Fatal(err)
	}
	chart, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS("svg.chart"), "data-total"))
	if err != nil {
		t.Fatal(err)
	}
	chartTotal, hasChart := chart.Value, chart.Exists
	hist, err := dataBytes(ctx, "#history-total")
	if err != nil {
		t.Fatal(err)
	}
	// A late flush may land while the page loads: the page's count lies
	// between the API's before and after it.
	after := f.ctl.token(cc.TokenID).Usage.Total
	if shown < used || shown > after || shown < 2*moved {
		t.Errorf("token page shows %d bytes used, the API %d before and %d after (moved %d each way)", shown, used, after, moved)
	}
	if !hasChart || chartTotal != strconv.FormatInt(hist, 10) || hist < 2*moved || hist > after {
		t.Errorf("usage chart total %q (history %d), want %d to %d", chartTotal, hist, 2*moved, after)
	}
	sessions := text("#sessions")
	if sessions != "1" {
		t.Errorf("token page shows %q live sessions, want 1", sessions)
	}
	shot(t, ctx, dir, "console-token")
	labelled("token page")

	// The list, the pool and the gateways with the fleet's usage.
	run("token list", chromedp.Navigate(f.ctl.url+"/console/?q=brow"), chromedp.WaitVisible(chromedp.ID("tokens")))
	list := text("#tokens")
	if !strings.Contains(list, "browser") || !strings.Contains(list, "active") {
		t.Errorf("token list: %q", list)
	}
	shot(t, ctx, dir, "console-tokens")
	labelled("token list")
	run("pool", chromedp.Navigate(f.ctl.url+"/console/pool"), chromedp.WaitVisible(chromedp.ID("members")))
	members := text("#members")
	if !strings.Contains(members, "static-1") || !strings.Contains(members, "up") {
		t.Errorf("pool page: %q", members)
	}
	shot(t, ctx, dir, "console-pool")
	// Add a second static member through the form, then drain, undrain
	// and remove it with the buttons (the real pool manager behind them).
	pw2 := pw + "-2"
	addr2, _ := ctlSSServer(t, pw2)
	_, port2, _ := strings.Cut(addr2, ":")
	run("add a member",
		chromedp.SendKeys(chromedp.ID("name"), "static-2"),
		chromedp.SetValue(chromedp.ID("backend"), "static"),
		chromedp.SendKeys(chromedp.ID("host"), "127.0.0.1"),
		chromedp.SendKeys(chromedp.ID("port"), port2),
		chromedp.SendKeys(chromedp.ID("password"), pw2),
		chromedp.Submit(chromedp.ID("name")),
		chromedp.WaitVisible(chromedp.CSS(".notice")))
	if members := text("#members"); !strings.Contains(members, "static-2") {
		t.Fatalf("pool page after adding static-2: %q", members)
	}
	for _, step := range []struct{ button, done, notice string }{
		{"Drain", "drain", "The member is draining."}, {"Undrain", "undrain", "The member takes keys again."}, {"Remove", "remove", "The member was removed."},
	} {
		// Every page load brings back the real confirm().
		if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("window.confirm = () => true; true")); err != nil {
			t.Fatal(err)
		}
		sel := chromedp.Search(`//tr[td[contains(., "static-2")]]//button[normalize-space(.)="` + step.button + `"]`)
		sctx, cancel := context.WithTimeout(ctx, stepTimeout)
		resp, err := chromedp.RunResponse(sctx, chromedp.Click(sel))
		cancel()
		if err != nil || resp == nil || !strings.HasSuffix(resp.URL, "/console/pool?done="+step.done) {
			t.Fatalf("%s: %v, landed on %v", step.button, err, resp)
		}
		run("notice", chromedp.WaitVisible(chromedp.CSS(".notice")))
		if n := text(".notice"); n != step.notice {
			t.Errorf("after %s: notice %q, want %q", step.button, n, step.notice)
		}
	}
	if members := text("#members"); strings.Contains(members, "static-2") || !strings.Contains(members, "static-1") {
		t.Errorf("pool page after removing static-2: %q", members)
	}
	labelled("pool")
	run("gateways", chromedp.Navigate(f.ctl.url+"/console/gateways"), chromedp.WaitVisible(chromedp.ID("gateways")))
	top := text("#top")
	if !strings.Contains(top, "browser") {
		t.Errorf("top users: %q", top)
	}
	if fleet, err := dataBytes(ctx, "#fleet-total"); err != nil || fleet < 2*moved {
		t.Errorf("fleet usage %d (%v), want ≥ %d", fleet, err, 2*moved)
	}
	shot(t, ctx, dir, "console-gateways")

	// The user's page.
	run("user page", chromedp.Navigate(f.ctl.url+"/u/"+tokenStr), chromedp.WaitVisible(chromedp.ID("qr-ssconf")))
	userKey := value("#key-ssconf")
	usedBefore := f.ctl.token(cc.TokenID).Usage.Total
	userUsed, err := dataBytes(ctx, "#user-used")
	if err != nil {
		t.Fatal(err)
	}
	remaining, err := dataBytes(ctx, "#user-remaining")
	if err != nil {
		t.Fatal(err)
	}
	usedAfter := f.ctl.token(cc.TokenID).Usage.Total
	if userKey != cc.AccessKeys.SSConf || userUsed < usedBefore || userUsed > usedAfter || userUsed < 2*moved || remaining != quota-userUsed {
		t.Errorf("user page: key %q, used %d, remaining %d; want %q, %d to %d used, %d remaining", userKey, userUsed, remaining, cc.AccessKeys.SSConf, usedBefore, usedAfter, quota-userUsed)
	}
	if s := qrOf("#qr-ssconf"); s != cc.AccessKeys.SSConf {
		t.Errorf("user page's QR code: %q", s)
	}
	shot(t, ctx, dir, "console-user")
	labelled("user page")

	// Readable on a phone: at 390 px nothing runs off the side (wide
	// tables scroll in their own box).
	for _, p := range []string{"/console/tokens/" + cc.TokenID, "/console/", "/u/" + tokenStr} {
		run("phone "+p, chromedp.EmulateViewport(390, 844), chromedp.Navigate(f.ctl.url+p))
		wide, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("document.documentElement.scrollWidth > window.innerWidth"))
		if err != nil || wide {
			culprits, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`Array.from(document.querySelectorAll("body *")).filter(e => !e.closest(".scroll > *") && e.getBoundingClientRect().right > window.innerWidth + 1).slice(0, 8).map(e => e.tagName + "." + e.className + "#" + e.id + ":" + Math.round(e.getBoundingClientRect().right)).join(" ")`))
			t.Errorf("%s at 390 px: wider than the screen (%v): %s", p, err, culprits)
		}
	}
	// The user's page as a phone shows it (the visible part only: a full
	// page screenshot would resize the viewport).
	if png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot()); err != nil {
		t.Errorf("phone screenshot: %v", err)
	} else if err := os.WriteFile(filepath.Join(dir, "console-user-phone.png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
	run("desktop again", chromedp.EmulateViewport(1200, 900))

	// A change without the form token is refused, even with the cookie.
	got, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{})
	if err != nil {
		t.Fatal(err)
	}
	var session string
	for _, c := range got.Cookies {
		if c.Name == console.CookieName {
			session = c.Value
			if !c.HTTPOnly || !c.Secure || c.SameSite != network.CookieSameSiteStrict || c.Path != "/" {
				t.Errorf("session cookie %+v: want HttpOnly, Secure, SameSite=Strict, Path=/", c)
			}
		}
	}
	if session == "" {
		t.Fatalf("no session cookie in the browser: %+v", got.Cookies)
	}
	status, _ := consolePost(t, f.ctl.url+"/console/tokens/"+cc.TokenID+"/revoke", session, url.Values{})
	if status != http.StatusForbidden {
		t.Errorf("revoke without the form token: %d, want 403", status)
	}
	if st := f.ctl.token(cc.TokenID).Status; st != "active" {
		t.Fatalf("token %s after a refused revoke", st)
	}

	// Revoke from the console: the live session ends within a second.
	run("token page again", chromedp.Navigate(f.ctl.url+"/console/tokens/"+cc.TokenID), chromedp.WaitVisible(chromedp.ID("revoke")))
	// confirm() would wait for a person: say yes (DevTools' evaluation is
	// not bound by the page's CSP).
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("window.confirm = () => true; true")); err != nil {
		t.Fatal(err)
	}
	closed := watchClose(sc, 20*time.Second, nil)
	clicked := time.Now()
	run("revoke", chromedp.Click(chromedp.ID("revoke")), chromedp.WaitVisible(chromedp.CSS(".notice")))
	c := <-closed
	var v struct {
		Status    string    `json:"status"`
		RevokedAt time.Time `json:"revoked_at"`
	}
	f.ctl.admin("GET", "/v1/tokens/"+cc.TokenID, nil, http.StatusOK, &v)
	took := c.at.Sub(v.RevokedAt)
	t.Logf("session closed %v after the revocation (%v after the click)", took.Round(time.Millisecond), c.at.Sub(clicked).Round(time.Millisecond))
	if v.Status != "revoked" || c.code != ws.StatusPolicyViolation || took > revokeWithin {
		t.Errorf("after revoke: status %q, close %d (%v) %v after revoked_at, want revoked, 1008, ≤ %v", v.Status, c.code, c.err, took, revokeWithin)
	}
	status2 := text("#token-status")
	if status2 != "revoked" {
		t.Errorf("token page says %q after revoke", status2)
	}
	if err := f.b.decoy(tokenStr); err != nil {
		t.Error(err)
	}

	// Without the cookie no console page loads: the decoy answers.
	if _, err := chromedp.Call(ctx, network.ClearBrowserCookies, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/console/", "/console/tokens/" + cc.TokenID, "/console/pool", "/console/gateways"} {
		run("page without cookie", chromedp.Navigate(f.ctl.url+p))
		body := text("body")
		if !strings.Contains(body, "404 Not Found") || !strings.Contains(body, "nginx") || strings.Contains(body, "HTTVPS") {
			t.Errorf("GET %s without the cookie: %q, want nginx's 404", p, body)
		}
	}
	// A revoked token's user page is the decoy too.
	if status, body := consoleGet(t, f.ctl.url+"/u/"+tokenStr); status != 404 || !strings.Contains(body, "nginx") {
		t.Errorf("user page of a revoked token: %d %q", status, body)
	}
}

// consolePost posts form with the session cookie and no form token.
func consolePost(t *testing.T, u, session string, form url.Values) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Cookie", console.CookieName+"="+session)
	return consoleDo(t, req)
}

func consoleGet(t *testing.T, u string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return consoleDo(t, req)
}

func consoleDo(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}
