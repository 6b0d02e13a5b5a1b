package certs

import (
	"context"
	"log/slog"
	"os"
)

// ReloadOnHUP re-reads s's files each time hups delivers a signal, until ctx
// is done; run it in its own goroutine. Only later handshakes see the new
// certificates: established connections are untouched, and a set that does
// not load is logged and the previous one kept. With a nil s, each signal
// only logs idle, the reason there is nothing to reload: the caller still
// catches SIGHUP, whose default action would end the process and every
// session with it. A nil log means slog.Default().
func ReloadOnHUP(ctx context.Context, hups <-chan os.Signal, s *Store, log *slog.Logger, idle string) {
	if log == nil {
		log = slog.Default()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-hups:
		}
		if s == nil {
			log.Info("SIGHUP: " + idle)
			continue
		}
		if err := s.Reload(); err != nil {
			log.Error("SIGHUP: tls certificates do not load; keeping the previous ones", "err", err)
			continue
		}
		log.Info("SIGHUP: tls certificates reloaded")
	}
}
