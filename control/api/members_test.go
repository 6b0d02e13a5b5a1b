package api

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/httvps/httvps/control/pool"
	"github.com/httvps/httvps/store"
)

type memberJSON struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Backend string `json:"backend"`
	Host    string `json:"host"`
	Static  *struct {
		Port     int    `json:"port"`
		Cipher   string `json:"cipher"`
		Password string `json:"password"`
	} `json:"static"`
	Draining bool `json:"draining"`
	Health   struct {
		Up        bool       `json:"up"`
		CheckedAt *time.Time `json:"checked_at"`
		Keys      int        `json:"keys"`
		Load      float64    `json:"load"`
	} `json:"health"`
}

// TestMembers drives the real pool manager with a static member whose
// port is a live loopback listener.
func TestMembers(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		pm := pool.New(st, pool.Config{DialTimeout: 500 * time.Millisecond, Logger: quiet})
		h := newHarness(t, st, func(c *Config) { c.Pool = pm })
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		port := ln.Addr().(*net.TCPAddr).Port

		body := `{"name":"static-1","backend":"static","host":"127.0.0.1","static":{"port":` + strconv.Itoa(port) +
			`,"cipher":"aes-256-gcm","password":"static-member-password"}}`
		r := h.admin("POST", "/v1/pool/members", body)
		if r.StatusCode != http.StatusCreated {
			t.Fatalf("add member: %d %s", r.StatusCode, r.body)
		}
		m := decode[memberJSON](t, r)
		if m.ID == "" || m.Name != "static-1" || m.Backend != "static" || m.Host != "127.0.0.1" ||
			m.Static == nil || m.Static.Port != port || m.Static.Cipher != "aes-256-gcm" {
			t.Fatalf("member %s", r.body)
		}
		if strings.Contains(string(r.body), "static-member-password") {
			t.Errorf("member answer shows the password: %s", r.body)
		}

		r = h.admin("GET", "/v1/pool/members", "")
		list := decode[struct{ Members []memberJSON }](t, r)
		if len(list.Members) != 1 || list.Members[0].ID != m.ID || list.Members[0].Health.CheckedAt == nil {
			t.Fatalf("members: %s", r.body)
		}

		// A static-only pool: tokens take the member's shared secret, and
		// a cipher it does not serve is refused, not silently replaced.
		wantError(t, h.admin("POST", "/v1/tokens", `{"label":"other-cipher","cipher":"chacha20-ietf-poly1305"}`), 400, "invalid_argument")
		if r := h.admin("GET", "/v1/tokens", ""); strings.Contains(string(r.body), "other-cipher") {
			t.Fatalf("the refused token was stored: %s", r.body)
		}
		same := h.createToken(`{"label":"same-cipher","cipher":"aes-256-gcm"}`)
		if same.Cipher != "aes-256-gcm" {
			t.Fatalf("token with the member's own cipher: %+v", same)
		}
		if r := h.admin("DELETE", "/v1/tokens/"+same.ID, ""); r.StatusCode != http.StatusNoContent {
			t.Fatalf("revoke: %d %s", r.StatusCode, r.body)
		}
		c := h.createToken(`{"label":"on-static"}`)
		if c.Cipher != "aes-256-gcm" || len(c.Assignments) != 1 || c.Assignments[0].MemberID != m.ID ||
			c.Assignments[0].Upstream != "127.0.0.1:"+strconv.Itoa(port) {
			t.Fatalf("token on the static member: %+v", c)
		}
		cc := decode[clientConfigJSON](t, h.do("GET", "/v1/client/config", c.Token, ""))
		if cc.Secret != "static-member-password" || cc.Cipher != "aes-256-gcm" {
			t.Errorf("client config on a static member: %+v", cc)
		}
		// Its key has nowhere to go: a remove changes nothing (the member
		// is not left draining, tokens can still be created), a drain
		// reports it and keeps it, and undrain undoes the drain.
		wantError(t, h.admin("DELETE", "/v1/pool/members/"+m.ID, ""), 503, "no_members")
		if r := h.admin("GET", "/v1/pool/members", ""); decode[struct{ Members []memberJSON }](t, r).Members[0].Draining {
			t.Fatalf("a failed remove left the member draining: %s", r.body)
		}
		extra := h.createToken(`{"label":"after-failed-remove"}`)
		if r := h.admin("DELETE", "/v1/tokens/"+extra.ID, ""); r.StatusCode != http.StatusNoContent {
			t.Fatalf("revoke: %d %s", r.StatusCode, r.body)
		}
		wantError(t, h.admin("POST", "/v1/pool/members/"+m.ID+"/drain", ""), 503, "no_members")
		r = h.admin("POST", "/v1/pool/members/"+m.ID+"/undrain", "")
		if r.StatusCode != http.StatusOK || decode[memberJSON](t, r).Draining {
			t.Fatalf("undrain: %d %s", r.StatusCode, r.body)
		}
		wantError(t, h.admin("POST", "/v1/pool/members/nope/undrain", ""), 404, "not_found")
		if r := h.admin("DELETE", "/v1/tokens/"+c.ID, ""); r.StatusCode != http.StatusNoContent {
			t.Fatalf("revoke: %d %s", r.StatusCode, r.body)
		}

		r = h.admin("POST", "/v1/pool/members/"+m.ID+"/drain", "")
		if r.StatusCode != http.StatusOK || !decode[memberJSON](t, r).Draining {
			t.Fatalf("drain: %d %s", r.StatusCode, r.body)
		}
		if r = h.admin("DELETE", "/v1/pool/members/"+m.ID, ""); r.StatusCode != http.StatusNoContent {
			t.Fatalf("remove: %d %s", r.StatusCode, r.body)
		}
		wantError(t, h.admin("DELETE", "/v1/pool/members/"+m.ID, ""), 404, "not_found")
		wantError(t, h.admin("POST", "/v1/pool/members/nope/drain", ""), 404, "not_found")

		for name, body := range map[string]string{
			"no backend":      `{"name":"x","host":"127.0.0.1"}`,
			"newline in name": `{"name":"x\ny","backend":"static","host":"127.0.0.1","static":{"port":1,"cipher":"aes-256-gcm","password":"p"}}`,
			"escape in name":  `{"name":"\u001b[2Jx","backend":"static","host":"127.0.0.1","static":{"port":1,"cipher":"aes-256-gcm","password":"p"}}`,
			"unknown backend": `{"name":"x","backend":"wireguard","host":"127.0.0.1"}`,
			"no config":       `{"name":"x","backend":"static","host":"127.0.0.1"}`,
			"two configs":     `{"name":"x","backend":"static","host":"127.0.0.1","static":{"port":1,"cipher":"aes-256-gcm","password":"p"},"ss_manager":{"manager_addr":"127.0.0.1:1","port_min":1,"port_max":2}}`,
			"host name":       `{"name":"x","backend":"static","host":"example.com","static":{"port":1,"cipher":"aes-256-gcm","password":"p"}}`,
			"bad port":        `{"name":"x","backend":"static","host":"127.0.0.1","static":{"port":70000,"cipher":"aes-256-gcm","password":"p"}}`,
			"bad cipher":      `{"name":"x","backend":"static","host":"127.0.0.1","static":{"port":1,"cipher":"rc4","password":"p"}}`,
			"port range":      `{"name":"x","backend":"ss-manager","host":"127.0.0.1","ss_manager":{"manager_addr":"127.0.0.1:1","port_min":9,"port_max":2}}`,
			"outline pin":     `{"name":"x","backend":"outline-api","host":"127.0.0.1","outline":{"api_url":"https://127.0.0.1:1/s3cr3t","cert_sha256":"abc"}}`,
			"outline http":    `{"name":"x","backend":"outline-api","host":"127.0.0.1","outline":{"api_url":"http://127.0.0.1:1/s","cert_sha256":"` + strings.Repeat("a", 64) + `"}}`,
			"outline no path": `{"name":"x","backend":"outline-api","host":"127.0.0.1","outline":{"api_url":"https://127.0.0.1:1","cert_sha256":"` + strings.Repeat("a", 64) + `"}}`,
		} {
			t.Run(name, func(t *testing.T) {
				wantError(t, h.admin("POST", "/v1/pool/members", body), 400, "invalid_argument")
			})
		}
		wantError(t, h.admin("POST", "/v1/pool/members", `{"name":"x","backend":"static","extra":1}`), 400, "bad_request")
	})
}
