package testpeer

import (
	"context"
	"net"
	"testing"
	"time"
)

// Server is what ServeGateway runs: a *gateway.Gateway. testpeer names
// the methods rather than the type because gateway's own tests import
// testpeer, so testpeer cannot import gateway.
type Server interface {
	Serve(ln net.Listener) error
	Shutdown(ctx context.Context) error
	Ready() bool
}

// ServeGateway serves srv on a new listener on 127.0.0.1:0 and returns its
// address; see ServeGatewayOn.
func ServeGateway(t testing.TB, srv Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testpeer: listen: %v", err)
	}
	ServeGatewayOn(t, ln, srv)
	return ln.Addr().String()
}

// ServeGatewayOn runs srv.Serve(ln) on its own goroutine (for tests that
// need the address before they build srv) and returns once srv is Ready,
// failing the test if Serve returns first or 20 s pass. At test end it
// shuts srv down (bounded by 10 s; a Shutdown the test made already is
// fine) and reports an error from Serve, or Serve not returning.
func ServeGatewayOn(t testing.TB, ln net.Listener, srv Server) {
	t.Helper()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("testpeer: gateway Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("testpeer: gateway Serve did not return after Shutdown")
		}
	})
	const wait = 20 * time.Second
	for deadline := time.Now().Add(wait); !srv.Ready(); {
		select {
		case err := <-served:
			served <- err // for the cleanup
			t.Fatalf("testpeer: gateway Serve returned before serving: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("testpeer: gateway not serving after %v", wait)
		}
	}
}
