package certs

import (
	"context"
	"os"
	"slices"
	"time"
)

// fileStamp is what polling compares: identity (device and inode), size and
// modification time of the file a path resolves to, or the stat error.
type fileStamp struct {
	info os.FileInfo
	err  string
}

func (a fileStamp) same(b fileStamp) bool {
	if a.info == nil || b.info == nil {
		return a.info == nil && b.info == nil && a.err == b.err
	}
	return os.SameFile(a.info, b.info) && a.info.Size() == b.info.Size() && a.info.ModTime().Equal(b.info.ModTime())
}

// statFiles follows symlinks, so a Kubernetes secret update, which writes a
// new directory and renames the ..data symlink over the old one, shows up as
// a different inode behind an unchanged path.
func statFiles(pairs []Pair) []fileStamp {
	stamps := make([]fileStamp, 0, 2*len(pairs))
	for _, p := range pairs {
		for _, name := range []string{p.CertFile, p.KeyFile} {
			fi, err := os.Stat(name)
			if err != nil {
				stamps = append(stamps, fileStamp{err: err.Error()})
				continue
			}
			stamps = append(stamps, fileStamp{info: fi})
		}
	}
	return stamps
}

func sameStamps(a, b []fileStamp) bool {
	return slices.EqualFunc(a, b, fileStamp.same)
}

// Watch polls the files every interval and reloads when any of them
// changed; a failed reload is logged and retried on the next change only.
// It returns when ctx is done, or at once if every <= 0; run it in its own
// goroutine.
func (s *Store) Watch(ctx context.Context, every time.Duration) {
	if every <= 0 {
		return
	}
	seen := s.set.Load().stamps
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			seen = s.poll(seen)
		}
	}
}

// poll reloads when the files differ from what the last poll saw and from
// what the current set was read from, and returns what it saw.
func (s *Store) poll(seen []fileStamp) []fileStamp {
	now := statFiles(s.pairs)
	if sameStamps(now, seen) || sameStamps(now, s.set.Load().stamps) {
		return now // unchanged, or already loaded by a SIGHUP reload
	}
	if err := s.Reload(); err != nil {
		s.log.Error("tls certificate files changed but do not load; keeping the previous certificates", "err", err)
		return now
	}
	s.log.Info("tls certificates reloaded after a file change")
	return now
}
