package api

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/httvps/httvps/control/api/wire"
	"github.com/httvps/httvps/store"
)

func TestPatchToken(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		h := newHarness(t, st)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		events, err := st.Subscribe(ctx)
		if err != nil {
			t.Fatal(err)
		}
		c := h.createToken(`{"label":"a","ttl":"24h","quota_bytes":1000,"max_sessions":2}`)
		r := h.admin("PATCH", "/v1/tokens/"+c.ID, `{"label":"b","quota_bytes":5000,"quota_period":"month","quota_anchor":"created","max_sessions":0,"max_devices":4,"expires_at":"never"}`)
		if r.StatusCode != http.StatusOK {
			t.Fatalf("patch: %d %s", r.StatusCode, r.body)
		}
		v := decode[wire.TokenView](t, r)
		if v.Label != "b" || v.QuotaBytes != 5000 || v.QuotaPeriod != "month" || v.QuotaAnchor != "created" ||
			v.MaxSessions != 0 || v.MaxDevices != 4 || v.ExpiresAt != nil || v.Period == nil || v.Sessions == nil {
			t.Errorf("patched token: %s", r.body)
		}
		start, end := store.PeriodBounds(store.PeriodMonth, store.AnchorCreated, c.CreatedAt, h.clock.Now())
		if !v.Period.Start.Equal(start) || !v.Period.End.Equal(end) {
			t.Errorf("period [%s, %s), want [%s, %s)", v.Period.Start, v.Period.End, start, end)
		}
		waitEvent(t, events, func(e store.Event) bool { return e.Kind == store.EventTokenChanged && e.TokenID == c.ID })
		stored, err := st.GetToken(ctx, c.ID)
		if err != nil || stored.Label != "b" || stored.QuotaBytes != 5000 || !stored.ExpiresAt.IsZero() || stored.QuotaPeriod != store.PeriodMonth ||
			stored.MaxDevices != 4 || stored.MaxSessions != 0 {
			t.Errorf("stored after patch: %+v %v", stored, err)
		}
		// Fields not given stay.
		at := h.clock.Now().Add(time.Hour).UTC().Truncate(time.Second)
		v = decode[wire.TokenView](t, h.admin("PATCH", "/v1/tokens/"+c.ID, `{"expires_at":"`+at.Format(time.RFC3339)+`"}`))
		if v.ExpiresAt == nil || !v.ExpiresAt.Equal(at) || v.Label != "b" || v.QuotaBytes != 5000 || v.QuotaPeriod != "month" || v.MaxDevices != 4 {
			t.Errorf("second patch: %+v", v)
		}
		v = decode[wire.TokenView](t, h.admin("PATCH", "/v1/tokens/"+c.ID, `{"ttl":"2h","quota_period":"none"}`))
		if v.ExpiresAt == nil || v.ExpiresAt.Sub(h.clock.Now()) < 119*time.Minute || v.QuotaPeriod != "none" || v.Period != nil {
			t.Errorf("ttl patch: %+v", v)
		}

		for _, tc := range []struct {
			name, body string
			code       string
		}{
			{"malformed JSON", `{"label":`, "bad_request"},
			{"not an object", `[1]`, "bad_request"},
			{"empty body", ``, "bad_request"},
			{"unknown field", `{"colour":"red"}`, "bad_request"},
			{"nothing to change", `{}`, "invalid_argument"},
			{"bad period", `{"quota_period":"year"}`, "invalid_argument"},
			{"period not a string", `{"quota_period":3}`, "invalid_argument"},
			{"bad anchor", `{"quota_anchor":"moon"}`, "invalid_argument"},
			{"negative quota", `{"quota_bytes":-1}`, "invalid_argument"},
			{"quota not a number", `{"quota_bytes":"lots"}`, "invalid_argument"},
			{"negative sessions", `{"max_sessions":-2}`, "invalid_argument"},
			{"negative devices", `{"max_devices":-1}`, "invalid_argument"},
			{"bad expiry", `{"expires_at":"tomorrow"}`, "invalid_argument"},
			{"expiry and ttl", `{"expires_at":"never","ttl":"1h"}`, "invalid_argument"},
			{"bad ttl", `{"ttl":"-1h"}`, "invalid_argument"},
			{"control character in label", `{"label":"a\u001b[31m"}`, "invalid_argument"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				wantError(t, h.admin("PATCH", "/v1/tokens/"+c.ID, tc.body), 400, tc.code)
			})
		}
		if got, _ := st.GetToken(ctx, c.ID); got.Label != "b" || got.QuotaBytes != 5000 {
			t.Errorf("a refused patch changed the token: %+v", got)
		}
		wantError(t, h.admin("PATCH", "/v1/tokens/nope", `{"label":"x"}`), 404, "not_found")
		wantDecoy(t, h.do("PATCH", "/v1/tokens/"+c.ID, "", `{"label":"x"}`))
	})
}

func TestRotateToken(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		h := newHarness(t, st)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		events, err := st.Subscribe(ctx)
		if err != nil {
			t.Fatal(err)
		}
		c := h.createToken(`{"label":"r","quota_bytes":1000}`)
		if err := st.AddUsage(ctx, h.clock.Now(), map[string]store.Usage{c.ID: {Up: 4, Down: 5}}); err != nil {
			t.Fatal(err)
		}
		before, _ := st.GetToken(ctx, c.ID)
		r := h.admin("POST", "/v1/tokens/"+c.ID+"/rotate", "")
		if r.StatusCode != http.StatusOK {
			t.Fatalf("rotate: %d %s", r.StatusCode, r.body)
		}
		n := decode[wire.CreatedToken](t, r)
		if n.ID != c.ID || len(n.Token) != 43 || n.Token == c.Token || n.Usage == nil || n.Usage.Total != 9 || n.QuotaBytes != 1000 {
			t.Fatalf("rotated: %s", r.body)
		}
		if want := "ssconf://ctl.example.com:8443/v1/outline/" + n.Token + "#r"; n.AccessKeys.SSConf != want {
			t.Errorf("ssconf %q, want %q", n.AccessKeys.SSConf, want)
		}
		waitEvent(t, events, func(e store.Event) bool {
			return e.Kind == store.EventTokenRotated && e.TokenID == c.ID && e.Hash == store.HashToken(c.Token)
		})
		if _, err := st.GetTokenByHash(ctx, store.HashToken(c.Token)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("old secret still finds the token: %v", err)
		}
		after, err := st.GetTokenByHash(ctx, store.HashToken(n.Token))
		if err != nil || after.SSPassword != before.SSPassword || len(after.Assignments) != len(before.Assignments) ||
			after.Assignments[0] != before.Assignments[0] {
			t.Errorf("after rotation: %+v %v; before %+v", after, err, before)
		}
		// The client documents follow the new secret.
		wantDecoy(t, h.do("GET", "/v1/client/config", c.Token, ""))
		if r := h.do("GET", "/v1/client/config", n.Token, ""); r.StatusCode != 200 {
			t.Errorf("client config with the new secret: %d %s", r.StatusCode, r.body)
		}

		wantError(t, h.admin("POST", "/v1/tokens/"+c.ID+"/rotate", `{"x":1}`), 400, "bad_request")
		wantError(t, h.admin("POST", "/v1/tokens/nope/rotate", ""), 404, "not_found")
		h.admin("DELETE", "/v1/tokens/"+c.ID, "")
		wantError(t, h.admin("POST", "/v1/tokens/"+c.ID+"/rotate", ""), 400, "invalid_argument")
		wantDecoy(t, h.do("POST", "/v1/tokens/"+c.ID+"/rotate", "", ""))
	})
}

func TestResetUsageAndPastPeriods(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		h := newHarness(t, st)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		events, err := st.Subscribe(ctx)
		if err != nil {
			t.Fatal(err)
		}
		c := h.createToken(`{"quota_bytes":100,"quota_period":"day"}`)
		now := h.clock.Now()
		if err := st.AddUsage(ctx, now, map[string]store.Usage{c.ID: {Up: 60, Down: 40}}); err != nil {
			t.Fatal(err)
		}
		v := decode[wire.TokenView](t, h.admin("GET", "/v1/tokens/"+c.ID, ""))
		if v.Status != "over_quota" || v.Usage.Total != 100 || v.QuotaPeriod != "day" {
			t.Fatalf("before reset: %+v", v)
		}
		r := h.admin("POST", "/v1/tokens/"+c.ID+"/usage/reset", "")
		if r.StatusCode != http.StatusOK {
			t.Fatalf("reset: %d %s", r.StatusCode, r.body)
		}
		v = decode[wire.TokenView](t, r)
		if v.Status != "active" || v.Usage.Total != 0 {
			t.Errorf("after reset: %s", r.body)
		}
		waitEvent(t, events, func(e store.Event) bool { return e.Kind == store.EventTokenChanged && e.TokenID == c.ID })
		wantError(t, h.admin("POST", "/v1/tokens/nope/usage/reset", ""), 404, "not_found")

		// The next day: yesterday's usage is a past period, today's is zero.
		if err := st.AddUsage(ctx, now, map[string]store.Usage{c.ID: {Up: 7}}); err != nil {
			t.Fatal(err)
		}
		h.clock.Advance(24 * time.Hour)
		v = decode[wire.TokenView](t, h.admin("GET", "/v1/tokens/"+c.ID, ""))
		if v.Usage.Total != 0 || v.Status != "active" {
			t.Errorf("usage on the next day before any write: %+v", v.Usage)
		}
		if err := st.AddUsage(ctx, h.clock.Now(), map[string]store.Usage{c.ID: {Down: 3}}); err != nil {
			t.Fatal(err)
		}
		v = decode[wire.TokenView](t, h.admin("GET", "/v1/tokens/"+c.ID, ""))
		if v.Usage.Total != 3 || len(v.PastPeriods) != 1 || v.PastPeriods[0].Usage.Up != 7 ||
			!v.PastPeriods[0].End.Equal(v.Period.Start) {
			t.Errorf("next day: usage %+v, past %+v, period %+v", v.Usage, v.PastPeriods, v.Period)
		}
	})
}

func TestUsageHistoryAPI(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		h := newHarness(t, st)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		a, b := h.createToken(`{}`), h.createToken(`{}`)
		hour := time.Now().UTC().Truncate(time.Hour)
		if err := st.AddUsage(ctx, hour.Add(-time.Hour), map[string]store.Usage{a.ID: {Up: 10, Down: 20}, b.ID: {Up: 1}}); err != nil {
			t.Fatal(err)
		}
		if err := st.AddUsage(ctx, hour, map[string]store.Usage{a.ID: {Down: 5}}); err != nil {
			t.Fatal(err)
		}
		q := url.Values{"from": {hour.Add(-2 * time.Hour).Format(time.RFC3339)}, "to": {hour.Add(time.Hour).Format(time.RFC3339)}}
		r := h.admin("GET", "/v1/tokens/"+a.ID+"/usage?"+q.Encode(), "")
		if r.StatusCode != 200 {
			t.Fatalf("history: %d %s", r.StatusCode, r.body)
		}
		got := decode[wire.UsageHistory](t, r)
		if got.TokenID != a.ID || got.Step != "hour" || len(got.Buckets) != 3 || got.Total.Up != 10 || got.Total.Down != 25 ||
			got.Buckets[0].Total != 0 || got.Buckets[1].Up != 10 || got.Buckets[1].Down != 20 || got.Buckets[2].Down != 5 {
			t.Errorf("token history: %s", r.body)
		}
		fleet := decode[wire.UsageHistory](t, h.admin("GET", "/v1/usage?"+q.Encode(), ""))
		if fleet.TokenID != "" || fleet.Total.Up != 11 || fleet.Total.Down != 25 {
			t.Errorf("fleet history: %+v", fleet)
		}
		q.Set("step", "day")
		days := decode[wire.UsageHistory](t, h.admin("GET", "/v1/tokens/"+a.ID+"/usage?"+q.Encode(), ""))
		if days.Step != "day" || len(days.Buckets) < 1 || days.Total.Up != 10 || days.Total.Down != 25 {
			t.Errorf("daily history: %+v", days)
		}
		// Defaults: the last day by hour.
		def := decode[wire.UsageHistory](t, h.admin("GET", "/v1/usage", ""))
		if len(def.Buckets) != 24 && len(def.Buckets) != 25 {
			t.Errorf("default range: %d buckets", len(def.Buckets))
		}

		from := hour.Format(time.RFC3339)
		for _, tc := range []struct{ name, query string }{
			{"bad step", "step=minute"},
			{"bad from", "from=yesterday"},
			{"bad to", "to=2030-13-01T00:00:00Z"},
			{"empty range", "from=" + from + "&to=" + from},
			{"reversed", "from=" + from + "&to=" + hour.Add(-time.Hour).Format(time.RFC3339)},
			{"too many hours", "from=" + hour.Add(-32*24*time.Hour).Format(time.RFC3339) + "&to=" + from},
			{"too many days", "step=day&from=" + hour.Add(-800*24*time.Hour).Format(time.RFC3339) + "&to=" + from},
		} {
			t.Run(tc.name, func(t *testing.T) {
				wantError(t, h.admin("GET", "/v1/tokens/"+a.ID+"/usage?"+tc.query, ""), 400, "invalid_argument")
				wantError(t, h.admin("GET", "/v1/usage?"+tc.query, ""), 400, "invalid_argument")
			})
		}
		wantError(t, h.admin("GET", "/v1/tokens/nope/usage", ""), 404, "not_found")
		wantDecoy(t, h.do("GET", "/v1/usage", "", ""))
	})
}
