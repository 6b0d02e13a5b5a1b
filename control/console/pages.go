package console

import (
	"bytes"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/httvps/httvps/control/api/wire"
)

// req is one signed-in console request.
type req struct {
	c    *Console
	ctx  *fasthttp.RequestCtx
	sess session
}

// Bounds of the token list: the console pages through at most
// maxListPages pages of the API to search, and shows pageRows rows (each
// with a GET of the token for its live devices).
const (
	maxListPages = 10
	listPageSize = 1000
	pageRows     = 50
	topUsers     = 10
)

func (r *req) data(title, nav string) pageData {
	return pageData{Title: title, Nav: nav, CSRF: r.sess.csrf, AssetBase: Prefix + "assets/"}
}

func (r *req) show(status int, page string, d pageData) { r.c.render(r.ctx, status, page, d) }

// fail shows an error page to the signed-in operator.
func (r *req) fail(status int, msg string) {
	d := r.data("Error", "")
	d.Error = msg
	r.show(status, "error", d)
}

// allTokens pages through GET /v1/tokens; more reports a list cut short.
func (r *req) allTokens() (out []wire.TokenView, more bool, err error) {
	cursor := ""
	for range maxListPages {
		var l wire.TokenList
		p := "/v1/tokens?limit=" + strconv.Itoa(listPageSize)
		if cursor != "" {
			p += "&cursor=" + url.QueryEscape(cursor)
		}
		if err := r.c.call(r.ctx, "GET", p, nil, &l); err != nil {
			return nil, false, err
		}
		out = append(out, l.Tokens...)
		if l.NextCursor == "" {
			return out, false, nil
		}
		cursor = l.NextCursor
	}
	return out, true, nil
}

// tokens is the token list: search by label or id, filter by status.
func (r *req) tokens() {
	args := r.ctx.QueryArgs()
	q := strings.TrimSpace(string(args.Peek("q")))
	status := string(args.Peek("status"))
	if len(q) > 200 {
		q = q[:200]
	}
	if _, ok := statusNames[status]; !ok {
		status = ""
	}
	all, more, err := r.allTokens()
	if err != nil {
		r.fail(apiStatus(err), apiMessage(err))
		return
	}
	d := r.data("Tokens", "tokens")
	d.Query, d.Status, d.Truncated = q, status, more
	lq := strings.ToLower(q)
	for _, t := range all {
		if status != "" && t.Status != status {
			continue
		}
		if lq != "" && !strings.Contains(strings.ToLower(t.Label), lq) && !strings.Contains(strings.ToLower(t.ID), lq) {
			continue
		}
		d.Matched++
		if len(d.Tokens) < pageRows {
			d.Tokens = append(d.Tokens, t)
		}
	}
	// Live devices and sessions are only on a token's own answer.
	for i := range d.Tokens {
		var full wire.TokenView
		if r.c.call(r.ctx, "GET", "/v1/tokens/"+d.Tokens[i].ID, nil, &full) == nil {
			d.Tokens[i] = full
		}
	}
	r.show(fasthttp.StatusOK, "tokens", d)
}

// statusNames are the token statuses the list filters by.
var statusNames = map[string]string{"": "any", "active": "active", "over_quota": "over quota", "expired": "expired", "revoked": "revoked"}

// quotaUnits are the units of the quota field.
var quotaUnits = map[string]int64{"B": 1, "MiB": 1 << 20, "GiB": 1 << 30}

// limitsFrom reads the limit fields of the create and edit forms into an
// API body; edit leaves out what is empty.
func limitsFrom(args *fasthttp.Args, body map[string]any, edit bool) string {
	num := func(name string) (int64, bool, string) {
		raw := strings.TrimSpace(string(args.Peek(name)))
		if raw == "" {
			return 0, false, ""
		}
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || n < 0 {
			return 0, false, name + " must be 0 or a positive whole number"
		}
		return n, true, ""
	}
	if n, ok, msg := num("quota"); msg != "" {
		return msg
	} else if ok {
		unit, found := quotaUnits[string(args.Peek("quota_unit"))]
		if !found {
			return "quota_unit must be B, MiB or GiB"
		}
		if n > (1<<62)/unit {
			return "quota is too large"
		}
		body["quota_bytes"] = n * unit
	} else if !edit {
		body["quota_bytes"] = 0
	}
	for _, name := range []string{"max_devices", "max_sessions"} {
		if n, ok, msg := num(name); msg != "" {
			return msg
		} else if ok {
			body[name] = n
		}
	}
	if n, ok, msg := num("expires_days"); msg != "" {
		return msg
	} else if ok && n > 0 {
		if n > 100*366 {
			return "expires_days is too large"
		}
		body["ttl"] = (time.Duration(n) * 24 * time.Hour).String()
	}
	for _, name := range []string{"quota_period", "quota_anchor"} {
		if v := string(args.Peek(name)); v != "" {
			body[name] = v
		}
	}
	return ""
}

// createToken is POST /console/tokens: the keys are shown once, here.
func (r *req) createToken() {
	args := r.ctx.PostArgs()
	body := map[string]any{"label": string(args.Peek("label"))}
	if msg := limitsFrom(args, body, false); msg != "" {
		r.fail(fasthttp.StatusBadRequest, msg)
		return
	}
	var ct wire.CreatedToken
	if err := r.c.call(r.ctx, "POST", "/v1/tokens", body, &ct); err != nil {
		r.fail(apiStatus(err), "The token was not created: "+apiMessage(err))
		return
	}
	r.c.log.Info("console: token created", "token_id", ct.ID)
	r.showKeys(fasthttp.StatusCreated, "Token created", ct)
}

// showKeys shows a new or rotated token's keys, the only time they are.
func (r *req) showKeys(status int, title string, ct wire.CreatedToken) {
	d := r.data(title, "tokens")
	d.Token = &ct.TokenView
	d.Keys = keysOf(ct.AccessKeys, ct.Token)
	// The user's page as the user reaches it: under the base URL the keys
	// name (Config.Base), like the ssconf:// key.
	base := r.c.cfg.Base(r.ctx.Host())
	base.Path += UserPrefix + ct.Token
	d.UserPath = base.String()
	r.show(status, "created", d)
}

// token is a token's page.
func (r *req) token(id string) {
	var t wire.TokenView
	if err := r.c.call(r.ctx, "GET", "/v1/tokens/"+id, nil, &t); err != nil {
		r.fail(apiStatus(err), apiMessage(err))
		return
	}
	step := string(r.ctx.QueryArgs().Peek("step"))
	if step != "day" {
		step = "hour"
	}
	var h wire.UsageHistory
	if err := r.c.call(r.ctx, "GET", "/v1/tokens/"+id+"/usage?step="+step, nil, &h); err != nil {
		r.fail(apiStatus(err), apiMessage(err))
		return
	}
	d := r.data(t.Label, "tokens")
	if d.Title == "" {
		d.Title = t.ID
	}
	d.Token, d.History, d.Step = &t, &h, step
	d.Chart = usageChart(h, "Usage of "+d.Title+" by "+step)
	d.Notice = notices[string(r.ctx.QueryArgs().Peek("done"))]
	r.show(fasthttp.StatusOK, "token", d)
}

// notices are the fixed messages a redirect after a change may name (the
// query never carries free text into the page).
var notices = map[string]string{
	"edit": "The limits were changed.", "revoke": "The token was revoked; its live sessions are closed.",
	"reset": "The usage of the current period was reset.", "drain": "The member is draining.",
	"undrain": "The member takes keys again.", "remove": "The member was removed.", "add": "The member was added.",
}

// tokenAction is POST /console/tokens/{id}/{edit,revoke,rotate,reset}.
func (r *req) tokenAction(id, action string) {
	base := "/v1/tokens/" + id
	var err error
	switch action {
	case "edit":
		body := map[string]any{}
		if msg := limitsFrom(r.ctx.PostArgs(), body, true); msg != "" {
			r.fail(fasthttp.StatusBadRequest, msg)
			return
		}
		if len(body) == 0 {
			r.fail(fasthttp.StatusBadRequest, "Nothing to change.")
			return
		}
		err = r.c.call(r.ctx, "PATCH", base, body, nil)
	case "revoke":
		err = r.c.call(r.ctx, "DELETE", base, nil, nil)
	case "reset":
		err = r.c.call(r.ctx, "POST", base+"/usage/reset", nil, nil)
	case "rotate":
		var ct wire.CreatedToken
		if err = r.c.call(r.ctx, "POST", base+"/rotate", nil, &ct); err == nil {
			r.c.log.Info("console: token rotated", "token_id", id)
			r.showKeys(fasthttp.StatusOK, "Token rotated", ct)
			return
		}
	}
	if err != nil {
		r.fail(apiStatus(err), apiMessage(err))
		return
	}
	r.c.log.Info("console: token "+action, "token_id", id)
	seeOther(r.ctx, Prefix+"tokens/"+id+"?done="+action)
}

// pool is the pool page.
func (r *req) pool(notice string) {
	var l wire.MemberList
	if err := r.c.call(r.ctx, "GET", "/v1/pool/members", nil, &l); err != nil {
		r.fail(apiStatus(err), apiMessage(err))
		return
	}
	d := r.data("Pool", "pool")
	d.Members = l.Members
	d.Notice = notices[string(r.ctx.QueryArgs().Peek("done"))]
	r.show(fasthttp.StatusOK, "pool", d)
}

// addMember is POST /console/pool with one of the three backends.
func (r *req) addMember() {
	a := r.ctx.PostArgs()
	s := func(k string) string { return strings.TrimSpace(string(a.Peek(k))) }
	n := func(k string) int { v, _ := strconv.Atoi(s(k)); return v }
	body := map[string]any{"name": s("name"), "backend": s("backend"), "host": s("host")}
	switch s("backend") {
	case "outline-api":
		body["outline"] = map[string]any{"api_url": s("api_url"), "cert_sha256": s("cert_sha256")}
	case "ss-manager":
		body["ss_manager"] = map[string]any{"manager_addr": s("manager_addr"), "port_min": n("port_min"), "port_max": n("port_max")}
	case "static":
		body["static"] = map[string]any{"port": n("port"), "cipher": s("cipher"), "password": s("password")}
	default:
		r.fail(fasthttp.StatusBadRequest, "backend must be outline-api, ss-manager or static")
		return
	}
	if err := r.c.call(r.ctx, "POST", "/v1/pool/members", body, nil); err != nil {
		r.fail(apiStatus(err), "The member was not added: "+apiMessage(err))
		return
	}
	seeOther(r.ctx, Prefix+"pool?done=add")
}

// memberAction is POST /console/pool/{id}/{drain,undrain,remove}.
func (r *req) memberAction(id, action string) {
	var err error
	if action == "remove" {
		err = r.c.call(r.ctx, "DELETE", "/v1/pool/members/"+id, nil, nil)
	} else {
		err = r.c.call(r.ctx, "POST", "/v1/pool/members/"+id+"/"+action, nil, nil)
	}
	if err != nil {
		r.fail(apiStatus(err), apiMessage(err))
		return
	}
	r.c.log.Info("console: member "+action, "member_id", id)
	seeOther(r.ctx, Prefix+"pool?done="+action)
}

// gateways is the fleet page: gateways, the fleet's usage, top users.
func (r *req) gateways() {
	var gl wire.GatewayList
	if err := r.c.call(r.ctx, "GET", "/v1/gateways", nil, &gl); err != nil {
		r.fail(apiStatus(err), apiMessage(err))
		return
	}
	step := string(r.ctx.QueryArgs().Peek("step"))
	if step != "day" {
		step = "hour"
	}
	var h wire.UsageHistory
	if err := r.c.call(r.ctx, "GET", "/v1/usage?step="+step, nil, &h); err != nil {
		r.fail(apiStatus(err), apiMessage(err))
		return
	}
	all, more, err := r.allTokens()
	if err != nil {
		r.fail(apiStatus(err), apiMessage(err))
		return
	}
	sort.SliceStable(all, func(i, j int) bool { return usedOf(all[i]) > usedOf(all[j]) })
	d := r.data("Gateways and fleet", "gateways")
	d.Gateways, d.History, d.Step, d.Truncated = gl.Gateways, &h, step, more
	for _, t := range all {
		if len(d.Tokens) == topUsers || usedOf(t) == 0 {
			break
		}
		d.Tokens = append(d.Tokens, t)
	}
	d.Chart = usageChart(h, "Fleet usage by "+step)
	r.show(fasthttp.StatusOK, "gateways", d)
}

func usedOf(t wire.TokenView) int64 {
	if t.Usage == nil {
		return 0
	}
	return t.Usage.Total
}

// render executes page into ctx's body.
func (c *Console) render(ctx *fasthttp.RequestCtx, status int, page string, d pageData) {
	var b bytes.Buffer
	if err := c.pages[page].ExecuteTemplate(&b, "layout", d); err != nil {
		c.log.Error("console: template", "page", page, "err", err)
		ctx.SetStatusCode(fasthttp.StatusInternalServerError)
		ctx.SetContentType("text/plain; charset=utf-8")
		ctx.SetBodyString("internal error\n")
		return
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("text/html; charset=utf-8")
	ctx.SetBody(b.Bytes())
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
