package bench

import "github.com/httvps/httvps/internal/bytequeue"

// The tunnel client's receive side copies nothing in user space: its reader
// reads the WebSocket into a pooled Buf, and each DATA payload in it is
// queued on its stream as a slice of the Buf (bytequeue.Push); a download
// hashes the slices where they lie (readChunks). The kernel's copy into the
// Buf is the only one, as for a stream with a socket of its own, so the
// client costs the tunnel no more per byte than separate connections (on a
// 2-core machine the client's CPU decides the MB/s of every peer).
const (
	rxBufSize = 256 << 10
	// rxMinRead: a Buf with less room than this is left to its slices and
	// the reader starts a new one.
	rxMinRead = 64 << 10
)

var rxBufs = bytequeue.NewPool(rxBufSize)
