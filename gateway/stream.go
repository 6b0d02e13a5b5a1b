package gateway

import (
	"github.com/httvps/httvps/bufpool"
	"github.com/httvps/httvps/internal/rawio"
	"golang.org/x/sys/unix"
)

// A stream is one direction of relaying: bytes read from a source socket
// and written to a destination socket. A session has two (up: client →
// upstream, down: upstream → client); the native tunnel holds one pair per
// tunnelled stream. A stream knows nothing about WebSocket or TLS: framing
// is the session's business, the stream is its queue, its end-of-stream
// state, the rate its receiver takes, and its byte count. Owned by the
// session's loop goroutine, like the session.
type stream struct {
	outq // bytes the destination has not taken yet

	// Read sizes follow the receiver's rate (see readSize): mark is when
	// the queue last drained (loop clock), read the bytes read from the
	// source since. At the next drain their ratio is the rate the receiver
	// really took (its socket buffer is full at both drains), and small
	// says it was under slowRate: reads from the source then take minRead
	// instead of the read chunk, so a slow receiver pins little in the
	// queue while a fast one gets large, cheap reads.
	mark int64
	read int64
	used int64 // payload bytes not yet reported to the account
	// credit is what this direction may still relay (credit.go): taken
	// from the account in chunks, creditUnlimited without a quota, < 0 a
	// debt (a datagram or TLS record that could not be split).
	credit int32
	small  bool

	eof    bool // the source socket reached end of stream (FIN, close_notify)
	shut   bool // FIN sent to the destination socket
	parked bool // the source fd left epoll after a hang-up while the queue was full
}

// readSize is how much the next read from the source may take.
func (st *stream) readSize(chunk int) int { return readSize(chunk, st.small) }

// took books n bytes read from the source for the rate sample.
func (st *stream) took(n int) { st.read += int64(n) }

// drained samples the receiver's rate when the queue has just emptied.
func (st *stream) drained(now int64) {
	st.small, st.mark, st.read = slowReceiver(st.read, st.mark, now), now, 0
}

// outq holds the bytes a session could not write yet in one direction. It
// holds a pooled buffer only while it is non-empty, so an idle session holds
// none. Owned by the session's loop.
type outq struct {
	buf      *[]byte
	off, end int32 // queued bytes are (*buf)[off:end]; a queue is < 2 GiB
}

func (q *outq) empty() bool { return q.buf == nil }

func (q *outq) len() int { return int(q.end - q.off) }

// push appends the pieces to the queue, copying them into a pooled buffer.
// It returns the number of bytes added.
func (q *outq) push(pieces ...[]byte) int {
	n := 0
	for _, p := range pieces {
		n += len(p)
	}
	if n == 0 {
		return 0
	}
	if q.buf == nil {
		q.buf = bufpool.Get(n)
		q.off, q.end = 0, 0
	} else if int(q.end)+n > len(*q.buf) {
		have := q.len()
		nb := bufpool.Get(have + n)
		copy(*nb, (*q.buf)[q.off:q.end])
		bufpool.Put(q.buf)
		q.buf, q.off, q.end = nb, 0, int32(have)
	}
	for _, p := range pieces {
		q.end += int32(copy((*q.buf)[q.end:], p))
	}
	return n
}

// flush writes as much as the socket takes. It returns the bytes written and
// a non-nil error only for a real failure (not EAGAIN).
func (q *outq) flush(fd int) (int, error) {
	total := 0
	for q.buf != nil {
		n, err := rawio.Write(fd, (*q.buf)[q.off:q.end])
		if n > 0 {
			total += n
			q.off += int32(n)
			if q.off == q.end {
				q.release()
				return total, nil
			}
		}
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// release drops whatever is queued and returns the buffer to the pool. It
// returns the number of bytes dropped.
func (q *outq) release() int {
	if q.buf == nil {
		return 0
	}
	n := q.len()
	bufpool.Put(q.buf)
	q.buf, q.off, q.end = nil, 0, 0
	return n
}
