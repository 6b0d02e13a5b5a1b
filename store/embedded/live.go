package embedded

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/httvps/httvps/store"
	"github.com/httvps/httvps/store/internal/eventq"
)

// liveCount sums the token's leases on live gateways plus self's, deleting
// the leases of dead gateways. Called with s.mu held.
func (s *Store) liveCount(tokenID, self string, now time.Time) int {
	n := 0
	held := s.leases[tokenID]
	for gw, c := range held {
		if gw == self {
			n += c
			continue
		}
		if g := s.gateways[gw]; g != nil && g.expires.After(now) {
			n += c
		} else {
			delete(held, gw)
		}
	}
	if len(held) == 0 {
		delete(s.leases, tokenID)
	}
	return n
}

// AcquireSession implements store.Store.
func (s *Store) AcquireSession(ctx context.Context, tokenID, gatewayID string, max int) (bool, error) {
	if err := s.check(ctx, "acquire session"); err != nil {
		return false, err
	}
	if gatewayID == "" {
		return false, fmt.Errorf("embedded: acquire session: gateway ID: %w", store.ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if max > 0 && s.liveCount(tokenID, gatewayID, time.Now()) >= max {
		return false, nil
	}
	held := s.leases[tokenID]
	if held == nil {
		held = make(map[string]int)
		s.leases[tokenID] = held
	}
	held[gatewayID]++
	return true, nil
}

// ReleaseSession implements store.Store.
func (s *Store) ReleaseSession(ctx context.Context, tokenID, gatewayID string) error {
	if err := s.check(ctx, "release session"); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	held := s.leases[tokenID]
	if held[gatewayID] > 1 {
		held[gatewayID]--
		return nil
	}
	delete(held, gatewayID)
	if len(held) == 0 {
		delete(s.leases, tokenID)
	}
	return nil
}

// SessionCount implements store.Store.
func (s *Store) SessionCount(ctx context.Context, tokenID string) (int, error) {
	if err := s.check(ctx, "session count"); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.liveCount(tokenID, "", time.Now()), nil
}

// Heartbeat implements store.Store.
func (s *Store) Heartbeat(ctx context.Context, g store.Gateway, ttl time.Duration) error {
	if err := s.check(ctx, "heartbeat"); err != nil {
		return err
	}
	if g.ID == "" || ttl < time.Millisecond {
		return fmt.Errorf("embedded: heartbeat: %w", store.ErrInvalid)
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	g.LastHeartbeat = now.Round(0).UTC()
	g.ExpiresAt = now.Add(ttl).Round(0).UTC()
	g.Live = false
	s.gateways[g.ID] = &gateway{info: g, expires: now.Add(ttl)}
	for id, gw := range s.gateways {
		if now.Sub(gw.expires) > store.DeadGatewayRetention {
			delete(s.gateways, id)
		}
	}
	s.sweepDevices(now)
	return nil
}

// RemoveGateway implements store.Store.
func (s *Store) RemoveGateway(ctx context.Context, id string) error {
	if err := s.check(ctx, "remove gateway"); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gateways[id] == nil {
		return fmt.Errorf("embedded: remove gateway: %w", store.ErrNotFound)
	}
	delete(s.gateways, id)
	return nil
}

// ListGateways implements store.Store.
func (s *Store) ListGateways(ctx context.Context) ([]store.Gateway, error) {
	if err := s.check(ctx, "list gateways"); err != nil {
		return nil, err
	}
	now := time.Now()
	s.mu.Lock()
	out := make([]store.Gateway, 0, len(s.gateways))
	for _, g := range s.gateways {
		if now.Sub(g.expires) > store.DeadGatewayRetention {
			continue
		}
		info := g.info
		info.Live = g.expires.After(now)
		out = append(out, info)
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b store.Gateway) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// Publish implements store.Store.
func (s *Store) Publish(ctx context.Context, e store.Event) error {
	if err := s.check(ctx, "publish"); err != nil {
		return err
	}
	if e.Kind == "" || e.Kind == store.EventResync {
		return fmt.Errorf("embedded: publish: kind: %w", store.ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for q := range s.subs {
		q.Offer(e)
	}
	return nil
}

// Subscribe implements store.Store.
func (s *Store) Subscribe(ctx context.Context) (<-chan store.Event, error) {
	if err := s.check(ctx, "subscribe"); err != nil {
		return nil, err
	}
	q := eventq.New()
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		return nil, fmt.Errorf("embedded: subscribe: %w (closed)", store.ErrUnavailable)
	}
	s.subs[q] = struct{}{}
	s.mu.Unlock()
	context.AfterFunc(ctx, func() {
		s.mu.Lock()
		delete(s.subs, q)
		s.mu.Unlock()
		q.Close()
	})
	return q.C(), nil
}
