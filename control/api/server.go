// Package api is the control plane's HTTP API on fasthttp: the admin API
// (tokens, pool members, gateways) under a bearer admin key, the client API
// under a client's own token, the Outline dynamic access keys, and the
// operator endpoints /metrics, /healthz and /readyz. docs/02-control-plane-api.md
// and docs/openapi.yaml describe every route; a test keeps them in step with
// the router.
package api

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/fasthttp/router"
	"github.com/valyala/fasthttp"

	"github.com/httvps/httvps/control/clientdoc"
	"github.com/httvps/httvps/control/console"
	"github.com/httvps/httvps/internal/nginxdecoy"
	"github.com/httvps/httvps/store"
)

// Defaults for Config's zero values.
const (
	DefaultMaxBodyBytes = 64 << 10
	DefaultReadTimeout  = 10 * time.Second
	DefaultWriteTimeout = 10 * time.Second
	DefaultIdleTimeout  = 60 * time.Second
	DefaultStoreTimeout = 5 * time.Second
	// MinAdminKeyLen is the shortest admin key New accepts.
	MinAdminKeyLen = 32
)

// ErrConfig reports an unusable Config.
var ErrConfig = errors.New("api: invalid config")

// Pool is what the API needs of the pool manager (*pool.Manager implements
// it); tests use a fake. PlaceKey reports pool.ErrNoMembers (wrapped or
// not) when no member can take a key.
type Pool interface {
	// PlaceKey creates t's Shadowsocks key on members and returns where.
	PlaceKey(ctx context.Context, t store.Token) ([]store.Assignment, error)
	// RemoveKey deletes t's key from its assigned members.
	RemoveKey(ctx context.Context, t store.Token) error
	// AddMember validates, checks and stores a member, assigning its ID.
	AddMember(ctx context.Context, m store.Member) (store.Member, error)
	// DrainMember stops placing keys on the member and moves its keys away.
	DrainMember(ctx context.Context, id string) error
	// UndrainMember lets keys be placed on a draining member again.
	UndrainMember(ctx context.Context, id string) error
	// RemoveMember drains, then deletes the member; one whose keys cannot
	// all move is left as it was.
	RemoveMember(ctx context.Context, id string) error
}

// Config configures a Server.
type Config struct {
	// Store is the shared state (required).
	Store store.Store
	// Pool places keys and manages members (required). If it also has
	// Stats() pool.Stats, as *pool.Manager does, /metrics carries the
	// httvps_control_pool_* series.
	Pool Pool
	// AdminKey authenticates the admin API; at least MinAdminKeyLen bytes.
	AdminKey string
	// PublicURL is the control plane's own base URL as clients reach it
	// ("https://ctl.example.com"), used in ssconf:// and httvps:// keys.
	// Empty: https:// plus the request's Host header.
	PublicURL string
	// KeyPin is the SHA-256 (DER, 32 bytes) of the gateways' leaf, or of
	// the private CA they send in their chain, written as pin= into
	// httvps:// keys so the reference client accepts that leaf or the
	// leaves that CA signed. Nil: no pin, clients verify the chain; any
	// other length is ignored.
	KeyPin []byte
	// Logger receives request failures (nil → slog.Default()).
	Logger *slog.Logger
	// MaxBodyBytes caps request bodies (0 → DefaultMaxBodyBytes; larger
	// bodies get 413).
	MaxBodyBytes int
	// ReadTimeout, WriteTimeout and IdleTimeout bound a connection's
	// request read, response write and keep-alive wait (0 → the Default*).
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// StoreTimeout bounds the store and pool calls of one request
	// (0 → DefaultStoreTimeout).
	StoreTimeout time.Duration
	// OpenMetrics serves /metrics without the admin key. False: /metrics
	// needs the admin key like the admin API.
	OpenMetrics bool
	// Decoy is the answer strangers get (decoy.go): give the gateways'
	// decoy settings so that both answer alike (zero: nginx's 404).
	Decoy nginxdecoy.Config
	// Now is the clock (nil → time.Now); tests move it.
	Now func() time.Time
	// Snapshot writes a consistent copy of the store's durable state to w
	// (the embedded store's WriteSnapshot) for GET /v1/backup. Nil: that
	// route answers 501 not_implemented (Redis has its own backups).
	Snapshot func(ctx context.Context, w io.Writer) (int64, error)
	// SnapshotDir holds a backup's temporary copy while it is sent (""
	// → os.TempDir()); the same file system as the store is best.
	SnapshotDir string
}

// Server is the control plane API.
type Server struct {
	cfg       Config
	st        store.Store
	pool      Pool
	log       *slog.Logger
	adminHash [sha256.Size]byte
	public    *url.URL // nil: from the request's Host
	now       func() time.Time
	router    *router.Router
	routes    []route
	handler   fasthttp.RequestHandler
	srv       *fasthttp.Server
	met       *serverMetrics
	docs      *clientdoc.Source // the client documents and keys
	decoy     *nginxdecoy.Pages
	guard     *nginxdecoy.Guard
	console   *console.Console
	// consoleHandler is console.Serve, instrumented.
	consoleHandler fasthttp.RequestHandler

	mu        sync.Mutex // guards closed and listeners
	closed    bool
	listeners []net.Listener
}

// route is one registered method and path pattern.
type route struct {
	Method, Path string
}

// New checks cfg and builds the Server.
func New(cfg Config) (*Server, error) {
	var errs []error
	if cfg.Store == nil {
		errs = append(errs, errors.New("Store is nil"))
	}
	if cfg.Pool == nil {
		errs = append(errs, errors.New("Pool is nil"))
	}
	if len(cfg.AdminKey) < MinAdminKeyLen {
		errs = append(errs, fmt.Errorf("AdminKey is shorter than %d bytes", MinAdminKeyLen))
	}
	var public *url.URL
	if cfg.PublicURL != "" {
		u, err := parsePublicURL(cfg.PublicURL)
		if err != nil {
			errs = append(errs, err)
		}
		public = u
	}
	if cfg.Decoy.Status != 0 && !nginxdecoy.StatusValid(cfg.Decoy.Status) {
		errs = append(errs, fmt.Errorf("Decoy.Status %d is not 200 or a 4xx/5xx nginx has a page for", cfg.Decoy.Status))
	}
	if cfg.MaxBodyBytes < 0 || cfg.ReadTimeout < 0 || cfg.WriteTimeout < 0 || cfg.IdleTimeout < 0 || cfg.StoreTimeout < 0 {
		errs = append(errs, errors.New("negative limit or timeout"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if cfg.MaxBodyBytes == 0 {
		// fasthttp reads 0 as its own 4 MiB default, never as unlimited.
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = DefaultReadTimeout
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.StoreTimeout == 0 {
		cfg.StoreTimeout = DefaultStoreTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{
		cfg:       cfg,
		st:        cfg.Store,
		pool:      cfg.Pool,
		log:       cfg.Logger,
		adminHash: sha256.Sum256([]byte(cfg.AdminKey)),
		public:    public,
		now:       cfg.Now,
		met:       newServerMetrics(),
		docs:      &clientdoc.Source{Store: cfg.Store, Now: cfg.Now},
		decoy:     nginxdecoy.New(cfg.Decoy),
	}
	s.guard = &nginxdecoy.Guard{
		Pages:         s.decoy,
		Pass:          s.pass,
		Refused:       s.refused,
		HeaderTimeout: cfg.ReadTimeout,
		KeepAlive:     cfg.IdleTimeout,
	}
	s.buildRouter()
	con, err := s.newConsole()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	s.console = con
	s.met.route(consoleRoute)
	s.consoleHandler = s.instrument(consoleRoute, con.Serve)
	s.srv = &fasthttp.Server{
		Handler:               s.handler,
		ErrorHandler:          s.parseError,
		MaxRequestBodySize:    cfg.MaxBodyBytes,
		ReadTimeout:           cfg.ReadTimeout,
		WriteTimeout:          cfg.WriteTimeout,
		IdleTimeout:           cfg.IdleTimeout,
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		CloseOnShutdown:       true,
		// Headers larger than this are a client error, not a reason to grow.
		ReadBufferSize:               8 << 10,
		DisablePreParseMultipartForm: true,
		Logger:                       fasthttpLogger{cfg.Logger},
	}
	return s, nil
}

// parsePublicURL accepts an absolute http(s) URL without query or fragment.
func parsePublicURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("PublicURL: %w", err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("PublicURL %q: want http(s)://host[:port][/path] without query, fragment or user", raw)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// buildRouter registers every route. The list of routes is also what the
// OpenAPI test compares with docs/openapi.yaml.
func (s *Server) buildRouter() {
	r := router.New()
	// An API has one spelling per resource; redirects would only hide
	// client bugs (and echo path secrets in Location headers).
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.HandleOPTIONS = true
	r.GlobalOPTIONS = s.instrument("options", func(ctx *fasthttp.RequestCtx) {
		// The router has set Allow.
		ctx.SetStatusCode(fasthttp.StatusNoContent)
	})
	r.HandleMethodNotAllowed = true
	r.NotFound = s.instrument("unmatched", s.notFound)
	r.MethodNotAllowed = s.instrument("unmatched", s.methodNotAllowed)
	r.PanicHandler = s.panicked

	add := func(method, path string, h fasthttp.RequestHandler) {
		s.routes = append(s.routes, route{method, path})
		s.met.route(method + " " + path)
		r.Handle(method, path, s.instrument(method+" "+path, h))
	}

	add("POST", "/v1/tokens", s.admin(s.createToken))
	add("GET", "/v1/tokens", s.admin(s.listTokens))
	add("GET", "/v1/tokens/{id}", s.admin(s.getToken))
	add("DELETE", "/v1/tokens/{id}", s.admin(s.revokeToken))
	add("PATCH", "/v1/tokens/{id}", s.admin(s.patchToken))
	add("POST", "/v1/tokens/{id}/rotate", s.admin(s.rotateToken))
	add("POST", "/v1/tokens/{id}/usage/reset", s.admin(s.resetUsage))
	add("GET", "/v1/tokens/{id}/usage", s.admin(s.tokenUsage))
	add("GET", "/v1/usage", s.admin(s.fleetUsage))

	add("POST", "/v1/pool/members", s.admin(s.addMember))
	add("GET", "/v1/pool/members", s.admin(s.listMembers))
	add("POST", "/v1/pool/members/{id}/drain", s.admin(s.drainMember))
	add("POST", "/v1/pool/members/{id}/undrain", s.admin(s.undrainMember))
	add("DELETE", "/v1/pool/members/{id}", s.admin(s.removeMember))

	add("GET", "/v1/gateways", s.admin(s.listGateways))

	add("GET", "/v1/backup", s.admin(s.backup))

	add("GET", "/v1/client/config", s.clientConfig)
	add("GET", "/v1/outline/{secret}", s.outlineKey)

	metricsHandler := s.serveMetrics
	if !s.cfg.OpenMetrics {
		metricsHandler = s.admin(metricsHandler)
	}
	add("GET", "/metrics", metricsHandler)
	add("GET", "/healthz", s.healthz)
	add("GET", "/readyz", s.readyz)

	s.router = r
	s.handler = s.serve
}

// Handler is the API as a fasthttp handler (without the server's body
// limit and parse-error answers, which live on the fasthttp.Server).
func (s *Server) Handler() fasthttp.RequestHandler { return s.handler }

// Routes returns "METHOD /path/{param}" for every registered route.
func (s *Server) Routes() []string {
	out := make([]string, len(s.routes))
	for i, r := range s.routes {
		out[i] = r.Method + " " + r.Path
	}
	return out
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("api: server closed")

// Serve answers plain-HTTP requests on ln until Shutdown, then returns nil.
// After Shutdown it closes ln and returns ErrServerClosed. Every request
// that is not the API's gets the decoy (decoy.go).
func (s *Server) Serve(ln net.Listener) error { return s.ServeTLS(ln, nil) }

// ServeTLS is Serve over TLS with tc (nil: plain HTTP). A connection that
// sends plain HTTP to it gets nginx's answer to that.
func (s *Server) ServeTLS(ln net.Listener, tc *tls.Config) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	oln := &onceCloseListener{Listener: ln}
	s.listeners = append(s.listeners, oln)
	s.mu.Unlock()
	return s.srv.Serve(s.guard.Listener(oln, tc))
}

// onceCloseListener lets Shutdown and fasthttp both close a listener.
type onceCloseListener struct {
	net.Listener
	once sync.Once
	err  error
}

func (l *onceCloseListener) Close() error {
	l.once.Do(func() { l.err = l.Listener.Close() })
	return l.err
}

// Shutdown stops accepting, lets in-flight requests finish, and closes idle
// connections; it returns ctx's error if they have not finished by then.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	// fasthttp only knows a listener once its Serve has started; closing
	// ours here also stops a Serve that is just starting.
	for _, ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	return s.srv.ShutdownWithContext(ctx)
}

// reqCtx is the context for the store and pool calls of one request.
func (s *Server) reqCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.cfg.StoreTimeout)
}

// fasthttpLogger sends fasthttp's own messages to slog at debug level:
// they are about single connections (timeouts, malformed requests), which
// any client or prober can cause at will.
type fasthttpLogger struct{ log *slog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.log.Debug("fasthttp: " + fmt.Sprintf(format, args...))
}
