package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/httvps/httvps/store"
)

type clientConfigJSON struct {
	TokenID    string   `json:"token_id"`
	Gateways   []string `json:"gateways"`
	Cipher     string   `json:"cipher"`
	Secret     string   `json:"secret"`
	AccessKeys struct {
		SS     string `json:"ss"`
		SSConf string `json:"ssconf"`
		HTTVPS string `json:"httvps"`
	} `json:"access_keys"`
	Usage struct{ Up, Down, Total int64 } `json:"usage"`
}

func TestClientConfig(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		h := newHarness(t, st)
		c := h.createToken(`{"label":"phone","cipher":"chacha20-ietf-poly1305"}`)
		stored, err := st.GetToken(context.Background(), c.ID)
		if err != nil {
			t.Fatal(err)
		}

		// Dead first by ID, busy live, idle live, plaintext live with
		// the same load as the busy one; and one with an unusable URL.
		h.heartbeat("a-dead", "https://dead.example.com", 0, time.Millisecond)
		h.heartbeat("b-busy", "https://busy.example.com:8443", 50, time.Minute)
		h.heartbeat("c-idle", "https://idle.example.com", 2, time.Minute)
		h.heartbeat("d-plain", "http://127.0.0.1:8080", 50, time.Minute)
		h.heartbeat("e-bad", "ftp://x", 0, time.Minute)
		time.Sleep(50 * time.Millisecond) // a-dead's heartbeat runs out

		r := h.do("GET", "/v1/client/config", c.Token, "")
		if r.StatusCode != http.StatusOK {
			t.Fatalf("client config: %d %s", r.StatusCode, r.body)
		}
		cc := decode[clientConfigJSON](t, r)
		want := []string{"https://idle.example.com", "https://busy.example.com:8443", "http://127.0.0.1:8080", "https://dead.example.com"}
		if !slices.Equal(cc.Gateways, want) {
			t.Errorf("gateways %v, want %v", cc.Gateways, want)
		}
		if cc.TokenID != c.ID || cc.Cipher != "chacha20-ietf-poly1305" || cc.Secret != stored.SSPassword {
			t.Errorf("config %+v", cc)
		}
		if cc.AccessKeys.SSConf != "ssconf://ctl.example.com:8443/v1/outline/"+c.Token+"#phone" {
			t.Errorf("ssconf %q", cc.AccessKeys.SSConf)
		}

		// ss:// is SIP002 for the best gateway with v2ray-plugin.
		u, err := url.Parse(cc.AccessKeys.SS)
		if err != nil || u.Scheme != "ss" || u.Host != "idle.example.com:443" || u.Fragment != "phone" {
			t.Fatalf("ss key %q: %v", cc.AccessKeys.SS, err)
		}
		ui, err := base64.RawURLEncoding.DecodeString(u.User.Username())
		if err != nil || string(ui) != "chacha20-ietf-poly1305:"+stored.SSPassword {
			t.Errorf("ss userinfo %q: %v", ui, err)
		}
		wantPlugin := "v2ray-plugin;mode=websocket;mux=0;tls;host=idle.example.com;path=/" + c.Token + "/tcp"
		if p := u.Query().Get("plugin"); p != wantPlugin {
			t.Errorf("plugin %q, want %q", p, wantPlugin)
		}

		// Unknown, revoked and expired tokens all get the decoy, as any
		// stranger does.
		unknown := h.do("GET", "/v1/client/config", strings.Repeat("A", 43), "")
		missing := h.do("GET", "/v1/client/config", "", "")
		for _, r := range []response{unknown, missing} {
			wantDecoy(t, r)
		}
		exp := h.createToken(`{"ttl":"1h"}`)
		h.clock.Advance(2 * time.Hour)
		expired := h.do("GET", "/v1/client/config", exp.Token, "")
		rev := h.createToken(`{}`)
		h.admin("DELETE", "/v1/tokens/"+rev.ID, "")
		revoked := h.do("GET", "/v1/client/config", rev.Token, "")
		for name, r := range map[string]response{"expired": expired, "revoked": revoked} {
			if r.StatusCode != 404 || !bytes.Equal(r.body, unknown.body) {
				t.Errorf("%s token: %d %s; want the unknown token's answer %s", name, r.StatusCode, r.body, unknown.body)
			}
		}

		// Over quota: the holder learns why.
		q := h.createToken(`{"quota_bytes":100}`)
		if err := st.AddUsage(context.Background(), time.Now(), map[string]store.Usage{q.ID: {Up: 60, Down: 40}}); err != nil {
			t.Fatal(err)
		}
		wantError(t, h.do("GET", "/v1/client/config", q.Token, ""), 403, "quota_exceeded")
	})
}

func TestClientConfigNoGateways(t *testing.T) {
	h := newHarness(t, embeddedStore(t))
	c := h.createToken(`{}`)
	cc := decode[clientConfigJSON](t, h.do("GET", "/v1/client/config", c.Token, ""))
	if len(cc.Gateways) != 0 || cc.AccessKeys.SS != "" || cc.AccessKeys.SSConf == "" || cc.AccessKeys.HTTVPS == "" {
		t.Errorf("config without gateways: %+v", cc)
	}
}

func TestOutlineDynamicKey(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		h := newHarness(t, st)
		c := h.createToken(`{"cipher":"aes-128-gcm","quota_bytes":1000}`)
		stored, err := st.GetToken(context.Background(), c.ID)
		if err != nil {
			t.Fatal(err)
		}
		// No gateway yet: the app is told so.
		r := h.do("GET", "/v1/outline/"+c.Token, "", "")
		if msg := outlineErrorMessage(t, r); msg == "" {
			t.Fatalf("no gateway: %s", r.body)
		}

		h.heartbeat("gw-b", "https://b.example.com:8443", 9, time.Minute)
		h.heartbeat("gw-a", "https://a.example.com", 3, time.Minute)
		r = h.do("GET", "/v1/outline/"+c.Token, "", "")
		if r.StatusCode != http.StatusOK {
			t.Fatalf("outline key: %d %s", r.StatusCode, r.body)
		}
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/yaml") {
			t.Errorf("Content-Type %q", ct)
		}
		var doc map[string]any
		if err := yaml.Unmarshal(r.body, &doc); err != nil {
			t.Fatalf("YAML %s: %v", r.body, err)
		}
		if len(doc) != 1 {
			t.Errorf("top-level keys %v, want transport only", doc)
		}
		tr := asMap(t, doc["transport"])
		if tr["$type"] != "tcpudp" || len(tr) != 3 {
			t.Errorf("transport %v", tr)
		}
		for _, kind := range []string{"tcp", "udp"} {
			d := asMap(t, tr[kind])
			ep := asMap(t, d["endpoint"])
			if d["$type"] != "shadowsocks" || d["cipher"] != "aes-128-gcm" || d["secret"] != stored.SSPassword || len(d) != 4 {
				t.Errorf("%s dialer %v", kind, d)
			}
			if ep["$type"] != "websocket" || ep["url"] != "wss://a.example.com:443/"+c.Token+"/"+kind || len(ep) != 2 {
				t.Errorf("%s endpoint %v", kind, ep)
			}
		}

		// Over quota, expired and revoked keys get the error form, 200.
		if err := st.AddUsage(context.Background(), time.Now(), map[string]store.Usage{c.ID: {Down: 1000}}); err != nil {
			t.Fatal(err)
		}
		if msg := outlineErrorMessage(t, h.do("GET", "/v1/outline/"+c.Token, "", "")); !strings.Contains(msg, "data limit") {
			t.Errorf("over quota: %q", msg)
		}
		e := h.createToken(`{"ttl":"1m"}`)
		h.clock.Advance(time.Hour)
		if msg := outlineErrorMessage(t, h.do("GET", "/v1/outline/"+e.Token, "", "")); !strings.Contains(msg, "expired") {
			t.Errorf("expired: %q", msg)
		}
		v := h.createToken(`{}`)
		h.admin("DELETE", "/v1/tokens/"+v.ID, "")
		if msg := outlineErrorMessage(t, h.do("GET", "/v1/outline/"+v.Token, "", "")); !strings.Contains(msg, "revoked") {
			t.Errorf("revoked: %q", msg)
		}

		// An unknown secret looks exactly like an unknown path.
		unknown := h.do("GET", "/v1/outline/"+strings.Repeat("x", 43), "", "")
		nopath := h.do("GET", "/no/such/path", "", "")
		wantDecoy(t, unknown)
		wantDecoy(t, nopath)
		if !bytes.Equal(unknown.body, nopath.body) || unknown.StatusCode != nopath.StatusCode {
			t.Errorf("unknown secret %d %s differs from unknown path %d %s", unknown.StatusCode, unknown.body, nopath.StatusCode, nopath.body)
		}
	})
}

func asMap(t *testing.T, v any) map[string]any {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%v (%T) is not a mapping", v, v)
	}
	return m
}

// outlineErrorMessage checks the YAML error form and returns its message.
func outlineErrorMessage(t *testing.T, r response) string {
	t.Helper()
	if r.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200 with the error form: %s", r.StatusCode, r.body)
	}
	var doc struct {
		Transport any `yaml:"transport"`
		Error     struct {
			Message string `yaml:"message"`
			Details string `yaml:"details"`
		} `yaml:"error"`
	}
	if err := yaml.Unmarshal(r.body, &doc); err != nil {
		t.Fatalf("YAML %s: %v", r.body, err)
	}
	if doc.Transport != nil || doc.Error.Message == "" || doc.Error.Details == "" {
		t.Fatalf("not the error form: %s", r.body)
	}
	return doc.Error.Message
}

func TestGatewaysList(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		h := newHarness(t, st)
		h.heartbeat("gw-1", "https://gw1.example.com", 7, time.Minute)
		r := h.admin("GET", "/v1/gateways", "")
		type gw struct {
			ID            string    `json:"id"`
			PublicURL     string    `json:"public_url"`
			Sessions      int       `json:"sessions"`
			LastHeartbeat time.Time `json:"last_heartbeat"`
			Live          bool      `json:"live"`
		}
		got := decode[struct{ Gateways []gw }](t, r)
		if len(got.Gateways) != 1 {
			t.Fatalf("gateways: %s", r.body)
		}
		g := got.Gateways[0]
		if g.ID != "gw-1" || g.PublicURL != "https://gw1.example.com" || g.Sessions != 7 || !g.Live || g.LastHeartbeat.IsZero() {
			t.Errorf("gateway %+v", g)
		}
	})
}
