package main

import (
	"os"

	"github.com/httvps/httvps/internal/devpprof"
)

// A -tags pprof build serves net/http/pprof on HTTVPS_PPROF (e.g.
// 127.0.0.1:6060), for profiling the harness itself; others ignore it.
func init() { devpprof.Serve(os.Getenv("HTTVPS_PPROF")) }
