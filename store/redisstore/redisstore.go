// Package redisstore is the store.Store that a fleet of gateways and control
// planes share through one Redis (go-redis v9). Multi-key updates run as Lua
// scripts (EVALSHA, falling back to EVAL after a Redis restart), so every
// operation is atomic; clocks that decide gateway liveness are Redis's own
// (TIME), so gateways with skewed clocks still agree.
//
// Key layout (P is the prefix, "httvps:" by default):
//
//	P tok:<id>         hash   one token: id, hash (hex), label, created,
//	                          expires, quota, period, anchor, cday (creation
//	                          day, days since 1970), maxsess, maxdev, revoked,
//	                          revoked_at, cipher, sspw, assign (JSON), cur
//	                          (order member)
//	P tok-hash         hash   hex(SHA-256 of token) → id (gateway lookups)
//	P tok-order        zset   all scores 0; member "<created>:<id>", created
//	                          as 24 hex digits, so ZRANGEBYLEX pages in
//	                          creation order; the member is the list cursor
//	P usage:<id>       hash   up, down: HINCRBY counters of the period
//	                          [ps, pe) (unix s; 0, 0 without a period)
//	P upast:<id>       hash   ended periods: ps → "ps pe up down", at most
//	                          store.MaxPastPeriods
//	P uh:<id>:<YYYYMMDD> hash hour buckets "<HH>u", "<HH>d" of a UTC day,
//	                          EXPIREAT the day's end + 90 days
//	P ud:<id>:<YYYYMM> hash   day buckets "<DD>u", "<DD>d" of a month,
//	                          EXPIREAT the month's end + 2 years
//	P fh:<YYYYMMDD>, P fd:<YYYYMM>  the same for the whole fleet
//	P usage-seq:<c>    string the last usage batch client c applied (a
//	                          random c per client), expiring a day later
//	P lease:<id>       hash   gatewayID → sessions held on that gateway
//	P dev:<id>         hash   device → JSON {gatewayID: {f, l, s, u}}: each
//	                          gateway's lease of the device (first, last
//	                          seen, sessions, grace-until, Redis ms); expires
//	                          a day after its last write (devices.go)
//	P gw-live          zset   gatewayID → heartbeat expiry (Redis ms); dead
//	                          entries are trimmed after the retention period
//	P gw:<id>          hash   url, sessions, started, hb, exp; expires with
//	                          the registration plus the retention period
//	P members          hash   memberID → member JSON (no health, no created)
//	P member-created   hash   memberID → creation time (HSETNX)
//	P member-health    hash   memberID → health JSON
//	P install-id       string the installation ID (SET NX: the first wins)
//	P events           pub/sub channel of JSON events
//
//	P blob:<key>       hash   a shared file (PutBlob): v, t (blobs.go)
//	P blob-keys        zset   every blob key, for prefix listing
//	P lock:<name>      string a TryLock lock: its owner, expiring by PX
//
// Times are stored as "<unix seconds>.<nanoseconds>", zero as "".
package redisstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/httvps/httvps/store"
)

// DefaultPrefix starts every key.
const DefaultPrefix = "httvps:"

// DefaultTimeout bounds dialling, each read and each write; a whole call
// (with its one retry) is bounded by twice the timeout, so a dead or frozen
// Redis is reported as store.ErrUnavailable within about two seconds.
const DefaultTimeout = time.Second

type config struct {
	prefix  string
	timeout time.Duration
	tls     *tls.Config
}

// Option adjusts New.
type Option func(*config)

// WithPrefix sets the key prefix (DefaultPrefix when empty), so that several
// installations can share one Redis.
func WithPrefix(p string) Option { return func(c *config) { c.prefix = p } }

// WithTimeout sets the dial, read and write timeouts (DefaultTimeout when
// <= 0).
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WithTLS replaces the TLS configuration of a rediss:// URL (for a private
// CA or client certificates).
func WithTLS(cfg *tls.Config) Option { return func(c *config) { c.tls = cfg } }

// Store is a store.Store on Redis.
type Store struct {
	rdb       *redis.Client // through Sentinel: a failover client, same type
	prefix    string
	opTimeout time.Duration // bound of one call

	// waitReplica makes AddUsage wait, at most replicaWait, until a
	// replica has its writes (Sentinel only; see AddUsage).
	waitReplica bool
	replicaWait time.Duration

	// AddUsage's record of what it sent. Guarded by usageMu.
	usageMu     sync.Mutex
	usageSeq    int64            // the last batch's number
	usageSeqKey string           // P usage-seq:<random>, this client's
	usageDoubt  []usageBatchSent // batches a failed call sent, or may have

	// closed ends subscriptions when Close is called.
	closed    context.Context
	closeOnce sync.Once
	cancel    context.CancelFunc
}

var _ store.Store = (*Store)(nil)

// New connects to url (see CheckURL for the forms: redis://, rediss://,
// unix:// and redis+sentinel://) and checks that Redis answers. The client
// reconnects by itself when Redis comes back after an outage; through
// Sentinel it reconnects to whichever replica was promoted.
func New(ctx context.Context, url string, opts ...Option) (*Store, error) {
	c := config{prefix: DefaultPrefix, timeout: DefaultTimeout}
	for _, o := range opts {
		o(&c)
	}
	if c.prefix == "" {
		c.prefix = DefaultPrefix
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	ro, fo, err := parseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redisstore: bad URL: %w: %w", store.ErrInvalid, err)
	}
	s := &Store{prefix: c.prefix, opTimeout: 2 * c.timeout}
	s.usageSeqKey = s.key("usage-seq:", store.NewID())
	if fo != nil {
		fo.DialTimeout = c.timeout
		fo.ReadTimeout = c.timeout
		fo.WriteTimeout = c.timeout
		fo.PoolTimeout = c.timeout
		fo.ContextTimeoutEnabled = true
		fo.MaxRetries = 1
		fo.DialerRetries = 1
		if c.tls != nil && fo.TLSConfig != nil {
			fo.TLSConfig = c.tls
		}
		s.rdb = redis.NewFailoverClient(fo)
		s.waitReplica, s.replicaWait = true, replicaWait
	} else {
		ro.DialTimeout = c.timeout
		ro.ReadTimeout = c.timeout
		ro.WriteTimeout = c.timeout
		ro.PoolTimeout = c.timeout
		ro.ContextTimeoutEnabled = true
		// One retry replaces a pooled connection that died with a Redis restart.
		ro.MaxRetries = 1
		// Dial once per attempt: a refused dial is retried by MaxRetries, and
		// go-redis's default of five dials would hold a call for half a second.
		ro.DialerRetries = 1
		if c.tls != nil && ro.TLSConfig != nil {
			ro.TLSConfig = c.tls
		}
		s.rdb = redis.NewClient(ro)
	}
	s.closed, s.cancel = context.WithCancel(context.Background())
	if err := s.Ping(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.wrap("ping", s.rdb.Ping(ctx).Err())
}

// KEYS: install-id. ARGV: a new ID. Stores it unless one is there and
// returns the stored one, so replicas racing on an empty Redis agree.
var installationIDScript = redis.NewScript(`
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
`)

// InstallationID implements store.Store.
func (s *Store) InstallationID(ctx context.Context) (string, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	id, err := installationIDScript.Run(ctx, s.rdb, []string{s.key("install-id")}, store.NewID()).Text()
	if err != nil {
		return "", s.wrap("installation id", err)
	}
	return id, nil
}

// Close closes the client and ends subscriptions. It is safe to call twice.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		s.rdb.Close()
	})
	return nil
}

// bound limits one call to opTimeout (or the caller's earlier deadline).
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.opTimeout)
}

func (s *Store) key(parts ...string) string {
	k := s.prefix
	for _, p := range parts {
		k += p
	}
	return k
}

// wrap reports a backend failure as store.ErrUnavailable. Redis error
// replies never echo command arguments, so no secret can leak through err.
func (s *Store) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if s.closed.Err() != nil {
		return fmt.Errorf("redisstore: %s: %w (closed)", op, store.ErrUnavailable)
	}
	return fmt.Errorf("redisstore: %s: %w: %w", op, store.ErrUnavailable, err)
}

func notFound(op string) error {
	return fmt.Errorf("redisstore: %s: %w", op, store.ErrNotFound)
}

func isNil(err error) bool { return errors.Is(err, redis.Nil) }
