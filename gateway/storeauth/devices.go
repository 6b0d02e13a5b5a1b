package storeauth

import (
	"context"
	"time"

	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/store"
)

// Device limits (store.Token.MaxDevices). A device is a client address
// (IPv6 by /64) or the device id a native client sent. The first session
// of a device on this gateway takes its lease in the store (one call, in
// the handshake goroutine, refused at the limit); further sessions of a
// device live here cost no store call. When its last session here ends
// the lease is released in the background and keeps counting for the
// grace (Config.DeviceGrace). Tokens without a device limit skip all of
// this: their sessions charge the account directly.
//
// While the store is down a new device is admitted if this gateway alone
// holds fewer than max devices of the token; across a fleet of N
// gateways a token may then reach N×max devices until the store returns,
// when the leases are taken.

const (
	// defaultDeviceGrace is how long a device keeps counting after its
	// last session ended.
	defaultDeviceGrace = 2 * time.Minute
	// deviceRefresh is how often a live device's lease is written again
	// even if its session count did not change, well within the store's
	// expiry of an untouched token's devices.
	deviceRefresh = 10 * time.Minute
)

// device is one device of a token with sessions on this gateway (or a
// release still to send). It is the gateway.Account of those sessions:
// usage goes to its account, and Release also ends the device's session.
type device struct {
	acc *account
	key string

	// Guarded by acc.devMu.
	sessions   int   // admitted here and not yet released
	leased     bool  // the store holds our live lease of it
	releasing  bool  // a release is being sent
	reported   int   // session count the store last got
	reportedAt int64 // unix ns of that report
}

// Key implements gateway.Account: the token ID.
func (d *device) Key() string { return d.acc.id }

// AddUsage implements gateway.Account.
func (d *device) AddUsage(up, down int64) { d.acc.AddUsage(up, down) }

// Release implements gateway.Account.
func (d *device) Release() {
	d.acc.Release()
	d.end()
}

// end gives back the device's session; its last one queues the release.
func (d *device) end() {
	c := d.acc
	c.devMu.Lock()
	d.sessions--
	last := d.sessions == 0
	c.devMu.Unlock()
	if last {
		c.a.lq.push(c)
	}
}

// deviceKey appends the device's key to b: the device id, else the
// address (an IPv6 one as its /64). It allocates nothing when b has room
// (store.MaxDeviceKey bytes).
func deviceKey(b []byte, c gateway.Client) []byte {
	if len(c.Device) > 0 {
		return append(b, c.Device...)
	}
	ip := c.Addr.WithZone("")
	switch {
	case !ip.IsValid():
		return append(b, "unknown"...)
	case ip.Is4():
		return ip.AppendTo(b)
	}
	p, _ := ip.Prefix(64)
	return p.AppendTo(b)
}

// liveDevices is how many devices the account holds here. Called with
// c.devMu held.
func (c *account) liveDevices() int {
	n := 0
	for _, d := range c.devices {
		if d.sessions > 0 || d.leased {
			n++
		}
	}
	return n
}

// admitDevice takes a session of the client's device: at once when the
// device is live here, else through the store's device lease (or a local
// count while the store is down). It returns nil at the limit.
func (a *Auth) admitDevice(c *account, max int, cl gateway.Client, now int64) *device {
	var buf [store.MaxDeviceKey]byte
	key := deviceKey(buf[:0], cl)
	c.devMu.Lock()
	if d := c.devices[string(key)]; d != nil && (d.sessions > 0 || d.leased && !d.releasing) {
		// Live here (or its release not sent yet, which now will not be).
		d.sessions++
		c.devMu.Unlock()
		return d
	}
	c.devMu.Unlock()
	k := string(key)
	if !a.isDown(now) {
		ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		ok, err := a.st.AcquireDevice(ctx, c.id, k, a.cfg.GatewayID, 1, max)
		cancel()
		if err == nil {
			a.storeOK()
			if !ok {
				return nil
			}
			return c.addDevice(k, true, now)
		}
		a.storeFailed(err)
	}
	// The store is down: count this gateway's devices alone.
	c.devMu.Lock()
	if d := c.devices[k]; d == nil && c.liveDevices() >= max {
		c.devMu.Unlock()
		return nil
	}
	c.devMu.Unlock()
	a.stats.localDevices.Add(1)
	d := c.addDevice(k, false, now)
	a.lq.push(c) // takes the lease when the store is back
	return d
}

// addDevice records a session of device k, leased or not.
func (c *account) addDevice(k string, leased bool, now int64) *device {
	c.devMu.Lock()
	defer c.devMu.Unlock()
	d := c.devices[k]
	if d == nil {
		d = &device{acc: c, key: k}
		if c.devices == nil {
			c.devices = make(map[string]*device)
		}
		c.devices[k] = d
	}
	d.sessions++
	if leased && !d.releasing {
		// A release in flight may land after our acquire: settleDevices
		// takes the lease again once it is done.
		d.leased, d.reported, d.reportedAt = true, 1, now
	}
	return d
}

// settleDevices brings the store's device leases of c in line with its
// devices here: releases of devices without sessions, leases of devices
// admitted while the store was down (or re-admitted during a release),
// and session counts that changed (at most every HeartbeatEvery, and every
// deviceRefresh regardless). It reports false if a store call failed.
func (a *Auth) settleDevices(ctx context.Context, c *account) bool {
	now := a.now().UnixNano() // the clock addDevice stamped reportedAt with
	type work struct {
		d        *device
		release  bool
		sessions int
	}
	var todo []work
	c.devMu.Lock()
	for _, d := range c.devices {
		switch {
		case d.releasing:
		case d.sessions == 0 && d.leased:
			d.releasing = true
			todo = append(todo, work{d: d, release: true})
		case d.sessions == 0:
			delete(c.devices, d.key)
		case !d.leased,
			d.sessions != d.reported && now-d.reportedAt >= int64(a.cfg.HeartbeatEvery),
			now-d.reportedAt >= int64(deviceRefresh):
			todo = append(todo, work{d: d, sessions: d.sessions})
		}
	}
	c.devMu.Unlock()
	ok := true
	for i, w := range todo {
		cctx, cancel := context.WithTimeout(ctx, storeTimeout)
		var err error
		if w.release {
			err = a.st.ReleaseDevice(cctx, c.id, w.d.key, a.cfg.GatewayID, a.cfg.DeviceGrace)
		} else {
			// max 0: the device is admitted already; this makes the
			// store's count and session figure right.
			_, err = a.st.AcquireDevice(cctx, c.id, w.d.key, a.cfg.GatewayID, w.sessions, 0)
		}
		cancel()
		c.devMu.Lock()
		switch {
		case err != nil:
			if w.release {
				w.d.releasing = false
			}
		case w.release:
			w.d.releasing, w.d.leased = false, false
			if w.d.sessions == 0 {
				delete(c.devices, w.d.key)
			}
		default:
			w.d.leased, w.d.reported, w.d.reportedAt = true, w.sessions, now
		}
		pending := w.d.sessions > 0 && !w.d.leased
		c.devMu.Unlock()
		if err != nil {
			a.storeFailed(err)
			c.devMu.Lock()
			for _, r := range todo[i+1:] {
				if r.release {
					r.d.releasing = false // not sent: the next pass tries again
				}
			}
			c.devMu.Unlock()
			return false
		}
		a.storeOK()
		if pending {
			ok = false // re-admitted during the release: lease it next pass
		}
	}
	return ok
}

// hasDevices reports whether c holds devices here (for the periodic
// report and the account's garbage collection).
func (c *account) hasDevices() bool {
	c.devMu.Lock()
	defer c.devMu.Unlock()
	return len(c.devices) > 0
}

// queueDeviceReports puts every account with devices on the lease queue,
// so their session counts reach the store (heartbeat loop).
func (a *Auth) queueDeviceReports() {
	for _, c := range a.snapshotAccounts() {
		if c.hasDevices() {
			a.lq.push(c)
		}
	}
}
