// Package embedded is the single-node store.Store: tokens, usage and pool
// members live in one bbolt file, so they survive a restart; leases,
// gateway registrations and the event bus live in memory, as they only
// describe the running process (a restarted node has no sessions left).
// It lets `httvps up` run with nothing else installed.
//
// Layout of the file (bbolt buckets):
//
//	tokens     id → token JSON
//	tok-hash   SHA-256 of the token (32 bytes) → id
//	tok-order  "<created>:<id>" (24 hex digits of creation time) → id;
//	           the key is the list cursor, so byte order is creation order
//	usage      id → up, down, period start, period end (big-endian int64,
//	           the times in unix s, 0 without a period; a 16-byte record
//	           of an older version is up, down)
//	usage-past id, 0, period start (8 bytes) → end, up, down: ended
//	           periods, at most store.MaxPastPeriods per token
//	hist-hour  one bucket per token id ("*" for the fleet): hour start
//	           (unix s, 8 bytes) → up, down; pruned past
//	           store.HourlyRetention
//	hist-day   the same by day, pruned past store.DailyRetention
//	members    id → member JSON (with health and creation time)
//	meta       "installation-id" → the installation ID
//	blobs      key → modification time (big-endian unix ns, 8 bytes), value
//
// Locks (TryLock) live in memory: bbolt lets one process open the file.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/httvps/httvps/store"
	"github.com/httvps/httvps/store/internal/eventq"
)

var (
	bucketTokens  = []byte("tokens")
	bucketTokHash = []byte("tok-hash")
	bucketOrder   = []byte("tok-order")
	bucketUsage   = []byte("usage")
	bucketMembers = []byte("members")
	bucketMeta    = []byte("meta")
	bucketBlobs   = []byte("blobs")
	bucketPast    = []byte("usage-past")
	bucketHour    = []byte("hist-hour")
	bucketDay     = []byte("hist-day")

	keyInstallationID = []byte("installation-id")
)

// lockTimeout is how long Open waits for another process holding the file.
const lockTimeout = time.Second

// Store is a store.Store in one file.
type Store struct {
	db     *bolt.DB
	closed atomic.Bool

	mu        sync.Mutex                // guards leases, devices, devLeaseN, gateways, subs, slices
	leases    map[string]map[string]int // token → gateway → sessions
	devices   devLeases                 // devices.go
	devLeaseN int                       // leases in devices, capped by maxDeviceLeases
	gateways  map[string]*gateway
	subs      map[*eventq.Queue]struct{}
	locks     map[string]heldLock
	slices    map[string]map[string]int64 // token → gateway → quota slice (quota.go); made on first use

	prunedAt atomic.Int64     // unix s of the last history pruning pass
	now      func() time.Time // retention's clock; nil: time.Now (tests set it)
}

type gateway struct {
	info    store.Gateway
	expires time.Time // by the process clock (monotonic)
}

var _ store.Store = (*Store)(nil)

// OpenIn opens or creates the store file name in dir, creating dir (mode
// 0700) when it is missing: a directory an operator names for one store,
// such as the gateway's -acme-dir.
func OpenIn(dir, name string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded: open: %w", err)
	}
	return Open(filepath.Join(dir, name))
}

// Open opens or creates the store file at path (mode 0600). A file held by
// another process is reported as store.ErrUnavailable after a second.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if err != nil {
		return nil, fmt.Errorf("embedded: open: %w: %w", store.ErrUnavailable, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketTokens, bucketTokHash, bucketOrder, bucketUsage, bucketMembers, bucketMeta, bucketBlobs, bucketPast, bucketHour, bucketDay} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("embedded: open: %w: %w", store.ErrUnavailable, err)
	}
	return &Store{
		db:       db,
		leases:   make(map[string]map[string]int),
		devices:  make(devLeases),
		gateways: make(map[string]*gateway),
		subs:     make(map[*eventq.Queue]struct{}),
		locks:    make(map[string]heldLock),
	}, nil
}

// Close ends subscriptions and closes the file; safe to call twice.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.mu.Lock()
	for q := range s.subs {
		q.Close()
		delete(s.subs, q)
	}
	s.mu.Unlock()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("embedded: close: %w", err)
	}
	return nil
}

// Ping reports whether the store is open.
func (s *Store) Ping(ctx context.Context) error {
	return s.check(ctx, "ping")
}

// InstallationID implements store.Store. bbolt runs one write
// transaction at a time, so the first caller creates the ID and every
// later one reads it.
func (s *Store) InstallationID(ctx context.Context) (string, error) {
	if err := s.check(ctx, "installation id"); err != nil {
		return "", err
	}
	var id string
	err := s.db.View(func(tx *bolt.Tx) error {
		id = string(tx.Bucket(bucketMeta).Get(keyInstallationID))
		return nil
	})
	if err == nil && id == "" {
		err = s.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketMeta)
			if v := b.Get(keyInstallationID); v != nil {
				id = string(v)
				return nil
			}
			id = store.NewID()
			return b.Put(keyInstallationID, []byte(id))
		})
	}
	if err != nil {
		return "", wrap("installation id", err)
	}
	return id, nil
}

// check refuses calls on a closed store or with a finished ctx.
func (s *Store) check(ctx context.Context, op string) error {
	if s.closed.Load() {
		return fmt.Errorf("embedded: %s: %w (closed)", op, store.ErrUnavailable)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("embedded: %s: %w: %w", op, store.ErrUnavailable, err)
	}
	return nil
}

// errNotFound and errExists travel out of bolt transactions; wrap adds the
// operation and turns anything unexpected (I/O, closed file) into
// store.ErrUnavailable.
var (
	errNotFound = store.ErrNotFound
	errExists   = store.ErrExists
	errInvalid  = store.ErrInvalid
)

func wrap(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errNotFound), errors.Is(err, errExists), errors.Is(err, errInvalid):
		return fmt.Errorf("embedded: %s: %w", op, err)
	}
	return fmt.Errorf("embedded: %s: %w: %w", op, store.ErrUnavailable, err)
}
