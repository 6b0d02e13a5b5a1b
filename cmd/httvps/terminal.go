package main

import (
	"io"

	"golang.org/x/sys/unix"
)

// isTerminal reports whether w is a terminal (as golang.org/x/term does on
// Linux: the TCGETS ioctl succeeds). `httvps up` prints secrets only to a
// terminal; a pipe or a file may be a log that keeps them (journald).
func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
