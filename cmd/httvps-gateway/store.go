package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/gateway/storeauth"
	"github.com/httvps/httvps/gateway/storemetrics"
	"github.com/httvps/httvps/internal/acmecert"
	"github.com/httvps/httvps/internal/certs"
	"github.com/httvps/httvps/internal/version"
	"github.com/httvps/httvps/internal/wiring"
	"github.com/httvps/httvps/store"
	"github.com/httvps/httvps/store/embedded"
	"github.com/httvps/httvps/store/redisstore"
)

const (
	// storeConnectTimeout bounds the first connection to Redis at start-up.
	storeConnectTimeout = 10 * time.Second
	// runStopTimeout bounds the final usage flush and deregistration.
	runStopTimeout = 10 * time.Second
)

// fleet is the gateway's membership of a store-backed fleet.
type fleet struct {
	st       *redisstore.Store
	auth     *storeauth.Auth
	unexport func() // the httvps_gateway_store_* series
	stop     context.CancelFunc
	done     chan error
}

// openFleet connects to Redis and builds the store-backed Authenticator.
// Start runs it once the gateway exists.
func openFleet(o *options, log *slog.Logger) (*fleet, error) {
	ctx, cancel := context.WithTimeout(context.Background(), storeConnectTimeout)
	defer cancel()
	redisstore.SetLogger(log) // go-redis's failover and dial messages, in our format
	st, err := redisstore.New(ctx, o.Redis)
	if err != nil {
		return nil, err
	}
	a := storeauth.New(st, storeauth.Config{
		GatewayID: o.GatewayID,
		PublicURL: o.PublicURL,
		Version:   version.Get().Version,
		Logger:    log,

		MetricsPerToken: o.MetricsPerToken,
		DeviceGrace:     o.DeviceGrace,
	})
	return &fleet{st: st, auth: a, unexport: storemetrics.Export(a), done: make(chan error, 1)}, nil
}

// start attaches the gateway and runs the fleet membership in the
// background.
func (f *fleet) start(gw *gateway.Gateway) {
	f.auth.Attach(gw)
	ctx, cancel := context.WithCancel(context.Background())
	f.stop = cancel
	go func() { f.done <- f.auth.Run(ctx) }()
}

// detach stops closing sessions on the gateway; called before its
// Shutdown, after which it must not be called into.
func (f *fleet) detach() { f.auth.Attach(nil) }

// close stops Run (final usage flush, deregistration) and the store.
func (f *fleet) close(log *slog.Logger) {
	if f.stop != nil {
		f.stop()
		select {
		case err := <-f.done:
			if err != nil {
				log.Error("leaving the fleet", "err", err)
			}
		case <-time.After(runStopTimeout):
			log.Error("leaving the fleet: timed out")
		}
	}
	f.unexport()
	f.st.Close()
}

// startACME prepares -acme: its state in the fleet's Redis (so one gateway
// orders a name and every gateway serves it) or, without -redis, in an
// embedded store in -acme-dir, which the returned close releases (bolt
// holds the file locked while it is open); the -tls-cert pairs, or an
// in-memory self-signed certificate, serve until the certificate is
// obtained. On an error it returns the exit code.
func startACME(o *options, fl *fleet, certFiles *certs.Store, log *slog.Logger) (m *acmecert.Manager, closeStore func(), code int, err error) {
	names := o.ACME.NamesForURL(o.PublicURL)
	var st store.Store
	closeStore = func() {}
	if fl != nil {
		st = fl.st
	} else {
		es, err := embedded.OpenIn(o.ACME.Dir, wiring.ACMEStoreFile)
		if err != nil {
			return nil, nil, 1, fmt.Errorf("-acme-dir %s (is another gateway using it?): %w", o.ACME.Dir, err)
		}
		st = es
		closeStore = func() {
			if err := es.Close(); err != nil {
				log.Error("closing -acme-dir", "err", err)
			}
		}
	}
	var files func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	if certFiles != nil {
		files = certFiles.GetCertificate
	}
	m, err = o.ACME.Manager(names, st, o.Listen, files, log, os.ReadFile)
	if err != nil {
		closeStore()
		return nil, nil, 2, err
	}
	return m, closeStore, 0, nil
}
