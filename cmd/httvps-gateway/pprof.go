//go:build pprof

// Built only with -tags pprof, for profiling the gateway under the bench:
// HTTVPS_PPROF=127.0.0.1:6060 serves net/http/pprof there. Release builds
// carry none of it.
package main

import (
	"log/slog"
	"net/http"
	_ "net/http/pprof"
	"os"
)

func init() {
	addr := os.Getenv("HTTVPS_PPROF")
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
