package embedded

import (
	"context"
	"errors"
	"fmt"
	"io"

	bolt "go.etcd.io/bbolt"
)

// ErrNotStore reports a file that is not an embedded store (not bbolt, or
// without the store's buckets).
var ErrNotStore = errors.New("embedded: not an httvps store file")

// WriteSnapshot writes a consistent copy of the whole file to w, as of one
// moment, while the store keeps serving: one bbolt read transaction
// (Tx.WriteTo). Writers go on meanwhile, but a read transaction keeps
// bbolt from remapping a growing file, so write w somewhere fast (a local
// file) rather than to a slow network peer. The copy is a store file that
// Open takes as it is.
func (s *Store) WriteSnapshot(ctx context.Context, w io.Writer) (int64, error) {
	if err := s.check(ctx, "snapshot"); err != nil {
		return 0, err
	}
	var n int64
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("embedded: snapshot: %w", err)
	}
	return n, nil
}

// Summary is what a store file holds, as Inspect counts it.
type Summary struct {
	Tokens, Members, Usage int // records in each bucket
	InstallationID         string
}

// Inspect opens the store file at path read-only (waiting at most
// lockTimeout for a process that holds it), checks every page's
// consistency (bbolt's Tx.Check) and that the store's buckets are there,
// and counts its records. It never writes.
func Inspect(path string) (Summary, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: lockTimeout})
	if errors.Is(err, bolt.ErrTimeout) {
		return Summary{}, fmt.Errorf("embedded: inspect %s: held by a running process: %w", path, err)
	}
	if err != nil {
		return Summary{}, fmt.Errorf("embedded: inspect %s: %w: %w", path, ErrNotStore, err)
	}
	defer db.Close()
	var sum Summary
	err = db.View(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketTokens, bucketTokHash, bucketOrder, bucketUsage, bucketMembers, bucketMeta, bucketBlobs} {
			if tx.Bucket(b) == nil {
				return fmt.Errorf("%w: no %q bucket", ErrNotStore, b)
			}
		}
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("inconsistent file: %w", err)
		}
		sum.Tokens = tx.Bucket(bucketTokens).Stats().KeyN
		sum.Members = tx.Bucket(bucketMembers).Stats().KeyN
		sum.Usage = tx.Bucket(bucketUsage).Stats().KeyN
		sum.InstallationID = string(tx.Bucket(bucketMeta).Get(keyInstallationID))
		return nil
	})
	if err != nil {
		return Summary{}, fmt.Errorf("embedded: inspect %s: %w", path, err)
	}
	return sum, nil
}

// SnapshotFile writes a consistent copy of the store file at path, which
// no process may hold (a stopped node's), to w. A file a running process
// holds is reported after lockTimeout; take the copy through that process
// then (WriteSnapshot).
func SnapshotFile(path string, w io.Writer) (int64, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: lockTimeout})
	if errors.Is(err, bolt.ErrTimeout) {
		return 0, fmt.Errorf("embedded: snapshot %s: held by a running process (waited %v): %w", path, lockTimeout, err)
	}
	if err != nil {
		return 0, fmt.Errorf("embedded: snapshot %s: %w", path, err)
	}
	defer db.Close()
	var n int64
	err = db.View(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("embedded: snapshot %s: %w", path, err)
	}
	return n, nil
}
