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
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/httvps/httvps/store"
)

// ErrNoMembers: no healthy, non-draining member can take a key.
var ErrNoMembers = errors.New("pool: no healthy member")

// Defaults for Config's zero values.
const (
	DefaultReplicas    = 2
	DefaultHealthEvery = 10 * time.Second
	DefaultDialTimeout = 3 * time.Second
	DefaultStrayGrace  = 2 * time.Minute
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
	// StrayGrace is how long a key httvps created must be seen, by the
	// health rounds, on a member with no stored assignment naming it
	// before a round deletes it (0 → DefaultStrayGrace if SingleProcess,
	// else the sweep is off; negative: stray keys are never deleted).
	// Keep it well above the time between creating a key and storing its
	// assignment (the control API's StoreTimeout) and above HealthEvery.
	StrayGrace time.Duration
	// SingleProcess says this Manager is the only one over its store (an
	// embedded store file, which one process holds at a time): the
	// in-process guards of the stray-key sweep then cover every placement,
	// and the sweep is on by default. The zero value (false) is for a
	// store several control-plane processes may share (Redis): a key
	// another process has created but not yet stored looks stray to this
	// one, so the sweep runs only with an explicit StrayGrace > 0
	// (docs/05-outline-pool.md, stray-key sweep).
	SingleProcess bool
	// Logger receives operational logs (nil → slog.Default()).
	Logger *slog.Logger
	// HTTPTransport, if set, is cloned as the base transport for Outline
	// API calls; its TLSClientConfig is replaced by the member's
	// certificate pin. nil → a transport per member with DialTimeout.
	HTTPTransport *http.Transport
}

func (c Config) withDefaults() Config {
	if c.Replicas <= 0 {
		c.Replicas = DefaultReplicas
	}
	if c.HealthEvery <= 0 {
		c.HealthEvery = DefaultHealthEvery
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.StrayGrace == 0 {
		c.StrayGrace = -1
		if c.SingleProcess {
			c.StrayGrace = DefaultStrayGrace
		}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Manager runs the pool over the shared store. Its methods are safe for
// concurrent use. Several control-plane processes may run Managers over the
// same store; each checks health (writes are idempotent).
type Manager struct {
	st  store.Store
	cfg Config
	log *slog.Logger

	mu sync.Mutex
	// backends caches one Backend per member, rebuilt when the member's
	// configuration changes. Guarded by mu.
	backends map[string]*memberBackend
	// placed counts keys placed per member since its last health check,
	// so a burst of PlaceKey calls spreads out. Guarded by mu.
	placed map[string]int
	// orphans are backend key ids whose deletion failed, retried on each
	// health round while the member is up. Guarded by mu.
	// By member ID and backend key id, with the key's secret fingerprint
	// (secretFP; "" unknown). Guarded by mu.
	orphans map[string]map[string]string
	// strays are the servers' own keys that health rounds found with no
	// stored assignment, by server (serverKey: two member entries for one
	// server share them) and backend key id. Guarded by mu.
	strays map[string]map[string]sighting
	// creating counts CreateKey calls in flight per server (serverKey).
	// Guarded by mu.
	creating map[string]int
	// installID is the store's installation ID as first read; a round
	// that reads another one (the store lost its data) sets
	// installChanged, which stops the sweep for good. Guarded by mu.
	installID      string
	installChanged bool
	// transfer is the last polled byte total per member. Guarded by mu.
	transfer map[string]int64
	// mark is the installation's mark for Outline key names, read from
	// the store on first need (installMark); "" until then. Guarded by mu.
	mark string
	// repairs counts keys re-created by health rounds.
	repairs atomic.Uint64
	// swept counts stray keys deleted by health rounds.
	swept atomic.Uint64
	// members is each member as its last check saw it, for Stats.
	// Guarded by mu.
	members map[string]memberStat
	// checksUp and checksDown count member checks by result.
	checksUp, checksDown atomic.Uint64
	// keyErrors counts failed CreateKey and DeleteKey calls by backend
	// kind (index in Backends) and operation (opCreate, opDelete).
	keyErrors [3][2]atomic.Uint64
}

type memberBackend struct {
	conf store.Member // the fields that built b (Health, Draining zeroed)
	b    Backend
}

// New returns a Manager over st. Call Run to start health checks.
func New(st store.Store, cfg Config) *Manager {
	cfg = cfg.withDefaults()
	return &Manager{
		st:       st,
		cfg:      cfg,
		log:      cfg.Logger,
		backends: map[string]*memberBackend{},
		placed:   map[string]int{},
		orphans:  map[string]map[string]string{},
		strays:   map[string]map[string]sighting{},
		creating: map[string]int{},
		transfer: map[string]int64{},
		members:  map[string]memberStat{},
	}
}

// installMarkLen is how much of the installation ID marks key names:
// 48 bits, enough to tell installations sharing a server apart, short
// enough to read in the Outline Manager.
const installMarkLen = 8

// installMark returns the installation's mark for the names of the
// Outline keys this Manager creates and sweeps: the start of the store's
// InstallationID, read once and kept (it never changes).
func (m *Manager) installMark(ctx context.Context) (string, error) {
	m.mu.Lock()
	mark := m.mark
	m.mu.Unlock()
	if mark != "" {
		return mark, nil
	}
	id, err := m.st.InstallationID(ctx)
	if err != nil {
		return "", fmt.Errorf("pool: reading the installation ID: %w", err)
	}
	if id == "" {
		return "", fmt.Errorf("pool: the store's installation ID is empty: %w", store.ErrInvalid)
	}
	mark = id[:min(len(id), installMarkLen)]
	m.mu.Lock()
	if m.mark == "" {
		m.mark = mark
	}
	if m.installID == "" {
		m.installID = id
	}
	mark = m.mark
	m.mu.Unlock()
	return mark, nil
}

// checkInstallation reads the store's installation ID again (each round):
// if it is not the one this Manager first read, the store has lost its
// data (Redis restarted without persistence, evicted keys, failed over to
// an empty replica) and made a new one. Every key this Manager created
// would then look stray, so the sweep stops for good, with a warning; a
// restarted Manager uses the new ID. It reports whether the sweep may
// run this round.
func (m *Manager) checkInstallation(ctx context.Context) bool {
	id, err := m.st.InstallationID(ctx)
	if err != nil || id == "" {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.installID == "" {
		m.installID = id
	}
	if m.installID != id && !m.installChanged {
		m.installChanged = true
		m.log.Warn("pool: the store's installation ID changed (the store lost its data?); stray-key sweep stopped until restart",
			"was", m.installID[:min(len(m.installID), installMarkLen)], "now", id[:min(len(id), installMarkLen)])
	}
	return !m.installChanged
}

// backend returns the cached Backend of mem, building it on first use or
// when its configuration changed. Building an Outline backend reads the
// installation's mark from the store once per Manager.
func (m *Manager) backend(ctx context.Context, mem store.Member) (Backend, error) {
	conf := mem
	conf.Health, conf.Draining, conf.Name, conf.CreatedAt = store.Health{}, false, "", time.Time{}
	cached := func() (Backend, bool) {
		if mb, ok := m.backends[mem.ID]; ok && reflect.DeepEqual(mb.conf, conf) {
			return mb.b, true
		}
		return nil, false
	}
	m.mu.Lock()
	b, ok := cached()
	m.mu.Unlock()
	if ok {
		return b, nil
	}
	var mark string
	if conf.Backend == store.BackendOutlineAPI {
		var err error
		if mark, err = m.installMark(ctx); err != nil {
			return nil, err
		}
	}
	b, err := newBackend(conf, m.cfg, mark)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if cb, ok := cached(); ok { // built by another goroutine meanwhile
		return cb, nil
	}
	m.backends[mem.ID] = &memberBackend{conf: conf, b: b}
	return b, nil
}

// forget drops everything held for a removed member.
func (m *Manager) forget(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.backends, id)
	delete(m.placed, id)
	delete(m.orphans, id)
	delete(m.transfer, id)
	delete(m.members, id)
}

func (m *Manager) publish(ctx context.Context, e store.Event) {
	if err := m.st.Publish(ctx, e); err != nil {
		m.log.Warn("pool: publish", "kind", e.Kind, "member", e.MemberID, "token", e.TokenID, "err", err)
	}
}

// AddMember validates mem (errors wrap store.ErrInvalid), assigns an ID when
// empty (store.ErrExists if the given ID is taken), checks the backend once,
// stores the member with that health and publishes EventMemberChanged. An
// unreachable member is still added, marked down with the reason in
// Health.LastError, so an operator can add a server before it is up; the
// health loop brings it up later.
func (m *Manager) AddMember(ctx context.Context, mem store.Member) (store.Member, error) {
	mem, err := ValidateMember(mem)
	if err != nil {
		return store.Member{}, err
	}
	if mem.ID == "" {
		mem.ID = store.NewID()
	} else if _, err := m.st.GetMember(ctx, mem.ID); err == nil {
		return store.Member{}, fmt.Errorf("%w: member %q", store.ErrExists, mem.ID)
	} else if !errors.Is(err, store.ErrNotFound) {
		return store.Member{}, err
	}
	if mem.Name == "" {
		mem.Name = mem.ID
	}
	b, err := m.backend(ctx, mem)
	if err != nil {
		return store.Member{}, err
	}
	h := m.check(ctx, b)
	if err := m.st.PutMember(ctx, mem); err != nil {
		m.forget(mem.ID)
		return store.Member{}, err
	}
	if err := m.st.SetMemberHealth(ctx, mem.ID, h); err != nil {
		return store.Member{}, err
	}
	m.publish(ctx, store.Event{Kind: store.EventMemberChanged, MemberID: mem.ID})
	m.log.Info("pool: member added", "member", mem.ID, "backend", mem.Backend, "up", h.Up, "err", h.LastError)
	return m.st.GetMember(ctx, mem.ID)
}

// Transfer returns the last polled byte totals per member ID (the sum over
// the member's keys as its backend counts them; static members report 0).
// It is informational: gateways account usage.
func (m *Manager) Transfer() map[string]int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]int64, len(m.transfer))
	for k, v := range m.transfer {
		out[k] = v
	}
	return out
}
