package main

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/httvps/httvps/internal/testpeer"
)

// process is run() in a goroutine, stopped like a signal would.
type process struct {
	t         *testing.T
	stop      chan os.Signal
	done      chan int
	apiAddr   string
	adminAddr string
}

func start(t *testing.T, args []string) *process {
	t.Helper()
	p := &process{t: t, stop: make(chan os.Signal, 2), done: make(chan int, 1)}
	ready := make(chan struct{})
	e := env{
		logOut: io.Discard,
		stop:   p.stop,
		hup:    make(chan os.Signal),
		listening: func(api, admin net.Addr) {
			p.apiAddr = api.String()
			if admin != nil {
				p.adminAddr = admin.String()
			}
			close(ready)
		},
	}
	go func() { p.done <- run(fakeSources(args, nil, nil), e) }()
	select {
	case <-ready:
	case code := <-p.done:
		t.Fatalf("run exited with %d before listening", code)
	case <-time.After(15 * time.Second):
		t.Fatal("run did not start listening")
	}
	return p
}

// terminate sends SIGTERM and returns the exit code.
func (p *process) terminate() int {
	p.t.Helper()
	p.stop <- syscall.SIGTERM
	select {
	case code := <-p.done:
		return code
	case <-time.After(20 * time.Second):
		p.t.Fatal("run did not stop after SIGTERM")
		return -1
	}
}

type client struct {
	t    *testing.T
	base string
	hc   *http.Client
}

func (c *client) do(method, path, auth, body string) (int, []byte) {
	c.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, c.base+path, r)
	if err != nil {
		c.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// exercise drives the API of a freshly started control plane: no member
// yet, then a static member on a live loopback port, a token on it, and
// the admin listener.
func exercise(t *testing.T, c *client, adminBase string) (tokenID string) {
	if code, body := c.do("GET", "/healthz", testKey, ""); code != 200 {
		t.Fatalf("healthz: %d %s", code, body)
	}
	// Strangers get the decoy, not the API.
	if code, body := c.do("GET", "/healthz", "", ""); code != 404 || !strings.Contains(string(body), "<center>nginx</center>") {
		t.Fatalf("healthz without the key: %d %s", code, body)
	}
	if code, body := c.do("POST", "/v1/tokens", testKey, `{}`); code != 503 || !strings.Contains(string(body), `"no_members"`) {
		t.Fatalf("token without members: %d %s", code, body)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	port := ln.Addr().(*net.TCPAddr).Port
	code, body := c.do("POST", "/v1/pool/members", testKey,
		`{"name":"local","backend":"static","host":"127.0.0.1","static":{"port":`+strconv.Itoa(port)+`,"cipher":"chacha20-ietf-poly1305","password":"shared-static-secret"}}`)
	if code != 201 {
		t.Fatalf("add member: %d %s", code, body)
	}
	code, body = c.do("POST", "/v1/tokens", testKey, `{"label":"e2e"}`)
	if code != 201 {
		t.Fatalf("create token: %d %s", code, body)
	}
	var tok struct {
		ID, Token string
	}
	if err := json.Unmarshal(body, &tok); err != nil {
		t.Fatal(err)
	}
	code, body = c.do("GET", "/v1/client/config", tok.Token, "")
	if code != 200 || !strings.Contains(string(body), `"secret":"shared-static-secret"`) {
		t.Fatalf("client config: %d %s", code, body)
	}
	if code, _ := c.do("GET", "/metrics", "", ""); code != 404 {
		t.Errorf("/metrics on the API without the key: %d", code)
	}
	admin := &client{t: t, base: adminBase, hc: http.DefaultClient}
	code, body = admin.do("GET", "/metrics", "", "")
	if code != 200 || !strings.Contains(string(body), `httvps_control_requests_total{route="POST /v1/tokens",status="201"} 1`) {
		t.Errorf("admin /metrics: %d\n%s", code, body)
	}
	if code, _ := admin.do("GET", "/readyz", "", ""); code != 200 {
		t.Errorf("admin /readyz: %d", code)
	}
	return tok.ID
}

func TestRunEmbeddedTLS(t *testing.T) {
	dir := t.TempDir()
	cert := testpeer.NewCert(t, testpeer.CertSpec{
		DNSNames: []string{"ctl.test"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotAfter: time.Now().Add(time.Hour), Leaf: true,
	})
	certFile, keyFile := cert.PEMFile, cert.KeyFile
	args := []string{
		"-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0", "-admin-key", testKey,
		"-data-dir", filepath.Join(dir, "data"), "-tls-cert", certFile, "-tls-key", keyFile,
		"-public-url", "https://ctl.test", "-health-every", "1h", "-log-level", "error",
	}
	p := start(t, args)
	c := &client{t: t, base: "https://" + p.apiAddr, hc: &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
	}}
	id := exercise(t, c, "http://"+p.adminAddr)
	if code := p.terminate(); code != 0 {
		t.Fatalf("exit %d after SIGTERM", code)
	}

	// The embedded store keeps the token across a restart.
	p = start(t, args)
	c.base = "https://" + p.apiAddr
	c.hc.CloseIdleConnections()
	if code, body := c.do("GET", "/v1/tokens/"+id, testKey, ""); code != 200 {
		t.Errorf("token after restart: %d %s", code, body)
	}
	if code := p.terminate(); code != 0 {
		t.Fatalf("exit %d after SIGTERM", code)
	}
}

func TestRunRedis(t *testing.T) {
	addr := testpeer.StartRedis(t, testpeer.RedisSpec{}).Addr()
	p := start(t, []string{
		"-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0", "-admin-key", testKey,
		"-redis", "redis://" + addr + "/0", "-health-every", "1h", "-log-level", "error",
	})
	c := &client{t: t, base: "http://" + p.apiAddr, hc: &http.Client{Timeout: 10 * time.Second}}
	exercise(t, c, "http://"+p.adminAddr)
	if code := p.terminate(); code != 0 {
		t.Fatalf("exit %d after SIGTERM", code)
	}
}

func TestRunBadConfig(t *testing.T) {
	var out strings.Builder
	src := fakeSources([]string{"-admin-key", "short"}, nil, nil)
	src.usage = &out
	if code := run(src, env{logOut: io.Discard}); code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	if !strings.Contains(out.String(), "admin key") {
		t.Errorf("message %q", out.String())
	}
}
