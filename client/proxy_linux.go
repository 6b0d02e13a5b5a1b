package client

import "syscall"

// errTooManyFiles is accept's error when the descriptor limit is reached.
var errTooManyFiles = syscall.EMFILE
