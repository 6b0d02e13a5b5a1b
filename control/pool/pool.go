// Package pool manages the Outline / Shadowsocks servers that gateways
// forward to: it places each token's Shadowsocks key on Replicas healthy
// members with the same secret, checks members' health, drains and removes
// them, and polls their transfer counters. Members are reached through a
// Backend: the Outline Management API, shadowsocks-libev ss-manager, or a
// static listener from configuration. docs/05-outline-pool.md has the design.
package pool

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/httvps/httvps/control/store"
)

// ErrNoMembers: no healthy, non-draining member can take a key.
var ErrNoMembers = errors.New("pool: no healthy member")

// Defaults for Config's zero values.
const (
	DefaultReplicas    = 2
	DefaultHealthEvery = 10 * time.Second
	DefaultDialTimeout = 3 * time.Second
)

// Config tunes a Manager. Zero values pick the defaults.
type Config struct {
	// Replicas is how many members hold each key (0 → DefaultReplicas).
	Replicas int
	// HealthEvery is the period of health checks and transfer polling
	// (0 → DefaultHealthEvery).
	HealthEvery time.Duration
	// DialTimeout bounds each backend call and TCP probe (0 → DefaultDialTimeout).
	DialTimeout time.Duration
	// Logger receives operational logs (nil → slog.Default()).
	Logger *slog.Logger
	// HTTPTransport, if set, is the base transport for Outline API calls;
	// its TLSClientConfig is replaced by the member's certificate pin.
	// nil → a fresh transport per member.
	HTTPTransport *http.Transport
}

// Manager runs the pool. Its methods are safe for concurrent use.
type Manager struct {
	st  store.Store
	cfg Config
	log *slog.Logger
}

// New returns a Manager over st. Call Run to start health checks.
func New(st store.Store, cfg Config) *Manager {
	if cfg.Replicas <= 0 {
		cfg.Replicas = DefaultReplicas
	}
	if cfg.HealthEvery <= 0 {
		cfg.HealthEvery = DefaultHealthEvery
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Manager{st: st, cfg: cfg, log: cfg.Logger}
}

var errTODO = errors.New("pool: not implemented yet")

// Run checks every member's health and polls transfer counters every
// HealthEvery until ctx ends.
func (m *Manager) Run(ctx context.Context) { <-ctx.Done() }

// AddMember validates mem, assigns an ID when empty, checks it once, stores
// it and publishes store.EventMemberChanged.
func (m *Manager) AddMember(ctx context.Context, mem store.Member) (store.Member, error) {
	return store.Member{}, errTODO
}

// DrainMember marks the member draining and moves its keys to other members.
func (m *Manager) DrainMember(ctx context.Context, id string) error { return errTODO }

// RemoveMember drains the member, then deletes it.
func (m *Manager) RemoveMember(ctx context.Context, id string) error { return errTODO }

// PlaceKey creates t's key on Replicas members and returns the assignments.
func (m *Manager) PlaceKey(ctx context.Context, t store.Token) ([]store.Assignment, error) {
	return nil, errTODO
}

// RemoveKey deletes t's key from every assigned member (best effort).
func (m *Manager) RemoveKey(ctx context.Context, t store.Token) error { return errTODO }

// Transfer returns the last polled bytes per member ID.
func (m *Manager) Transfer() map[string]int64 { return nil }
