package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/gateway/storeauth"
	"github.com/httvps/httvps/gateway/storemetrics"
	"github.com/httvps/httvps/internal/version"
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
	st, err := redisstore.New(ctx, o.Redis)
	if err != nil {
		return nil, err
	}
	a := storeauth.New(st, storeauth.Config{
		GatewayID: o.GatewayID,
		PublicURL: o.PublicURL,
		Version:   version.Get().Version,
		Logger:    log,
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
