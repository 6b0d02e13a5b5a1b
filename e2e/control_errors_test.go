package e2e

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawRequest writes req on a fresh connection to the control plane and
// reads one answer.
func (p *ctlPlane) rawRequest(req string) (ctlResp, error) {
	c, err := net.DialTimeout("tcp", p.addr, 5*time.Second)
	if err != nil {
		return ctlResp{}, err
	}
	defer c.Close()
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(req)); err != nil {
		return ctlResp{}, err
	}
	return readRawResponse(c)
}

// Bad requests over a real socket get the documented status and JSON
// error body: malformed or unexpected JSON, a body over the limit, a wrong
// or missing admin key, unknown ids and paths, wrong methods.
func TestControlBadRequests(t *testing.T) {
	r := startCtlRedis(t)
	p := startCtlPlane(t, r, 2)
	admin := "Bearer " + p.adminKey
	key := p.adminKey
	// A member with a password body of exactly the limit (64 KiB) is read
	// and judged on its content; one byte more is refused unread.
	atLimit := `{"name":"x","backend":"static","host":"not-an-ip","static":{"port":1,"cipher":"aes-128-gcm","password":"p"}}`
	atLimit += strings.Repeat(" ", 64<<10-len(atLimit))
	unknownPath, err := p.do("GET", "/v1/nope", "", nil)
	if err != nil || unknownPath.status != http.StatusNotFound {
		t.Fatalf("unknown path: %v %v", unknownPath, err)
	}

	cases := []struct {
		name, method, path, auth, ctype, body string
		status                                int
		code                                  string
	}{
		{"malformed JSON", "POST", "/v1/tokens", admin, "application/json", `{"label":`, 400, "bad_request"},
		{"syntax error", "POST", "/v1/tokens", admin, "application/json", `{"label" "x"}`, 400, "bad_request"},
		{"unknown field", "POST", "/v1/tokens", admin, "application/json", `{"labl":"x"}`, 400, "bad_request"},
		{"trailing data", "POST", "/v1/tokens", admin, "application/json", `{} {}`, 400, "bad_request"},
		{"empty body", "POST", "/v1/tokens", admin, "application/json", ``, 400, "bad_request"},
		{"not an object", "POST", "/v1/tokens", admin, "application/json", `[1,2]`, 400, "bad_request"},
		{"wrong type", "POST", "/v1/tokens", admin, "application/json", `{"quota_bytes":"lots"}`, 400, "bad_request"},
		{"bad cipher", "POST", "/v1/tokens", admin, "application/json", `{"cipher":"rc4-md5"}`, 400, "invalid_argument"},
		{"negative quota", "POST", "/v1/tokens", admin, "application/json", `{"quota_bytes":-1}`, 400, "invalid_argument"},
		{"ttl and expiry", "POST", "/v1/tokens", admin, "", `{"ttl":"1h","expires_at":"2099-01-01T00:00:00Z"}`, 400, "invalid_argument"},
		{"body at the limit", "POST", "/v1/pool/members", admin, "application/json", atLimit, 400, "invalid_argument"},
		{"member without config", "POST", "/v1/pool/members", admin, "application/json", `{"name":"x","backend":"static","host":"127.0.0.1"}`, 400, "invalid_argument"},
		{"text/plain", "POST", "/v1/tokens", admin, "text/plain", `{}`, 415, "unsupported_media_type"},
		{"no admin key", "GET", "/v1/tokens", "", "", "", 404, "decoy"},
		{"wrong admin key", "GET", "/v1/tokens", "Bearer " + strings.Repeat("x", len(key)), "", "", 404, "decoy"},
		{"admin key prefix", "GET", "/v1/tokens", "Bearer " + key[:len(key)-1], "", "", 404, "decoy"},
		{"basic scheme", "GET", "/v1/tokens", "Basic " + key, "", "", 404, "decoy"},
		{"no key on POST", "POST", "/v1/tokens", "", "application/json", `{}`, 404, "decoy"},
		{"no key on DELETE", "DELETE", "/v1/tokens/x", "", "", "", 404, "decoy"},
		{"client config without token", "GET", "/v1/client/config", "", "", "", 404, "decoy"},
		{"client config unknown token", "GET", "/v1/client/config", "Bearer " + strings.Repeat("A", 43), "", "", 404, "decoy"},
		{"client config with admin key", "GET", "/v1/client/config", admin, "", "", 404, "decoy"},
		{"unknown token", "GET", "/v1/tokens/Jm3yqQ6mVv0tT3v0d8QwTA", admin, "", "", 404, "not_found"},
		{"revoke unknown token", "DELETE", "/v1/tokens/Jm3yqQ6mVv0tT3v0d8QwTA", admin, "", "", 404, "not_found"},
		{"drain unknown member", "POST", "/v1/pool/members/nope/drain", admin, "", "", 404, "not_found"},
		{"remove unknown member", "DELETE", "/v1/pool/members/nope", admin, "", "", 404, "not_found"},
		{"unknown path", "GET", "/v1/tokenz", admin, "", "", 404, "not_found"},
		{"trailing slash", "GET", "/v1/tokens/", admin, "", "", 404, "not_found"},
		{"wrong method", "PUT", "/v1/tokens", admin, "application/json", `{}`, 405, "method_not_allowed"},
		{"wrong method on id", "POST", "/v1/tokens/x", admin, "application/json", `{}`, 405, "method_not_allowed"},
		{"metrics without key", "GET", "/metrics", "", "", "", 404, "decoy"},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			var body *strings.Reader
			if c.body != "" || c.method == "POST" {
				body = strings.NewReader(c.body)
			}
			req, err := http.NewRequest(c.method, p.url+c.path, nil)
			if body != nil {
				req, err = http.NewRequest(c.method, p.url+c.path, body)
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.ctype != "" {
				req.Header.Set("Content-Type", c.ctype)
			}
			if c.auth != "" {
				req.Header.Set("Authorization", c.auth)
			}
			resp, err := p.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			b.ReadFrom(resp.Body)
			resp.Body.Close()
			r := ctlResp{status: resp.StatusCode, header: resp.Header, body: b.Bytes()}
			if c.code == "decoy" {
				// Strangers get what an unknown path gets: the gateways'
				// nginx decoy, with nothing of the API.
				if r.status != 404 || r.header.Get("Server") != "nginx" || !bytes.Equal(r.body, unknownPath.body) ||
					r.header.Get("WWW-Authenticate") != "" || r.header.Get("Cache-Control") != "" {
					t.Fatalf("%s %s: %v, want the decoy %v", c.method, c.path, r, unknownPath)
				}
				return
			}
			code, err := r.errorCode()
			if err != nil {
				t.Fatal(err)
			}
			if r.status != c.status || code != c.code {
				t.Fatalf("%s %s: %v, want %d %s", c.method, c.path, r, c.status, c.code)
			}
			if cc := r.header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q", cc)
			}
			if c.status == 405 && r.header.Get("Allow") == "" {
				t.Error("405 without Allow")
			}
		})
	}

	t.Run("refusals_identical", func(t *testing.T) {
		var first []byte
		for _, auth := range []string{"", "Bearer " + strings.Repeat("A", 43), "Bearer x"} {
			r, err := p.do("GET", "/v1/client/config", strings.TrimPrefix(auth, "Bearer "), nil)
			if err != nil || r.status != 404 {
				t.Fatalf("%v %v", r, err)
			}
			if first == nil {
				first = r.body
			} else if !bytes.Equal(first, r.body) {
				t.Fatalf("refusal bodies differ: %s vs %s", first, r.body)
			}
		}
	})
	t.Run("unknown_outline_secret_is_an_unknown_path", func(t *testing.T) {
		r, err := p.do("GET", "/v1/outline/"+strings.Repeat("Q", 43), "", nil)
		if err != nil || r.status != 404 || !bytes.Equal(r.body, unknownPath.body) {
			t.Fatalf("%v %v; unknown path gives %v", r, err, unknownPath)
		}
	})
	t.Run("oversized_body", func(t *testing.T) {
		// Only the headers are sent: the answer must not wait for the body.
		r, err := p.rawRequest(fmt.Sprintf("POST /v1/tokens HTTP/1.1\r\nHost: ctl\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", key, 64<<10+1))
		if err != nil {
			t.Fatal(err)
		}
		if code, err := r.errorCode(); err != nil || r.status != 413 || code != "payload_too_large" {
			t.Fatalf("%v (%v), want 413 payload_too_large", r, err)
		}
	})
	t.Run("oversized_body_no_key", func(t *testing.T) {
		r, err := p.rawRequest(fmt.Sprintf("POST /v1/pool/members HTTP/1.1\r\nHost: ctl\r\nContent-Length: %d\r\n\r\n", 10<<20))
		if err != nil {
			t.Fatal(err)
		}
		// A stranger's body over nginx's 1 MiB gets nginx's 413.
		if r.status != 413 || r.header.Get("Server") != "nginx" || !strings.Contains(string(r.body), "<h1>413 Request Entity Too Large</h1>") {
			t.Fatalf("%v, want nginx's 413", r)
		}
	})
	t.Run("malformed_http", func(t *testing.T) {
		r, err := p.rawRequest("GARBAGE\r\n\r\n")
		if err != nil {
			t.Fatal(err)
		}
		if r.status != 400 || r.header.Get("Server") != "nginx" || !strings.Contains(string(r.body), "<h1>400 Bad Request</h1>") {
			t.Fatalf("%v, want nginx's 400", r)
		}
	})
	t.Run("options", func(t *testing.T) {
		r, err := p.do("OPTIONS", "/v1/tokens", key, nil)
		if err != nil || r.status != 204 || !strings.Contains(r.header.Get("Allow"), "POST") {
			t.Fatalf("%v %v Allow=%q", r, err, r.header.Get("Allow"))
		}
		r, err = p.do("OPTIONS", "/v1/tokens", "", nil)
		if err != nil || r.status != 404 || r.header.Get("Allow") != "" || !bytes.Equal(r.body, unknownPath.body) {
			t.Fatalf("OPTIONS without the key: %v %v, want the decoy", r, err)
		}
	})
}
