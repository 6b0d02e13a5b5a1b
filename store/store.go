// Package store defines the shared state of HTTVPS: tokens, usage counters,
// session leases, pool members, gateway registrations and the event bus.
// Gateways keep no state of their own; everything they must agree on lives
// behind Store. Two implementations exist: redisstore (a fleet sharing one
// Redis) and embedded (a single node with an on-disk file). Both pass the
// conformance suite in storetest.
package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"slices"
	"time"
)

// Sentinel errors. Implementations wrap them with %w and never put token
// hashes, token secrets or Shadowsocks passwords in error text.
var (
	// ErrNotFound: no such token, member or gateway.
	ErrNotFound = errors.New("store: not found")
	// ErrExists: a token with that ID or hash already exists.
	ErrExists = errors.New("store: already exists")
	// ErrUnavailable: the backend is down, timed out or the Store is closed.
	// Callers fail closed (deny the session, answer 503).
	ErrUnavailable = errors.New("store: unavailable")
	// ErrInvalid: the argument cannot be stored (empty ID, bad field).
	ErrInvalid = errors.New("store: invalid argument")
)

// Defaults and bounds shared by the implementations.
const (
	// DefaultPageSize is used by ListTokens when limit <= 0.
	DefaultPageSize = 100
	// MaxPageSize caps ListTokens' limit.
	MaxPageSize = 1000
	// DeadGatewayRetention is how long a gateway whose heartbeat expired is
	// still returned by ListGateways (with Live false) before it is dropped.
	DeadGatewayRetention = 10 * time.Minute
)

// Token is an access key. The token string itself is shown to the user once
// and never stored: the store keeps Hash = SHA-256(token) (see HashToken).
type Token struct {
	// ID is public and URL-safe (see NewID); it names the token in the
	// admin API, in usage counters and in leases.
	ID    string
	Hash  [sha256.Size]byte
	Label string
	// CreatedAt orders ListTokens. The store sets it when zero on create.
	CreatedAt time.Time
	// ExpiresAt zero means the token never expires.
	ExpiresAt time.Time
	// QuotaBytes limits Usage.Total() of the current period; 0 means
	// unlimited.
	QuotaBytes int64
	// QuotaPeriod (PeriodNone, PeriodDay, PeriodWeek, PeriodMonth) and
	// QuotaAnchor (AnchorCalendar, AnchorCreated) say when the usage the
	// quota is compared with starts again from zero (PeriodBounds).
	QuotaPeriod string
	QuotaAnchor string
	// MaxSessions limits concurrent WebSocket sessions across the fleet
	// (on the Outline paths one per TCP connection or UDP association, on
	// the native path one per tunnel); 0 means unlimited.
	MaxSessions int
	// MaxDevices limits the devices using the token at once across the
	// fleet (see AcquireDevice); 0 means unlimited.
	MaxDevices int
	Revoked    bool
	RevokedAt  time.Time
	// Cipher is the Shadowsocks AEAD method, one of Ciphers.
	Cipher string
	// SSPassword is the per-key Shadowsocks secret that the client encrypts
	// with end to end to the Outline member. It is not the token: the client
	// API must hand it to the client, so it is stored as is.
	SSPassword string
	// Assignments are the members holding this key, in failover order.
	Assignments []Assignment
}

// Limits are the mutable limits of a token (UpdateLimits).
type Limits struct {
	ExpiresAt   time.Time
	QuotaBytes  int64
	QuotaPeriod string
	QuotaAnchor string
	MaxSessions int
	MaxDevices  int
}

// LimitSet names which of a Limits' fields UpdateLimits writes: the others
// keep what the store holds, so two edits of different fields racing each
// other both land. QuotaPeriod and QuotaAnchor go together (only a valid
// pair is stored).
type LimitSet uint8

const (
	LimitExpiry LimitSet = 1 << iota
	LimitQuota
	LimitPeriod // QuotaPeriod and QuotaAnchor
	LimitSessions
	LimitDevices

	AllLimits = LimitExpiry | LimitQuota | LimitPeriod | LimitSessions | LimitDevices
)

// LimitsOf returns t's limits.
func LimitsOf(t Token) Limits {
	return Limits{
		ExpiresAt: t.ExpiresAt, QuotaBytes: t.QuotaBytes,
		QuotaPeriod: t.QuotaPeriod, QuotaAnchor: t.QuotaAnchor,
		MaxSessions: t.MaxSessions, MaxDevices: t.MaxDevices,
	}
}

// Assignment places a token's Shadowsocks key on one pool member.
type Assignment struct {
	MemberID string
	// Upstream is "ip:port" of the Shadowsocks listener on that member for
	// this key (a per-key port with ss-manager, the shared port with
	// Outline).
	Upstream string
	// BackendKeyID is the member's own id for the key (Outline access key
	// id, ss-manager port), used to remove it again.
	BackendKeyID string
}

// Usage is payload bytes relayed for a token: Up is client to upstream,
// Down upstream to client. As GetUsage returns it, it is the usage of the
// period [Since, Until) that was current when it was last written (zero
// times: a token without a period, or one never written); At(now) is
// what counts now. In AddUsage deltas only Up and Down are read.
type Usage struct {
	Up   int64
	Down int64

	Since, Until time.Time
}

// Total is what QuotaBytes is compared with.
func (u Usage) Total() int64 { return u.Up + u.Down }

// Backend kinds of a pool member.
const (
	BackendOutlineAPI = "outline-api"
	BackendSSManager  = "ss-manager"
	BackendStatic     = "static"
)

// Member is a pool member (an Outline / Shadowsocks server).
type Member struct {
	ID   string
	Name string
	// Backend is one of BackendOutlineAPI, BackendSSManager, BackendStatic;
	// the matching config field below is the one that is set.
	Backend string
	// Host is the IP literal gateways dial.
	Host      string
	Outline   *OutlineConfig   `json:",omitempty"`
	SSManager *SSManagerConfig `json:",omitempty"`
	Static    *StaticConfig    `json:",omitempty"`
	// Draining members get no new keys; existing ones keep working.
	Draining bool
	// Health is written only by SetMemberHealth; PutMember keeps the
	// stored value, so the admin API and the health checker never undo
	// each other's writes.
	Health Health
	// CreatedAt is set by the store when zero on the first PutMember.
	CreatedAt time.Time
}

// OutlineConfig reaches an Outline server's Management API.
type OutlineConfig struct {
	// APIURL includes the secret path prefix.
	APIURL string
	// CertSHA256 is the hex SHA-256 of the server's self-signed DER
	// certificate, pinned instead of a CA.
	CertSHA256 string
}

// SSManagerConfig reaches a shadowsocks-libev ss-manager.
type SSManagerConfig struct {
	// ManagerAddr is the UDP "host:port" of ss-manager.
	ManagerAddr string
	// PortMin..PortMax (inclusive) is where per-key ports are allocated.
	PortMin, PortMax int
}

// StaticConfig is a fixed Shadowsocks listener shared by every key placed
// on the member.
type StaticConfig struct {
	Port     int
	Cipher   string
	Password string
}

// Health is the last health check of a member.
type Health struct {
	Up        bool
	CheckedAt time.Time
	LastError string
	// Keys is the number of access keys on the member.
	Keys int
	// Load is a backend-specific load figure (higher is busier).
	Load float64
}

// Gateway is a gateway's registration.
type Gateway struct {
	// ID must be unique per gateway process start (see NewID): a restarted
	// gateway reusing an ID would inherit its predecessor's leases.
	ID        string
	PublicURL string
	Sessions  int
	Started   time.Time
	// Version is the gateway binary's version (internal/version), for the
	// operator's gateway list.
	Version string
	// HandshakesPerSec is the gateway's rate of authentications over its
	// last heartbeat interval, for the operator's gateway list.
	HandshakesPerSec float64
	// The fields below are set by the store and ignored by Heartbeat.
	LastHeartbeat time.Time
	ExpiresAt     time.Time
	// Live is true while the last heartbeat's ttl has not run out.
	Live bool
}

// EventKind says what an Event is about.
type EventKind string

const (
	// EventTokenRevoked: close the token's sessions and forget it (TokenID, Hash).
	EventTokenRevoked EventKind = "token-revoked"
	// EventTokenChanged: assignments or limits changed; drop cached copies (TokenID).
	EventTokenChanged EventKind = "token-changed"
	// EventTokenRotated: the token's secret changed; forget the old one
	// (Hash) and close the token's sessions (TokenID), which were opened
	// with it.
	EventTokenRotated EventKind = "token-rotated"
	// EventQuotaExceeded: the token used its quota; close its sessions (TokenID).
	EventQuotaExceeded EventKind = "quota-exceeded"
	// EventMemberChanged: a member was added, changed, drained or removed (MemberID).
	EventMemberChanged EventKind = "member-changed"
	// EventResync is generated locally by Subscribe, never published: events
	// may have been lost (the subscriber fell behind, or the connection to
	// the backend was re-established), so every cache must be dropped.
	EventResync EventKind = "resync"
)

// Event is a message on the bus. Fields that do not apply to Kind are zero.
type Event struct {
	Kind     EventKind
	TokenID  string
	Hash     [sha256.Size]byte
	MemberID string
}

// Store is the shared state. All methods are safe for concurrent use and
// honour ctx's deadline; backend failures are reported as ErrUnavailable.
// Mutations never publish events themselves: the caller publishes after a
// mutation succeeds (revocation → EventTokenRevoked, and so on).
type Store interface {
	// CreateToken stores t. ErrExists if its ID or Hash is taken; ErrInvalid
	// if ID is empty or Hash is zero. CreatedAt is set when zero.
	CreateToken(ctx context.Context, t Token) error
	// GetToken returns the token with that ID, or ErrNotFound.
	GetToken(ctx context.Context, id string) (Token, error)
	// GetTokenByHash is the gateways' lookup (on a cache miss).
	GetTokenByHash(ctx context.Context, hash [sha256.Size]byte) (Token, error)
	// ListTokens returns up to limit tokens (DefaultPageSize when <= 0,
	// at most MaxPageSize) in creation order, starting after cursor ("" for
	// the first page), and the cursor of the next page ("" when there are no
	// more). Cursors are opaque and stay valid when tokens are added or
	// deleted.
	ListTokens(ctx context.Context, cursor string, limit int) ([]Token, string, error)
	// RevokeToken marks the token revoked and returns it. Revoking twice
	// keeps the first RevokedAt. ErrNotFound if there is no such token.
	RevokeToken(ctx context.Context, id string) (Token, error)
	// UpdateAssignments replaces the token's assignments.
	UpdateAssignments(ctx context.Context, id string, a []Assignment) error
	// UpdateLimits replaces the fields of the token's limits that which
	// names, in one atomic write, and leaves the others as they are
	// (ErrInvalid for a period ValidPeriod refuses). A new period keeps
	// the usage counted so far in the current one until that one ends.
	UpdateLimits(ctx context.Context, id string, l Limits, which LimitSet) error
	// UpdateLabel replaces the token's label.
	UpdateLabel(ctx context.Context, id, label string) error
	// RotateToken gives the token a new hash and returns it as it was
	// before (with the old Hash). In one atomic step the old hash stops
	// finding it and the new one starts to; ErrExists if the new hash is
	// another token's, ErrInvalid if it is zero.
	RotateToken(ctx context.Context, id string, hash [sha256.Size]byte) (Token, error)
	// DeleteToken removes the token, its usage and its leases (sessions
	// and devices).
	DeleteToken(ctx context.Context, id string) error

	// AddUsage atomically adds each delta to its token's counters, as
	// relayed at the caller's time at: to the period that holds at (a
	// period that ended is moved to the past periods first), to the hour
	// and day buckets of at of the token and of the fleet. Deltas for
	// tokens that do not exist (deleted meanwhile) are dropped silently.
	AddUsage(ctx context.Context, at time.Time, deltas map[string]Usage) error
	// GetUsage returns the token's counters; ErrNotFound if no such token.
	GetUsage(ctx context.Context, id string) (Usage, error)
	// GetUsages returns counters of the given tokens that exist.
	GetUsages(ctx context.Context, ids []string) (map[string]Usage, error)
	// ResetUsage zeroes the usage of the token's period that holds at (a
	// period that ended is moved to the past periods first). History is
	// kept. ErrNotFound if no such token.
	ResetUsage(ctx context.Context, id string, at time.Time) error
	// PastPeriods returns the token's ended periods, newest first, at most
	// MaxPastPeriods. ErrNotFound if no such token.
	PastPeriods(ctx context.Context, id string) ([]PeriodUsage, error)
	// UsageHistory returns the buckets of the token (id "" for the fleet)
	// in [from, to) by step (StepHour or StepDay), aligned and checked by
	// HistoryRange (ErrInvalid), one per step, zero where nothing was
	// relayed or the bucket is past its retention. ErrNotFound for an
	// unknown token.
	UsageHistory(ctx context.Context, id string, from, to time.Time, step time.Duration) ([]Bucket, error)

	// AcquireSession atomically counts the token's sessions on live
	// gateways (plus gatewayID's own, live or not yet) and, if the count is
	// below max (max <= 0: unlimited), takes one lease for gatewayID and
	// returns true. Leases of gateways whose heartbeat expired do not count
	// and are purged lazily.
	AcquireSession(ctx context.Context, tokenID, gatewayID string, max int) (bool, error)
	// ReleaseSession gives back one lease of gatewayID (never below zero).
	ReleaseSession(ctx context.Context, tokenID, gatewayID string) error
	// SessionCount is the token's leases on live gateways.
	SessionCount(ctx context.Context, tokenID string) (int, error)

	// AcquireDevice atomically counts the token's live devices (see
	// Device) and, if device is one of them or their number is below max
	// (max <= 0: unlimited), makes gatewayID's lease of device live with
	// sessions as its session count, and returns true. A gateway calls it
	// when a device starts its first session there (and again to report
	// its session count); device is at most MaxDeviceKey bytes
	// (ErrInvalid beyond).
	AcquireDevice(ctx context.Context, tokenID, device, gatewayID string, sessions, max int) (bool, error)
	// ReleaseDevice ends gatewayID's lease of device (its last session
	// there ended): the lease keeps counting for grace, then stops.
	ReleaseDevice(ctx context.Context, tokenID, device, gatewayID string, grace time.Duration) error
	// ListDevices returns the token's live devices, ordered by Key.
	ListDevices(ctx context.Context, tokenID string) ([]Device, error)

	// LeaseQuota moves gatewayID's slice of the token's data quota (see
	// QuotaLease), in one atomic step: first the slice shrinks by consumed
	// (bytes the gateway has since added with AddUsage), then by -delta if
	// delta < 0 (given back), or it grows by up to delta: by what quota
	// leaves after the token's usage and the slices of every live gateway
	// (slices of gateways whose heartbeat expired do not count and are
	// purged lazily). A slice never goes below 0. The usage is that of
	// the token's period that holds at (Usage.At), so a period that ended
	// leases from zero again. quota is the caller's view of the token's
	// quota (> 0). ErrNotFound if there is no such token; ErrInvalid for an
	// empty gatewayID or quota <= 0.
	LeaseQuota(ctx context.Context, tokenID, gatewayID string, at time.Time, quota, consumed, delta int64) (QuotaLease, error)

	// PutMember creates or replaces a member, keeping its stored Health and
	// CreatedAt. ErrInvalid if ID is empty.
	PutMember(ctx context.Context, m Member) error
	// GetMember returns a member or ErrNotFound.
	GetMember(ctx context.Context, id string) (Member, error)
	// ListMembers returns every member ordered by ID.
	ListMembers(ctx context.Context) ([]Member, error)
	// DeleteMember removes a member (ErrNotFound if absent).
	DeleteMember(ctx context.Context, id string) error
	// SetMemberHealth records a health check (ErrNotFound if absent).
	SetMemberHealth(ctx context.Context, id string, h Health) error

	// Heartbeat registers or refreshes a gateway; it stays live for ttl.
	Heartbeat(ctx context.Context, g Gateway, ttl time.Duration) error
	// RemoveGateway deregisters a gateway at clean shutdown; its leases stop
	// counting at once. ErrNotFound if it is not registered.
	RemoveGateway(ctx context.Context, id string) error
	// ListGateways returns live gateways and, flagged Live false, those
	// dead for less than DeadGatewayRetention, ordered by ID.
	ListGateways(ctx context.Context) ([]Gateway, error)

	// Publish sends e to every subscriber of every process sharing the store.
	Publish(ctx context.Context, e Event) error
	// Subscribe delivers published events until ctx ends, then closes the
	// channel. A subscriber that falls behind loses events and later
	// receives EventResync; so does one whose backend connection was
	// re-established. Delivery never blocks publishers.
	Subscribe(ctx context.Context) (<-chan Event, error)

	// InstallationID returns the installation's ID: a random NewID
	// created by the first call on an empty store and the same for every
	// process sharing the store from then on (two processes creating it
	// at once agree on one). It survives restarts of the store like the
	// tokens do. The pool marks the Outline keys it creates with it, so
	// installations with separate stores sharing one server tell their
	// keys apart.
	InstallationID(ctx context.Context) (string, error)

	// Files shared by every process of the installation (the ACME
	// account, certificates and challenge data): a flat space of keys
	// (at most MaxBlobKey bytes) holding small values (at most
	// MaxBlobSize bytes; ErrInvalid beyond either).
	//
	// PutBlob creates or replaces key's value and sets its Modified time.
	PutBlob(ctx context.Context, key string, value []byte) error
	// GetBlob returns key's value, or ErrNotFound.
	GetBlob(ctx context.Context, key string) (Blob, error)
	// DeleteBlob removes key and, as a directory, every key under
	// key + "/" ("acme/b" takes "acme/b/c" but not "acme/bc"). Missing
	// keys are not an error; an empty key is ErrInvalid.
	DeleteBlob(ctx context.Context, key string) error
	// ListBlobs returns every key that starts with prefix, sorted.
	ListBlobs(ctx context.Context, prefix string) ([]string, error)

	// TryLock takes the named lock for owner until ttl passes, and
	// reports whether it did: a lock that is free, expired or already
	// owner's (which extends it) is taken. Unlock frees it if owner holds
	// it. Locks coordinate slow jobs between processes (one ACME order
	// per name across a fleet); a process that dies holding one frees it
	// when its ttl passes.
	TryLock(ctx context.Context, name, owner string, ttl time.Duration) (bool, error)
	Unlock(ctx context.Context, name, owner string) error

	// Ping checks that the backend answers (readiness probes).
	Ping(ctx context.Context) error
	// Close releases the store. Subscriptions end and later calls return
	// ErrUnavailable.
	Close() error
}

// Device is one device of a token as the store counts it: a client
// address (on the Outline paths, and on the native tunnel without a device
// id) or a device id the native client sent. It is live while a gateway
// whose heartbeat has not expired holds a lease of it, or within the grace
// after its last lease was released. Leases of a dead gateway stop
// counting when its heartbeat expires.
type Device struct {
	// Key is the address ("192.0.2.7"; IPv6 by /64: "2001:db8:1:2::/64")
	// or the device id (never contains '.' or ':').
	Key string
	// FirstSeen is the oldest live lease's start, LastSeen the latest
	// acquire or release on any gateway.
	FirstSeen, LastSeen time.Time
	// Gateways holds the device's live leases, ordered by gateway ID.
	Gateways []DeviceLease
	// Sessions is the sum of the leases' session counts.
	Sessions int
}

// DeviceLease is one gateway's lease of a device.
type DeviceLease struct {
	GatewayID string
	// Sessions is the count the gateway last reported (0 in the grace).
	Sessions int
	// GraceUntil is zero while the gateway holds sessions of the device,
	// else when the lease stops counting.
	GraceUntil time.Time
}

// MaxDeviceKey bounds Device.Key: an IPv6 /64 is at most 24 bytes, a
// native device id at most 64.
const MaxDeviceKey = 64

// CheckDevice is the argument check both implementations share: a key of
// 1..MaxDeviceKey bytes without spaces or control characters.
func CheckDevice(tokenID, device, gatewayID string) error {
	if tokenID == "" || gatewayID == "" || device == "" || len(device) > MaxDeviceKey {
		return ErrInvalid
	}
	for i := 0; i < len(device); i++ {
		if device[i] <= ' ' || device[i] >= 0x7f {
			return ErrInvalid
		}
	}
	return nil
}

// Blob is one shared file (Store.GetBlob).
type Blob struct {
	Value    []byte
	Modified time.Time
}

// Bounds of the shared files: ACME keys and certificate chains are a few
// KiB; the bound keeps a confused caller from filling Redis.
const (
	MaxBlobKey  = 1024
	MaxBlobSize = 1 << 20
)

// CheckBlob is the argument check both implementations share.
func CheckBlob(key string, size int) error {
	if key == "" || len(key) > MaxBlobKey || size > MaxBlobSize {
		return ErrInvalid
	}
	return nil
}

// HashToken is the Hash stored for a token string.
func HashToken(token string) [sha256.Size]byte {
	return HashTokenBytes([]byte(token))
}

// HashTokenBytes is HashToken for a token held as bytes (a gateway has the
// path segment), without a copy to a string.
func HashTokenBytes(token []byte) [sha256.Size]byte {
	return sha256.Sum256(token)
}

// NewID returns a random public, URL-safe identifier (128 bits).
func NewID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand panics instead)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Ciphers are the Shadowsocks AEAD methods the project supports: the ones
// Outline accepts, the client and every pool backend speak. The first is
// the default.
var Ciphers = []string{"chacha20-ietf-poly1305", "aes-128-gcm", "aes-192-gcm", "aes-256-gcm"}

// DefaultCipher is a token's method when its request names none.
const DefaultCipher = "chacha20-ietf-poly1305"

// ValidCipher reports whether method is one of Ciphers.
func ValidCipher(method string) bool { return slices.Contains(Ciphers, method) }
