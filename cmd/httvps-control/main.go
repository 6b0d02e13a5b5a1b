// Command httvps-control is the HTTVPS control plane: the admin and client
// API (control/api) and the Outline pool manager (control/pool) over the
// shared store — Redis with -redis, otherwise an embedded store file in
// -data-dir. It is the only place that reads flags, environment and files;
// see -h and docs/02-control-plane-api.md.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/httvps/httvps/control/api"
	"github.com/httvps/httvps/control/pool"
	"github.com/httvps/httvps/internal/acmecert"
	"github.com/httvps/httvps/internal/admin"
	"github.com/httvps/httvps/internal/certs"
	"github.com/httvps/httvps/internal/cliconf"
	"github.com/httvps/httvps/internal/version"
	"github.com/httvps/httvps/internal/wiring"
	"github.com/httvps/httvps/store"
	"github.com/httvps/httvps/store/embedded"
	"github.com/httvps/httvps/store/redisstore"
)

const (
	// shutdownTimeout bounds the wait for requests in flight at SIGTERM.
	shutdownTimeout = 15 * time.Second
	// storeOpenTimeout bounds connecting to Redis at start-up.
	storeOpenTimeout = 10 * time.Second
	// embeddedFile is the store's file name inside -data-dir.
	embeddedFile = "control.db"
)

func main() {
	if version.Asked(os.Args[1:]) {
		fmt.Println(version.Get().String("httvps-control"))
		return
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	hups := make(chan os.Signal, 1)
	signal.Notify(hups, syscall.SIGHUP)
	os.Exit(run(osSources(os.Args[1:]), env{logOut: os.Stderr, stop: sigs, hup: hups}))
}

// env is the process around run, injected so tests can stop it and learn
// its addresses.
type env struct {
	logOut io.Writer
	// stop ends the process gracefully (SIGTERM, SIGINT); a second value
	// cuts the drain short.
	stop <-chan os.Signal
	// hup reloads the TLS certificate (SIGHUP).
	hup <-chan os.Signal
	// listening, if set, is told the API's and the admin listener's
	// addresses (admin nil when disabled) once both accept.
	listening func(apiAddr, adminAddr net.Addr)
}

// run returns the exit code: 0 after a clean stop (or -h), 1 when serving
// fails, 2 for a configuration error.
func run(src sources, e env) int {
	o, err := loadOptions(src)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(src.usage, "httvps-control: invalid configuration:\n%v\n", err)
		return 2
	}
	log := cliconf.NewLogger(o.LogLevel, o.LogFormat, e.logOut)

	var cs *certs.Store
	if len(o.TLS.Pairs) > 0 {
		if cs, err = certs.New(o.TLS.Pairs, log); err != nil {
			log.Error("tls certificate does not load", "err", err)
			return 2
		}
	}

	redisstore.SetLogger(log) // go-redis's failover and dial messages, in our format
	st, kind, err := openStore(o)
	if err != nil {
		log.Error("store does not open", "store", kind, "err", err)
		return 1
	}
	defer st.Close()

	background, stopBackground := context.WithCancel(context.Background())
	defer stopBackground()
	pcfg := o.poolConfig()
	pcfg.Logger = log
	switch {
	case o.RedisURL != "" && o.StrayGrace == 0:
		log.Info("stray-key sweep off: with a Redis store other control-plane processes may be placing keys; set -stray-grace to turn it on")
	case o.RedisURL != "" && o.StrayGrace > 0:
		log.Warn("stray-key sweep on with a Redis store: a key another control-plane process is placing (created, not yet stored) may be deleted as a stray; see docs/05-outline-pool.md",
			"stray_grace", o.StrayGrace)
	}
	if o.StrayGrace > 0 && o.StrayGrace < api.DefaultStoreTimeout {
		log.Warn("-stray-grace is shorter than a placement may take; a key being placed may be deleted as a stray",
			"stray_grace", o.StrayGrace, "store_timeout", api.DefaultStoreTimeout)
	}
	mgr := pool.New(st, pcfg)
	poolDone := make(chan struct{})
	go func() {
		defer close(poolDone)
		mgr.Run(background)
	}()
	defer func() {
		stopBackground()
		<-poolDone
	}()

	cfg := o.apiConfig()
	cfg.Store = st
	cfg.Pool = mgr
	cfg.Logger = log
	srv, err := api.New(cfg)
	if err != nil {
		log.Error("invalid API configuration", "err", err)
		return 2
	}

	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		log.Error("listen failed", "addr", o.Listen, "err", err)
		return 1
	}
	apiAddr := ln.Addr()
	var am *acmecert.Manager
	var apiTLS *tls.Config // nil: plain HTTP
	if o.ACME.On {
		// The ACME state lives in the store, so control-plane replicas on
		// one Redis order a name once.
		var files func(*tls.ClientHelloInfo) (*tls.Certificate, error)
		if cs != nil {
			files = cs.GetCertificate
		}
		if am, err = o.ACME.Manager(o.ACME.NamesForURL(o.PublicURL), st, apiAddr.String(), files, log, src.readFile); err != nil {
			ln.Close()
			log.Error("acme", "err", err)
			return 2
		}
		defer am.Stop()
		apiTLS = wiring.APITLS(am.GetCertificate, am.Challenge)
	} else if cs != nil {
		apiTLS = wiring.APITLS(cs.GetCertificate, nil)
	}
	if cs != nil {
		go reloadOnHUP(background, e.hup, cs, log)
	}

	var adm *admin.Server
	var adminDone <-chan error
	var adminAddr net.Addr
	if o.AdminListen != "" {
		adm, err = admin.Start(o.AdminListen, admin.Config{
			Ready:        func() bool { return ping(st) == nil },
			WriteMetrics: srv.WriteMetrics,
		})
		if err != nil {
			ln.Close()
			log.Error("admin listener failed", "addr", o.AdminListen, "err", err)
			return 1
		}
		adminDone = adm.Done()
		adminAddr = adm.Addr()
	}

	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(ln, apiTLS) }()
	if am != nil {
		if err := am.Start(background); err != nil {
			log.Error("acme", "err", err)
			return 1
		}
		log.Info("acme: managing certificates", "names", am.Domains(), "ca", o.ACME.CA)
	}
	log.Info("control plane serving",
		"listen", apiAddr.String(),
		"tls", cs != nil || am != nil,
		"store", kind, // the Redis URL may hold a password; never logged
		"public_url", o.PublicURL,
		"admin_listen", addrString(adminAddr),
	)
	if e.listening != nil {
		e.listening(apiAddr, adminAddr)
	}

	code := 0
	select {
	case err := <-served:
		log.Error("API stopped serving", "err", err)
		code = 1
	case err := <-adminDone:
		log.Error("admin server stopped", "err", err)
		code = 1
	case sig := <-e.stop:
		log.Info("shutting down", "signal", sig.String())
	}

	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	go func() {
		select {
		case sig := <-e.stop:
			log.Warn("second signal, closing connections now", "signal", sig.String())
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := srv.Shutdown(ctx); err != nil {
		log.Warn("shutdown incomplete", "err", err)
		code = 1
	}
	select {
	case <-served:
	case <-ctx.Done():
	}
	if adm != nil {
		actx, acancel := context.WithTimeout(context.Background(), time.Second)
		adm.Shutdown(actx)
		acancel()
	}
	log.Info("stopped", slog.Int("exit", code))
	return code
}

// openStore opens Redis when -redis is set, else the embedded store file.
// kind names the store for logs without the URL.
func openStore(o *options) (store.Store, string, error) {
	if o.RedisURL != "" {
		ctx, cancel := context.WithTimeout(context.Background(), storeOpenTimeout)
		defer cancel()
		st, err := redisstore.New(ctx, o.RedisURL)
		return st, "redis", err
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return nil, "embedded", err
	}
	path := filepath.Join(o.DataDir, embeddedFile)
	st, err := embedded.Open(path)
	return st, "embedded:" + path, err
}

func ping(st store.Store) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return st.Ping(ctx)
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// reloadOnHUP re-reads the certificate files on each SIGHUP until ctx is
// done; only later handshakes see the new certificate.
func reloadOnHUP(ctx context.Context, hups <-chan os.Signal, cs *certs.Store, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hups:
		}
		if err := cs.Reload(); err != nil {
			log.Error("SIGHUP: tls certificate does not load; keeping the previous one", "err", err)
			continue
		}
		log.Info("SIGHUP: tls certificate reloaded")
	}
}
