package embedded

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/httvps/httvps/store"
)

// maxDeviceLeases caps the device leases held in memory across all
// tokens: far above what a single node serves, it bounds what a confused
// caller can pile up. Past it a new device is refused (AcquireDevice
// false) until leases end.
const maxDeviceLeases = 1 << 20

// devLease is one gateway's lease of a device. Guarded by Store.mu.
type devLease struct {
	first, last time.Time
	sessions    int
	until       time.Time // zero while held; else the end of the grace (process clock)
}

// devLeases is token → device → gateway → lease.
type devLeases map[string]map[string]map[string]*devLease

// liveDevices drops the token's leases that stopped counting (grace over,
// or a gateway other than self whose heartbeat expired) and the devices
// left without one, and returns the token's live devices. Called with s.mu
// held.
func (s *Store) liveDevices(tokenID, self string, now time.Time) map[string]map[string]*devLease {
	devs := s.devices[tokenID]
	for dev, leases := range devs {
		for gw, l := range leases {
			live := false
			switch {
			case !l.until.IsZero():
				live = l.until.After(now)
			case gw == self:
				live = true
			default:
				g := s.gateways[gw]
				live = g != nil && g.expires.After(now)
			}
			if !live {
				delete(leases, gw)
				s.devLeaseN--
			}
		}
		if len(leases) == 0 {
			delete(devs, dev)
		}
	}
	if devs != nil && len(devs) == 0 {
		delete(s.devices, tokenID)
		return nil
	}
	return devs
}

// AcquireDevice implements store.Store.
func (s *Store) AcquireDevice(ctx context.Context, tokenID, device, gatewayID string, sessions, limit int) (bool, error) {
	if err := s.check(ctx, "acquire device"); err != nil {
		return false, err
	}
	if err := store.CheckDevice(tokenID, device, gatewayID); err != nil {
		return false, fmt.Errorf("embedded: acquire device: %w", err)
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	devs := s.liveDevices(tokenID, gatewayID, now)
	leases := devs[device]
	if leases == nil {
		if limit > 0 && len(devs) >= limit {
			return false, nil
		}
		leases = make(map[string]*devLease)
		if devs == nil {
			devs = make(map[string]map[string]*devLease)
			s.devices[tokenID] = devs
		}
		devs[device] = leases
	}
	l := leases[gatewayID]
	if l == nil {
		if s.devLeaseN >= maxDeviceLeases {
			if len(leases) == 0 {
				delete(devs, device)
			}
			return false, nil
		}
		l = &devLease{first: now}
		leases[gatewayID] = l
		s.devLeaseN++
	}
	l.last, l.sessions, l.until = now, max(sessions, 0), time.Time{}
	return true, nil
}

// ReleaseDevice implements store.Store.
func (s *Store) ReleaseDevice(ctx context.Context, tokenID, device, gatewayID string, grace time.Duration) error {
	if err := s.check(ctx, "release device"); err != nil {
		return err
	}
	if err := store.CheckDevice(tokenID, device, gatewayID); err != nil {
		return fmt.Errorf("embedded: release device: %w", err)
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	leases := s.devices[tokenID][device]
	l := leases[gatewayID]
	if l == nil {
		return nil
	}
	if grace > 0 {
		l.last, l.sessions, l.until = now, 0, now.Add(grace)
		return nil
	}
	delete(leases, gatewayID)
	s.devLeaseN--
	s.liveDevices(tokenID, "", now) // drops the device if that was its last lease
	return nil
}

// ListDevices implements store.Store.
func (s *Store) ListDevices(ctx context.Context, tokenID string) ([]store.Device, error) {
	if err := s.check(ctx, "list devices"); err != nil {
		return nil, err
	}
	now := time.Now()
	wall := now.Round(0)
	s.mu.Lock()
	defer s.mu.Unlock()
	devs := s.liveDevices(tokenID, "", now)
	out := make([]store.Device, 0, len(devs))
	for key, leases := range devs {
		d := store.Device{Key: key}
		for gw, l := range leases {
			if d.FirstSeen.IsZero() || l.first.Before(d.FirstSeen) {
				d.FirstSeen = l.first.Round(0).UTC()
			}
			if l.last.After(d.LastSeen) {
				d.LastSeen = l.last.Round(0).UTC()
			}
			dl := store.DeviceLease{GatewayID: gw, Sessions: l.sessions}
			if !l.until.IsZero() {
				// The process clock's remaining grace, as a wall time.
				dl.GraceUntil = wall.Add(l.until.Sub(now)).UTC()
			}
			d.Sessions += l.sessions
			d.Gateways = append(d.Gateways, dl)
		}
		slices.SortFunc(d.Gateways, func(a, b store.DeviceLease) int { return strings.Compare(a.GatewayID, b.GatewayID) })
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b store.Device) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// sweepDevices drops every lease that stopped counting. Called with s.mu
// held (by Heartbeat, every few seconds).
func (s *Store) sweepDevices(now time.Time) {
	for tok := range s.devices {
		s.liveDevices(tok, "", now)
	}
}
