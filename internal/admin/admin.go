// Package admin serves the operator endpoints of a binary on a separate,
// normally loopback-only, listener: /metrics in Prometheus text format,
// /healthz (the process is alive) and /readyz (it should get traffic).
package admin

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/httvps/httvps/internal/version"
)

// Timeouts are short: scrapes and probes are small requests, and a stuck
// client must not hold a connection of a process that serves many.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 60 * time.Second
)

// Config configures the admin endpoints. The zero value serves metrics and a
// process that is always ready.
type Config struct {
	// Ready reports whether the process should receive traffic; /readyz
	// answers 200 when it returns true and 503 otherwise. Nil means always.
	Ready func() bool

	// WriteMetrics writes the /metrics body. Nil means every registered
	// VictoriaMetrics set plus the go_* and process_* metrics.
	WriteMetrics func(w io.Writer)
}

// httvps_build_info (version, commit, Go version; always 1) is in the
// default set, so every /metrics page of a binary that has an admin
// listener — the admin one and the control API's — carries it.
func init() {
	metrics.NewGauge(version.Get().Series(), func() float64 { return 1 })
}

// Handler returns the admin endpoints as an http.Handler.
func Handler(cfg Config) http.Handler {
	write := cfg.WriteMetrics
	if write == nil {
		write = func(w io.Writer) {
			metrics.WritePrometheus(w, true)
			metrics.WriteFDMetrics(w)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		write(w)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		plain(w, http.StatusOK, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if cfg.Ready == nil || cfg.Ready() {
			plain(w, http.StatusOK, "ready\n")
			return
		}
		plain(w, http.StatusServiceUnavailable, "not ready\n")
	})
	return mux
}

func plain(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

// Server is a running admin listener.
type Server struct {
	ln   net.Listener
	srv  *http.Server
	done chan error
}

// Start listens on addr and serves the admin endpoints in a goroutine until
// Shutdown. Listening errors are returned here, so a port conflict stops
// start-up instead of surfacing later.
func Start(addr string, cfg Config) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{
		ln: ln,
		srv: &http.Server{
			Handler:           Handler(cfg),
			ReadHeaderTimeout: readHeaderTimeout,
			ReadTimeout:       readTimeout,
			WriteTimeout:      writeTimeout,
			IdleTimeout:       idleTimeout,
			MaxHeaderBytes:    16 << 10,
		},
		done: make(chan error, 1),
	}
	go func() {
		err := s.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Done delivers the serve error (nil after Shutdown) once the server stops.
func (s *Server) Done() <-chan error { return s.done }

// Shutdown stops the listener and waits, up to ctx, for requests in flight.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.srv.Shutdown(ctx)
}
