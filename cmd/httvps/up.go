package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/httvps/httvps/control/api"
	"github.com/httvps/httvps/control/api/wire"
	"github.com/httvps/httvps/control/pool"
	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/gateway/storeauth"
	"github.com/httvps/httvps/gateway/storemetrics"
	"github.com/httvps/httvps/gateway/vmmetrics"
	"github.com/httvps/httvps/internal/acmecert"
	opsadmin "github.com/httvps/httvps/internal/admin"
	"github.com/httvps/httvps/internal/certs"
	"github.com/httvps/httvps/internal/cliconf"
	"github.com/httvps/httvps/internal/version"
	"github.com/httvps/httvps/internal/wiring"
	"github.com/httvps/httvps/store"
	"github.com/httvps/httvps/store/embedded"
	"github.com/httvps/httvps/store/redisstore"
)

const (
	defaultDrainTimeout = 30 * time.Second // gateway.Config's default
	shutdownSlack       = 5 * time.Second  // past the drain, for force-closing
	apiShutdownTimeout  = 5 * time.Second
	adminShutdown       = time.Second
	setupTimeout        = 30 * time.Second // members, first token
	registerWait        = 5 * time.Second  // for the gateway's first heartbeat
	storeOpenTimeout    = 10 * time.Second // the first connection to -redis
)

// defaultMetrics registers the gateway's series in the process-wide set,
// which takes each name once, so tests can start `up` more than once.
var defaultMetrics = sync.OnceValue(func() gateway.Metrics { return vmmetrics.New(nil) })

// node is a running single-node installation.
type node struct {
	o   *upOptions
	log *slog.Logger

	dataDir      string // absolute
	adminKey     string
	adminKeyFile string
	keyCreated   bool
	certFile     string
	ca           *localCA // the generated certificates' CA; nil with -tls-cert

	certs   *certs.Store                                         // both listeners' certificate (with ACME: until and beside it)
	acme    *acmecert.Manager                                    // nil unless -acme
	getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error) // what both listeners serve
	st      store.Store                                          // the embedded store, or Redis with -redis
	emb     *embedded.Store                                      // st without -redis (backups); nil with it
	acmeSt  *embedded.Store                                      // -acme-dir's store; nil when ACME keeps to st
	mgr     *pool.Manager
	auth    *storeauth.Auth
	gw      *gateway.Gateway
	srv     *api.Server
	adm     *opsadmin.Server // nil without -admin-listen
	local   *apiClient       // the API over loopback, pinned to our certificate

	gatewayURL string // wss://public-host:port
	keysURL    string // https://public-host:gateway-port: where keys send clients (the gateway serves the documents)
	controlURL string // -control-public-url, or https://public-host:control-port
	localURL   string // https://public-host:control-port: what up's own API client (n.local) asks for
	adminURL   string // what `httvps admin -control` should use on this host
	gwPort     string

	stopPool, stopAuth context.CancelFunc
	poolDone, authDone chan error
	gwDone, apiDone    chan error
	admDone            <-chan error // nil without -admin-listen
	unexport           func()       // the httvps_gateway_store_* series
	stopReload         func()
}

func runUp(ctx context.Context, args []string, e env) int {
	o, err := loadUpOptions(args, e)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "httvps up: invalid configuration:\n%v\n", err)
		return exitUsage
	}
	log := cliconf.NewLogger(o.LogLevel, o.LogFormat, e.stderr)
	// SIGHUP is caught before anything listens: its default action would
	// end the process and every session with it.
	hups := make(chan os.Signal, 1)
	signal.Notify(hups, syscall.SIGHUP)
	defer signal.Stop(hups)
	n := &node{o: o, log: log}
	if code, err := n.start(); err != nil {
		log.Error("httvps up: cannot start", "err", err)
		n.stop()
		return code
	}
	n.reloadCerts(hups)
	code := exitOK
	if err := n.setup(ctx, e.stdout, isTerminal(e.stdout)); err != nil {
		log.Error("httvps up: setup failed", "err", err)
		code = exitFail
	} else {
		select {
		case <-ctx.Done():
			log.Info("stopping", "reason", context.Cause(ctx))
		case err := <-n.gwDone:
			log.Error("gateway stopped serving", "err", err)
			code = exitFail
		case err := <-n.apiDone:
			log.Error("control API stopped serving", "err", err)
			code = exitFail
		case err := <-n.admDone:
			log.Error("admin listener stopped serving", "err", err)
			code = exitFail
		}
	}
	n.stop()
	log.Info("stopped", "exit", code)
	return code
}

// start brings every part up; on error it returns the exit status, and
// stop releases what was started.
func (n *node) start() (int, error) {
	o := n.o
	dir, err := filepath.Abs(o.DataDir)
	if err != nil {
		return exitUsage, err
	}
	n.dataDir = dir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return exitFail, fmt.Errorf("data directory: %w", err)
	}
	if o.AdminKey != "" {
		n.adminKey = o.AdminKey // -admin-key: nothing is written
	} else {
		n.adminKeyFile = firstNonEmpty(o.AdminKeyFile, filepath.Join(dir, adminKeyName))
		if n.adminKey, n.keyCreated, err = loadOrCreateAdminKey(n.adminKeyFile); err != nil {
			return exitUsage, err
		}
	}

	pairs := o.TLSPairs
	if !o.ownCert() {
		if n.ca, err = ensureLocalCerts(dir, o.PublicHost, time.Now(), n.log); err != nil {
			return exitFail, fmt.Errorf("generating the TLS certificate: %w", err)
		}
		pairs = []certs.Pair{n.ca.pair()}
	}
	n.certFile = pairs[0].CertFile
	cs, err := certs.New(pairs, n.log)
	if err != nil {
		return exitUsage, fmt.Errorf("tls certificate: %w", err)
	}
	n.certs = cs

	if code, err := n.openStore(); err != nil {
		return code, err
	}

	gwLn, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return exitFail, fmt.Errorf("gateway listener: %w", err)
	}
	ctlLn, err := net.Listen("tcp", o.Control.Listen)
	if err != nil {
		gwLn.Close()
		return exitFail, fmt.Errorf("control listener: %w", err)
	}
	n.getCert = cs.GetCertificate
	if o.acmeOn() {
		// The store (embedded, or Redis with -redis) or -acme-dir's keeps
		// the ACME account and certificates, so a restart serves the
		// certificate at once and renews on schedule.
		acmeSt := n.st
		if n.acmeSt != nil {
			acmeSt = n.acmeSt
		}
		if n.acme, err = o.ACME.Manager(o.ACME.Names(o.PublicHost), acmeSt, gwLn.Addr().String(), cs.GetCertificate, n.log, os.ReadFile); err != nil {
			gwLn.Close()
			ctlLn.Close()
			return exitUsage, fmt.Errorf("acme: %w", err)
		}
		n.getCert = n.acme.GetCertificate
		if _, port, _ := net.SplitHostPort(gwLn.Addr().String()); port != "443" && o.ACME.HTTPAddr == "" {
			n.log.Warn("acme: the CA validates on port 443 of the name; make it reach -listen (a port forward), or give -acme-http :80",
				"names", n.acme.Domains(), "listen", gwLn.Addr().String())
		}
	}
	_, n.gwPort, _ = net.SplitHostPort(gwLn.Addr().String())
	ctlHost, ctlPort, _ := net.SplitHostPort(ctlLn.Addr().String())
	n.gatewayURL, n.keysURL = gatewayURLs(o, n.gwPort)
	n.localURL = "https://" + net.JoinHostPort(o.PublicHost, ctlPort)
	n.controlURL = firstNonEmpty(o.Control.PublicURL, n.localURL)
	n.adminURL = n.controlURL
	if ip := net.ParseIP(ctlHost); ip != nil && ip.IsLoopback() {
		n.adminURL = "https://" + net.JoinHostPort(ctlHost, ctlPort)
	}

	pcfg := o.PoolConfig(o.RedisURL == "") // only the embedded store means one process
	pcfg.Logger = n.log
	n.mgr = pool.New(n.st, pcfg)
	var pctx context.Context
	pctx, n.stopPool = context.WithCancel(context.Background())
	n.poolDone = make(chan error, 1)
	go func() { n.mgr.Run(pctx); n.poolDone <- nil }()

	// The keys name the gateway's port, which serves their documents
	// behind its decoy: the control API (the admin API) can stay private.
	acfg := o.APIConfig(n.adminKey, n.keysURL)
	acfg.Store, acfg.Pool, acfg.Logger = n.st, n.mgr, n.log
	if n.emb != nil {
		acfg.Snapshot, acfg.SnapshotDir = n.emb.WriteSnapshot, dir // `httvps backup`
	}
	if acfg.KeyPin == nil && !o.ownCert() && n.acme == nil {
		// httvps:// keys pin the local CA, so the reference client
		// connects without a CA file, and still after the leaf is renewed.
		pin := sha256.Sum256(n.ca.cert.Raw)
		acfg.KeyPin = pin[:]
	}

	n.auth = storeauth.New(n.st, storeauth.Config{GatewayID: o.GatewayID, PublicURL: n.gatewayURL, Version: version.Get().Version, Logger: n.log, MetricsPerToken: o.MetricsPerToken, DeviceGrace: o.DeviceGrace})
	n.unexport = storemetrics.Export(n.auth)
	gcfg := o.GatewayConfig()
	if gcfg.Auth, err = o.Auth(n.auth); err == nil {
		gcfg.Metrics = defaultMetrics()
		gcfg.Logger = n.log
		gcfg.TLS = o.TLSConfig(cs)
		if n.acme != nil {
			wiring.WithACME(gcfg.TLS, n.acme)
		}
		gcfg.Documents, err = wiring.Documents(n.st, n.gatewayURL, acfg.KeyPin)
	}
	if err == nil {
		n.gw, err = gateway.New(gcfg)
	}
	if err != nil {
		gwLn.Close()
		ctlLn.Close()
		return exitUsage, fmt.Errorf("gateway: %w", err)
	}
	n.auth.Attach(n.gw)
	var actx context.Context
	actx, n.stopAuth = context.WithCancel(context.Background())
	n.authDone = make(chan error, 1)
	go func() { n.authDone <- n.auth.Run(actx) }()
	n.gwDone = make(chan error, 1)
	go func() { n.gwDone <- n.gw.Serve(gwLn) }()

	acfg.Decoy = gcfg.DecoyConfig() // strangers get one answer on both ports
	n.srv, err = api.New(acfg)
	if err != nil {
		ctlLn.Close()
		return exitUsage, fmt.Errorf("control API: %w", err)
	}
	var challenge func(*tls.ClientHelloInfo) (*tls.Certificate, bool)
	if n.acme != nil {
		challenge = n.acme.Challenge
	}
	apiTLS := wiring.APITLS(n.getCert, challenge)
	n.apiDone = make(chan error, 1)
	go func() { n.apiDone <- n.srv.ServeTLS(ctlLn, apiTLS) }()
	if n.acme != nil {
		if err := n.acme.Start(context.Background()); err != nil {
			return exitFail, fmt.Errorf("acme: %w", err)
		}
		n.log.Info("acme: managing the certificate; the local CA's leaf is served until it is obtained", "names", n.acme.Domains(), "ca", o.ACME.CA)
	}

	if o.AdminListen != "" {
		// The same body as the API's /metrics: its series, the gateway's
		// and the authenticator's (default set), go_* and process_*.
		n.adm, err = opsadmin.Start(o.AdminListen, opsadmin.Config{Ready: n.gw.Ready, WriteMetrics: n.srv.WriteMetrics})
		if err != nil {
			return exitFail, fmt.Errorf("admin listener: %w", err)
		}
		n.admDone = n.adm.Done()
	}

	dial := ctlLn.Addr().String()
	if ip := net.ParseIP(ctlHost); ip != nil && ip.IsUnspecified() {
		dial = net.JoinHostPort("127.0.0.1", ctlPort)
		if ip.To4() == nil {
			dial = net.JoinHostPort("::1", ctlPort)
		}
	}
	if n.local, err = newAPIClient(n.localURL, n.adminKey, tlsPinned(n.servedCert), dial); err != nil {
		return exitUsage, err
	}
	attrs := []any{"data_dir", dir, "gateway", gwLn.Addr().String(), "control", ctlLn.Addr().String(),
		"gateway_url", n.gatewayURL, "control_url", n.controlURL}
	if n.adm != nil {
		attrs = append(attrs, "admin", n.adm.Addr().String())
	}
	n.log.Info("httvps up serving", attrs...)
	return exitOK, nil
}

// openStore opens the store both components share: Redis with -redis
// (other gateways and control planes may share it), else the embedded
// store in the data directory; and -acme-dir's store when ACME keeps its
// state apart. On error it returns the exit status.
func (n *node) openStore() (int, error) {
	o := n.o
	if o.RedisURL != "" {
		ctx, cancel := context.WithTimeout(context.Background(), storeOpenTimeout)
		defer cancel()
		redisstore.SetLogger(n.log) // go-redis's failover and dial messages, in our format
		st, err := redisstore.New(ctx, o.RedisURL)
		if err != nil {
			return exitFail, fmt.Errorf("-redis: %w", err) // the URL may hold a password: not echoed
		}
		n.st = st
	} else {
		file := filepath.Join(n.dataDir, storeName)
		st, err := embedded.Open(file)
		if err != nil {
			return exitFail, fmt.Errorf("store %s (is another `httvps up` using this -data-dir?): %w", file, err)
		}
		n.st, n.emb = st, st
	}
	if o.acmeOn() && o.ACME.Dir != "" && o.RedisURL == "" {
		st, err := embedded.OpenIn(o.ACME.Dir, wiring.ACMEStoreFile)
		if err != nil {
			return exitFail, fmt.Errorf("-acme-dir %s (is another process using it?): %w", o.ACME.Dir, err)
		}
		n.acmeSt = st
	}
	return exitOK, nil
}

// gatewayURLs are the gateway's URL (-public-url, else
// wss://-public-host:port) and where keys send clients (-keys-url, else
// the gateway's https://host:port, which serves the documents).
func gatewayURLs(o *upOptions, gwPort string) (gateway, keys string) {
	gateway = "wss://" + net.JoinHostPort(o.PublicHost, gwPort)
	keys = "https://" + net.JoinHostPort(o.PublicHost, gwPort)
	if o.Gateway.PublicURL != "" {
		gateway = o.Gateway.PublicURL
		if u, err := url.Parse(gateway); err == nil {
			keys = "https://" + u.Host
		}
	}
	if o.KeysURL != "" {
		keys = o.KeysURL
	}
	return gateway, keys
}

// servedCert is the DER of the certificate both listeners serve now.
func (n *node) servedCert() []byte {
	c, _ := n.getCert(&tls.ClientHelloInfo{ServerName: n.o.PublicHost})
	return c.Certificate[0]
}

// reloadCerts follows SIGHUP and, every -tls-watch, the -tls-cert and
// -tls-key files, as httvps-gateway does: new handshakes on both listeners
// get the new certificate, live sessions keep theirs, and files that do not
// load are logged and the previous certificate kept. A certificate `up`
// generated itself is renewed from its CA when due (checked every
// leafCheckEvery); SIGHUP only logs so.
func (n *node) reloadCerts(hups <-chan os.Signal) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	if !n.o.ownCert() {
		wg.Go(func() {
			certs.ReloadOnHUP(ctx, hups, nil, n.log, "the certificate is the one httvps up generated ("+n.certFile+
				", issued by its CA and renewed automatically); nothing to reload (give -tls-cert and -tls-key to serve your own)")
		})
		wg.Go(func() { n.ca.renewEvery(ctx, leafCheckEvery, n.certs, n.log) })
	} else {
		wg.Go(func() { certs.ReloadOnHUP(ctx, hups, n.certs, n.log, "") })
		wg.Go(func() { n.certs.Watch(ctx, n.o.TLSWatch) })
	}
	n.stopReload = func() { cancel(); wg.Wait() }
}

// stop shuts down in dependency order: the gateway drains (close 1001)
// while its authenticator still accounts usage, then the authenticator
// writes its last usage and deregisters, then the API, the admin listener
// and the pool stop, and the store is closed last.
func (n *node) stop() {
	if n.gw != nil {
		drain := n.o.DrainTimeout
		if drain <= 0 {
			drain = defaultDrainTimeout
		}
		ctx, cancel := context.WithTimeout(context.Background(), drain+shutdownSlack)
		// Once Shutdown has stopped its loops the gateway must not be
		// called into; sessions are ending anyway.
		n.auth.Attach(nil)
		if err := n.gw.Shutdown(ctx); err != nil {
			n.log.Warn("drain incomplete", "err", err)
		}
		cancel()
	}
	if n.stopAuth != nil {
		n.stopAuth()
		if err := <-n.authDone; err != nil {
			n.log.Error("gateway: last usage flush", "err", err)
		}
	}
	if n.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), apiShutdownTimeout)
		if err := n.srv.Shutdown(ctx); err != nil {
			n.log.Warn("control API shutdown", "err", err)
		}
		cancel()
	}
	if n.adm != nil {
		ctx, cancel := context.WithTimeout(context.Background(), adminShutdown)
		n.adm.Shutdown(ctx)
		cancel()
	}
	if n.acme != nil {
		n.acme.Stop()
	}
	if n.acmeSt != nil {
		if err := n.acmeSt.Close(); err != nil {
			n.log.Warn("closing -acme-dir", "err", err)
		}
	}
	if n.stopReload != nil {
		n.stopReload()
	}
	if n.unexport != nil {
		n.unexport()
	}
	if n.local != nil {
		n.local.close()
	}
	if n.stopPool != nil {
		n.stopPool()
		<-n.poolDone
	}
	if n.st != nil {
		if err := n.st.Close(); err != nil {
			n.log.Warn("closing the store", "err", err)
		}
	}
}

// setup adds the -member members that are not in the store yet and, when
// the store holds no token but a member, issues a first token; then it
// prints how to use the node. Secrets are printed only when terminal says
// out is one; otherwise the banner names the 0600 files that hold them.
func (n *node) setup(parent context.Context, out io.Writer, terminal bool) error {
	ctx, cancel := context.WithTimeout(parent, setupTimeout)
	defer cancel()
	if err := n.waitRegistered(ctx); err != nil {
		return err
	}
	if err := n.addMembers(ctx); err != nil {
		return err
	}
	members, err := n.st.ListMembers(ctx)
	if err != nil {
		return err
	}
	toks, _, err := n.st.ListTokens(ctx, "", 1)
	if err != nil {
		return err
	}
	var first *firstToken
	var firstErr error
	if len(toks) == 0 && len(members) > 0 {
		first, firstErr = n.issueFirstToken(ctx)
		if firstErr != nil {
			n.log.Error("issuing the first token failed; create one with `httvps admin tokens create`", "err", firstErr)
		}
	}
	if first != nil && !terminal {
		if first.file, first.saveErr = n.saveFirstToken(first); first.saveErr != nil {
			n.log.Error("saving the first token failed; it is not printed either (stdout is not a terminal)",
				"token_id", first.id, "err", first.saveErr)
		}
	}
	n.printBanner(out, terminal, members, len(toks) > 0, first)
	return nil
}

// waitRegistered waits until the gateway's first heartbeat is in the
// store, so the first token's keys name it.
func (n *node) waitRegistered(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, registerWait)
	defer cancel()
	for {
		gws, err := n.st.ListGateways(ctx)
		if err == nil {
			for _, g := range gws {
				if g.ID == n.auth.GatewayID() && g.Live {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return errors.New("the gateway did not register in the store")
		case err := <-n.gwDone:
			n.gwDone <- err // for runUp's select
			return fmt.Errorf("gateway: %w", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// addMembers adds each -member through the admin API (the same checks as
// `httvps admin pool add`), unless the store already has it.
func (n *node) addMembers(ctx context.Context) error {
	existing, err := n.st.ListMembers(ctx)
	if err != nil {
		return err
	}
	for _, m := range n.o.Members {
		var found *store.Member
		for i := range existing {
			if sameMember(&m, existing[i]) {
				found = &existing[i]
			}
		}
		if found != nil {
			if found.Static != nil && (found.Static.Cipher != m.cipher || found.Static.Password != m.password) {
				n.log.Warn("-member is in the pool with another cipher or password; the stored one is kept (remove it with `httvps admin pool remove` to replace it)",
					"member_id", found.ID, "name", found.Name)
			}
			continue
		}
		var added memberJSON
		if _, err := n.local.getJSON(ctx, http.MethodPost, "/v1/pool/members", nil, m.request(), &added); err != nil {
			return fmt.Errorf("adding -member %s: %w", m.name, err)
		}
		n.log.Info("pool member added", "member_id", added.ID, "name", added.Name, "up", added.Health.Up, "err", added.Health.LastError)
	}
	return nil
}

func sameMember(m *memberFlags, x store.Member) bool {
	v := memberJSON{Backend: x.Backend, Host: x.Host}
	switch {
	case x.Static != nil:
		v.Static = &wire.StaticConfig{Port: x.Static.Port}
	case x.SSManager != nil:
		v.SSManager = &wire.SSManagerConfig{ManagerAddr: x.SSManager.ManagerAddr}
	case x.Outline != nil:
		v.Outline = &wire.OutlineConfig{CertSHA256: x.Outline.CertSHA256}
	}
	return m.sameAs(v)
}

// firstToken is what is printed about the first token.
type firstToken struct {
	id, token string
	cfg       clientConfigJSON
	// file holds the keys when stdout is not a terminal; saveErr is why
	// it could not be written.
	file    string
	saveErr error
}

// issueFirstToken goes through POST /v1/tokens like any admin would, then
// reads the keys back from the client API as a client would.
func (n *node) issueFirstToken(ctx context.Context) (*firstToken, error) {
	var t tokenJSON
	if _, err := n.local.getJSON(ctx, http.MethodPost, "/v1/tokens", nil, map[string]any{"label": "first"}, &t); err != nil {
		return nil, err
	}
	raw, err := n.local.callAs(ctx, t.Token, http.MethodGet, "/v1/client/config", nil, nil)
	ft := &firstToken{id: t.ID, token: t.Token}
	if err == nil {
		err = jsonUnmarshal(raw, &ft.cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("token %s issued, but its client config did not load: %w", t.ID, err)
	}
	n.log.Info("first token issued", "token_id", t.ID)
	return ft, nil
}

// pluginHost is the v2ray-plugin host= (SNI and Host header).
func (n *node) pluginHost() string { return n.o.PublicHost }

// stockCommand is the ss-local + v2ray-plugin command line for a token.
func (n *node) stockCommand(ft *firstToken, socksPort int) string {
	opts := "tls;host=" + n.pluginHost() + ";path=/" + ft.token + "/tcp;mux=0"
	if !n.o.ownCert() {
		opts += ";cert=" + filepath.Join(n.dataDir, caCertName)
	}
	return strings.Join([]string{
		"ss-local", "-s", shellQuote(n.o.PublicHost), "-p", n.gwPort, "-l", strconv.Itoa(socksPort),
		"-k", shellQuote(ft.cfg.Secret), "-m", ft.cfg.Cipher,
		"--plugin", "ss-v2ray-plugin", "--plugin-opts", shellQuote(opts),
	}, " ")
}

// printBanner says how to use the node. On a terminal it shows a new
// admin key and the first token's keys; anywhere else (a pipe, a file,
// journald) it shows no secret and names the files that hold them.
func (n *node) printBanner(w io.Writer, terminal bool, mems []store.Member, hadTokens bool, ft *firstToken) {
	members := len(mems)
	admin := "httvps admin -control " + n.adminURL + " -data-dir " + shellQuote(n.dataDir)
	if n.adminKeyFile != "" && n.adminKeyFile != filepath.Join(n.dataDir, adminKeyName) {
		admin += " -admin-key-file " + shellQuote(n.adminKeyFile)
	}
	if n.o.ownCert() {
		admin += " -cacert " + shellQuote(n.certFile)
	}
	fmt.Fprintf(w, "HTTVPS is up (data in %s)\n", n.dataDir)
	fmt.Fprintf(w, "  gateway       %s (the one port clients need: sessions, ssconf:// keys, client config)\n", n.gatewayURL)
	if n.adminURL != n.controlURL {
		fmt.Fprintf(w, "  control API   %s (admin API; loopback only)\n", n.adminURL)
	} else {
		fmt.Fprintf(w, "  control API   %s (admin API; clients do not need it: keep it private)\n", n.adminURL)
	}
	if n.ca != nil {
		n.ca.printCerts(w, n.servedCert())
	}
	switch {
	case n.adminKeyFile == "":
		fmt.Fprintf(w, "  admin key     given by -admin-key (httvps admin takes it as -admin-key or %s)\n", cliconf.EnvName("admin-key"))
	case n.keyCreated && terminal:
		fmt.Fprintf(w, "  admin key     %s (new; saved in %s)\n", n.adminKey, n.adminKeyFile)
	case n.keyCreated:
		fmt.Fprintf(w, "  admin key     in %s (new, mode 0600; not printed: stdout is not a terminal)\n", n.adminKeyFile)
	default:
		fmt.Fprintf(w, "  admin key     in %s\n", n.adminKeyFile)
	}
	fmt.Fprintf(w, "  pool members  %d\n", members)
	if members > 0 && !slices.ContainsFunc(mems, func(m store.Member) bool { return m.Backend != store.BackendStatic }) {
		fmt.Fprintf(w, "                static only: every token shares its one Shadowsocks password, so a token's\n")
		fmt.Fprintf(w, "                keys cannot be told apart by ss-server; add an ss-manager or Outline member\n")
		fmt.Fprintf(w, "                for per-user keys (httvps admin pool add -backend ss-manager|outline-api)\n")
	}
	switch {
	case ft != nil && terminal:
		fmt.Fprintf(w, "\nFirst client token (shown only now; keep it):\n")
		n.printFirstToken(w, ft)
	case ft != nil && ft.saveErr == nil:
		fmt.Fprintf(w, "\nFirst client token issued (token id %s). Stdout is not a terminal, so its token,\n", ft.id)
		fmt.Fprintf(w, "keys and the ss-local command are not printed; they are in (mode 0600):\n")
		fmt.Fprintf(w, "  %s\n", ft.file)
		fmt.Fprintf(w, "Hand them out, then delete the file.\n")
	case ft != nil:
		fmt.Fprintf(w, "\nFirst client token issued (token id %s), but it could not be saved (see the log),\n", ft.id)
		fmt.Fprintf(w, "and stdout is not a terminal, so it is not shown. Revoke it and issue another:\n")
		fmt.Fprintf(w, "  %s tokens revoke %s\n", admin, ft.id)
		fmt.Fprintf(w, "  %s tokens create -label NAME\n", admin)
	case members == 0:
		fmt.Fprintf(w, "\nNo pool member yet, so no client token. Add your Shadowsocks server, then issue a token:\n")
		fmt.Fprintf(w, "  %s pool add -backend static -host IP -port PORT -cipher chacha20-ietf-poly1305 -password PASSWORD\n", admin)
		fmt.Fprintf(w, "  %s tokens create -label NAME\n", admin)
	case hadTokens:
		fmt.Fprintf(w, "\nTokens issued before are kept. Issue another with:\n")
		fmt.Fprintf(w, "  %s tokens create -label NAME\n", admin)
	default:
		fmt.Fprintf(w, "\nNo token could be issued (see the log). Retry with:\n")
		fmt.Fprintf(w, "  %s tokens create -label NAME\n", admin)
	}
	fmt.Fprintf(w, "\nManage it:\n  %s tokens list\n", admin)
	fmt.Fprintf(w, "Stop with Ctrl-C (sessions are drained).\n")
}

// printFirstToken writes the first token's keys and the stock-client
// command (which holds the Shadowsocks password): to the terminal, or to
// the first-token file.
func (n *node) printFirstToken(w io.Writer, ft *firstToken) {
	fmt.Fprintf(w, "  token id  %s\n", ft.id)
	fmt.Fprintf(w, "  token     %s\n", ft.token)
	fmt.Fprintf(w, "  ssconf    %s\n", ft.cfg.AccessKeys.SSConf)
	if ft.cfg.AccessKeys.SS != "" {
		fmt.Fprintf(w, "  ss        %s\n", ft.cfg.AccessKeys.SS)
	}
	fmt.Fprintf(w, "  httvps    %s\n", ft.cfg.AccessKeys.HTTVPS)
	keyLegend(w, ft.cfg.AccessKeys.SS != "")
	fmt.Fprintf(w, "\nConnect with the reference client (native tunnel; SOCKS5 and HTTP proxy on 127.0.0.1:1080):\n")
	fmt.Fprintf(w, "  httvps connect %s\n", shellQuote(ft.cfg.AccessKeys.HTTVPS))
	fmt.Fprintf(w, "\nOr with the stock client (shadowsocks-libev ss-local + v2ray-plugin):\n")
	fmt.Fprintf(w, "  %s\n", n.stockCommand(ft, 1080))
	fmt.Fprintf(w, "  curl --socks5-hostname 127.0.0.1:1080 https://example.com/\n")
}

// saveFirstToken writes what printFirstToken prints to
// DATA-DIR/first-token.txt, mode 0600, and returns its name.
func (n *node) saveFirstToken(ft *firstToken) (string, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# The first client token of the httvps up in %s, issued %s.\n", n.dataDir, time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "# Whoever reads this file can use the token: hand it out, then delete the file.\n\n")
	fmt.Fprintf(&b, "First client token:\n")
	n.printFirstToken(&b, ft)
	file := filepath.Join(n.dataDir, firstTokenName)
	if err := writeFileAtomic(file, b.Bytes(), 0o600); err != nil {
		return "", err
	}
	return file, nil
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@,+%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
