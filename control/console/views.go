package console

import (
	"embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"io/fs"
	"strconv"
	"time"

	qrcode "github.com/skip2/go-qrcode"
	"github.com/valyala/fasthttp"

	"github.com/httvps/httvps/control/api/wire"
)

//go:embed assets
var assets embed.FS

// pageData is what every page template gets; each page uses its part.
type pageData struct {
	Title string
	// AssetBase is where the style sheet and script are (behind the
	// sign-in path, the session or the user's secret).
	AssetBase string
	Nav       string // the menu entry to mark current
	CSRF      string // the session's form token ("" when signed out)
	Action    string // the sign-in form's path
	Error     string
	Notice    string

	Query, Status string
	Matched       int
	Truncated     bool
	Tokens        []wire.TokenView
	Token         *wire.TokenView
	Keys          []keyView
	UserPath      string
	History       *wire.UsageHistory
	Step          string
	Chart         template.HTML
	Members       []wire.MemberView
	Gateways      []wire.GatewayView
	User          *userView
}

// keyView is one key with its QR code.
type keyView struct {
	ID, Name, Hint, Value string
	QR                    template.URL // a data: URL of a PNG
}

// qrSize is the QR codes' edge in pixels.
const qrSize = 320

// keysOf lists the keys worth a QR code, the token string first when
// given (shown once after create and rotate).
func keysOf(k wire.AccessKeys, token string) []keyView {
	var out []keyView
	add := func(id, name, hint, v string) {
		if v == "" {
			return
		}
		kv := keyView{ID: id, Name: name, Hint: hint, Value: v}
		if png, err := qrcode.Encode(v, qrcode.Medium, qrSize); err == nil {
			kv.QR = template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(png))
		}
		out = append(out, kv)
	}
	add("ssconf", "Outline app (ssconf://)", "Paste or scan in the Outline app: it fetches the current servers each time it connects.", k.SSConf)
	add("httvps", "HTTVPS client (httvps://)", "For the httvps command-line client: httvps connect KEY.", k.HTTVPS)
	add("ss", "Shadowsocks (ss://)", "For ss-local with v2ray-plugin, through one gateway.", k.SS)
	if token != "" {
		out = append(out, keyView{ID: "token", Name: "Client token", Hint: "The bearer token of the client API.", Value: token})
	}
	return out
}

var funcs = template.FuncMap{
	"bytes": humanBytes,
	"exact": func(n int64) string { return strconv.FormatInt(n, 10) },
	"when": func(t any) string {
		switch v := t.(type) {
		case time.Time:
			if v.IsZero() {
				return "—"
			}
			return v.UTC().Format("2006-01-02 15:04 UTC")
		case *time.Time:
			if v == nil || v.IsZero() {
				return "never"
			}
			return v.UTC().Format("2006-01-02 15:04 UTC")
		}
		return ""
	},
	"deref": func(p *int) int {
		if p == nil {
			return 0
		}
		return *p
	},
	"used":       usedOf,
	"statuses":   func() []string { return []string{"", "active", "over_quota", "expired", "revoked"} },
	"statusName": func(s string) string { return statusNames[s] },
	"limit": func(n int) string {
		if n == 0 {
			return "unlimited"
		}
		return strconv.Itoa(n)
	},
	"quota": func(n int64) string {
		if n == 0 {
			return "unlimited"
		}
		return humanBytes(n)
	},
	"pct": func(used, quota int64) string {
		if quota <= 0 {
			return ""
		}
		return fmt.Sprintf("%.1f%%", 100*float64(used)/float64(quota))
	},
}

// humanBytes is n in binary units.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// pageNames are the pages, each assets/<name>.html with the layout.
var pageNames = []string{"signin", "error", "tokens", "created", "token", "pool", "gateways", "user"}

func parsePages() (map[string]*template.Template, error) {
	base, err := template.New("").Funcs(funcs).ParseFS(assets, "assets/layout.html")
	if err != nil {
		return nil, fmt.Errorf("console: templates: %w", err)
	}
	out := make(map[string]*template.Template, len(pageNames))
	for _, n := range pageNames {
		t, err := template.Must(base.Clone()).ParseFS(assets, "assets/"+n+".html")
		if err != nil {
			return nil, fmt.Errorf("console: templates: %w", err)
		}
		out[n] = t
	}
	return out, nil
}

// assetTypes are the files under assets/ served as they are.
var assetTypes = map[string]string{
	"console.css": "text/css; charset=utf-8",
	"console.js":  "text/javascript; charset=utf-8",
}

func serveAsset(ctx *fasthttp.RequestCtx, name string) {
	ct, ok := assetTypes[name]
	var b []byte
	var err error
	if ok {
		b, err = fs.ReadFile(assets, "assets/"+name)
	}
	if !ok || err != nil {
		ctx.SetStatusCode(fasthttp.StatusNotFound)
		ctx.SetContentType("text/plain; charset=utf-8")
		ctx.SetBodyString("no such asset\n")
		return
	}
	ctx.SetContentType(ct)
	ctx.SetBody(b)
}
