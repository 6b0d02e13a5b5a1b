package testpeer

import (
	"sync/atomic"
	"time"
)

// Clock is real time moved by Advance: tests hand its Now to the
// components under test (storeauth.Config.Now and the like) and cross a
// day, a week or a month without waiting for it, while time still runs
// between steps as it does in production.
type Clock struct{ offset atomic.Int64 }

// Now is time.Now plus every Advance so far.
func (c *Clock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// AdvanceTo moves the clock forward to t (never back).
func (c *Clock) AdvanceTo(t time.Time) {
	if d := t.Sub(c.Now()); d > 0 {
		c.Advance(d)
	}
}
