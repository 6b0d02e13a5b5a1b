package gateway

import "github.com/httvps/httvps/codec/mux"

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
	RejectVersion                  // /v1/tunnel without an httvps.v* subprotocol the gateway speaks
	// Why an Authenticator refused a known token (RejectSecret: unknown).
	RejectRevoked   // the token is revoked
	RejectExpired   // past its expiry
	RejectQuota     // its usage reached its quota
	RejectSessions  // its session limit is reached
	RejectStoreDown // not known here and the store cannot be asked
	RejectNoRoute   // no member holds its key
	RejectProxy     // a trusted PROXY peer sent no valid PROXY header (closed without an answer)
	RejectDevices   // a new device of a token at its device limit
	RejectDeviceID  // /v1/tunnel with an invalid or repeated HTTVPS-Device header
	NumRejects
)

var rejectNames = [NumRejects]string{"malformed", "not_upgrade", "path", "secret", "too_large", "timeout", "capacity", "upstream", "shutdown", "tls", "addr_limit", "addr_rate", "evicted", "version",
	"revoked", "expired", "quota", "sessions", "store_unavailable", "no_route", "proxy", "devices", "device_id"}

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
	EndRevoked               // the account was closed (revoked, expired, or over quota by the store's count)
	EndFlood                 // control frames over MaxControlRate/MaxControlBurst (close 1008)
	EndQuota                 // the account's quota is used up (close 1008, as for revoked)
	NumEnds
)

var endNames = [NumEnds]string{"normal", "client_gone", "upstream", "idle", "protocol", "shutdown", "slow_client", "revoked", "flood", "quota"}

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
	DropTunnelUDP                 // tunnel udp packet the member socket would not take, or too large for the client's MAX_FRAME
	NumDrops
)

var dropNames = [NumDrops]string{"udp_to_upstream", "early_data", "fallback_busy", "fallback_dial", "tunnel_udp"}

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

// StreamEnd is why a stream of a native tunnel ended; the label of the
// tunnel stream-end metric.
type StreamEnd uint8

const (
	StreamNormal      StreamEnd = iota // FIN both ways
	StreamClientReset                  // the client sent RESET
	StreamConnect                      // no member could be connected (RESET CONNECT)
	StreamUpstream                     // the member reset or failed (RESET UPSTREAM)
	StreamRefused                      // over MAX_STREAMS or after GOAWAY (RESET REFUSED)
	StreamFlowControl                  // the client overran the stream window (RESET FLOW_CONTROL)
	StreamProtocol                     // a bad frame for the stream (RESET PROTOCOL)
	StreamIdle                         // no traffic for the idle timeout (RESET CANCEL)
	StreamTunnelEnd                    // the tunnel ended with the stream open
	NumStreamEnds
)

var streamEndNames = [NumStreamEnds]string{"normal", "client_reset", "connect", "upstream", "refused", "flow_control", "protocol", "idle", "tunnel_end"}

func (e StreamEnd) String() string { return nameOf(e, streamEndNames[:]) }

// NumResetCodes bounds the RESET codes (mux.ResetCode) the gateway sends:
// 1…NumResetCodes-1.
const NumResetCodes = 8

// ResetName is the label of a RESET code in the resets-sent metric.
func ResetName(c mux.ResetCode) string {
	names := [NumResetCodes]string{"unknown", "cancel", "refused", "connect", "flow_control", "upstream", "protocol", "internal"}
	if int(c) < len(names) {
		return names[c]
	}
	return "unknown"
}

// TunnelMetrics is what the gateway reports about native tunnel streams. A
// Metrics that also implements it receives these calls (the Outline-path
// interface stays as it is); the same rules apply: cheap, concurrent.
type TunnelMetrics interface {
	StreamOpened(udp bool)     // a stream was accepted (before its member dial)
	StreamEnded(e StreamEnd)   // an accepted stream ended; opened − ended is the open-streams gauge
	ResetSent(c mux.ResetCode) // a RESET the gateway sent (refused streams included)
}

type nopTunnelMetrics struct{}

func (nopTunnelMetrics) StreamOpened(bool)       {}
func (nopTunnelMetrics) StreamEnded(StreamEnd)   {}
func (nopTunnelMetrics) ResetSent(mux.ResetCode) {}

// CreditMetrics is what the gateway reports about quota credit (credit.go).
// A Metrics that also implements it receives these calls; the same rules
// apply: cheap, concurrent.
type CreditMetrics interface {
	// CreditWait counts a wait of a session for credit: it found its
	// account out of credit, left epoll for the directions concerned,
	// and was woken when the account had more (or was closed).
	CreditWait()
}

type nopCreditMetrics struct{}

func (nopCreditMetrics) CreditWait() {}
