package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/httvps/httvps/control/console"
	"github.com/httvps/httvps/internal/testpeer"
)

// lockedBuffer is an io.Writer the test reads while run writes.
type lockedBuffer = testpeer.LockedBuffer

func noEnv(string) (string, bool) { return "", false }

// upProc is `httvps up` running in-process.
type upProc struct {
	out, errs *lockedBuffer
	cancel    context.CancelFunc
	done      chan int
}

// startUp runs `httvps up args...` and waits for its banner. Its stdout
// is a pipe, as under systemd or `| tee`: not a terminal, so the banner
// holds no secret.
func startUp(t *testing.T, args ...string) *upProc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	u := &upProc{out: &lockedBuffer{}, errs: &lockedBuffer{}, cancel: cancel, done: make(chan int, 1)}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	copied := make(chan struct{})
	go func() {
		io.Copy(u.out, pr)
		pr.Close()
		close(copied)
	}()
	go func() {
		code := run(ctx, append([]string{"up"}, args...), env{stdout: pw, stderr: u.errs, lookupEnv: noEnv})
		pw.Close()
		<-copied
		u.done <- code
	}()
	deadline := time.After(30 * time.Second)
	for !strings.Contains(u.out.String(), "Stop with Ctrl-C") {
		select {
		case code := <-u.done:
			t.Fatalf("httvps up exited with %d:\n%s\n%s", code, u.out, u.errs)
		case <-deadline:
			cancel()
			t.Fatalf("httvps up printed no banner:\n%s\n%s", u.out, u.errs)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Cleanup(func() { u.stop(t) })
	return u
}

// stop cancels run (as SIGTERM does) and checks it exits 0.
func (u *upProc) stop(t *testing.T) {
	t.Helper()
	if u.cancel == nil {
		return
	}
	u.cancel()
	u.cancel = nil
	select {
	case code := <-u.done:
		if code != 0 {
			t.Errorf("httvps up exited with %d:\n%s", code, u.errs)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("httvps up did not stop:\n%s", u.errs)
	}
}

// field returns the value printed after "  name  " in the banner.
func field(t *testing.T, out, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(name) + ` {2,}(\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %q in output:\n%s", name, out)
	}
	return m[1]
}

func needPeers(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("%s not installed (make deps)", n)
		}
	}
}

func certPool(t *testing.T, file string) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pem) {
		t.Fatalf("%s: no certificate", file)
	}
	return p
}

type outlineYAML struct {
	Transport *struct {
		Type string `yaml:"$type"`
		TCP  struct {
			Type     string `yaml:"$type"`
			Endpoint struct {
				Type string `yaml:"$type"`
				URL  string `yaml:"url"`
			} `yaml:"endpoint"`
			Cipher string `yaml:"cipher"`
			Secret string `yaml:"secret"`
		} `yaml:"tcp"`
	} `yaml:"transport"`
	Error *struct {
		Message string `yaml:"message"`
	} `yaml:"error"`
}

// fetchSSConf fetches an ssconf:// key as the Outline apps do (https GET).
func fetchSSConf(t *testing.T, key string, pool *x509.CertPool) outlineYAML {
	t.Helper()
	u, _, _ := strings.Cut(strings.Replace(key, "ssconf://", "https://", 1), "#")
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(u)
	if err != nil {
		t.Fatalf("GET ssconf: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET ssconf: %s: %s", resp.Status, body)
	}
	var doc outlineYAML
	if err := yaml.Unmarshal(body, &doc); err != nil {
		t.Fatalf("ssconf YAML: %v\n%s", err, body)
	}
	return doc
}

// ssSession opens a Shadowsocks stream to target through the gateway's
// Outline TCP path over TLS.
func ssSession(ctx context.Context, gwURL, token, method, secret, target string, pool *x509.CertPool) (*testpeer.WSConn, *testpeer.SSConn, error) {
	ws, err := testpeer.DialWSS(ctx, gwURL+"/"+token+"/tcp", &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		return nil, nil, err
	}
	ws.NetConn().SetDeadline(time.Now().Add(20 * time.Second))
	c, err := testpeer.NewCipher(method, secret)
	if err != nil {
		ws.Close()
		return nil, nil, err
	}
	sc, err := c.NewSSConn(ws, target)
	if err != nil {
		ws.Close()
		return nil, nil, err
	}
	return ws, sc, nil
}

// fetchThrough downloads n bytes from origin through the gateway.
func fetchThrough(t *testing.T, gwURL, token, method, secret string, origin *testpeer.Origin, n int64, pool *x509.CertPool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ws, sc, err := ssSession(ctx, gwURL, token, method, secret, origin.Addr, pool)
	if err != nil {
		t.Fatalf("session through the gateway: %v", err)
	}
	defer ws.Close()
	sum, got, err := testpeer.HTTPGetSHA256(sc, origin.Addr, "/bytes/"+strconv.FormatInt(n, 10))
	if err != nil || got != n || sum != testpeer.PseudoRandomSHA256(n, 0) {
		t.Fatalf("download through the gateway: %d bytes, err %v", got, err)
	}
}

// admin runs `httvps admin` against u and returns stdout, stderr, status.
func admin(ctlURL, dir string, args ...string) (string, string, int) {
	var out, errs bytes.Buffer
	all := append([]string{"admin", "-control", ctlURL, "-data-dir", dir}, args...)
	code := run(context.Background(), all, env{stdout: &out, stderr: &errs, lookupEnv: noEnv})
	return out.String(), errs.String(), code
}

func mustAdmin(t *testing.T, ctlURL, dir string, args ...string) string {
	t.Helper()
	out, errs, code := admin(ctlURL, dir, args...)
	if code != 0 {
		t.Fatalf("httvps admin %s: exit %d: %s", strings.Join(args, " "), code, errs)
	}
	return out
}

// header checks a table's first line holds exactly cols.
func header(t *testing.T, out string, cols ...string) []string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if got := strings.Fields(lines[0]); strings.Join(got, " ") != strings.Join(cols, " ") {
		t.Fatalf("header %q, want %q", got, cols)
	}
	return lines[1:]
}

// TestUp runs the single-node installation with a real ss-server as its
// static member: first start, a stock-compatible session with the printed
// token, the admin CLI, a restart that keeps everything, and revocation.
func TestUp(t *testing.T) {
	needPeers(t, "ss-server")
	const method, password = testpeer.DefaultMethod, "up-test:pass word"
	ss := testpeer.SSServer(t, password, method)
	origin := testpeer.StartOrigin(t)
	dir := filepath.Join(t.TempDir(), "data")
	gwAddr := "127.0.0.1:" + strconv.Itoa(testpeer.FreePort(t))
	ctlAddr := "127.0.0.1:" + strconv.Itoa(testpeer.FreePort(t))
	gwURL, ctlURL := "wss://"+gwAddr, "https://"+ctlAddr
	args := []string{"-data-dir", dir, "-listen", gwAddr, "-control-listen", ctlAddr,
		"-member", "static:" + ss + ":" + method + ":" + password, "-drain-timeout", "2s", "-log-level", "info"}

	u := startUp(t, args...)
	out := u.out.String()

	// The admin key and the first token: stdout is a pipe, so the banner
	// names the 0600 files that hold them and neither it nor the log
	// holds a secret (issue 7, finding 6).
	key := readSecretFile(t, filepath.Join(dir, "admin.key"))
	if len(key) < 32 {
		t.Fatalf("admin key %q", key)
	}
	if got := field(t, out, "admin key"); got != "in" || !strings.Contains(out, "  admin key     in "+filepath.Join(dir, "admin.key")+" (new, mode 0600") {
		t.Errorf("admin key line:\n%s", out)
	}
	tokenFile := filepath.Join(dir, "first-token.txt")
	keys := readSecretFile(t, tokenFile)
	if !strings.Contains(out, "\n  "+tokenFile+"\n") {
		t.Errorf("the banner does not name %s:\n%s", tokenFile, out)
	}
	// What clients trust is the local CA; the leaf it signed is served.
	certFile, leafFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "leaf.pem")
	pool := certPool(t, certFile)
	cert1, _ := os.ReadFile(certFile)
	leaf1, _ := os.ReadFile(leafFile)
	checkServedChain(t, out, certFile, gwAddr, ctlAddr)

	// The first token and its keys.
	tokenID, token := field(t, keys, "token id"), field(t, keys, "token")
	if !strings.Contains(out, "(token id "+tokenID+")") {
		t.Errorf("the banner does not name token %s:\n%s", tokenID, out)
	}
	ssconf := field(t, keys, "ssconf")
	// The key names the gateway's port: the control API listens on
	// loopback only (ctlAddr), and clients need nothing but the gateway.
	if want := "ssconf://" + gwAddr + "/v1/outline/" + token + "#first"; ssconf != want {
		t.Errorf("ssconf %q, want %q", ssconf, want)
	}
	ssKey := field(t, keys, "ss")
	if !strings.HasPrefix(ssKey, "ss://") || !strings.Contains(ssKey, "%2F"+token+"%2Ftcp") {
		t.Errorf("ss key %q", ssKey)
	}
	stock := regexp.MustCompile(`(?m)^  (ss-local .*)$`).FindStringSubmatch(keys)
	wantOpts := "'tls;host=127.0.0.1;path=/" + token + "/tcp;mux=0;cert=" + certFile + "'"
	if stock == nil || !strings.Contains(stock[1], "--plugin ss-v2ray-plugin --plugin-opts "+wantOpts) ||
		!strings.Contains(stock[1], "-k 'up-test:pass word' -m "+method) {
		t.Fatalf("stock client command missing or wrong:\n%s", keys)
	}
	if !strings.Contains(keys, "curl --socks5-hostname 127.0.0.1:1080 ") {
		t.Errorf("no curl example:\n%s", keys)
	}
	for name, secret := range map[string]string{"admin key": key, "token": token, "password": password,
		"ss:// userinfo": strings.TrimPrefix(ssKey[:strings.Index(ssKey, "@")], "ss://")} {
		if strings.Contains(out, secret) || strings.Contains(u.errs.String(), secret) {
			t.Errorf("the %s reached stdout or stderr:\n%s\n%s", name, out, u.errs)
		}
	}

	// The Outline dynamic key, over HTTPS from the gateway.
	doc := fetchSSConf(t, ssconf, pool)
	if doc.Transport == nil || doc.Transport.Type != "tcpudp" || doc.Transport.TCP.Type != "shadowsocks" ||
		doc.Transport.TCP.Endpoint.Type != "websocket" || doc.Transport.TCP.Endpoint.URL != gwURL+"/"+token+"/tcp" ||
		doc.Transport.TCP.Cipher != method || doc.Transport.TCP.Secret != password {
		t.Fatalf("ssconf document: %+v", doc.Transport)
	}

	// The client config from the gateway too, its httvps:// key pointing
	// the reference client there for refreshes.
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, _ := http.NewRequest("GET", "https://"+gwAddr+"/v1/client/config", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var cc clientConfigJSON
	err = json.NewDecoder(resp.Body).Decode(&cc)
	resp.Body.Close()
	hc.CloseIdleConnections()
	if err != nil || resp.StatusCode != 200 || cc.Secret != password || cc.AccessKeys.SSConf != ssconf ||
		!strings.Contains(cc.AccessKeys.HTTVPS, "control=https%3A%2F%2F"+strings.ReplaceAll(gwAddr, ":", "%3A")) {
		t.Errorf("client config from the gateway: %d %+v %v", resp.StatusCode, cc, err)
	}

	// Shadowsocks through the gateway with the printed token.
	fetchThrough(t, gwURL, token, method, password, origin, 300_000, pool)

	// The reference client with the httvps:// key: it pins the CA, and
	// the control API and the gateway serve a leaf the CA signed.
	httvpsKeyThrough(t, field(t, keys, "httvps"), token, certFile)

	// The stock client with the printed plugin options.
	if _, err := exec.LookPath("ss-local"); err == nil {
		if _, err := exec.LookPath("ss-v2ray-plugin"); err == nil {
			opts := strings.Trim(wantOpts, "'")
			socks := testpeer.SSLocalWithOpts(t, gwAddr, password, method, opts)
			if err := testpeer.WaitSOCKSReady(socks, origin, 15*time.Second); err != nil {
				t.Fatalf("ss-local + v2ray-plugin through the gateway: %v", err)
			}
		}
	}

	adminCLI(t, ctlURL, dir, tokenID)

	// Restart on the same data directory: nothing is lost.
	u.stop(t)
	u = startUp(t, args...)
	out = u.out.String()
	if !strings.Contains(out, "Tokens issued before are kept") || strings.Contains(out, "token id") {
		t.Errorf("restart banner:\n%s", out)
	}
	if field(t, out, "admin key") != "in" {
		t.Errorf("restart printed the admin key again:\n%s", out)
	}
	if cert2, _ := os.ReadFile(certFile); !bytes.Equal(cert1, cert2) {
		t.Error("the CA changed across the restart")
	}
	if leaf2, _ := os.ReadFile(leafFile); !bytes.Equal(leaf1, leaf2) {
		t.Error("the leaf was issued again across the restart")
	}
	served := servedCert(t, gwAddr)
	if der, _ := firstCertDER(leafFile); !bytes.Equal(served, der) {
		t.Error("gateway serves another certificate than leaf.pem")
	}
	checkServedChain(t, out, certFile, gwAddr, ctlAddr)
	lines := header(t, mustAdmin(t, ctlURL, dir, "pool", "list"), "ID", "NAME", "BACKEND", "ENDPOINT", "STATE", "KEYS", "LOAD", "CHECKED", "ERROR")
	if len(lines) != 1 {
		t.Errorf("-member added again on restart: %q", lines)
	}
	if doc := fetchSSConf(t, ssconf, pool); doc.Transport == nil || doc.Transport.TCP.Secret != password {
		t.Fatalf("ssconf after restart: %+v", doc)
	}
	fetchThrough(t, gwURL, token, method, password, origin, 100_000, pool)

	// Revocation closes the live session with 1008 and refuses new ones.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ws, sc, err := ssSession(ctx, gwURL, token, method, password, origin.Addr, pool)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	// One exchange proves the session is up before the revocation.
	if _, err := io.WriteString(sc, "GET /bytes/10 HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	if _, err := sc.Read(buf); err != nil {
		t.Fatalf("session before revocation: %v", err)
	}
	if out := mustAdmin(t, ctlURL, dir, "tokens", "revoke", tokenID); !strings.Contains(out, "revoked") {
		t.Errorf("revoke output %q", out)
	}
	for {
		if _, err := ws.Read(buf); err != nil {
			break
		}
	}
	if code, _, ok := ws.CloseCode(); !ok || code != 1008 {
		t.Errorf("live session ended with close %d (received %v), want 1008", code, ok)
	}
	if ws2, _, err := ssSession(ctx, gwURL, token, method, password, origin.Addr, pool); err == nil {
		ws2.Close()
		t.Error("a new session with the revoked token was accepted")
	}
	if doc := fetchSSConf(t, ssconf, pool); doc.Error == nil || !strings.Contains(doc.Error.Message, "revoked") {
		t.Errorf("ssconf of a revoked token: %+v", doc)
	}
	show := mustAdmin(t, ctlURL, dir, "tokens", "show", tokenID, "--json")
	var tj tokenJSON
	if err := json.Unmarshal([]byte(show), &tj); err != nil || tj.Status != "revoked" || tj.RevokedAt == nil {
		t.Errorf("revoked token: %v %s", err, show)
	}

	// Days as -ttl, SI sizes as -quota (created last: the lists above count tokens).
	var days tokenJSON
	if err := json.Unmarshal([]byte(mustAdmin(t, ctlURL, dir, "tokens", "create", "--json", "--label", "dave", "--ttl", "30d", "--quota", "10GB")), &days); err != nil {
		t.Fatal(err)
	}
	if days.ExpiresAt == nil || time.Until(*days.ExpiresAt) < 29*24*time.Hour || time.Until(*days.ExpiresAt) > 31*24*time.Hour || days.QuotaBytes != 10e9 {
		t.Errorf("--ttl 30d --quota 10GB: expires %v, quota %d", days.ExpiresAt, days.QuotaBytes)
	}
	mustAdmin(t, ctlURL, dir, "tokens", "revoke", days.ID)
	if _, errs, code := admin(strings.Replace(ctlURL, "https://", "http://", 1), dir, "tokens", "list"); code != 1 || !strings.Contains(errs, "it serves HTTPS, try -control https://") {
		t.Errorf("http:// to the HTTPS control plane: exit %d: %s", code, errs)
	}
}

// readSecretFile returns the trimmed contents of a file `httvps up` keeps
// a secret in, checking it is mode 0600.
func readSecretFile(t *testing.T, file string) string {
	t.Helper()
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: mode %v, want 0600", file, fi.Mode().Perm())
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// servedCert is the leaf certificate the server at addr presents.
func servedCert(t *testing.T, addr string) []byte {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Raw
}

// adminCLI drives every admin command against a running node.
func adminCLI(t *testing.T, ctlURL, dir, firstID string) {
	// tokens create: table, then JSON.
	out := mustAdmin(t, ctlURL, dir, "tokens", "create", "--label", "alice", "--ttl", "24h", "--quota", "10GiB", "--max-sessions", "3", "--max-devices", "2")
	lines := header(t, out[strings.Index(out, "\n")+1:], "FIELD", "VALUE")
	rows := map[string]string{}
	for _, l := range lines {
		k, v, _ := strings.Cut(l, " ")
		rows[k] = strings.TrimSpace(v)
	}
	if rows["label"] != "alice" || rows["status"] != "active" || rows["quota"] != "10 GiB" || rows["sessions"] != "0 of 3" || rows["devices"] != "0 of 2" ||
		len(rows["token"]) != 43 || !strings.HasPrefix(rows["ssconf"], "ssconf://") || !strings.HasPrefix(rows["ss"], "ss://") {
		t.Errorf("tokens create table: %q", rows)
	}
	aliceID := rows["id"]

	// Usage errors: one line and a hint, exit 2, before any request; help
	// of a group exits 0; days are a -ttl; a plaintext URL for the HTTPS
	// control plane says so.
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"frob"}, 2, `unknown command "frob"`},
		{[]string{"tokens"}, 2, "give one of: create, list, show, revoke"},
		{[]string{"tokens", "frob"}, 2, `unknown command "tokens frob"`},
		{[]string{"tokens", "-h"}, 0, "tokens revoke ID"},
		{[]string{"tokens", "create", "--ttl", "3x"}, 2, "is not a duration like 30d"},
		{[]string{"tokens", "create", "--quota", "10XB"}, 2, "Run `httvps admin tokens create -h` for its flags."},
	} {
		_, errs, code := admin(ctlURL, dir, tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.want) || (code == 2 && strings.Count(errs, "\n") > 2) {
			t.Errorf("httvps admin %s: exit %d, stderr:\n%s\nwant exit %d and %q in at most two lines", strings.Join(tc.args, " "), code, errs, tc.code, tc.want)
		}
	}

	if !strings.Contains(out, "  ssconf  the Outline apps") || !strings.Contains(out, "  ss      ss-local with v2ray-plugin only") {
		t.Errorf("tokens create does not say which key is for which client:\n%s", out)
	}

	// The only member is static: a cipher it does not serve is refused
	// (exit 1, the API's reason), not silently replaced by its own.
	if _, errs, code := admin(ctlURL, dir, "tokens", "create", "--label", "carol", "--cipher", otherCipher(testpeer.DefaultMethod)); code != 1 ||
		!strings.Contains(errs, "static members serve "+testpeer.DefaultMethod+" only") {
		t.Errorf("tokens create with a cipher the static member does not serve: exit %d: %s", code, errs)
	}
	var created tokenJSON
	out = mustAdmin(t, ctlURL, dir, "tokens", "create", "--json", "--label", "bob")
	if err := json.Unmarshal([]byte(out), &created); err != nil {
		t.Fatalf("tokens create --json: %v\n%s", err, out)
	}
	// The only member is static, so the token gets its secret (and
	// cipher); the keys say so.
	if created.ID == "" || created.Label != "bob" || created.Token == "" || created.Status != "active" ||
		created.Cipher != testpeer.DefaultMethod || created.AccessKeys == nil || created.AccessKeys.SSConf == "" ||
		len(created.Assignments) != 1 {
		t.Errorf("tokens create --json: %+v", created)
	}

	// tokens list.
	out = mustAdmin(t, ctlURL, dir, "tokens", "list")
	lines = header(t, out, "ID", "LABEL", "STATUS", "CIPHER", "USED", "QUOTA", "MAX-SESSIONS", "MAX-DEVICES", "EXPIRES", "CREATED")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], firstID+" ") || !strings.Contains(lines[1], " 10 GiB ") {
		t.Errorf("tokens list:\n%s", out)
	}
	var list tokenListJSON
	raw := map[string]json.RawMessage{}
	out = mustAdmin(t, ctlURL, dir, "tokens", "list", "--json", "--limit", "2")
	if json.Unmarshal([]byte(out), &list) != nil || json.Unmarshal([]byte(out), &raw) != nil ||
		len(list.Tokens) != 2 || list.NextCursor == "" || raw["next_cursor"] == nil {
		t.Fatalf("tokens list --json --limit 2:\n%s", out)
	}
	out = mustAdmin(t, ctlURL, dir, "tokens", "list", "--limit", "2", "--cursor", list.NextCursor)
	if lines = header(t, out, "ID", "LABEL", "STATUS", "CIPHER", "USED", "QUOTA", "MAX-SESSIONS", "MAX-DEVICES", "EXPIRES", "CREATED"); len(lines) != 1 || !strings.HasPrefix(lines[0], created.ID) {
		t.Errorf("second page:\n%s", out)
	}

	// tokens show, table and JSON (flags after the argument).
	out = mustAdmin(t, ctlURL, dir, "tokens", "show", aliceID)
	if !strings.Contains(out, "sessions  0 of 3") || !strings.Contains(out, "used      0 B (up 0 B, down 0 B)") {
		t.Errorf("tokens show:\n%s", out)
	}
	var shown tokenJSON
	out = mustAdmin(t, ctlURL, dir, "tokens", "show", aliceID, "--json")
	if json.Unmarshal([]byte(out), &shown) != nil || shown.ID != aliceID || shown.Sessions == nil || shown.Usage == nil ||
		shown.QuotaBytes != 10<<30 || shown.MaxSessions != 3 || shown.ExpiresAt == nil || shown.Token != "" {
		t.Errorf("tokens show --json:\n%s", out)
	}

	// tokens edit, reset, rotate, usage; fleet usage.
	kvRows := func(out string) map[string]string {
		rows := map[string]string{}
		for _, l := range strings.Split(out, "\n") {
			k, v, _ := strings.Cut(l, " ")
			rows[k] = strings.TrimSpace(v)
		}
		return rows
	}
	rows = kvRows(mustAdmin(t, ctlURL, dir, "tokens", "edit", aliceID, "--quota", "5GiB", "--period", "month", "--anchor", "created",
		"--expires-at", "never", "--label", "alice2", "--max-sessions", "0", "--max-devices", "2"))
	if rows["quota"] != "5 GiB" || !strings.HasPrefix(rows["period"], "month (from the creation date), now ") || rows["expires"] != "never" ||
		rows["label"] != "alice2" || rows["sessions"] != "0 of unlimited" || rows["devices"] != "0 of 2" {
		t.Errorf("tokens edit: %q", rows)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"tokens", "edit", aliceID}, 2, "give at least one of"},
		{[]string{"tokens", "edit", aliceID, "--ttl", "1h", "--expires-at", "never"}, 2, "not both"},
		{[]string{"tokens", "edit", aliceID, "--max-sessions", "-1"}, 2, "Run `httvps admin tokens edit -h`"},
		{[]string{"tokens", "edit", aliceID, "--period", "year"}, 1, "error: invalid_argument: quota_period must be none, day, week or month"},
		{[]string{"tokens", "usage", aliceID, "--step", "minute"}, 1, "error: invalid_argument: step must be hour or day"},
		{[]string{"tokens", "usage", aliceID, "--from", "soon"}, 1, "neither an RFC 3339 time nor a duration"},
		{[]string{"tokens", "rotate", "no-such-token"}, 1, "error: not_found: token not found"},
	} {
		_, errs, code := admin(ctlURL, dir, tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.want) {
			t.Errorf("httvps admin %s: exit %d, stderr:\n%s\nwant exit %d and %q", strings.Join(tc.args, " "), code, errs, tc.code, tc.want)
		}
	}
	if rows = kvRows(mustAdmin(t, ctlURL, dir, "tokens", "reset", aliceID)); rows["used"] != "0 B (up 0 B, down 0 B)" {
		t.Errorf("tokens reset: %q", rows)
	}
	rows = kvRows(mustAdmin(t, ctlURL, dir, "tokens", "rotate", aliceID))
	if rows["id"] != aliceID || len(rows["token"]) != 43 || !strings.HasPrefix(rows["ssconf"], "ssconf://") {
		t.Errorf("tokens rotate: %q", rows)
	}
	out = mustAdmin(t, ctlURL, dir, "tokens", "usage", aliceID, "--step", "day", "--from", "3d")
	if lines = header(t, out, "START (UTC)", "UP", "DOWN", "TOTAL"); len(lines) < 4 || !strings.HasPrefix(lines[len(lines)-1], "total ") {
		t.Errorf("tokens usage:\n%s", out)
	}
	var hist usageHistoryJSON
	out = mustAdmin(t, ctlURL, dir, "fleet", "usage", "--json")
	if json.Unmarshal([]byte(out), &hist) != nil || hist.Step != "hour" || len(hist.Buckets) < 24 || hist.TokenID != "" {
		t.Errorf("fleet usage --json:\n%s", out)
	}

	// tokens revoke.
	mustAdmin(t, ctlURL, dir, "tokens", "revoke", created.ID)
	if out = mustAdmin(t, ctlURL, dir, "tokens", "show", created.ID); !strings.Contains(out, "status    revoked") {
		t.Errorf("revoked token shows:\n%s", out)
	}

	// pool list.
	out = mustAdmin(t, ctlURL, dir, "pool", "list")
	lines = header(t, out, "ID", "NAME", "BACKEND", "ENDPOINT", "STATE", "KEYS", "LOAD", "CHECKED", "ERROR")
	if len(lines) != 1 || !regexp.MustCompile(`^\S+ +static-127\.0\.0\.1-\d+ +static +127\.0\.0\.1:\d+ \(chacha20-ietf-poly1305\) +up `).MatchString(lines[0]) {
		t.Errorf("pool list:\n%s", out)
	}
	var members memberListJSON
	out = mustAdmin(t, ctlURL, dir, "pool", "list", "--json")
	if json.Unmarshal([]byte(out), &members) != nil || len(members.Members) != 1 || members.Members[0].Backend != "static" ||
		!members.Members[0].Health.Up || members.Members[0].Static == nil || strings.Contains(out, "password") {
		t.Errorf("pool list --json:\n%s", out)
	}

	// gateways list.
	out = mustAdmin(t, ctlURL, dir, "gateways", "list")
	lines = header(t, out, "ID", "PUBLIC-URL", "LIVE", "SESSIONS", "STARTED", "HEARTBEAT", "VERSION")
	if len(lines) != 1 || !strings.Contains(lines[0], " wss://127.0.0.1:") || !strings.Contains(lines[0], " yes ") {
		t.Errorf("gateways list:\n%s", out)
	}
	var gws gatewayListJSON
	out = mustAdmin(t, ctlURL, dir, "gateways", "list", "--json")
	if json.Unmarshal([]byte(out), &gws) != nil || len(gws.Gateways) != 1 || !gws.Gateways[0].Live ||
		!strings.HasPrefix(gws.Gateways[0].PublicURL, "wss://127.0.0.1:") {
		t.Errorf("gateways list --json:\n%s", out)
	}

	// console url: the sign-in page derived from the admin key.
	if out = mustAdmin(t, ctlURL, dir, "console", "url"); out != ctlURL+console.SignInPath(readSecretFile(t, filepath.Join(dir, "admin.key")))+"\n" {
		t.Errorf("console url: %q", out)
	}

	// Errors: API errors exit 1 with the code, usage errors exit 2.
	if _, errs, code := admin(ctlURL, dir, "tokens", "show", "no-such-token"); code != 1 || errs != "error: not_found: token not found\n" {
		t.Errorf("unknown token: exit %d, %q", code, errs)
	}
	if _, errs, code := admin(ctlURL, dir, "-admin-key", strings.Repeat("x", 40), "tokens", "list"); code != 1 || !strings.HasPrefix(errs, "error: GET /v1/tokens answered 404 as it answers strangers: the admin key is not this control plane's") {
		t.Errorf("wrong admin key: exit %d, %q", code, errs)
	}
	if _, _, code := admin(ctlURL, dir, "tokens", "show"); code != 2 {
		t.Errorf("tokens show without ID: exit %d, want 2", code)
	}
	if _, _, code := admin(ctlURL, dir, "tokens", "frobnicate"); code != 2 {
		t.Errorf("unknown command: exit %d, want 2", code)
	}
	if _, _, code := admin(ctlURL, dir, "pool", "add", "--backend", "static", "--host", "127.0.0.1"); code != 2 {
		t.Errorf("pool add without port: exit %d, want 2", code)
	}
}

func TestUpNoMember(t *testing.T) {
	dir := t.TempDir()
	gwAddr := "127.0.0.1:" + strconv.Itoa(testpeer.FreePort(t))
	ctlAddr := "127.0.0.1:" + strconv.Itoa(testpeer.FreePort(t))
	u := startUp(t, "-data-dir", dir, "-listen", gwAddr, "-control-listen", ctlAddr, "-log-level", "info", "-drain-timeout", "1s")
	out := u.out.String()
	if !strings.Contains(out, "No pool member yet") || strings.Contains(out, "token id") {
		t.Errorf("banner without members:\n%s", out)
	}
	// SIGHUP with the generated certificate: logged, the process and the
	// certificate stay.
	served := servedCert(t, gwAddr)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLogLine(t, u.errs, "SIGHUP: the certificate is the one httvps up generated")
	if again := servedCert(t, gwAddr); !bytes.Equal(served, again) {
		t.Error("the generated certificate changed on SIGHUP")
	}
	// A second node on the same data directory is refused (the store is
	// locked), with status 1.
	var errs bytes.Buffer
	code := run(context.Background(), []string{"up", "-data-dir", dir, "-listen", "127.0.0.1:0", "-control-listen", "127.0.0.1:0"},
		env{stdout: io.Discard, stderr: &errs, lookupEnv: noEnv})
	if code != 1 || !strings.Contains(errs.String(), "another `httvps up`") {
		t.Errorf("second node on the same data dir: exit %d\n%s", code, errs.String())
	}
}

func TestUpOptions(t *testing.T) {
	e := func(vars map[string]string) env {
		return env{stdout: io.Discard, stderr: io.Discard, lookupEnv: func(k string) (string, bool) { v, ok := vars[k]; return v, ok }}
	}
	o, err := loadUpOptions([]string{"-member", "static:[::1]:8388:aes-256-gcm:a:b:c", "-member", "ss-manager:127.0.0.1:6100:20000-20100"},
		e(map[string]string{"HTTVPS_LISTEN": "127.0.0.1:1", "HTTVPS_MEMBER": "ignored:x", "XDG_STATE_HOME": "/state"}))
	if err != nil {
		t.Fatal(err)
	}
	if o.Listen != "127.0.0.1:1" || o.DataDir != "/state/httvps" || len(o.Members) != 2 || o.TLSWatch != 10*time.Second || o.AdminListen != "" {
		t.Fatalf("options: %+v", o)
	}
	if o, err := loadUpOptions(nil, e(map[string]string{"HTTVPS_TLS_WATCH": "1m", "HTTVPS_ADMIN_LISTEN": "127.0.0.1:9090"})); err != nil ||
		o.TLSWatch != time.Minute || o.AdminListen != "127.0.0.1:9090" {
		t.Errorf("-tls-watch, -admin-listen from the environment: %+v %v", o, err)
	}
	if m := o.Members[0]; m.host != "::1" || m.port != 8388 || m.cipher != "aes-256-gcm" || m.password != "a:b:c" || m.name != "static-::1-8388" {
		t.Errorf("static member: %+v", m)
	}
	if m := o.Members[1]; m.managerAddr != "127.0.0.1:6100" || m.portMin != 20000 || m.portMax != 20100 || m.host != "127.0.0.1" {
		t.Errorf("ss-manager member: %+v", m)
	}
	for _, bad := range [][]string{
		{"-member", "static:127.0.0.1:8388:chacha20-ietf-poly1305"},
		{"-member", "static:example.com:8388:chacha20-ietf-poly1305:pw"},
		{"-member", "carrier-pigeon:1"},
		{"-listen", ":1", "-control-listen", ":1"},
		{"-tls-cert", "x.pem"},
		{"-tls-watch", "-1s"},
		{"-admin-listen", "nonsense"},
		{"-listen", "127.0.0.1:1", "-admin-listen", "127.0.0.1:1"},
		{"-control-listen", "127.0.0.1:1", "-admin-listen", "127.0.0.1:1"},
		{"stray"},
	} {
		if _, err := loadUpOptions(bad, e(nil)); err == nil {
			t.Errorf("%q accepted", bad)
		} else if strings.Contains(err.Error(), "pw") && bad[0] == "-member" {
			t.Errorf("error quotes the password: %v", err)
		}
	}
	cfg := filepath.Join(t.TempDir(), "up.yaml")
	os.WriteFile(cfg, []byte("listen: 127.0.0.1:7\nstray-grace: 5m\nmember:\n  - static:127.0.0.1:8388:aes-128-gcm:pw\n"), 0o600)
	if o, err := loadUpOptions([]string{"-config", cfg}, e(nil)); err != nil || o.Listen != "127.0.0.1:7" || len(o.Members) != 1 || o.StrayGrace != 5*time.Minute {
		t.Errorf("config file: %+v %v", o, err)
	}
	// -stray-grace: flag > environment > file; 0 is the pool's default,
	// negative turns the sweep off.
	if o, err := loadUpOptions(nil, e(nil)); err != nil || o.StrayGrace != 0 {
		t.Errorf("-stray-grace default: %v %v", o.StrayGrace, err)
	}
	if o, err := loadUpOptions([]string{"-config", cfg}, e(map[string]string{"HTTVPS_STRAY_GRACE": "-1s"})); err != nil || o.StrayGrace != -time.Second {
		t.Errorf("-stray-grace from the environment over the file: %v %v", o.StrayGrace, err)
	}
	if o, err := loadUpOptions([]string{"-config", cfg, "-stray-grace", "30s"}, e(map[string]string{"HTTVPS_STRAY_GRACE": "-1s"})); err != nil || o.StrayGrace != 30*time.Second {
		t.Errorf("-stray-grace flag over environment and file: %v %v", o.StrayGrace, err)
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1 KiB", 1536: "1.5 KiB", 10 << 30: "10 GiB", 150 << 20: "150 MiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{"abc": "abc", "a b": "'a b'", "it's": `'it'\''s'`, "": "''", "x;y": "'x;y'"} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

// firstCertDER returns the first certificate of a PEM file.
func firstCertDER(file string) ([]byte, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, fmt.Errorf("%s: no PEM certificate in it", file)
		}
		if b.Type == "CERTIFICATE" {
			return b.Bytes, nil
		}
	}
}

// otherCipher is a Shadowsocks cipher other than m.
func otherCipher(m string) string {
	if m == "aes-256-gcm" {
		return "chacha20-ietf-poly1305"
	}
	return "aes-256-gcm"
}
