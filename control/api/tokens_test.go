package api

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/httvps/httvps/store"
)

func TestTokenLifecycle(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		h := newHarness(t, st)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		events, err := st.Subscribe(ctx)
		if err != nil {
			t.Fatal(err)
		}

		r := h.admin("POST", "/v1/tokens", `{"label":"alice","ttl":"720h","quota_bytes":1000000,"max_sessions":3,"cipher":"aes-256-gcm"}`)
		if r.StatusCode != http.StatusCreated {
			t.Fatalf("create: %d %s", r.StatusCode, r.body)
		}
		c := decode[createdTokenJSON](t, r)
		if len(c.Token) != 43 || c.ID == "" || c.Label != "alice" || c.Cipher != "aes-256-gcm" ||
			c.QuotaBytes != 1000000 || c.MaxSessions != 3 || c.Status != "active" {
			t.Fatalf("created token: %+v", c)
		}
		if c.ExpiresAt == nil || c.ExpiresAt.Sub(h.clock.Now()) < 719*time.Hour {
			t.Errorf("expires_at %v, want now+720h", c.ExpiresAt)
		}
		if loc := r.Header.Get("Location"); loc != "/v1/tokens/"+c.ID {
			t.Errorf("Location %q", loc)
		}
		if len(c.Assignments) != 1 || c.Assignments[0].MemberID != "m1" {
			t.Errorf("assignments %+v", c.Assignments)
		}
		if want := "ssconf://ctl.example.com:8443/v1/outline/" + c.Token + "#alice"; c.AccessKeys.SSConf != want {
			t.Errorf("ssconf %q, want %q", c.AccessKeys.SSConf, want)
		}
		if want := "httvps://" + c.Token + "@ctl.example.com:8443/#alice"; c.AccessKeys.HTTVPS != want {
			t.Errorf("httvps %q, want %q", c.AccessKeys.HTTVPS, want)
		}
		if c.AccessKeys.SS != "" {
			t.Errorf("ss key %q without any gateway", c.AccessKeys.SS)
		}

		// The store has the hash, never the token.
		stored, err := st.GetToken(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		if stored.Hash != store.HashToken(c.Token) || stored.SSPassword == "" || len(stored.Assignments) != 1 {
			t.Fatalf("stored token %+v", stored)
		}

		// Show: usage and sessions, never the token, hash or password.
		if err := st.AddUsage(ctx, time.Now(), map[string]store.Usage{c.ID: {Up: 10, Down: 32}}); err != nil {
			t.Fatal(err)
		}
		if ok, err := st.AcquireSession(ctx, c.ID, "gw-1", 0); err != nil || !ok {
			t.Fatal(ok, err)
		}
		h.heartbeat("gw-1", "https://gw1.example.com", 1, time.Minute)
		r = h.admin("GET", "/v1/tokens/"+c.ID, "")
		if r.StatusCode != http.StatusOK {
			t.Fatalf("get: %d %s", r.StatusCode, r.body)
		}
		g := decode[createdTokenJSON](t, r)
		if g.Token != "" || g.Usage == nil || g.Usage.Up != 10 || g.Usage.Down != 32 || g.Usage.Total != 42 ||
			g.Sessions == nil || *g.Sessions != 1 || g.ID != c.ID {
			t.Errorf("get: %s", r.body)
		}
		for _, secret := range []string{c.Token, stored.SSPassword} {
			if strings.Contains(string(r.body), secret) {
				t.Errorf("GET /v1/tokens/{id} shows a secret: %s", r.body)
			}
		}
		if strings.Contains(string(r.body), `"access_keys"`) {
			t.Errorf("GET shows access keys: %s", r.body)
		}

		// Revoke: 204, event with the hash, key removed from the pool.
		r = h.admin("DELETE", "/v1/tokens/"+c.ID, "")
		if r.StatusCode != http.StatusNoContent || len(r.body) != 0 {
			t.Fatalf("revoke: %d %s", r.StatusCode, r.body)
		}
		waitEvent(t, events, func(e store.Event) bool {
			return e.Kind == store.EventTokenRevoked && e.TokenID == c.ID && e.Hash == store.HashToken(c.Token)
		})
		if !slices.Contains(h.fake.removedIDs(), c.ID) {
			t.Errorf("pool.RemoveKey not called for %s", c.ID)
		}
		// Idempotent.
		if r = h.admin("DELETE", "/v1/tokens/"+c.ID, ""); r.StatusCode != http.StatusNoContent {
			t.Fatalf("second revoke: %d %s", r.StatusCode, r.body)
		}
		g = decode[createdTokenJSON](t, h.admin("GET", "/v1/tokens/"+c.ID, ""))
		if g.Status != "revoked" {
			t.Errorf("status after revoke %q", g.Status)
		}
	})
}

func waitEvent(t *testing.T, events <-chan store.Event, match func(store.Event) bool) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case e, ok := <-events:
			if !ok {
				t.Fatal("event channel closed")
			}
			if match(e) {
				return
			}
		case <-timeout:
			t.Fatal("no matching event")
		}
	}
}

func TestTokenDefaultsAndExpiresAt(t *testing.T) {
	h := newHarness(t, embeddedStore(t))
	c := h.createToken(`{}`)
	if c.Cipher != store.DefaultCipher || c.ExpiresAt != nil || c.QuotaBytes != 0 || c.MaxSessions != 0 {
		t.Errorf("defaults: %+v", c)
	}
	at := h.clock.Now().Add(48 * time.Hour).UTC().Truncate(time.Second)
	c = h.createToken(`{"label":"bob","expires_at":"` + at.Format(time.RFC3339) + `"}`)
	if c.ExpiresAt == nil || !c.ExpiresAt.Equal(at) {
		t.Errorf("expires_at %v, want %v", c.ExpiresAt, at)
	}
}

func TestListTokensPagination(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		h := newHarness(t, st)
		var ids []string
		for i := range 5 {
			ids = append(ids, h.createToken(`{"label":"t`+string(rune('0'+i))+`"}`).ID)
		}
		type page struct {
			Tokens     []createdTokenJSON `json:"tokens"`
			NextCursor string             `json:"next_cursor"`
		}
		var got []string
		cursor := ""
		for pages := 0; ; pages++ {
			if pages > 5 {
				t.Fatal("pagination does not end")
			}
			r := h.admin("GET", "/v1/tokens?limit=2&cursor="+cursor, "")
			if r.StatusCode != http.StatusOK {
				t.Fatalf("list: %d %s", r.StatusCode, r.body)
			}
			p := decode[page](t, r)
			if len(p.Tokens) > 2 {
				t.Fatalf("page of %d with limit 2", len(p.Tokens))
			}
			for _, tk := range p.Tokens {
				if tk.Token != "" || tk.Usage == nil {
					t.Errorf("listed token %+v", tk)
				}
				got = append(got, tk.ID)
			}
			if p.NextCursor == "" {
				break
			}
			cursor = p.NextCursor
		}
		if !slices.Equal(got, ids) {
			t.Errorf("listed %v, want %v in creation order", got, ids)
		}
		for _, bad := range []string{"0", "-1", "x", "1001"} {
			wantError(t, h.admin("GET", "/v1/tokens?limit="+bad, ""), 400, "invalid_argument")
		}
	})
}

func TestCreateTokenBadRequests(t *testing.T) {
	h := newHarness(t, embeddedStore(t))
	past := h.clock.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	for _, tc := range []struct {
		name, body string
		status     int
		code       string
	}{
		{"malformed JSON", `{"label":`, 400, "bad_request"},
		{"not an object", `[1,2]`, 400, "bad_request"},
		{"unknown field", `{"label":"a","admin":true}`, 400, "bad_request"},
		{"trailing data", `{"label":"a"} {"label":"b"}`, 400, "bad_request"},
		{"trailing garbage", `{"label":"a"}x`, 400, "bad_request"},
		{"empty body", ``, 400, "bad_request"},
		{"wrong type", `{"quota_bytes":"lots"}`, 400, "bad_request"},
		{"bad cipher", `{"cipher":"rc4-md5"}`, 400, "invalid_argument"},
		{"both expiries", `{"ttl":"1h","expires_at":"2099-01-01T00:00:00Z"}`, 400, "invalid_argument"},
		{"bad ttl", `{"ttl":"soon"}`, 400, "invalid_argument"},
		{"negative ttl", `{"ttl":"-1h"}`, 400, "invalid_argument"},
		{"bad expires_at", `{"expires_at":"tomorrow"}`, 400, "invalid_argument"},
		{"past expires_at", `{"expires_at":"` + past + `"}`, 400, "invalid_argument"},
		{"negative quota", `{"quota_bytes":-1}`, 400, "invalid_argument"},
		{"negative sessions", `{"max_sessions":-2}`, 400, "invalid_argument"},
		{"negative devices", `{"max_devices":-1}`, 400, "invalid_argument"},
		{"long label", `{"label":"` + strings.Repeat("x", maxLabelLen+1) + `"}`, 400, "invalid_argument"},
		// A label reaches operators' terminals (httvps admin tokens list).
		{"newline in label", `{"label":"alice\nroot  active"}`, 400, "invalid_argument"},
		{"ANSI escape in label", `{"label":"\u001b[31mred"}`, 400, "invalid_argument"},
		{"C1 CSI in label", `{"label":"\u009b2J"}`, 400, "invalid_argument"},
		{"DEL in label", `{"label":"a\u007f"}`, 400, "invalid_argument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, h.admin("POST", "/v1/tokens", tc.body), tc.status, tc.code)
		})
	}
	t.Run("form content type", func(t *testing.T) {
		req, _ := http.NewRequest("POST", h.base+"/v1/tokens", strings.NewReader(`{}`))
		req.Header.Set("Authorization", "Bearer "+testAdminKey)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := h.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r := readResponse(t, resp)
		wantError(t, r, 415, "unsupported_media_type")
	})
	// Nothing was created by any of them.
	ctx := context.Background()
	toks, _, err := h.st.ListTokens(ctx, "", 0)
	if err != nil || len(toks) != 0 {
		t.Errorf("tokens after bad requests: %d, %v", len(toks), err)
	}
}

func TestCreateTokenNoMembers(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		h := newHarness(t, st)
		h.fake.empty = true
		wantError(t, h.admin("POST", "/v1/tokens", `{"label":"x"}`), 503, "no_members")
		toks, _, err := st.ListTokens(context.Background(), "", 0)
		if err != nil || len(toks) != 0 {
			t.Errorf("half-created token left behind: %d tokens, %v", len(toks), err)
		}
	})
}

func TestUnknownTokenIDs(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		h := newHarness(t, st)
		wantError(t, h.admin("GET", "/v1/tokens/nope", ""), 404, "not_found")
		wantError(t, h.admin("DELETE", "/v1/tokens/nope", ""), 404, "not_found")
	})
}

// TestTokenCiphers: a token may name exactly the methods of store.Ciphers.
func TestTokenCiphers(t *testing.T) {
	h := newHarness(t, embeddedStore(t))
	for _, m := range store.Ciphers {
		if c := h.createToken(`{"cipher":"` + m + `"}`); c.Cipher != m {
			t.Errorf("%s: created with %q", m, c.Cipher)
		}
	}
	if r := h.admin("POST", "/v1/tokens", `{"cipher":"aes-256-cfb"}`); r.StatusCode != http.StatusBadRequest {
		t.Errorf("aes-256-cfb: status %d: %s", r.StatusCode, r.body)
	}
}
