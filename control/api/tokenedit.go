package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/httvps/httvps/control/clientdoc"
	"github.com/httvps/httvps/store"
)

// limitField is one field of PATCH /v1/tokens/{id} that sets a
// store.Limits field (set names it for UpdateLimits, which writes only
// the fields a request gave): a new limit is one more entry in
// limitFields.
type limitField struct {
	name  string
	set   store.LimitSet
	apply func(s *Server, raw json.RawMessage, l *store.Limits) *apiError
}

var limitFields = []limitField{
	{"expires_at", store.LimitExpiry, patchExpiresAt},
	{"ttl", store.LimitExpiry, patchTTL},
	{"quota_bytes", store.LimitQuota, patchCount("quota_bytes", func(l *store.Limits) *int64 { return &l.QuotaBytes })},
	{"quota_period", store.LimitPeriod, patchName(parsePeriod, func(l *store.Limits) *string { return &l.QuotaPeriod })},
	{"quota_anchor", store.LimitPeriod, patchName(parseAnchor, func(l *store.Limits) *string { return &l.QuotaAnchor })},
	{"max_sessions", store.LimitSessions, patchCount("max_sessions", func(l *store.Limits) *int { return &l.MaxSessions })},
	{"max_devices", store.LimitDevices, patchCount("max_devices", func(l *store.Limits) *int { return &l.MaxDevices })},
}

// patchCount sets a limit that is 0 (unlimited) or positive.
func patchCount[N int | int64](name string, field func(*store.Limits) *N) func(*Server, json.RawMessage, *store.Limits) *apiError {
	return func(_ *Server, raw json.RawMessage, l *store.Limits) *apiError {
		var n N
		if json.Unmarshal(raw, &n) != nil || n < 0 {
			return invalid("%s must be 0 (unlimited) or a positive integer", name)
		}
		*field(l) = n
		return nil
	}
}

// patchName sets a limit given by name, read by parse.
func patchName(parse func(string) (string, *apiError), field func(*store.Limits) *string) func(*Server, json.RawMessage, *store.Limits) *apiError {
	return func(_ *Server, raw json.RawMessage, l *store.Limits) *apiError {
		var v string
		if json.Unmarshal(raw, &v) != nil {
			_, e := parse("\x00") // the field's own message
			return e
		}
		p, e := parse(v)
		if e != nil {
			return e
		}
		*field(l) = p
		return nil
	}
}

func patchExpiresAt(s *Server, raw json.RawMessage, l *store.Limits) *apiError {
	var v *string
	if json.Unmarshal(raw, &v) != nil {
		return invalid(`expires_at must be an RFC 3339 time, "never" or null`)
	}
	if v == nil || *v == "never" {
		l.ExpiresAt = time.Time{}
		return nil
	}
	at, err := time.Parse(time.RFC3339, *v)
	if err != nil {
		return invalid(`expires_at must be an RFC 3339 time like 2030-01-02T15:04:05Z, "never" or null`)
	}
	l.ExpiresAt = at.UTC()
	return nil
}

func patchTTL(s *Server, raw json.RawMessage, l *store.Limits) *apiError {
	var v string
	if json.Unmarshal(raw, &v) != nil {
		return invalid("ttl must be a positive duration like 720h or 90m")
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return invalid("ttl must be a positive duration like 720h or 90m")
	}
	l.ExpiresAt = s.now().Add(d).UTC()
	return nil
}

// patchToken changes a live token's label and limits. Every gateway drops
// its cached copy on the event that follows (within a second), re-reads
// the token at the next handshake and checks its live sessions against the
// new limits (closing them if the token is now expired or over quota).
func (s *Server) patchToken(ctx *fasthttp.RequestCtx) {
	id := pathParam(ctx, "id")
	var req map[string]json.RawMessage
	if e := decodeJSON(ctx, &req); e != nil {
		s.writeError(ctx, e)
		return
	}
	if len(req) == 0 {
		s.writeError(ctx, invalid("give at least one field to change"))
		return
	}
	known := []string{"label"}
	for _, f := range limitFields {
		known = append(known, f.name)
	}
	for k := range req {
		if !slices.Contains(known, k) {
			s.writeError(ctx, badRequest("invalid JSON: unknown field %q; the fields are %s", printableField(k), strings.Join(known, ", ")))
			return
		}
	}
	if req["expires_at"] != nil && req["ttl"] != nil {
		s.writeError(ctx, invalid("give expires_at or ttl, not both"))
		return
	}
	rctx, cancel := s.reqCtx()
	defer cancel()
	t, err := s.st.GetToken(rctx, id)
	if err != nil {
		s.writeError(ctx, fromStoreErr(err, "token"))
		return
	}
	var label *string
	if raw, ok := req["label"]; ok {
		var v string
		if json.Unmarshal(raw, &v) != nil || !checkText(v, maxLabelLen) {
			s.writeError(ctx, invalid("label must be valid UTF-8 of at most %d bytes without control characters", maxLabelLen))
			return
		}
		label = &v
	}
	// Only the fields given are written: the others keep what the store
	// holds, even when another PATCH changed them since GetToken.
	l, which := store.LimitsOf(t), store.LimitSet(0)
	for _, f := range limitFields {
		if raw, ok := req[f.name]; ok {
			if e := f.apply(s, raw, &l); e != nil {
				s.writeError(ctx, e)
				return
			}
			which |= f.set
		}
	}
	if label != nil {
		if err := s.st.UpdateLabel(rctx, id, *label); err != nil {
			s.writeError(ctx, fromStoreErr(err, "token"))
			return
		}
	}
	if which != 0 {
		if err := s.st.UpdateLimits(rctx, id, l, which); err != nil {
			s.writeError(ctx, fromStoreErr(err, "token"))
			return
		}
	}
	if !s.tokenChanged(ctx, store.Event{Kind: store.EventTokenChanged, TokenID: id}) {
		return
	}
	s.log.Info("token changed", "token_id", id)
	s.showToken(ctx, id, fasthttp.StatusOK)
}

// printableField bounds an unknown field's name in an error message.
func printableField(k string) string {
	if len(k) > 64 || !checkText(k, 64) {
		return "…"
	}
	return k
}

// tokenChanged tells the gateways; false means the answer was written
// (the change is stored, but gateways see it only when their cache entry
// expires, so the caller should repeat the request).
func (s *Server) tokenChanged(ctx *fasthttp.RequestCtx, e store.Event) bool {
	rctx, cancel := s.reqCtx()
	defer cancel()
	if err := s.st.Publish(rctx, e); err != nil {
		s.writeError(ctx, fromStoreErr(fmt.Errorf("publish %s: %w", e.Kind, err), "token"))
		return false
	}
	return true
}

// resetUsage zeroes the usage of the token's current period. Gateways
// re-read it on the event (within a second); bytes a gateway relayed in
// its last flush interval before the reset and flushes after it count in
// the reset period (at most FlushEvery of traffic, 2 s by default).
func (s *Server) resetUsage(ctx *fasthttp.RequestCtx) {
	id := pathParam(ctx, "id")
	rctx, cancel := s.reqCtx()
	defer cancel()
	if err := s.st.ResetUsage(rctx, id, s.now()); err != nil {
		s.writeError(ctx, fromStoreErr(err, "token"))
		return
	}
	if !s.tokenChanged(ctx, store.Event{Kind: store.EventTokenChanged, TokenID: id}) {
		return
	}
	s.log.Info("token usage reset", "token_id", id)
	s.showToken(ctx, id, fasthttp.StatusOK)
}

// rotateToken gives the token a new secret: same ID, limits, usage and
// placement of its Shadowsocks key (its password does not change). The
// old secret stops finding the token at once in the store, and on every
// gateway when the event arrives (within a second), which also closes the
// token's live sessions: they were opened with the old secret, and a
// client holding the new one reconnects. The answer is like create's: the
// only time the new token is shown.
func (s *Server) rotateToken(ctx *fasthttp.RequestCtx) {
	id := pathParam(ctx, "id")
	if len(bytes.TrimSpace(ctx.PostBody())) > 0 {
		s.writeError(ctx, badRequest("rotate takes no body"))
		return
	}
	rctx, cancel := s.reqCtx()
	defer cancel()
	t, err := s.st.GetToken(rctx, id)
	if err != nil {
		s.writeError(ctx, fromStoreErr(err, "token"))
		return
	}
	if t.Revoked {
		s.writeError(ctx, invalid("the token is revoked; create a new one"))
		return
	}
	secret := randomString(tokenBytes)
	old, err := s.st.RotateToken(rctx, id, store.HashToken(secret))
	if err != nil {
		s.writeError(ctx, fromStoreErr(err, "token"))
		return
	}
	if !s.tokenChanged(ctx, store.Event{Kind: store.EventTokenRotated, TokenID: id, Hash: old.Hash}) {
		return
	}
	t = old
	t.Hash = store.HashToken(secret)
	u, err := s.st.GetUsage(rctx, id)
	if err != nil {
		u = store.Usage{} // the rotation is done: answer with the new token anyway
	}
	gws, err := s.st.ListGateways(rctx)
	if err != nil {
		s.log.Warn("token rotated; gateways not listed, so no ss:// key", "token_id", id, "err", err)
	}
	out := createdToken{
		TokenView:  s.viewToken(t, &u),
		Token:      secret,
		AccessKeys: s.accessKeys(ctx, t, secret, clientdoc.OrderGateways(gws)),
	}
	s.log.Info("token rotated", "token_id", id)
	writeJSON(ctx, fasthttp.StatusOK, out)
}
