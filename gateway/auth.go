package gateway

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// PathKind is the kind of session a request asks for.
type PathKind uint8

const (
	PathTCP    PathKind = iota // /<secret>/tcp: a Shadowsocks TCP byte stream
	PathUDP                    // /<secret>/udp: one Shadowsocks UDP packet per message
	PathTunnel                 // /v1/tunnel: the HTTVPS native tunnel (the secret is the bearer token)
	numPaths
)

func (p PathKind) String() string {
	switch p {
	case PathTCP:
		return "tcp"
	case PathUDP:
		return "udp"
	case PathTunnel:
		return "tunnel"
	}
	return "unknown"
}

// Route is where an authenticated session is forwarded.
type Route struct {
	// Upstream is the Outline member's "host:port" (an IP literal; the
	// gateway does not resolve names on the hot path). TCP sessions dial its
	// TCP port, UDP sessions send to its UDP port.
	Upstream string
	// Fallbacks are tried in order when Upstream cannot be dialled (the same
	// key placed on other members), so a dead member costs the client
	// nothing but the dial timeout.
	Fallbacks []string
	// Account is charged for the session; nil means no accounting.
	Account Account
}

// Client is who asks for a session, as far as the gateway knows before the
// 101. It is passed by value and holds no allocation of its own.
type Client struct {
	// Addr is the client's address: the TCP peer's, or the one a trusted
	// PROXY header or forwarded header named (docs/04). Unmapped (an IPv4
	// client is an IPv4 address); invalid if unknown.
	Addr netip.Addr
	// Device is the device id a native tunnel client sent (the
	// HTTVPS-Device header, docs/03): 16 to MaxDeviceID bytes of
	// [A-Za-z0-9_-]; nil when none was sent (and always on the Outline
	// paths). Only valid during the call.
	Device []byte
}

// Authenticator decides, before the 101, whether a secret may open a session
// of the given kind and where it goes. For PathTunnel the secret is the
// bearer token and the session is the whole tunnel: its streams dial
// Route.Upstream (then Route.Fallbacks), TCP or UDP as each stream asks. It is called from the handshake
// goroutine and must be safe for concurrent use. secret is only valid during
// the call. A false result gets the decoy answer; the caller never learns why,
// the operator does: the Reject given with it (RejectSecret for an unknown
// secret, or RejectRevoked … RejectNoRoute) labels the rejected-handshake
// metric and the gateway's debug log line. It is ignored when ok.
// An Authenticator that returns a Route with an Account has admitted one
// session for it: the gateway calls Account.Release exactly once when that
// session ends, or at once if the session is not established after all.
// c says who the client is (for device limits); its Device is only valid
// during the call, like secret.
type Authenticator interface {
	Authenticate(secret []byte, kind PathKind, c Client) (r Route, why Reject, ok bool)
}

// Account is who a session is charged to (a token of the control plane).
// Its methods are called from relay loops and must be cheap and safe for
// concurrent use.
type Account interface {
	// Key identifies the account for Gateway.CloseAccount.
	Key() string
	// AddUsage receives payload bytes relayed (up: client to upstream,
	// down: upstream to client), in batches: at most every 0.5 s per loop
	// and when a session ends.
	AddUsage(up, down int64)
	// Release is called once per admitted session, when it ends.
	Release()
}

// StaticAuth is an Authenticator over a fixed table of secrets. Secrets are
// kept only as SHA-256 digests, so the table neither holds nor compares the
// plain secrets, and lookup time does not depend on how much of a secret
// matches.
type StaticAuth struct {
	routes map[[sha256.Size]byte]Route
}

// NewStaticAuth builds a StaticAuth from secret → "host:port".
func NewStaticAuth(routes map[string]string) (*StaticAuth, error) {
	a := &StaticAuth{routes: make(map[[sha256.Size]byte]Route, len(routes))}
	for secret, up := range routes {
		if secret == "" {
			return nil, errors.New("gateway: empty route secret")
		}
		if _, _, err := net.SplitHostPort(up); err != nil {
			return nil, fmt.Errorf("gateway: route upstream %q: %w", up, err)
		}
		a.routes[sha256.Sum256([]byte(secret))] = Route{Upstream: up}
	}
	return a, nil
}

// Authenticate implements Authenticator.
func (a *StaticAuth) Authenticate(secret []byte, _ PathKind, _ Client) (Route, Reject, bool) {
	r, ok := a.routes[sha256.Sum256(secret)]
	return r, RejectSecret, ok
}

// Len reports the number of routes.
func (a *StaticAuth) Len() int { return len(a.routes) }
