// Package console is the operator console (/console/) and the user's page
// (/u/<token>) of the control plane: server-rendered HTML (html/template,
// assets embedded in the binary) over the admin API, which the console
// calls in-process (Config.API) so that it validates and stores nothing
// the API does not. Its only state is the signed-in sessions and the
// sign-in rate limits, bounded, in memory. docs/02-control-plane-api.md
// ("The console and the user's page") describes it.
package console

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/url"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/httvps/httvps/store"
)

// Defaults for Config's zero values.
const (
	DefaultSessionTTL  = time.Hour
	DefaultMaxSessions = 64
	// Sign-in attempts allowed per client address and over all addresses
	// in one SignInWindow.
	DefaultSignInPerAddr = 5
	DefaultSignInGlobal  = 30
	SignInWindow         = time.Minute
)

// Prefixes of the paths the console serves.
const (
	Prefix     = "/console/"
	UserPrefix = "/u/"
)

// ErrConfig reports an unusable Config.
var ErrConfig = errors.New("console: invalid config")

// API calls the admin API in-process with the admin key: method and path
// (with query) as on the wire, body JSON or nil; host is the console
// request's Host, from which the API builds access keys when it has no
// public URL. It returns the status and the JSON body.
type API func(host []byte, method, path string, body []byte) (status int, resp []byte)

// Config configures a Console.
type Config struct {
	// API is the admin API (required).
	API API
	// Store is read for the user's page (required).
	Store store.Store
	// AdminKey is what the operator signs in with (required).
	AdminKey string
	// Base is the control plane's base URL for a request's Host (the keys
	// on the user's page name it; required).
	Base func(host []byte) *url.URL
	// Pin is written into httvps:// keys (api.Config.KeyPin).
	Pin []byte
	// Refuse gives ctx the decoy answer any unknown path gets, counting
	// reason (required).
	Refuse func(ctx *fasthttp.RequestCtx, reason string)
	// Now is the clock (nil → time.Now).
	Now func() time.Time
	// Logger gets sign-ins, sign-outs and failures (nil → slog.Default()).
	Logger *slog.Logger
	// SessionTTL is how long a sign-in lasts (0 → DefaultSessionTTL).
	SessionTTL time.Duration
	// MaxSessions caps the sessions held; signing in past it ends the
	// oldest (0 → DefaultMaxSessions).
	MaxSessions int
	// SignInPerAddr and SignInGlobal are the sign-in attempts allowed per
	// SignInWindow (0 → the Default*).
	SignInPerAddr, SignInGlobal int
}

// Refusal reasons (metric labels of the API's refused counter).
const (
	RefuseSession = "console_session" // a console path without a valid session
	RefuseUser    = "user_secret"     // a user page whose token is unknown or revoked
)

// Console serves the console and the user's page.
type Console struct {
	cfg        Config
	now        func() time.Time
	log        *slog.Logger
	adminHash  [sha256.Size]byte
	signInPath string
	sessions   *sessions
	limit      *limiter
	pages      map[string]*template.Template
}

// New checks cfg and builds the Console.
func New(cfg Config) (*Console, error) {
	if cfg.API == nil || cfg.Store == nil || cfg.AdminKey == "" || cfg.Base == nil || cfg.Refuse == nil {
		return nil, fmt.Errorf("%w: API, Store, AdminKey, Base and Refuse are required", ErrConfig)
	}
	if cfg.SessionTTL < 0 || cfg.MaxSessions < 0 || cfg.SignInPerAddr < 0 || cfg.SignInGlobal < 0 {
		return nil, fmt.Errorf("%w: negative limit", ErrConfig)
	}
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.MaxSessions == 0 {
		cfg.MaxSessions = DefaultMaxSessions
	}
	if cfg.SignInPerAddr == 0 {
		cfg.SignInPerAddr = DefaultSignInPerAddr
	}
	if cfg.SignInGlobal == 0 {
		cfg.SignInGlobal = DefaultSignInGlobal
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	c := &Console{
		cfg:        cfg,
		now:        cfg.Now,
		log:        cfg.Logger,
		adminHash:  sha256.Sum256([]byte(cfg.AdminKey)),
		signInPath: SignInPath(cfg.AdminKey),
		sessions:   newSessions(cfg.MaxSessions, cfg.SessionTTL),
		limit:      newLimiter(cfg.SignInPerAddr, cfg.SignInGlobal, SignInWindow),
		pages:      pages,
	}
	return c, nil
}

// SignInPath is the path of the sign-in page for adminKey:
// /console/signin/<first 16 bytes of HMAC-SHA256(adminKey, "httvps console
// sign-in"), base64url>. The page is a secret of the operator's, like the
// key itself, so a prober cannot even find the sign-in form: every other
// console path without a session gets the decoy.
func SignInPath(adminKey string) string {
	m := hmac.New(sha256.New, []byte(adminKey))
	m.Write([]byte("httvps console sign-in"))
	return Prefix + "signin/" + base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// Pass is the API Guard's filter for the console's paths, on the request
// head: handled reports whether path is the console's at all; ok whether
// the request may reach Serve (a sign-in page, a valid session cookie, a
// user page GET); reason is why not.
func (c *Console) Pass(method, path, cookie []byte, cookies int, hasBody bool) (handled, ok bool, reason string) {
	switch {
	case bytes.HasPrefix(path, []byte(Prefix)):
		if string(path) == c.signInPath || bytes.HasPrefix(path, []byte(c.signInPath+"/")) {
			return true, true, ""
		}
		if cookies == 1 && c.sessions.valid(cookieValue(cookie), c.now()) {
			return true, true, ""
		}
		return true, false, RefuseSession
	case bytes.HasPrefix(path, []byte(UserPrefix)):
		if string(method) == "GET" && !hasBody && len(path) > len(UserPrefix) && len(path) <= len(UserPrefix)+maxSecretLen+len("/console.css") {
			return true, true, ""
		}
		return true, false, RefuseUser
	}
	return false, false, ""
}

// Handles reports whether path is the console's.
func Handles(path []byte) bool {
	return bytes.HasPrefix(path, []byte(Prefix)) || bytes.HasPrefix(path, []byte(UserPrefix))
}

// isAdmin compares key with the admin key in constant time (both hashed,
// so the length does not show either).
func (c *Console) isAdmin(key []byte) bool {
	got := sha256.Sum256(key)
	return len(key) > 0 && subtle.ConstantTimeCompare(got[:], c.adminHash[:]) == 1
}
