//go:build !pprof

// Package devpprof serves net/http/pprof in profiling builds (-tags pprof)
// and is empty otherwise, so release binaries carry none of it.
package devpprof

// Serve does nothing: this is not a profiling build.
func Serve(string) {}
