package console

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/httvps/httvps/control/clientdoc"
	"github.com/httvps/httvps/store"
)

// userTimeout bounds the store calls of one user page.
const userTimeout = 5 * time.Second

// userView is what the user's page shows.
type userView struct {
	Label       string
	Status      string
	ExpiresAt   *time.Time
	QuotaBytes  int64
	Used        int64
	Remaining   int64
	PeriodStart time.Time
	PeriodEnd   time.Time
	MaxDevices  int
}

// serveUser is GET /u/<token>: the holder of a token sees its keys and
// usage. The secret is the client token itself, which the user already
// holds inside both keys; an unknown or revoked one gets the decoy.
func (c *Console) serveUser(ctx *fasthttp.RequestCtx, secret string) {
	secret, asset, _ := strings.Cut(secret, "/")
	if !ctx.IsGet() || secret == "" || len(secret) > maxSecretLen {
		c.cfg.Refuse(ctx, RefuseUser)
		return
	}
	rctx, cancel := context.WithTimeout(context.Background(), userTimeout)
	defer cancel()
	st := c.cfg.Store
	t, err := st.GetTokenByHash(rctx, store.HashToken(secret))
	if errors.Is(err, store.ErrNotFound) || (err == nil && t.Revoked) {
		c.cfg.Refuse(ctx, RefuseUser)
		return
	}
	var u store.Usage
	var gws []store.Gateway
	if err == nil {
		u, err = st.GetUsage(rctx, t.ID)
	}
	if err == nil {
		gws, err = st.ListGateways(rctx)
	}
	if err != nil {
		c.log.Warn("console: user page: store", "err", err)
		c.cfg.Refuse(ctx, "store_unavailable")
		return
	}
	if asset != "" {
		// The page's style sheet and script, behind the same secret.
		securityHeaders(ctx)
		serveAsset(ctx, asset)
		return
	}
	now := c.now()
	u = u.At(now)
	src := clientdoc.Source{Store: st, Now: c.now}
	v := userView{Label: t.Label, Status: "active", QuotaBytes: t.QuotaBytes, Used: u.Total(), MaxDevices: t.MaxDevices}
	switch {
	case src.StateOf(t) == clientdoc.Expired:
		v.Status = "expired"
	case clientdoc.OverQuotaOf(t, u):
		v.Status = "over quota"
	}
	if !t.ExpiresAt.IsZero() {
		e := t.ExpiresAt.UTC()
		v.ExpiresAt = &e
	}
	if t.QuotaBytes > 0 {
		v.Remaining = max(t.QuotaBytes-v.Used, 0)
	}
	v.PeriodStart, v.PeriodEnd = store.PeriodBounds(t.QuotaPeriod, t.QuotaAnchor, t.CreatedAt, now)
	keys := clientdoc.Keys(c.cfg.Base(ctx.Host()), t, secret, clientdoc.OrderGateways(gws), c.cfg.Pin)
	securityHeaders(ctx)
	c.render(ctx, fasthttp.StatusOK, "user", pageData{Title: "Your HTTVPS access", AssetBase: UserPrefix + secret + "/", User: &v, Keys: keysOf(keys, "")})
}
