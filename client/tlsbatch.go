package client

import (
	"net"
	"sync"
)

// batchConn sits between a tls.Conn and its TCP connection. crypto/tls
// writes every record (at most 16 KiB of plaintext) with a write of its
// own; while a WebSocket frame is being written (begin … end, under
// WSConn.wmu) the records are gathered here and leave in one write of up
// to batchMax bytes, which takes most of the system calls out of a bulk
// upload. Outside a frame (the TLS handshake, an alert or a KeyUpdate
// answer written by a reader) writes pass straight through. Everything
// goes out in the order crypto/tls wrote it: the buffer is only ever
// appended to under mu and is emptied before end turns batching off.
//
// Reads work the other way round: crypto/tls reads little more than one
// record per read, so while bulk data arrives (a direct read filled the
// space crypto/tls offered) reads go through a pooled buffer of
// readBatchMax bytes, one system call for many records; once a read comes
// back short the buffer goes back to the pool and reads are direct again,
// so a connection idle in a read holds no buffer. Reads come from one
// goroutine at a time (crypto/tls holds its input lock).
type batchConn struct {
	net.Conn
	mu  sync.Mutex
	on  bool
	buf *[]byte // taken from batchBufs at the first gathered write, given back by end

	rbuf   *[]byte // read-ahead, while bulk data arrives
	rp, rn int     // unread bytes: (*rbuf)[rp:rn]
	rerr   error   // the error of the read that filled rbuf, after its bytes
	bulk   bool    // the last direct read filled its buffer
}

// readBatchMax is the read-ahead of a connection receiving bulk data.
const readBatchMax = 128 << 10

var readBufs = sync.Pool{New: func() any {
	b := make([]byte, readBatchMax)
	return &b
}}

func (b *batchConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if b.rbuf != nil {
		if b.rp < b.rn {
			n := copy(p, (*b.rbuf)[b.rp:b.rn])
			b.rp += n
			return n, nil
		}
		err := b.rerr
		b.rerr = nil
		b.putRead()
		if err != nil {
			return 0, err
		}
	}
	if !b.bulk || len(p) >= readBatchMax {
		n, err := b.Conn.Read(p)
		b.bulk = n == len(p)
		return n, err
	}
	if b.rbuf == nil {
		b.rbuf = readBufs.Get().(*[]byte)
	}
	n, err := b.Conn.Read(*b.rbuf)
	if n < len(*b.rbuf)/2 {
		b.bulk = false // no longer bulk: direct reads from the next one on
	}
	k := copy(p, (*b.rbuf)[:n])
	b.rp, b.rn = k, n
	if k < n {
		b.rerr = err
		return k, nil
	}
	b.putRead()
	return k, err
}

// putRead gives the drained read-ahead back unless bulk data goes on.
func (b *batchConn) putRead() {
	if b.rbuf != nil && !b.bulk {
		readBufs.Put(b.rbuf)
		b.rbuf = nil
	}
	b.rp, b.rn = 0, 0
}

// batchMax bounds what one write gathers; bigger writes pass on as they are.
const batchMax = 256 << 10

var batchBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, batchMax)
	return &b
}}

// begin starts gathering the writes of one frame.
func (b *batchConn) begin() {
	b.mu.Lock()
	b.on = true
	b.mu.Unlock()
}

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.on {
		return b.Conn.Write(p)
	}
	if b.buf == nil {
		b.buf = batchBufs.Get().(*[]byte)
	}
	buf := *b.buf
	if len(buf)+len(p) > cap(buf) {
		if len(buf) > 0 {
			_, err := b.Conn.Write(buf)
			*b.buf = buf[:0]
			if err != nil {
				return 0, err
			}
			buf = buf[:0]
		}
		if len(p) >= cap(buf) {
			return b.Conn.Write(p)
		}
	}
	*b.buf = append(buf, p...)
	return len(p), nil
}

// end sends what the frame's writes gathered and stops gathering. The
// buffer goes back to the pool: an idle tunnel holds none.
func (b *batchConn) end() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.on = false
	if b.buf == nil {
		return nil
	}
	var err error
	if buf := *b.buf; len(buf) > 0 {
		_, err = b.Conn.Write(buf)
	}
	*b.buf = (*b.buf)[:0]
	batchBufs.Put(b.buf)
	b.buf = nil
	return err
}
