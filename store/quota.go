package store

import "time"

// QuotaLease is a gateway's slice of a token's data quota after a
// LeaseQuota call. A gateway relays a token's bytes only out of the slice
// it holds, so the fleet together never relays more than the quota: the
// store hands out at most what no usage and no live gateway's slice
// covers yet.
type QuotaLease struct {
	// Granted is what this call added to the slice (0 when the quota has
	// nothing left or the call gave back).
	Granted int64
	// Held is the caller's slice after the call: bytes it may relay that
	// are not in Used yet.
	Held int64
	// Used is the token's usage the quota is compared with: that of the
	// period that holds at the call's time.
	Used int64
	// Free is what is left for anyone to lease: quota − Used − the slices
	// of every live gateway (the caller's included); never below 0.
	Free int64
}

// Exhausted reports whether the quota is used up: nothing is left to
// lease and the caller holds nothing. Slices other gateways hold may still
// come back (given back, or their gateway dies) while Used is below the
// quota.
func (l QuotaLease) Exhausted(quota int64) bool {
	return l.Held == 0 && l.Free == 0 && l.Used >= quota
}

// QuotaLeaseTTL is how long a token's quota slices outlive the last
// LeaseQuota call for it, so the slices of a token nobody uses any more
// (deleted, or its gateways gone for good) do not stay in the store.
const QuotaLeaseTTL = time.Hour
