// Command httvps-gateway is the HTTVPS edge gateway: it accepts WebSocket
// sessions on the Outline-compatible paths /SECRET/tcp and /SECRET/udp and
// relays them to the Outline (Shadowsocks) server its static routes name,
// or, with -redis, the one the shared store assigns to the token.
// It is the only place that reads flags, environment and files; see
// -h for the flags and README.md for examples.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/gateway/storeauth"
	"github.com/httvps/httvps/gateway/vmmetrics"
	"github.com/httvps/httvps/internal/acmecert"
	"github.com/httvps/httvps/internal/admin"
	"github.com/httvps/httvps/internal/certs"
	"github.com/httvps/httvps/internal/cliconf"
	"github.com/httvps/httvps/internal/version"
	"github.com/httvps/httvps/internal/wiring"
)

const (
	// defaultDrainTimeout mirrors gateway.Config's documented default; it only
	// bounds how long main waits for Shutdown.
	defaultDrainTimeout = 30 * time.Second
	// shutdownSlack is extra time past the drain for force-closing sessions.
	shutdownSlack = 5 * time.Second
)

// defaultMetrics registers the gateway's series in the process-wide set,
// which takes each name once, so tests can call run more than once.
var defaultMetrics = sync.OnceValue(func() gateway.Metrics { return vmmetrics.New(nil) })

func main() {
	if version.Asked(os.Args[1:]) {
		fmt.Println(version.Get().String("httvps-gateway"))
		return
	}
	os.Exit(run(osSources(os.Args[1:]), os.Stderr))
}

// run returns the exit code: 0 after a clean stop (or -h), 1 when serving
// fails, 2 for a configuration error.
func run(src sources, logOut io.Writer) int {
	o, err := loadOptions(src)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(src.usage, "httvps-gateway: invalid configuration:\n%v\n", err)
		return 2
	}
	log := cliconf.NewLogger(o.LogLevel, o.LogFormat, logOut)

	var fl *fleet
	if o.Redis != "" {
		if fl, err = openFleet(o, log); err != nil {
			log.Error("shared store unavailable", "err", err)
			return 1
		}
		defer fl.close(log)
	}
	var st *storeauth.Auth
	if fl != nil {
		st = fl.auth
	}
	auth, err := o.Auth(st)
	if err != nil {
		log.Error("invalid routes", "err", err)
		return 2
	}
	var store *certs.Store
	if len(o.TLSPairs) > 0 {
		if store, err = certs.New(o.TLSPairs, log); err != nil {
			log.Error("tls certificates do not load", "err", err)
			return 2
		}
	}
	cfg := o.GatewayConfig()
	cfg.Auth = auth
	cfg.Metrics = defaultMetrics()
	cfg.Logger = log
	if store != nil {
		cfg.TLS = o.TLSConfig(store)
	}
	var am *acmecert.Manager
	if o.ACME.On {
		var code int
		var closeACME func()
		if am, closeACME, code, err = startACME(o, fl, store, log); err != nil {
			log.Error("acme", "err", err)
			return code
		}
		// Deferred calls run last first: the Manager stops, then its
		// embedded store (without -redis) is closed.
		defer closeACME()
		defer am.Stop()
		cfg.TLS = o.TLSConfigFor(am.GetCertificate)
		wiring.WithACME(cfg.TLS, am)
	}
	if fl != nil {
		// The dynamic access keys and the client config on this listener,
		// behind the decoy: keys whose URL names the gateways work here.
		if cfg.Documents, err = wiring.Documents(fl.st, o.PublicURL, nil); err != nil {
			log.Error("invalid -public-url", "err", err)
			return 2
		}
	}
	gw, err := gateway.New(cfg)
	if err != nil {
		log.Error("invalid gateway configuration", "err", err)
		return 2
	}
	// The listener is bound before anything is announced: a port that is
	// taken ends the process at once with exit 1 (systemd and Kubernetes
	// restart it), before it registers or answers /healthz.
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		log.Error("gateway listener", "addr", o.Listen, "err", err)
		return 1
	}
	if fl != nil {
		// Registers the gateway, follows revocations, flushes usage; it
		// stops (final flush, deregistration) after the drain below.
		fl.start(gw)
	}

	// Signals are caught before anything listens, so an early SIGTERM
	// still goes through the drain.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	// SIGHUP is always caught: its default action would end the process
	// and every session with it.
	hups := make(chan os.Signal, 1)
	signal.Notify(hups, syscall.SIGHUP)
	defer signal.Stop(hups)
	background, stopBackground := context.WithCancel(context.Background())
	defer stopBackground()
	go certs.ReloadOnHUP(background, hups, store, log, "nothing to reload without -tls-cert")
	if store != nil {
		go store.Watch(background, o.TLSWatch)
	}

	var adminDone <-chan error
	var adm *admin.Server
	if o.AdminListen != "" {
		adm, err = admin.Start(o.AdminListen, admin.Config{Ready: gw.Ready})
		if err != nil {
			log.Error("admin listener failed", "addr", o.AdminListen, "err", err)
			return 1
		}
		adminDone = adm.Done()
		log.Info("admin listening", "addr", adm.Addr().String())
	}

	served := make(chan error, 1)
	go func() { served <- gw.Serve(ln) }()
	if am != nil {
		// Ordering starts once the listener that answers the validation
		// is serving.
		if err := am.Start(background); err != nil {
			log.Error("acme", "err", err)
			return 1
		}
		log.Info("acme: managing certificates", "names", am.Domains(), "ca", o.ACME.CA)
	}
	attrs := []any{
		"listen", o.Listen,
		"tls", cfg.TLS != nil,
		"routes", len(o.Routes), // the secrets themselves are never logged
		"decoy_file", o.DecoyFile,
	}
	if fl != nil {
		attrs = append(attrs, "gateway_id", fl.auth.GatewayID(), "public_url", o.PublicURL)
	}
	log.Info("gateway starting", attrs...)

	code := 0
	select {
	case err := <-served:
		log.Error("gateway stopped serving", "err", err)
		code = 1
		served <- err // for the wait after Shutdown below
	case err := <-adminDone:
		log.Error("admin server stopped", "err", err)
		code = 1
	case sig := <-sigs:
		log.Info("draining", "signal", sig.String())
	}

	drain := o.DrainTimeout
	if drain <= 0 {
		drain = defaultDrainTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), drain+shutdownSlack)
	defer cancel()
	var forced atomic.Bool
	go func() {
		select {
		case sig := <-sigs:
			log.Warn("second signal, closing sessions now", "signal", sig.String())
			forced.Store(true)
			cancel()
		case <-ctx.Done():
		}
	}()
	if fl != nil {
		// Sessions are being drained anyway, and the gateway must not be
		// called into once Shutdown has stopped its loops.
		fl.detach()
	}
	if err := gw.Shutdown(ctx); err != nil {
		log.Warn("drain incomplete", "err", err)
	}
	select {
	case <-served:
	case <-ctx.Done():
	}
	cancel()
	if forced.Load() {
		code = 1
	}
	if adm != nil {
		actx, acancel := context.WithTimeout(context.Background(), time.Second)
		adm.Shutdown(actx)
		acancel()
	}
	log.Info("stopped", slog.Int("exit", code))
	return code
}
