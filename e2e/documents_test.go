package e2e

// The gateway serves the dynamic access keys and the client config on its
// own listener, behind the decoy (docs/04-gateway-design.md, "Documents
// behind the decoy"): a real gateway with wiring.Documents on a real Redis
// store, next to a real control plane whose keys name the gateway.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/gateway/storeauth"
	"github.com/httvps/httvps/internal/testpeer"
	"github.com/httvps/httvps/internal/wiring"
)

// docMetrics is countMetrics with the documents' counts.
type docMetrics struct {
	countMetrics
	docs [gateway.NumDocResults]atomic.Int64
}

func (m *docMetrics) Document(r gateway.DocResult) { m.docs[r].Add(1) }

// docGateway is a gateway that serves the documents from the store.
type docGateway struct {
	addr string
	cert *testpeer.TestCert // nil: plaintext
	m    *docMetrics
}

func startDocGateway(t testing.TB, r *ctlRedis, useTLS bool) *docGateway {
	t.Helper()
	st := openCtlStore(t, r)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &docGateway{addr: ln.Addr().String(), m: &docMetrics{}}
	cfg := gateway.Config{Logger: ctlLogger(), Loops: 2, DrainTimeout: time.Second, DialTimeout: time.Second,
		HandshakeTimeout: 5 * time.Second, Metrics: g.m}
	public := "ws://" + g.addr
	if useTLS {
		g.cert = testpeer.SelfSignedCert(t)
		cfg.TLS = &gateway.TLSConfig{GetCertificate: g.cert.GetCertificate}
		public = "wss://" + g.addr
	}
	auth := storeauth.New(st, storeauth.Config{PublicURL: public, FlushEvery: 300 * time.Millisecond, HeartbeatEvery: 300 * time.Millisecond, Logger: cfg.Logger})
	cfg.Auth = auth
	if cfg.Documents, err = wiring.Documents(st, public, nil); err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	auth.Attach(gw)
	runAuth(t, auth, "document gateway")
	testpeer.ServeGatewayOn(t, ln, gw)
	t.Cleanup(func() { auth.Attach(nil) }) // first: before the gateway shuts down
	return g
}

// httpsURL is the gateway's base URL as a key names it.
func (g *docGateway) httpsURL() string {
	if g.cert == nil {
		return "http://" + g.addr
	}
	return "https://" + g.addr
}

// dial opens a connection to the gateway (TLS when it speaks TLS).
func (g *docGateway) dial(t testing.TB) net.Conn {
	t.Helper()
	var c net.Conn
	var err error
	if g.cert != nil {
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: g.cert.ClientConfig(0)}
		c, err = d.DialContext(context.Background(), "tcp", g.addr)
	} else {
		c, err = net.DialTimeout("tcp", g.addr, 5*time.Second)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// rawAnswer reads one HTTP answer's exact bytes (headers, then
// Content-Length bytes of body unless head).
func rawAnswer(br *bufio.Reader, head bool) ([]byte, error) {
	var out []byte
	n := -1
	for {
		line, err := br.ReadBytes('\n')
		out = append(out, line...)
		if err != nil {
			return out, err
		}
		if string(line) == "\r\n" {
			break
		}
		if v, ok := strings.CutPrefix(string(line), "Content-Length: "); ok {
			n, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if head || n <= 0 {
		return out, nil
	}
	body := make([]byte, n)
	_, err := io.ReadFull(br, body)
	return append(out, body...), err
}

// exchange sends reqs on one new connection and reads one answer to each.
func (g *docGateway) exchange(t testing.TB, reqs ...string) [][]byte {
	t.Helper()
	c := g.dial(t)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, strings.Join(reqs, "")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var out [][]byte
	for _, r := range reqs {
		if line, _, _ := strings.Cut(r, "\r\n"); !strings.Contains(line, " HTTP/") {
			// HTTP/0.9: the body alone, then the close.
			a, err := io.ReadAll(br)
			if err != nil {
				t.Fatalf("answer to %q: %v", r, err)
			}
			return append(out, a)
		}
		a, err := rawAnswer(br, strings.HasPrefix(r, "HEAD "))
		if err != nil {
			t.Fatalf("answer to %q: %q: %v", r, a, err)
		}
		out = append(out, a)
	}
	return out
}

var dateLine = regexp.MustCompile(`(?m)^Date: [^\r]*\r$`)

// undated masks the Date header, the one part of two answers sent a
// second apart that may differ.
func undated(b []byte) string { return dateLine.ReplaceAllString(string(b), "Date: *\r") }

func startDocFleet(t *testing.T, useTLS bool) (*ctlRedis, *ctlPlane, *docGateway, *testpeer.Origin) {
	t.Helper()
	for _, bin := range []string{"redis-server", "ss-server"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed", bin)
		}
	}
	r := startCtlRedis(t)
	g := startDocGateway(t, r, useTLS)
	p := startCtlPlaneKeys(t, r, 1, g.httpsURL())
	addr, _ := ctlSSServer(t, "doc-password")
	p.addMember(staticMember("ss", addr, "doc-password"))
	ctlEventually(t, 10*time.Second, "the gateway registered", func() bool {
		var l struct {
			Gateways []struct {
				Live bool `json:"live"`
			} `json:"gateways"`
		}
		p.admin("GET", "/v1/gateways", nil, http.StatusOK, &l)
		return len(l.Gateways) == 1 && l.Gateways[0].Live
	})
	return r, p, g, testpeer.StartOrigin(t)
}

func get(path string, headers ...string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: localhost\r\n" + strings.Join(headers, "") + "\r\n"
}

func TestGatewayDocuments(t *testing.T) {
	for _, useTLS := range []bool{true, false} {
		name := "plain"
		if useTLS {
			name = "tls"
		}
		t.Run(name, func(t *testing.T) { testGatewayDocuments(t, useTLS) })
	}
}

func testGatewayDocuments(t *testing.T, useTLS bool) {
	_, p, g, _ := startDocFleet(t, useTLS)
	tok := p.issue(map[string]any{"label": "doc"})

	// The document equals the control API's, in nginx's header shape
	// with Cache-Control.
	ctl, err := p.do("GET", "/v1/outline/"+tok.Token, "", nil)
	if err != nil || ctl.status != 200 || !bytes.Contains(ctl.body, []byte("wss://")) && !bytes.Contains(ctl.body, []byte("ws://")) {
		t.Fatalf("control API document: %v %v", ctl, err)
	}
	ans := g.exchange(t, get("/v1/outline/"+tok.Token), "HEAD /v1/outline/"+tok.Token+" HTTP/1.1\r\nHost: localhost\r\n\r\n")
	head := "HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: *\r\nContent-Type: application/yaml; charset=utf-8\r\n" +
		"Content-Length: " + strconv.Itoa(len(ctl.body)) + "\r\nConnection: keep-alive\r\nCache-Control: no-store\r\n\r\n"
	if got := undated(ans[0]); got != head+string(ctl.body) {
		t.Errorf("gateway document:\n%q\nwant\n%q", got, head+string(ctl.body))
	}
	if got := undated(ans[1]); got != head {
		t.Errorf("HEAD:\n%q\nwant\n%q", got, head)
	}

	// The client config for the bearer token, its keys on the gateway.
	cfgAns := g.exchange(t, get("/v1/client/config", "Authorization: Bearer "+tok.Token+"\r\n"))[0]
	_, body, _ := bytes.Cut(cfgAns, []byte("\r\n\r\n"))
	var cc struct {
		TokenID    string   `json:"token_id"`
		Secret     string   `json:"secret"`
		Gateways   []string `json:"gateways"`
		AccessKeys struct {
			SSConf string `json:"ssconf"`
			HTTVPS string `json:"httvps"`
		} `json:"access_keys"`
	}
	if err := json.Unmarshal(body, &cc); err != nil || cc.TokenID != tok.ID || cc.Secret != tok.Secret || len(cc.Gateways) != 1 ||
		cc.AccessKeys.SSConf != "ssconf://"+g.addr+"/v1/outline/"+tok.Token+"#doc" || !strings.Contains(cc.AccessKeys.HTTVPS, "control="+url.QueryEscape(g.httpsURL())) {
		t.Errorf("client config %q: %+v %v", cfgAns, cc, err)
	}
	if !strings.HasPrefix(string(cfgAns), "HTTP/1.1 200 OK\r\nServer: nginx\r\n") || !bytes.Contains(cfgAns, []byte("\r\nContent-Type: application/json\r\n")) {
		t.Errorf("client config answer %q", cfgAns)
	}

	// Every request that is not a valid document request gets the bytes
	// the same request for an unknown path gets.
	revoked := p.issue(map[string]any{"label": "gone"})
	p.admin("DELETE", "/v1/tokens/"+revoked.ID, nil, http.StatusNoContent, nil)
	unknown := strings.Repeat("A", 43)
	pct := fmt.Sprintf("%%%02X", tok.Token[0]) + tok.Token[1:]
	type probe struct{ name, req string }
	probes := []probe{
		{"unknown secret", get("/v1/outline/" + unknown)},
		{"unknown secret, HEAD", "HEAD /v1/outline/" + unknown + " HTTP/1.1\r\nHost: localhost\r\n\r\n"},
		{"empty secret", get("/v1/outline/")},
		{"trailing segment", get("/v1/outline/" + tok.Token + "/y")},
		{"two segments", get("/v1/outline/x/y")},
		{"percent-encoded secret", get("/v1/outline/" + pct)},
		{"percent-encoded slash", get("/v1/outline/" + tok.Token + "%2F")},
		{"dot segments", get("/v1/outline/../outline/" + tok.Token)},
		{"double slash", get("//v1/outline/" + tok.Token)},
		{"upper case", get("/V1/outline/" + tok.Token)},
		{"absolute URI", "GET http://localhost/v1/outline/" + tok.Token + " HTTP/1.1\r\nHost: localhost\r\n\r\n"},
		{"HTTP/0.9", "GET /v1/outline/" + tok.Token + "\r\n"},
		{"POST", "POST /v1/outline/" + tok.Token + " HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}"},
		{"PUT", "PUT /v1/outline/" + tok.Token + " HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"},
		{"GET with a body", get("/v1/outline/"+tok.Token, "Content-Length: 3\r\n") + "abc"},
		{"GET chunked", get("/v1/outline/"+tok.Token, "Transfer-Encoding: chunked\r\n") + "0\r\n\r\n"},
		{"WebSocket upgrade", get("/v1/outline/"+tok.Token, "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")},
		{"config without bearer", get("/v1/client/config")},
		{"config, unknown bearer", get("/v1/client/config", "Authorization: Bearer "+unknown+"\r\n")},
		{"config, basic auth", get("/v1/client/config", "Authorization: Basic "+tok.Token+"\r\n")},
		{"config, two bearers", get("/v1/client/config", "Authorization: Bearer "+tok.Token+"\r\n", "Authorization: Bearer "+tok.Token+"\r\n")},
		{"config, revoked bearer", get("/v1/client/config", "Authorization: Bearer "+revoked.Token+"\r\n")},
		{"config, trailing slash", get("/v1/client/config/", "Authorization: Bearer "+tok.Token+"\r\n")},
		{"config, POST", "POST /v1/client/config HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer " + tok.Token + "\r\nContent-Length: 0\r\n\r\n"},
	}
	pathOf := regexp.MustCompile(`^([A-Z]+ )(http://localhost)?(/\S*)`)
	for _, pr := range probes {
		decoyReq := pathOf.ReplaceAllString(pr.req, "${1}${2}/no/such/path")
		if decoyReq == pr.req {
			t.Fatalf("%s: no path to replace in %q", pr.name, pr.req)
		}
		got := g.exchange(t, pr.req)[0]
		want := g.exchange(t, decoyReq)[0]
		if undated(got) != undated(want) {
			t.Errorf("%s: answer\n%q\nis not the unknown path's\n%q", pr.name, got, want)
		}
		if !bytes.HasPrefix(got, []byte("HTTP/1.1 404 Not Found\r\nServer: nginx\r\n")) && pr.name != "HTTP/0.9" {
			t.Errorf("%s: %q is not the decoy 404", pr.name, got)
		}
	}

	// Revoked and expired keys: the YAML error form, 200, for the app to show.
	for _, k := range []struct{ token, want string }{{revoked.Token, "revoked"}} {
		a := g.exchange(t, get("/v1/outline/"+k.token))[0]
		if !bytes.HasPrefix(a, []byte("HTTP/1.1 200 OK\r\n")) || !bytes.Contains(a, []byte("error:")) || !bytes.Contains(a, []byte(k.want)) {
			t.Errorf("%s key: %q", k.want, a)
		}
	}
	exp := p.issue(map[string]any{"label": "short", "ttl": "1s"})
	ctlEventually(t, 10*time.Second, "the short token's document says expired", func() bool {
		a := g.exchange(t, get("/v1/outline/"+exp.Token))[0]
		return bytes.HasPrefix(a, []byte("HTTP/1.1 200 OK\r\n")) && bytes.Contains(a, []byte("This access key has expired."))
	})

	// Keep-alive, pipelined: a document, then an unknown path, on one
	// connection; the second answer is the decoy as a fresh connection
	// gets it.
	two := g.exchange(t, get("/v1/outline/"+tok.Token), get("/no/such/path"))
	fresh := g.exchange(t, get("/no/such/path"))[0]
	if undated(two[0]) != head+string(ctl.body) || undated(two[1]) != undated(fresh) {
		t.Errorf("keep-alive: %q then %q; want the document then %q", two[0], two[1], fresh)
	}

	if n := g.m.docs[gateway.DocServed].Load(); n < 6 {
		t.Errorf("documents served: %d, want at least 6", n)
	}
	if n, want := g.m.docs[gateway.DocSecret].Load(), int64(12); n != want {
		t.Errorf("documents refused (secret): %d, want %d", n, want)
	}
	if n := g.m.docs[gateway.DocRefused].Load(); n != 1 {
		t.Errorf("documents refused (refused): %d, want 1", n)
	}
}

// A store that cannot be asked gets the decoy, counted for the operator.
func TestGatewayDocumentStoreDown(t *testing.T) {
	r, p, g, _ := startDocFleet(t, true)
	tok := p.issue(map[string]any{"label": "doc"})
	want := g.exchange(t, get("/no/such/path"))[0]
	r.Kill()
	got := g.exchange(t, get("/v1/outline/"+tok.Token))[0]
	if undated(got) != undated(want) {
		t.Errorf("store down: %q, want the decoy %q", got, want)
	}
	if n := g.m.docs[gateway.DocStoreDown].Load(); n != 1 {
		t.Errorf("documents refused (store_unavailable): %d, want 1", n)
	}
	if n := g.m.rejected[gateway.RejectStoreDown].Load(); n != 1 {
		t.Errorf("handshakes rejected (store_unavailable): %d, want 1", n)
	}
}

// The whole way of a stock Outline app with a dynamic access key, with
// only the gateway's port: the ssconf:// key from POST /v1/tokens names
// the gateway, is fetched from it as https:// by a client that trusts its
// certificate, and the YAML's wss:// URL, cipher and secret carry
// hash-checked bytes.
func TestGatewayDocumentEndToEnd(t *testing.T) {
	_, p, g, origin := startDocFleet(t, true)
	tok := p.issue(map[string]any{"label": "phone"})
	var created struct {
		AccessKeys struct {
			SSConf string `json:"ssconf"`
		} `json:"access_keys"`
	}
	p.admin("POST", "/v1/tokens", map[string]any{"label": "phone"}, http.StatusCreated, &created)
	for _, key := range []string{created.AccessKeys.SSConf, "ssconf://" + g.addr + "/v1/outline/" + tok.Token} {
		u, err := url.Parse(key)
		if err != nil || u.Scheme != "ssconf" || u.Host != g.addr {
			t.Fatalf("ssconf key %q does not name the gateway %s: %v", key, g.addr, err)
		}
		u.Scheme, u.Fragment = "https", "" // as the Outline apps fetch it
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: g.cert.ClientConfig(0)}}
		resp, err := hc.Get(u.String())
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("fetch %s: %d %q %v", u, resp.StatusCode, body, err)
		}
		var doc struct {
			Transport struct {
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
		}
		if err := yaml.Unmarshal(body, &doc); err != nil || doc.Transport.Type != "tcpudp" || doc.Transport.TCP.Endpoint.Type != "websocket" {
			t.Fatalf("document %s: %v", body, err)
		}
		tcp := doc.Transport.TCP
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := testpeer.DialWSS(ctx, tcp.Endpoint.URL, g.cert.ClientConfig(0))
		cancel()
		if err != nil {
			t.Fatalf("dial %s: %v", tcp.Endpoint.URL, err)
		}
		cph, err := testpeer.NewCipher(tcp.Cipher, tcp.Secret)
		if err != nil {
			t.Fatal(err)
		}
		sc, err := cph.NewSSConn(c, origin.Addr)
		if err != nil {
			t.Fatal(err)
		}
		c.NetConn().SetDeadline(time.Now().Add(20 * time.Second))
		const size = 1 << 20
		sum, n, err := testpeer.HTTPGetSHA256(sc, origin.Addr, fmt.Sprintf("/bytes/%d?seed=%d", size, 7))
		sc.Close()
		if want := testpeer.PseudoRandomSHA256(size, 7); err != nil || n != size || sum != want {
			t.Fatalf("through %s: %d bytes sha256 %s (%v), want %d %s", tcp.Endpoint.URL, n, sum, err, size, want)
		}
	}
}
