package bench

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// Directions of a throughput cell.
const (
	Upload   = "upload"
	Download = "download"
)

var errIntegrity = errors.New("bench: stream corrupted")

// closeDrain bounds the closing handshake after a stream's bytes are verified.
const closeDrain = 2 * time.Second

// chunkReader is a stream that can hand over what it received without a
// copy (a tunnel stream: its bytes already sit in the receive queue's
// chunks, where a copying Read would move them once more; a socket's
// stream has nothing to gain).
type chunkReader interface {
	readChunks(limit int64, fn func([]byte)) (int64, error)
}

// transferOne moves n pattern bytes through one stream in direction dir and
// verifies their SHA-256 at the receiving end (the sink for uploads, this
// client for downloads). It returns when the bytes are verified, leaving the
// stream to be closed by finish.
func transferOne(ctx context.Context, s Stream, dir string, n int64, msg int, deadline time.Time) error {
	s.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { s.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	want := patternHash(n)
	switch dir {
	case Upload:
		if _, err := s.Write(modeHeader(ModeUpload, uint64(n))); err != nil {
			return err
		}
		if err := writePattern(s, n, msg); err != nil {
			return fmt.Errorf("upload write: %w", err)
		}
		var got [32]byte
		if _, err := io.ReadFull(s, got[:]); err != nil {
			return fmt.Errorf("upload: reading the sink's hash: %w", err)
		}
		if got != want {
			return fmt.Errorf("%w: upload of %d bytes: sink hash %x, sent %x", errIntegrity, n, got[:8], want[:8])
		}
	case Download:
		if _, err := s.Write(modeHeader(ModeDownload, uint64(n))); err != nil {
			return err
		}
		d := sha256.New()
		var got int64
		var err error
		if cr, ok := s.(chunkReader); ok {
			got, err = cr.readChunks(n, func(b []byte) { d.Write(b) })
		} else {
			got, err = io.CopyBuffer(d, io.LimitReader(s, n), make([]byte, 64<<10))
		}
		if err != nil || got != n {
			return fmt.Errorf("download: %d of %d bytes: %v", got, n, err)
		}
		if h := d.Sum(nil); string(h) != string(want[:]) {
			return fmt.Errorf("%w: download of %d bytes: hash %x, want %x", errIntegrity, n, h[:8], want[:8])
		}
	default:
		return fmt.Errorf("bench: unknown direction %q", dir)
	}
	return nil
}

// finish ends the client's stream, waits (bounded) for the relay's end of
// stream, and closes.
func finish(s Stream) {
	s.CloseWrite()
	s.SetDeadline(time.Now().Add(closeDrain))
	var b [4096]byte
	for {
		if _, err := s.Read(b[:]); err != nil {
			break
		}
	}
	s.Close()
}

// transferResult is the outcome of a multi-stream transfer.
type transferResult struct {
	Bytes int64
	Wall  time.Duration // first dial to the last verified byte
}

// transfer runs streams parallel streams of total/streams bytes each.
func transfer(ctx context.Context, tr Transport, dir string, streams int, total int64, msg int, timeout time.Duration) (transferResult, error) {
	per := total / int64(streams)
	patternHash(per) // computed before the clock starts
	deadline := time.Now().Add(timeout)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		errs   []error
		lastOK time.Time
	)
	start := time.Now()
	for i := 0; i < streams; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := tr.Dial(ctx)
			if err == nil {
				err = transferOne(ctx, s, dir, per, msg, deadline)
				now := time.Now()
				finish(s)
				if err == nil {
					mu.Lock()
					if now.After(lastOK) {
						lastOK = now
					}
					mu.Unlock()
				}
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("stream %d: %w", i, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return transferResult{}, err
	}
	return transferResult{Bytes: per * int64(streams), Wall: lastOK.Sub(start)}, nil
}
