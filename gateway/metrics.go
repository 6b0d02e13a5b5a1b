package gateway

// nameOf is the label of an enum value: names[v], or "unknown" past them.
func nameOf[T ~uint8](v T, names []string) string {
	if int(v) < len(names) {
		return names[v]
	}
	return "unknown"
}

// Reject is why a connection got the decoy answer (or was closed before
// one). It is the label of the rejected-handshake metric and is never shown
// to the peer.
type Reject uint8

const (
	RejectMalformed  Reject = iota // not parseable as an HTTP/1.1 request
	RejectNotUpgrade               // a valid request that is not a WebSocket upgrade
	RejectPath                     // path is not /<secret>/tcp or /<secret>/udp
	RejectSecret                   // unknown secret
	RejectTooLarge                 // request larger than MaxRequestSize
	RejectTimeout                  // request not complete within HandshakeTimeout
	RejectCapacity                 // MaxSessions or MaxHandshakes reached
	RejectUpstream                 // the upstream could not be dialled
	RejectShutdown                 // the gateway is draining
	RejectTLS                      // the TLS handshake failed
	RejectAddrLimit                // AddrHandshakes from this client address in progress
	RejectAddrRate                 // new connections from this address over AddrRate/AddrBurst
	RejectEvicted                  // an idle handshake closed at MaxHandshakes to admit a new one
	NumRejects
)

var rejectNames = [NumRejects]string{"malformed", "not_upgrade", "path", "secret", "too_large", "timeout", "capacity", "upstream", "shutdown", "tls", "addr_limit", "addr_rate", "evicted"}

func (r Reject) String() string { return nameOf(r, rejectNames[:]) }

// End is why an established session ended; the label of the session-end metric.
type End uint8

const (
	EndNormal     End = iota // both directions finished (close 1000 / FIN)
	EndClientGone            // client connection reset or closed without a close frame
	EndUpstream              // upstream reset or failed
	EndIdle                  // idle timeout
	EndProtocol              // client broke RFC 6455 (bad frame, text on a data path, too large)
	EndShutdown              // gateway drain
	EndSlowClient            // a close handshake or write did not complete in time
	EndRevoked               // the account was closed (revoked, over quota, expired)
	EndFlood                 // control frames over MaxControlRate/MaxControlBurst (close 1008)
	NumEnds
)

var endNames = [NumEnds]string{"normal", "client_gone", "upstream", "idle", "protocol", "shutdown", "slow_client", "revoked", "flood"}

func (e End) String() string { return nameOf(e, endNames[:]) }

// Drop is something the gateway discarded on purpose; the label of the drops metric.
type Drop uint8

const (
	// No Drop for UDP replies: while the client is slow the upstream
	// socket is not read, and what overflows its receive buffer is dropped
	// (and counted) by the kernel, never by the gateway.
	DropUDPToUpstream Drop = iota // datagram the upstream socket would not take
	DropEarlyData                 // bytes a client sent before the 101
	DropFallbackBusy              // MaxFallbacks reached: the decoy answer instead of the fallback
	DropFallbackDial              // the fallback could not be dialled: the decoy answer instead
	NumDrops
)

var dropNames = [NumDrops]string{"udp_to_upstream", "early_data", "fallback_busy", "fallback_dial"}

func (d Drop) String() string { return nameOf(d, dropNames[:]) }

// Metrics is what the gateway reports. Implementations must be cheap and safe
// for concurrent use: the relay loops call BytesUp/BytesDown once per read.
type Metrics interface {
	HandshakeOK(p PathKind)
	HandshakeRejected(r Reject)
	SessionStart(p PathKind)
	SessionEnd(p PathKind, e End)
	BytesUp(n int)   // client → upstream payload bytes
	BytesDown(n int) // upstream → client payload bytes
	UpstreamDialError(p PathKind)
	Dropped(d Drop, n int)
	Buffered(delta int) // change in bytes held in session buffers
	// TLSHandshake counts a completed TLS handshake by version and suite
	// (crypto/tls constants; see TLSSuites for the set), and whether it
	// resumed a session from a ticket.
	TLSHandshake(version, suite uint16, resumed bool)
}

type nopMetrics struct{}

func (nopMetrics) HandshakeOK(PathKind)              {}
func (nopMetrics) HandshakeRejected(Reject)          {}
func (nopMetrics) SessionStart(PathKind)             {}
func (nopMetrics) SessionEnd(PathKind, End)          {}
func (nopMetrics) BytesUp(int)                       {}
func (nopMetrics) BytesDown(int)                     {}
func (nopMetrics) UpstreamDialError(PathKind)        {}
func (nopMetrics) Dropped(Drop, int)                 {}
func (nopMetrics) Buffered(int)                      {}
func (nopMetrics) TLSHandshake(uint16, uint16, bool) {}
