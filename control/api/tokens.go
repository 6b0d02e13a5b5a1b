package api

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/httvps/httvps/control/api/wire"
	"github.com/httvps/httvps/control/clientdoc"
	"github.com/httvps/httvps/store"
)

// Token and key sizes.
const (
	// tokenBytes of randomness make the client token (43 base64url chars).
	tokenBytes = 32
	// ssPasswordBytes of randomness make the Shadowsocks password; it only
	// has to resist guessing, the AEAD key is derived from it.
	ssPasswordBytes = 24
	maxLabelLen     = 200
)

// createTokenRequest is the body of POST /v1/tokens.
type createTokenRequest struct {
	Label       string `json:"label"`
	ExpiresAt   string `json:"expires_at"` // RFC 3339
	TTL         string `json:"ttl"`        // Go duration
	QuotaBytes  int64  `json:"quota_bytes"`
	QuotaPeriod string `json:"quota_period"` // none (default), day, week, month
	QuotaAnchor string `json:"quota_anchor"` // calendar (default), created
	MaxSessions int    `json:"max_sessions"`
	MaxDevices  int    `json:"max_devices"`
	Cipher      string `json:"cipher"`
}

func viewUsage(u store.Usage) *usageView {
	return &usageView{Up: u.Up, Down: u.Down, Total: u.Total()}
}

// Token statuses in tokenView.Status.
const (
	statusActive    = "active"
	statusRevoked   = "revoked"
	statusExpired   = "expired"
	statusOverQuota = "over_quota"
)

// viewToken shows t with u, its usage as the store returned it: the
// current period's (nothing once that period ended).
func (s *Server) viewToken(t store.Token, u *store.Usage) tokenView {
	now := s.now()
	v := tokenView{
		ID:          t.ID,
		Label:       t.Label,
		CreatedAt:   t.CreatedAt.UTC(),
		QuotaBytes:  t.QuotaBytes,
		QuotaPeriod: periodName(t.QuotaPeriod),
		QuotaAnchor: anchorName(t.QuotaAnchor),
		MaxSessions: t.MaxSessions,
		MaxDevices:  t.MaxDevices,
		Cipher:      t.Cipher,
		Status:      statusActive,
		Assignments: make([]assignmentView, 0, len(t.Assignments)),
	}
	if !t.ExpiresAt.IsZero() {
		e := t.ExpiresAt.UTC()
		v.ExpiresAt = &e
	}
	if start, end := store.PeriodBounds(t.QuotaPeriod, t.QuotaAnchor, t.CreatedAt, now); !start.IsZero() {
		v.Period = &periodView{Start: start, End: end}
	}
	if u != nil {
		cur := u.At(now)
		u = &cur
	}
	if t.Revoked {
		r := t.RevokedAt.UTC()
		v.RevokedAt = &r
	}
	for _, a := range t.Assignments {
		v.Assignments = append(v.Assignments, assignmentView{MemberID: a.MemberID, Upstream: a.Upstream})
	}
	switch s.docs.StateOf(t) {
	case clientdoc.Revoked:
		v.Status = statusRevoked
	case clientdoc.Expired:
		v.Status = statusExpired
	default:
		if u != nil && clientdoc.OverQuotaOf(t, *u) {
			v.Status = statusOverQuota
		}
	}
	if u != nil {
		v.Usage = viewUsage(*u)
	}
	return v
}

func (s *Server) parseCreateToken(req *createTokenRequest) (store.Token, *apiError) {
	t := store.Token{Label: req.Label, QuotaBytes: req.QuotaBytes, MaxSessions: req.MaxSessions, MaxDevices: req.MaxDevices, Cipher: req.Cipher}
	if !checkText(req.Label, maxLabelLen) {
		return t, invalid("label must be valid UTF-8 of at most %d bytes without control characters", maxLabelLen)
	}
	switch {
	case req.ExpiresAt != "" && req.TTL != "":
		return t, invalid("give expires_at or ttl, not both")
	case req.ExpiresAt != "":
		at, err := time.Parse(time.RFC3339, req.ExpiresAt)
		if err != nil {
			return t, invalid("expires_at must be an RFC 3339 time like 2030-01-02T15:04:05Z")
		}
		if !at.After(s.now()) {
			return t, invalid("expires_at is in the past")
		}
		t.ExpiresAt = at.UTC()
	case req.TTL != "":
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d <= 0 {
			return t, invalid("ttl must be a positive duration like 720h or 90m")
		}
		t.ExpiresAt = s.now().Add(d).UTC()
	}
	if req.QuotaBytes < 0 {
		return t, invalid("quota_bytes must be 0 (unlimited) or positive")
	}
	var e *apiError
	if t.QuotaPeriod, e = parsePeriod(req.QuotaPeriod); e != nil {
		return t, e
	}
	if t.QuotaAnchor, e = parseAnchor(req.QuotaAnchor); e != nil {
		return t, e
	}
	if req.MaxSessions < 0 {
		return t, invalid("max_sessions must be 0 (unlimited) or positive")
	}
	if req.MaxDevices < 0 {
		return t, invalid("max_devices must be 0 (unlimited) or positive")
	}
	if t.Cipher == "" {
		t.Cipher = store.DefaultCipher
	}
	if !store.ValidCipher(t.Cipher) {
		return t, invalid("cipher must be one of %s", strings.Join(store.Ciphers, ", "))
	}
	return t, nil
}

func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand panics instead)
	return base64.RawURLEncoding.EncodeToString(b)
}

// createToken issues a token: store it, place its key on the pool, record
// where. A failure after the store write undoes it, so a caller who never
// saw the token never leaves one behind.
func (s *Server) createToken(ctx *fasthttp.RequestCtx) {
	var req createTokenRequest
	if e := decodeJSON(ctx, &req); e != nil {
		s.writeError(ctx, e)
		return
	}
	t, e := s.parseCreateToken(&req)
	if e != nil {
		s.writeError(ctx, e)
		return
	}
	secret := randomString(tokenBytes)
	t.ID = store.NewID()
	t.Hash = store.HashToken(secret)
	t.SSPassword = randomString(ssPasswordBytes)
	t.CreatedAt = s.now().UTC()

	rctx, cancel := s.reqCtx()
	defer cancel()
	if ms, err := s.st.ListMembers(rctx); err == nil {
		if e := adoptStaticSecret(ms, &t, req.Cipher != ""); e != nil {
			s.writeError(ctx, e)
			return
		}
	}
	if err := s.st.CreateToken(rctx, t); err != nil {
		s.writeError(ctx, fromStoreErr(err, "token"))
		return
	}
	asg, err := s.pool.PlaceKey(rctx, t)
	if err == nil {
		t.Assignments = asg
		err = s.st.UpdateAssignments(rctx, t.ID, asg)
		if err != nil {
			s.undoCreate(t, true)
		}
	} else {
		s.undoCreate(t, false)
	}
	if err != nil {
		s.writeError(ctx, fromStoreErr(err, "token"))
		return
	}

	// From here on the token exists: answer 201 whatever else fails, or
	// the caller would never see it.
	gws, err := s.st.ListGateways(rctx)
	if err != nil {
		s.log.Warn("token created; gateways not listed, so no ss:// key", "token_id", t.ID, "err", err)
	}
	out := createdToken{
		TokenView:  s.viewToken(t, &store.Usage{}),
		Token:      secret,
		AccessKeys: s.accessKeys(ctx, t, secret, clientdoc.OrderGateways(gws)),
	}
	zero := 0
	out.Sessions = &zero
	s.log.Info("token created", "token_id", t.ID, "members", len(asg))
	ctx.Response.Header.Set("Location", "/v1/tokens/"+t.ID)
	writeJSON(ctx, fasthttp.StatusCreated, out)
}

// adoptStaticSecret gives t the shared cipher and password of a static
// member when static members are all the pool can place it on: a static
// member is one Shadowsocks listener with one secret, and takes only keys
// with that secret. A usable member of another backend takes any secret,
// so then t keeps its own. Among static members, one with t's cipher wins.
// A cipher the caller asked for (explicit) that no such member serves is
// an error: the key would otherwise silently carry another cipher.
func adoptStaticSecret(ms []store.Member, t *store.Token, explicit bool) *apiError {
	var pick *store.StaticConfig
	for _, m := range ms {
		if m.Draining || !m.Health.Up {
			continue
		}
		if m.Backend != store.BackendStatic {
			return nil
		}
		if m.Static == nil {
			continue
		}
		if pick == nil || (pick.Cipher != t.Cipher && m.Static.Cipher == t.Cipher) {
			pick = m.Static
		}
	}
	if pick == nil {
		return nil
	}
	if explicit && pick.Cipher != t.Cipher {
		return invalid("cipher %s: the pool's static members serve %s only (a static member has one shared secret); omit cipher, or add an ss-manager or Outline member for per-token keys", t.Cipher, pick.Cipher)
	}
	t.Cipher, t.SSPassword = pick.Cipher, pick.Password
	return nil
}

// undoCreate removes a half-created token with a context of its own (the
// request's may be what ran out).
func (s *Server) undoCreate(t store.Token, placed bool) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.StoreTimeout)
	defer cancel()
	if placed {
		if err := s.pool.RemoveKey(ctx, t); err != nil {
			s.log.Warn("undo token: removing its key from the pool failed", "token_id", t.ID, "err", err)
		}
	}
	if err := s.st.DeleteToken(ctx, t.ID); err != nil {
		s.log.Warn("undo token: delete failed; it is left without assignments", "token_id", t.ID, "err", err)
	}
}

func (s *Server) listTokens(ctx *fasthttp.RequestCtx) {
	args := ctx.QueryArgs()
	cursor := string(args.Peek("cursor"))
	limit := 0
	if raw := args.Peek("limit"); len(raw) > 0 {
		n, err := strconv.Atoi(string(raw))
		if err != nil || n < 1 || n > store.MaxPageSize {
			s.writeError(ctx, invalid("limit must be an integer from 1 to %d", store.MaxPageSize))
			return
		}
		limit = n
	}
	rctx, cancel := s.reqCtx()
	defer cancel()
	toks, next, err := s.st.ListTokens(rctx, cursor, limit)
	if err != nil {
		e := fromStoreErr(err, "cursor")
		if e.Status == fasthttp.StatusNotFound {
			e = invalid("cursor is not valid")
		}
		s.writeError(ctx, e)
		return
	}
	ids := make([]string, len(toks))
	for i, t := range toks {
		ids[i] = t.ID
	}
	usages, err := s.st.GetUsages(rctx, ids)
	if err != nil {
		s.writeError(ctx, fromStoreErr(err, "token"))
		return
	}
	out := tokenList{Tokens: make([]tokenView, 0, len(toks)), NextCursor: next}
	for _, t := range toks {
		u := usages[t.ID]
		out.Tokens = append(out.Tokens, s.viewToken(t, &u))
	}
	writeJSON(ctx, fasthttp.StatusOK, out)
}

func pathParam(ctx *fasthttp.RequestCtx, name string) string {
	v, _ := ctx.UserValue(name).(string)
	return v
}

func (s *Server) getToken(ctx *fasthttp.RequestCtx) {
	s.showToken(ctx, pathParam(ctx, "id"), fasthttp.StatusOK)
}

// showToken answers with the token, its usage, past periods and sessions.
func (s *Server) showToken(ctx *fasthttp.RequestCtx, id string, status int) {
	rctx, cancel := s.reqCtx()
	defer cancel()
	t, err := s.st.GetToken(rctx, id)
	if err != nil {
		s.writeError(ctx, fromStoreErr(err, "token"))
		return
	}
	u, err := s.st.GetUsage(rctx, id)
	if err != nil {
		s.writeError(ctx, fromStoreErr(err, "token"))
		return
	}
	n, err := s.st.SessionCount(rctx, id)
	if err != nil {
		s.writeError(ctx, fromStoreErr(err, "token"))
		return
	}
	devs, err := s.st.ListDevices(rctx, id)
	if err != nil {
		s.writeError(ctx, fromStoreErr(err, "token"))
		return
	}
	past, err := s.st.PastPeriods(rctx, id)
	if err != nil {
		s.writeError(ctx, fromStoreErr(err, "token"))
		return
	}
	v := s.viewToken(t, &u)
	v.Sessions = &n
	v.Devices = viewDevices(devs)
	for _, p := range past {
		v.PastPeriods = append(v.PastPeriods, periodView{Start: p.Start, End: p.End, Usage: viewUsage(store.Usage{Up: p.Up, Down: p.Down})})
	}
	writeJSON(ctx, status, v)
}

// viewDevices is the API's form of the store's live devices.
func viewDevices(devs []store.Device) []wire.DeviceView {
	out := make([]wire.DeviceView, 0, len(devs))
	for _, d := range devs {
		kind := wire.DeviceID
		if strings.ContainsAny(d.Key, ".:") {
			kind = wire.DeviceAddress
		}
		dv := wire.DeviceView{Device: d.Key, Kind: kind, FirstSeen: d.FirstSeen.UTC(), LastSeen: d.LastSeen.UTC(),
			Sessions: d.Sessions, Gateways: make([]wire.DeviceLeaseView, 0, len(d.Gateways))}
		for _, l := range d.Gateways {
			lv := wire.DeviceLeaseView{GatewayID: l.GatewayID, Sessions: l.Sessions}
			if !l.GraceUntil.IsZero() {
				g := l.GraceUntil.UTC()
				lv.GraceUntil = &g
			}
			dv.Gateways = append(dv.Gateways, lv)
		}
		out = append(out, dv)
	}
	return out
}

// revokeToken revokes, tells every gateway (which closes the token's
// sessions), then takes the key off the pool. Repeating it repeats the
// event and the removal, so a retry after a failure completes the job.
func (s *Server) revokeToken(ctx *fasthttp.RequestCtx) {
	id := pathParam(ctx, "id")
	rctx, cancel := s.reqCtx()
	defer cancel()
	t, err := s.st.RevokeToken(rctx, id)
	if err != nil {
		s.writeError(ctx, fromStoreErr(err, "token"))
		return
	}
	if err := s.st.Publish(rctx, store.Event{Kind: store.EventTokenRevoked, TokenID: t.ID, Hash: t.Hash}); err != nil {
		s.writeError(ctx, fromStoreErr(fmt.Errorf("publish revocation: %w", err), "token"))
		return
	}
	if err := s.pool.RemoveKey(rctx, t); err != nil {
		// The token is refused everywhere already; a key left on a member
		// only lets someone holding its password reach that member directly.
		s.log.Warn("token revoked; removing its key from the pool failed", "token_id", t.ID, "err", err)
	}
	s.log.Info("token revoked", "token_id", t.ID)
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}
