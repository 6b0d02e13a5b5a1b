package gateway

import (
	"github.com/httvps/httvps/bufpool"
	"golang.org/x/sys/unix"
)

// outq holds the bytes a session could not write yet in one direction. It
// holds a pooled buffer only while it is non-empty, so an idle session holds
// none. Owned by the session's loop.
type outq struct {
	buf      *[]byte
	off, end int
}

func (q *outq) empty() bool { return q.buf == nil }

func (q *outq) len() int { return q.end - q.off }

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
	} else if q.end+n > len(*q.buf) {
		have := q.len()
		nb := bufpool.Get(have + n)
		copy(*nb, (*q.buf)[q.off:q.end])
		bufpool.Put(q.buf)
		q.buf, q.off, q.end = nb, 0, have
	}
	for _, p := range pieces {
		q.end += copy((*q.buf)[q.end:], p)
	}
	return n
}

// flush writes as much as the socket takes. It returns the bytes written and
// a non-nil error only for a real failure (not EAGAIN).
func (q *outq) flush(fd int) (int, error) {
	total := 0
	for q.buf != nil {
		n, err := sysWrite(fd, (*q.buf)[q.off:q.end])
		if n > 0 {
			total += n
			q.off += n
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
