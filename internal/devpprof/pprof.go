//go:build pprof

// Package devpprof serves net/http/pprof in profiling builds (-tags pprof)
// and is empty otherwise, so release binaries carry none of it.
package devpprof

import (
	"log/slog"
	"net/http"
	_ "net/http/pprof"
)

// Serve starts the pprof server on addr ("" does nothing).
func Serve(addr string) {
	if addr == "" {
		return
	}
	go func() {
		slog.Warn("pprof listening (profiling build)", "addr", addr)
		if err := http.ListenAndServe(addr, nil); err != nil {
			slog.Error("pprof", "err", err)
		}
	}()
}
