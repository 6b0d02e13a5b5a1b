// Package acmecert obtains and renews publicly trusted certificates by ACME
// (RFC 8555) with certmagic, keeping the account, certificates, challenge
// data and the ordering lock in the shared store, so one process of a fleet
// orders a name while the others wait, then all serve it. Validation is
// TLS-ALPN-01 (RFC 8737) on the caller's own TLS listener (Challenge gives
// the validation certificate to a gateway's handshake) or HTTP-01 on an
// optional plain listener. Until a name's certificate is there, and for
// every name it does not manage, GetCertificate serves the fallback.
package acmecert

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/httvps/httvps/internal/nginxdecoy"
	"github.com/httvps/httvps/store"
)

// LetsEncrypt is the production ACME directory, the default CA.
const LetsEncrypt = certmagic.LetsEncryptProductionCA

// ALPNProto is the protocol name of TLS-ALPN-01 validation handshakes.
const ALPNProto = "acme-tls/1"

// Config configures a Manager. Domains and Store are required.
type Config struct {
	// Domains are the DNS names to obtain certificates for, each its own
	// certificate. They must be names a public CA will issue for (not
	// localhost, not an IP address).
	Domains []string
	// Email is given to the CA for expiry notices; it may be empty.
	Email string
	// CA is the ACME directory URL; empty means Let's Encrypt.
	CA string
	// CARoots verifies the CA's own HTTPS endpoint; nil means the system
	// roots (a private CA such as Pebble or step-ca needs its root here).
	CARoots *x509.CertPool
	// Store holds the shared state (store.Store's blobs and locks).
	Store store.Store
	// TLSAddr is the address (host:port) of the listener that answers
	// validation handshakes through Challenge: the CA connects to port 443
	// of the name, which must reach it. Empty disables TLS-ALPN-01.
	TLSAddr string
	// HTTPAddr, when set, starts a plain HTTP listener there (":80" in
	// production) answering HTTP-01 challenges; every other request on it
	// gets the nginx decoy (internal/nginxdecoy), as on the gateways.
	HTTPAddr string
	// Decoy is that decoy's answer (zero: nginx's 404).
	Decoy nginxdecoy.Config
	// Fallback serves every hello the Manager has no certificate for.
	// Required.
	Fallback func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// Logger gets the ACME events (nil: slog.Default()).
	Logger *slog.Logger

	// RenewCheck is how often certificates are checked for renewal and
	// the store for a certificate another process renewed; 0 means
	// certmagic's default (10 minutes). Tests shorten it.
	RenewCheck time.Duration
	// DisableARI ignores the CA's renewal information (RFC 9773) and
	// renews by the renewal window alone (tests).
	DisableARI bool
}

// Manager holds the managed certificates.
type Manager struct {
	c       Config
	magic   *certmagic.Config
	cache   *certmagic.Cache
	issuer  *certmagic.ACMEIssuer
	names   map[string]bool
	httpSrv *fasthttp.Server
	httpLn  net.Listener

	mu      sync.Mutex
	cancel  context.CancelFunc
	stopped bool
}

// New checks c and prepares the Manager; Start begins obtaining.
func New(c Config) (*Manager, error) {
	if len(c.Domains) == 0 {
		return nil, errors.New("acmecert: no domain names")
	}
	if c.Store == nil || c.Fallback == nil {
		return nil, errors.New("acmecert: Store and Fallback are required")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.CA == "" {
		c.CA = LetsEncrypt
	}
	if c.TLSAddr == "" && c.HTTPAddr == "" {
		return nil, errors.New("acmecert: neither a TLS listener (TLS-ALPN-01) nor an HTTP one (HTTP-01) to validate on")
	}
	m := &Manager{c: c, names: make(map[string]bool)}
	for _, d := range c.Domains {
		if !PublicName(d) {
			return nil, fmt.Errorf("acmecert: %q is not a name a public CA issues for (a DNS name, not localhost, an IP address or a wildcard)", d)
		}
		m.names[normal(d)] = true
	}
	m.c.Domains = slices.Sorted(maps.Keys(m.names))
	zl := newZapLogger(c.Logger.With("component", "acme"))
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(certmagic.Certificate) (*certmagic.Config, error) { return m.magic, nil },
		RenewCheckInterval: c.RenewCheck,
		Logger:             zl,
	})
	m.magic = certmagic.New(m.cache, certmagic.Config{
		Storage:    newStorage(c.Store),
		Logger:     zl,
		DisableARI: c.DisableARI,
		OnEvent:    m.onEvent,
	})
	iss := certmagic.ACMEIssuer{
		CA:           c.CA,
		Email:        c.Email,
		Agreed:       true,
		TrustedRoots: c.CARoots,
		Logger:       zl,
	}
	if c.TLSAddr != "" {
		host, port, err := net.SplitHostPort(c.TLSAddr)
		if err != nil {
			return nil, fmt.Errorf("acmecert: TLS address: %w", err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("acmecert: TLS address port: %w", err)
		}
		// certmagic tries to listen there first; finding the port taken
		// (by the caller's listener), it leaves the answering to it.
		iss.ListenHost, iss.AltTLSALPNPort = host, p
	} else {
		iss.DisableTLSALPNChallenge = true
	}
	if c.HTTPAddr != "" {
		ln, err := net.Listen("tcp", c.HTTPAddr)
		if err != nil {
			return nil, fmt.Errorf("acmecert: HTTP-01 listener: %w", err)
		}
		host, port, _ := net.SplitHostPort(ln.Addr().String())
		p, _ := strconv.Atoi(port)
		iss.AltHTTPPort = p
		if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
			iss.ListenHost = host
		}
		m.httpLn = ln
	} else {
		iss.DisableHTTPChallenge = true
	}
	m.issuer = certmagic.NewACMEIssuer(m.magic, iss)
	m.magic.Issuers = []certmagic.Issuer{m.issuer}
	if m.httpLn != nil {
		m.httpSrv, m.httpLn = m.http01(m.httpLn)
	}
	return m, nil
}

// Domains are the names the Manager manages, normalised and sorted.
func (m *Manager) Domains() []string { return slices.Clone(m.c.Domains) }

// HTTPAddr is the HTTP-01 listener's address, or "".
func (m *Manager) HTTPAddr() string {
	if m.httpLn == nil {
		return ""
	}
	return m.httpLn.Addr().String()
}

// Start loads what the store holds and obtains or renews the rest in the
// background (failures are logged and retried with backoff); it returns
// at once. Renewals replace a certificate for new handshakes only.
func (m *Manager) Start(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return errors.New("acmecert: stopped")
	}
	ctx, m.cancel = context.WithCancel(ctx)
	if m.httpSrv != nil {
		go m.httpSrv.Serve(m.httpLn)
	}
	if err := m.magic.ManageAsync(ctx, m.c.Domains); err != nil {
		return err
	}
	go m.followStore(ctx)
	return nil
}

// followStore loads, every RenewCheck, a certificate another process
// renewed early (a forced renewal, one after a revocation or an ARI
// window that moved): certmagic's maintenance looks in the store only
// once its own copy is due, so until then this process would go on
// serving the replaced certificate.
func (m *Manager) followStore(ctx context.Context) {
	every := m.c.RenewCheck
	if every <= 0 {
		every = certmagic.DefaultRenewCheckInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, d := range m.c.Domains {
			if err := m.loadRenewed(ctx, d); err != nil && ctx.Err() == nil {
				m.c.Logger.Warn("acme: loading the certificate another process renewed", "name", d, "err", err)
			}
		}
	}
}

// loadRenewed serves the store's certificate for name in place of the
// one served when it is another one, not older: one GetBlob when nothing
// changed. Before the first certificate is served certmagic's obtaining
// loads it.
func (m *Manager) loadRenewed(ctx context.Context, name string) error {
	old := m.cached(name)
	if old == nil {
		return nil
	}
	b, err := m.magic.Storage.Load(ctx, certmagic.StorageKeys.SiteCert(m.issuer.IssuerKey(), name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return errors.New("acmecert: stored certificate is not PEM")
	}
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return fmt.Errorf("acmecert: stored certificate: %w", err)
	}
	if leaf.SerialNumber.Cmp(old.Leaf.SerialNumber) == 0 || leaf.NotBefore.Before(old.Leaf.NotBefore) {
		return nil
	}
	c, err := m.magic.CacheManagedCertificate(ctx, name)
	if err != nil {
		return err
	}
	if c.Hash() != old.Hash() {
		m.cache.Remove([]string{old.Hash()})
	}
	m.c.Logger.Info("acme: loaded the certificate another process renewed", "name", name, "serial", fmt.Sprintf("%x", leaf.SerialNumber))
	return nil
}

// Stop ends obtaining, renewing and the HTTP-01 listener. Served
// certificates stay in memory for Fallback-free handshakes no more: after
// Stop, GetCertificate still answers from what was loaded.
func (m *Manager) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return
	}
	m.stopped = true
	if m.cancel != nil {
		m.cancel()
	}
	if m.httpLn != nil {
		m.httpLn.Close() // also stops a Serve that is just starting
	}
	if m.httpSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		m.httpSrv.ShutdownWithContext(ctx)
		cancel()
	}
	m.cache.Stop()
}

// PublicName reports whether name is one a public CA issues a
// certificate for: a DNS name of two labels or more that is not
// localhost, an internal name, an IP address or a wildcard.
func PublicName(name string) bool {
	name = normal(name)
	return strings.Contains(name, ".") && !strings.Contains(name, "*") && net.ParseIP(name) == nil &&
		certmagic.SubjectQualifiesForPublicCert(name)
}

// normal is a name as the managed set holds it.
func normal(name string) string { return strings.ToLower(strings.TrimSuffix(name, ".")) }

// manages reports whether hello asks for a managed name.
func (m *Manager) manages(hello *tls.ClientHelloInfo) bool {
	return m.names[normal(hello.ServerName)]
}

// GetCertificate is a tls.Config.GetCertificate: the managed certificate
// for a managed name once it is obtained, else the fallback's.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if m.manages(hello) && !isChallenge(hello) {
		if c := m.cached(hello.ServerName); c != nil {
			return &c.Certificate, nil
		}
	}
	return m.c.Fallback(hello)
}

// cached is the newest unexpired certificate in memory for name. It reads
// certmagic's cache directly: its handshake path would also look for a
// certificate to load on every hello before the first is obtained.
func (m *Manager) cached(name string) *certmagic.Certificate {
	var best *certmagic.Certificate
	now := time.Now()
	for _, c := range m.cache.AllMatchingCertificates(normal(name)) {
		if c.Leaf == nil || now.After(c.Leaf.NotAfter) {
			continue
		}
		if best == nil || c.Leaf.NotBefore.After(best.Leaf.NotBefore) {
			best = &c
		}
	}
	return best
}

func isChallenge(hello *tls.ClientHelloInfo) bool {
	return len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == ALPNProto
}

// Challenge returns the TLS-ALPN-01 validation certificate for a
// validation handshake (one offering only acme-tls/1 for a managed name)
// while that name's validation is pending on any process sharing the
// store. Anything else returns false: the hello is then answered as any
// other (without acme-tls/1 among the server's protocols).
func (m *Manager) Challenge(hello *tls.ClientHelloInfo) (*tls.Certificate, bool) {
	if !isChallenge(hello) || !m.manages(hello) {
		return nil, false
	}
	c, err := m.magic.GetCertificate(hello)
	if err != nil || c == nil {
		return nil, false
	}
	return c, true
}

// Renew renews every managed certificate now (force) or those due, waits
// for the result and serves the renewed certificates to new handshakes
// (the background maintenance does the same by itself).
func (m *Manager) Renew(ctx context.Context, force bool) error {
	var errs []error
	for _, d := range m.c.Domains {
		old := m.cached(d)
		if err := m.magic.RenewCertSync(ctx, d, force); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", d, err))
			continue
		}
		c, err := m.magic.CacheManagedCertificate(ctx, d)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: loading the renewed certificate: %w", d, err))
			continue
		}
		if old != nil && old.Hash() != c.Hash() {
			m.cache.Remove([]string{old.Hash()})
		}
	}
	return errors.Join(errs...)
}

// Served is the certificate served now for name, if obtained.
func (m *Manager) Served(name string) (*x509.Certificate, bool) {
	c := m.cached(name)
	if c == nil {
		return nil, false
	}
	return c.Leaf, true
}

// onEvent logs the events an operator follows at info level.
func (m *Manager) onEvent(_ context.Context, event string, data map[string]any) error {
	switch event {
	case "cert_obtained":
		m.c.Logger.Info("acme: certificate obtained", "name", data["identifier"], "renewal", data["renewal"], "issuer", data["issuer"])
	case "cert_failed":
		m.c.Logger.Warn("acme: obtaining the certificate failed (retried with backoff)", "name", data["identifier"], "renewal", data["renewal"], "error", data["error"])
	case "cached_managed_cert":
		m.c.Logger.Info("acme: certificate loaded", "names", data["sans"])
	}
	return nil
}

// http01 is the HTTP-01 listener's server: a Guard (internal/nginxdecoy)
// lets only GET /.well-known/acme-challenge/… through, certmagic answers
// the tokens it has (in the shared store, so any member of a fleet
// answers), and every other request gets the decoy byte for byte as a
// gateway answers it. fasthttp, not net/http: net/http reads the
// connection in the background while a handler runs, and a Guard's Conn
// is read and written by one goroutine at a time.
func (m *Manager) http01(ln net.Listener) (*fasthttp.Server, net.Listener) {
	log := m.c.Logger
	g := &nginxdecoy.Guard{
		Pages: nginxdecoy.New(m.c.Decoy),
		Pass: func(r *nginxdecoy.Request) (bool, string) {
			if r.Method() == "GET" && !r.HasBody() && bytes.HasPrefix(r.Path(), []byte(challengePath)) {
				return true, ""
			}
			return false, "not_a_challenge"
		},
		Refused: func(reason string, remote net.Addr) {
			log.Debug("acme: HTTP-01 listener answered with the decoy", "reason", reason, "remote", remote.String())
		},
		HeaderTimeout: 10 * time.Second,
		KeepAlive:     30 * time.Second,
	}
	const unknownToken = 599 // the challenge handler's "not mine", never sent
	answer := fasthttpadaptor.NewFastHTTPHandler(m.issuer.HTTPChallengeHandler(http.HandlerFunc(
		func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(unknownToken) })))
	srv := &fasthttp.Server{
		CloseOnShutdown: true,
		Handler: func(ctx *fasthttp.RequestCtx) {
			answer(ctx)
			if ctx.Response.StatusCode() != unknownToken {
				return
			}
			ctx.Response.Reset()
			ctx.SetStatusCode(http.StatusNotFound)
			if c, ok := ctx.Conn().(*nginxdecoy.Conn); ok {
				c.Refuse("unknown_token") // the decoy's answer replaces this one
			}
		},
		ReadTimeout:           10 * time.Second,
		WriteTimeout:          10 * time.Second,
		IdleTimeout:           30 * time.Second,
		ReadBufferSize:        8 << 10,
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		Logger:                fasthttpLog{log},
	}
	return srv, g.Listener(ln, nil)
}

// challengePath is where HTTP-01 tokens are asked for (RFC 8555 8.3).
const challengePath = "/.well-known/acme-challenge/"

// fasthttpLog sends fasthttp's messages, about single connections any
// client can cause, to debug.
type fasthttpLog struct{ log *slog.Logger }

func (l fasthttpLog) Printf(format string, args ...any) {
	l.log.Debug("acme: HTTP-01 listener: " + fmt.Sprintf(format, args...))
}
