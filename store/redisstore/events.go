package redisstore

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/httvps/httvps/store"
	"github.com/httvps/httvps/store/internal/eventq"
)

// wireEvent is an Event as published on the channel.
type wireEvent struct {
	Kind     store.EventKind `json:"k"`
	TokenID  string          `json:"t,omitempty"`
	Hash     string          `json:"h,omitempty"`
	MemberID string          `json:"m,omitempty"`
}

// pingEvery is how long a subscription may stay silent before it pings
// Redis, so that a connection that died without a reset is noticed.
const pingEvery = 15 * time.Second

// Publish implements store.Store.
func (s *Store) Publish(ctx context.Context, e store.Event) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if e.Kind == "" || e.Kind == store.EventResync {
		return fmt.Errorf("redisstore: publish: kind: %w", store.ErrInvalid)
	}
	w := wireEvent{Kind: e.Kind, TokenID: e.TokenID, MemberID: e.MemberID}
	if e.Hash != ([32]byte{}) {
		w.Hash = hex.EncodeToString(e.Hash[:])
	}
	b, _ := json.Marshal(w) // strings only: cannot fail
	return s.wrap("publish", s.rdb.Publish(ctx, s.key("events"), b).Err())
}

// Subscribe implements store.Store. It returns once Redis has confirmed the
// subscription, so events published after it returns are delivered. When
// the connection breaks, go-redis reconnects and resubscribes; the
// subscriber then gets store.EventResync, since events published in the
// gap are lost.
func (s *Store) Subscribe(ctx context.Context) (<-chan store.Event, error) {
	if s.closed.Err() != nil {
		return nil, fmt.Errorf("redisstore: subscribe: %w (closed)", store.ErrUnavailable)
	}
	ps := s.rdb.Subscribe(ctx, s.key("events"))
	if _, err := ps.ReceiveTimeout(ctx, s.opTimeout); err != nil {
		ps.Close()
		return nil, s.wrap("subscribe", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	stopClose := context.AfterFunc(s.closed, cancel)
	// Closing the PubSub is what interrupts a blocked Receive.
	stopPS := context.AfterFunc(ctx, func() { ps.Close() })
	q := eventq.New()
	go func() {
		defer func() {
			stopClose()
			stopPS()
			cancel()
			ps.Close()
			q.Close()
		}()
		s.receive(ctx, ps, q)
	}()
	return q.C(), nil
}

// receive runs a subscription until ctx ends. Owned by its goroutine.
func (s *Store) receive(ctx context.Context, ps *redis.PubSub, q *eventq.Queue) {
	backoff := 50 * time.Millisecond
	broken := false
	for ctx.Err() == nil {
		msg, err := ps.ReceiveTimeout(ctx, pingEvery)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if isTimeout(err) && !broken {
				// Quiet channel: a failed ping makes go-redis reconnect.
				ps.Ping(ctx)
				continue
			}
			broken = true
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		switch m := msg.(type) {
		case *redis.Subscription:
			// A confirmation after the first one means go-redis
			// reconnected and resubscribed.
			broken = false
			s.awaitCommands(ctx)
			q.Resync()
		case *redis.Message:
			if e, ok := decodeEvent(m.Payload); ok {
				q.Offer(e)
			}
		}
	}
}

// awaitCommands returns once Redis answers commands (or ctx ends). The
// subscription has its own connection pool, which can be back before the
// pool that commands use: go-redis stops dialling a pool after PoolSize
// failed dials in a row and then probes it once a second, so after a
// Sentinel failover or a restart the subscription may resubscribe up to a
// second before a command gets through. Resync tells a subscriber to drop
// what it cached and read the store again; sent before the store answers,
// that re-read would fail and leave the subscriber with nothing. Events
// that arrive meanwhile wait in the connection and follow the Resync.
func (s *Store) awaitCommands(ctx context.Context) {
	backoff := 20 * time.Millisecond
	for ctx.Err() == nil && s.Ping(ctx) != nil {
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 200*time.Millisecond)
	}
}

func decodeEvent(payload string) (store.Event, bool) {
	var w wireEvent
	if json.Unmarshal([]byte(payload), &w) != nil || w.Kind == "" {
		return store.Event{}, false
	}
	e := store.Event{Kind: w.Kind, TokenID: w.TokenID, MemberID: w.MemberID}
	if w.Hash != "" {
		if n, err := hex.Decode(e.Hash[:], []byte(w.Hash)); err != nil || n != len(e.Hash) {
			return store.Event{}, false
		}
	}
	return e, true
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
