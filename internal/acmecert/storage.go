package acmecert

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/httvps/httvps/store"
)

// blobPrefix starts every key certmagic keeps in the shared store.
const blobPrefix = "acme/"

// Lock timing: a lock is a lease of lockTTL renewed every lockTTL/3 while
// held, so a gateway that dies mid-order frees it within lockTTL; a
// waiter polls every lockPoll.
const (
	lockTTL  = time.Minute
	lockPoll = time.Second
)

// storage is certmagic.Storage on store.Store's shared files and locks, so
// every process sharing the store shares the ACME account, certificates,
// challenge data and the locks that let one of them order a certificate
// while the others wait and then load it.
type storage struct {
	st    store.Store
	owner string // this process's lock owner ID

	mu    sync.Mutex
	held  map[string]context.CancelFunc // lock name → its renewer
	renew time.Duration
}

var (
	_ certmagic.Storage          = (*storage)(nil)
	_ certmagic.LockLeaseRenewer = (*storage)(nil)
)

func newStorage(st store.Store) *storage {
	return &storage{st: st, owner: store.NewID(), held: make(map[string]context.CancelFunc), renew: lockTTL / 3}
}

func blobKey(key string) string { return blobPrefix + strings.Trim(key, "/") }

// notExist makes the store's ErrNotFound the fs.ErrNotExist certmagic
// tests for, keeping the store's error in the chain.
func notExist(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w (%w)", fs.ErrNotExist, err)
	}
	return err
}

func (s *storage) Store(ctx context.Context, key string, value []byte) error {
	return s.st.PutBlob(ctx, blobKey(key), value)
}

func (s *storage) Load(ctx context.Context, key string) ([]byte, error) {
	b, err := s.st.GetBlob(ctx, blobKey(key))
	if err != nil {
		return nil, notExist(err)
	}
	return b.Value, nil
}

// Delete removes key and, as a directory, everything under it.
func (s *storage) Delete(ctx context.Context, key string) error {
	return s.st.DeleteBlob(ctx, blobKey(key))
}

func (s *storage) Exists(ctx context.Context, key string) bool {
	_, err := s.Stat(ctx, key)
	return err == nil
}

// List returns the keys directly in path, or every key under it when
// recursive, with certmagic's (unprefixed) names.
func (s *storage) List(ctx context.Context, path string, recursive bool) ([]string, error) {
	dir := blobKey(path)
	if dir != blobPrefix {
		dir += "/"
	}
	keys, err := s.st.ListBlobs(ctx, dir)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, fs.ErrNotExist
	}
	var out []string
	seen := make(map[string]bool)
	for _, k := range keys {
		rest := k[len(dir):]
		if !recursive {
			if i := strings.IndexByte(rest, '/'); i >= 0 {
				rest = rest[:i]
			}
		}
		name := strings.TrimPrefix(dir+rest, blobPrefix)
		if !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	return out, nil
}

func (s *storage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	k := blobKey(key)
	b, err := s.st.GetBlob(ctx, k)
	if err == nil {
		return certmagic.KeyInfo{Key: key, Modified: b.Modified, Size: int64(len(b.Value)), IsTerminal: true}, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return certmagic.KeyInfo{}, err
	}
	under, err := s.st.ListBlobs(ctx, k+"/")
	if err != nil {
		return certmagic.KeyInfo{}, err
	}
	if len(under) == 0 {
		return certmagic.KeyInfo{}, fs.ErrNotExist
	}
	return certmagic.KeyInfo{Key: key, IsTerminal: false}, nil
}

// Lock blocks until this process holds name or ctx ends; while held, the
// lease is renewed in the background.
func (s *storage) Lock(ctx context.Context, name string) error {
	t := time.NewTicker(lockPoll)
	defer t.Stop()
	for {
		ok, err := s.st.TryLock(ctx, blobPrefix+name, s.owner, lockTTL)
		if err == nil && ok {
			s.startRenewing(name)
			return nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
			return fmt.Errorf("acmecert: lock %s: %w", name, err)
		case <-t.C:
		}
	}
}

func (s *storage) startRenewing(name string) {
	ctx, cancel := context.WithCancel(context.Background())
	s.mu.Lock()
	if old := s.held[name]; old != nil {
		old()
	}
	s.held[name] = cancel
	s.mu.Unlock()
	go func() {
		t := time.NewTicker(s.renew)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				// A failed renewal is retried on the next tick; the lease
				// outlives two of them.
				s.st.TryLock(ctx, blobPrefix+name, s.owner, lockTTL)
			}
		}
	}()
}

func (s *storage) Unlock(ctx context.Context, name string) error {
	s.mu.Lock()
	if cancel := s.held[name]; cancel != nil {
		cancel()
		delete(s.held, name)
	}
	s.mu.Unlock()
	return s.st.Unlock(ctx, blobPrefix+name, s.owner)
}

// RenewLockLease extends a held lock (certmagic.LockLeaseRenewer).
func (s *storage) RenewLockLease(ctx context.Context, name string, d time.Duration) error {
	ok, err := s.st.TryLock(ctx, blobPrefix+name, s.owner, max(d, lockTTL))
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("acmecert: lock %s is held by another process", name)
	}
	return nil
}

// String names the storage in certmagic's logs and keys its in-memory
// lookups: every process on one store is the same storage.
func (s *storage) String() string { return "httvps-store" }
