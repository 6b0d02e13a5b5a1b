package embedded

import (
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/httvps/httvps/store"
)

// quotaUsed is the token's usage that its quota is compared with at: that
// of its current period, none once the period ended (store.Usage.At); or
// false if there is no such token. It is the one place that says so for
// LeaseQuota.
func quotaUsed(tx *bolt.Tx, id string, at time.Time) (int64, bool) {
	if tx.Bucket(bucketTokens).Get([]byte(id)) == nil {
		return 0, false
	}
	return decodeUsage(tx.Bucket(bucketUsage).Get([]byte(id))).At(at).Total(), true
}

// LeaseQuota implements store.Store. Slices live in memory with the
// session leases: they describe the running process.
func (s *Store) LeaseQuota(ctx context.Context, tokenID, gatewayID string, at time.Time, quota, consumed, delta int64) (store.QuotaLease, error) {
	if err := s.check(ctx, "lease quota"); err != nil {
		return store.QuotaLease{}, err
	}
	if gatewayID == "" || quota <= 0 || consumed < 0 {
		return store.QuotaLease{}, fmt.Errorf("embedded: lease quota: %w", store.ErrInvalid)
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var used int64
	var ok bool
	err := s.db.View(func(tx *bolt.Tx) error {
		used, ok = quotaUsed(tx, tokenID, at)
		return nil
	})
	if err != nil {
		return store.QuotaLease{}, wrap("lease quota", err)
	}
	held := s.slices[tokenID]
	if !ok {
		delete(s.slices, tokenID)
		return store.QuotaLease{}, fmt.Errorf("embedded: lease quota: %w", store.ErrNotFound)
	}
	mine := max(0, held[gatewayID]-consumed)
	var others int64
	for gw, n := range held {
		if gw == gatewayID {
			continue
		}
		if g := s.gateways[gw]; g != nil && g.expires.After(now) {
			others += n
		} else {
			delete(held, gw)
		}
	}
	var granted int64
	switch {
	case delta < 0:
		mine = max(0, mine+delta)
	case delta > 0:
		granted = max(0, min(delta, quota-used-others-mine))
		mine += granted
	}
	if mine > 0 {
		if held == nil {
			if s.slices == nil {
				s.slices = make(map[string]map[string]int64)
			}
			held = make(map[string]int64)
			s.slices[tokenID] = held
		}
		held[gatewayID] = mine
	} else {
		delete(held, gatewayID)
	}
	if len(held) == 0 {
		delete(s.slices, tokenID)
	}
	return store.QuotaLease{Granted: granted, Held: mine, Used: used, Free: max(0, quota-used-others-mine)}, nil
}
