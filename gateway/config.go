package gateway

import (
	"log/slog"
	"net/netip"
	"time"
)

// Config configures a Gateway. Every zero value means the documented default,
// so Config{Auth: a} is a working gateway.
type Config struct {
	// Auth maps a secret presented on an Outline path, or the bearer token
	// of a native tunnel (PathTunnel), to an upstream. Required.
	Auth Authenticator

	// TLS, when set, makes the listener TLS-only (TLS 1.3 and 1.2; see
	// TLSConfig). Nil means plaintext HTTP.
	TLS *TLSConfig

	// Metrics receives counters and gauges. Nil means no metrics.
	Metrics Metrics

	// Logger receives one line per failed handshake and per session end at
	// debug level, and lifecycle events at info. Nil means slog.Default().
	// Secrets never reach it.
	Logger *slog.Logger

	// MaxSessions caps established sessions plus handshakes in progress.
	// Connections past it get the decoy answer. 0 means 100000.
	MaxSessions int

	// MaxHandshakes caps handshakes in progress (request read + upstream dial).
	// 0 means 4096.
	MaxHandshakes int

	// AddrHandshakes caps handshakes in progress from one client address
	// (an IPv4 address, or an IPv6 /64), so one host cannot hold the
	// global MaxHandshakes. 0 means 512; negative disables.
	AddrHandshakes int

	// AddrRate and AddrBurst bound new connections per second from one
	// client address (a token bucket). Past them connections are closed at
	// accept. 0 means 100/s with a burst of 1000, which a NATed office
	// opening pages through Outline-path sessions stays well within;
	// a negative AddrRate disables.
	AddrRate  float64
	AddrBurst int

	// ProxyProtocolFrom lists the peers (load balancers) whose connections
	// start with a PROXY protocol header, v1 or v2, naming the real
	// client, who then stands in for the peer in the per-address limits
	// and the logs. Such a peer must send one: a connection from it
	// without a valid header is closed without an answer (as nginx's
	// proxy_protocol listener does). A header from any other peer is not
	// read as one: it gets the decoy. Nil means the PROXY protocol is off.
	ProxyProtocolFrom []netip.Prefix
	// ForwardedFrom lists HTTP-level fronts (a reverse proxy in front of
	// the gateway) whose upgrade requests carry the client's address in
	// X-Forwarded-For or Forwarded: the rightmost address in them that is
	// not itself in the list stands in for the peer in the per-address
	// limits and the logs (forwarded.go). From any other peer the headers
	// are ignored. Empty: off.
	ForwardedFrom []netip.Prefix

	// HandshakeTimeout bounds the time from accept to a complete upgrade
	// request (a slow-header client is cut off at this deadline).
	// 0 means 10s.
	HandshakeTimeout time.Duration

	// MaxRequestSize bounds the HTTP upgrade request (request line plus
	// headers). 0 means 8192 bytes.
	MaxRequestSize int

	// DialTimeout bounds the TCP connect to the upstream. 0 means 5s.
	DialTimeout time.Duration

	// IdleTimeout closes a TCP session with no traffic in either direction
	// for this long, and a native tunnel with no open stream and no frame;
	// a tunnel's tcp stream without traffic for as long is reset (CANCEL).
	// 0 means 5m; negative disables.
	IdleTimeout time.Duration

	// UDPIdleTimeout closes a UDP association (a tunnel's udp stream: RESET
	// CANCEL) with no traffic for this long. 0 means 60s.
	UDPIdleTimeout time.Duration

	// MaxFrameSize bounds the payload of one client frame; MaxMessageSize
	// bounds a (fragmented) message (not on a tunnel, where message
	// boundaries carry no meaning). Larger input closes the session with
	// 1009. 0 means 1 MiB for both; on the udp path a message is also capped
	// at 65507 bytes (the largest UDP payload).
	MaxFrameSize   int64
	MaxMessageSize int64

	// BufferCap bounds the bytes a session holds per direction while the
	// receiving side is slow. At the cap the gateway stops reading the
	// sending side, so TCP flow control slows the sender. 0 means 256 KiB.
	BufferCap int

	// ReadChunk is the most bytes read from a socket in one call (capped at
	// BufferCap). 0 means 256 KiB. Reads toward a receiver measured slower
	// than 32 MiB/s take 64 KiB, so a slow receiver usually pins at most
	// that much of a session's queue.
	ReadChunk int

	// MaxControlRate and MaxControlBurst bound the ping and pong frames a
	// client may send on one session (a token bucket: MaxControlRate frames
	// per second sustained, MaxControlBurst at once). Past them the session
	// is closed with 1008 (end label "flood"). 0 means 10 per second with a
	// burst of 100, far above clients that ping every few seconds; a
	// negative MaxControlRate disables the bound. Pongs are coalesced either
	// way: one read from a client gets at most one pong, for its last ping.
	MaxControlRate  int
	MaxControlBurst int

	// TunnelMaxStreams caps the streams open at once on one native tunnel
	// (its SETTINGS MAX_STREAMS); an OPEN beyond it is answered RESET
	// REFUSED. 0 means 256.
	TunnelMaxStreams int

	// Loops is the number of relay event loops. 0 means GOMAXPROCS.
	Loops int

	// EOFGrace is how long, after the upstream's FIN, the gateway waits for
	// the client to close first before it sends close 1000 (end of stream).
	// v2ray-plugin clients drop data they still buffer when the server's
	// close arrives first; clients that read to the end close by themselves
	// well within it. 0 means 1s; negative sends the close at once (as
	// outline-ss-server does).
	EOFGrace time.Duration

	// DrainTimeout bounds Shutdown: after sending close 1001 it waits this
	// long for sessions to end, then closes the rest. 0 means 30s.
	DrainTimeout time.Duration

	// DecoyStatus and DecoyBody are the one answer given to every request that
	// does not become a session. 0/nil mean 404 with a small nginx-like page.
	// DecoyStatus is 200 or a 4xx/5xx that DecoyStatusValid accepts.
	DecoyStatus int
	DecoyBody   []byte
	// DecoyContentType defaults to "text/html".
	DecoyContentType string
	// ServerHeader is the Server header of the decoy answer, and the
	// signature on its built-in pages ("" means "nginx", as nginx with
	// server_tokens off).
	ServerHeader string
	// DecoyKeepAlive is how long a connection whose decoy answer kept it
	// alive (as nginx keeps HTTP/1.1 clients) waits for its next request;
	// nginx's keepalive_timeout is 75s, but the connection still counts as
	// a handshake (MaxHandshakes), so the default is shorter. 0 means
	// HandshakeTimeout; negative closes after every answer, with
	// "Connection: close" (nginx with keepalive_timeout 0).
	DecoyKeepAlive time.Duration

	// Documents, when set, serves the requests it claims that are not
	// WebSocket upgrades (the dynamic access keys and the client config)
	// with a 200 in nginx's header shape; every other request, and every
	// one it refuses, gets the decoy answer as before (document.go). Nil
	// means none: the decoy for every request that is not a session.
	Documents Documents

	// Fallback is the address (ip:port, or host:port resolved once by New)
	// of a plain-HTTP web server that gets every connection that would get
	// the decoy answer: the gateway connects to it, sends every byte the
	// client sent so far and relays both ways (over TLS the gateway keeps
	// terminating TLS and relays the plaintext). If it cannot be reached
	// within DialTimeout the connection gets the decoy answer. "" means no
	// fallback: the decoy answer (DecoyStatus, DecoyBody, ...) for all.
	Fallback string
	// MaxFallbacks caps connections relayed to Fallback at once; they also
	// count against MaxSessions. Past it a connection gets the decoy
	// answer. 0 means 1024.
	MaxFallbacks int
	// FallbackIdleTimeout closes a fallback connection that moved no byte
	// either way for this long. 0 means 2m, longer than a web server's own
	// timeouts (nginx: 60s for a request, 65s keep-alive), so that a client
	// sees the web server's timing, not ours.
	FallbackIdleTimeout time.Duration
}

const (
	defaultMaxSessions      = 100000
	defaultMaxHandshakes    = 4096
	defaultAddrHandshakes   = 512
	defaultAddrRate         = 100
	defaultAddrBurst        = 1000
	defaultHandshakeTimeout = 10 * time.Second
	defaultMaxRequestSize   = 8192
	defaultDialTimeout      = 5 * time.Second
	defaultIdleTimeout      = 5 * time.Minute
	defaultUDPIdleTimeout   = 60 * time.Second
	defaultMaxFrame         = 1 << 20
	defaultBufferCap        = 256 << 10
	defaultReadChunk        = 256 << 10
	defaultDrainTimeout     = 30 * time.Second
	defaultEOFGrace         = time.Second
	maxUDPPayload           = 65507
)

const defaultDecoyBody = "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
