// Package eventq is the bounded per-subscriber queue both stores deliver
// events through: offering never blocks the publisher, and a subscriber that
// lost events is told so with store.EventResync as soon as it reads again.
package eventq

import (
	"sync"
	"sync/atomic"

	"github.com/httvps/httvps/store"
)

// Size is how many events wait for one subscriber before new ones are
// dropped.
const Size = 1024

// Queue feeds one subscriber's channel from its own goroutine.
type Queue struct {
	out  chan store.Event
	wake chan struct{} // cap 1: something was queued
	done chan struct{} // closed by Close

	mu     sync.Mutex // guards buf, lost, closed
	buf    []store.Event
	lost   bool // an event was dropped; EventResync is owed
	closed bool

	dropped atomic.Uint64
}

// New starts a Queue; Close stops it.
func New() *Queue {
	q := &Queue{
		out:  make(chan store.Event),
		wake: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
	go q.run()
	return q
}

// C is the subscriber's side; it is closed after Close.
func (q *Queue) C() <-chan store.Event { return q.out }

// Dropped counts events that did not fit.
func (q *Queue) Dropped() uint64 { return q.dropped.Load() }

// Offer queues e without blocking; when Size events wait already, e is
// dropped and EventResync is owed.
func (q *Queue) Offer(e store.Event) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	if len(q.buf) >= Size {
		q.lost = true
		q.dropped.Add(1)
	} else {
		q.buf = append(q.buf, e)
	}
	q.mu.Unlock()
	q.signal()
}

// Resync tells the subscriber that events may have been missed (ahead of
// whatever is still queued).
func (q *Queue) Resync() {
	q.mu.Lock()
	q.lost = true
	q.mu.Unlock()
	q.signal()
}

func (q *Queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Close stops delivery and closes C; queued events are discarded. Safe to
// call more than once.
func (q *Queue) Close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.closed = true
		close(q.done)
	}
}

// run delivers queued events. Owned by the Queue's goroutine.
func (q *Queue) run() {
	defer close(q.out)
	for {
		q.mu.Lock()
		e, have := store.Event{}, true
		switch {
		case q.lost:
			e, q.lost = store.Event{Kind: store.EventResync}, false
		case len(q.buf) > 0:
			e = q.buf[0]
			q.buf[0] = store.Event{}
			q.buf = q.buf[1:]
			if len(q.buf) == 0 {
				q.buf = nil
			}
		default:
			have = false
		}
		q.mu.Unlock()
		if !have {
			select {
			case <-q.wake:
				continue
			case <-q.done:
				return
			}
		}
		select {
		case q.out <- e:
		case <-q.done:
			return
		}
	}
}
