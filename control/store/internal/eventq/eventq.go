// Package eventq is the bounded per-subscriber queue both stores deliver
// events through: offering never blocks the publisher, and a subscriber that
// lost events is told so with store.EventResync.
package eventq

import (
	"sync"
	"sync/atomic"

	"github.com/httvps/httvps/control/store"
)

// Size is the capacity of a subscriber's channel.
const Size = 1024

// Queue feeds one subscriber's channel.
type Queue struct {
	ch chan store.Event

	mu     sync.Mutex // guards closed, lost and sends on ch
	closed bool
	lost   bool // an event was dropped; EventResync is owed

	dropped atomic.Uint64
}

// New returns an open Queue.
func New() *Queue {
	return &Queue{ch: make(chan store.Event, Size)}
}

// C is the subscriber's side.
func (q *Queue) C() <-chan store.Event { return q.ch }

// Dropped counts events that did not fit.
func (q *Queue) Dropped() uint64 { return q.dropped.Load() }

// Offer queues e without blocking. When the queue is full e is dropped and
// EventResync is queued ahead of the next event that fits.
func (q *Queue) Offer(e store.Event) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	if q.lost {
		select {
		case q.ch <- store.Event{Kind: store.EventResync}:
			q.lost = false
		default:
			q.dropped.Add(1)
			return
		}
	}
	select {
	case q.ch <- e:
	default:
		q.lost = true
		q.dropped.Add(1)
	}
}

// Resync tells the subscriber that events may have been missed.
func (q *Queue) Resync() {
	q.Offer(store.Event{Kind: store.EventResync})
}

// Close closes the channel once; later offers are ignored.
func (q *Queue) Close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.closed = true
		close(q.ch)
	}
}
