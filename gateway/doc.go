// Package gateway is the HTTVPS edge: it accepts TLS or plaintext HTTP/1.1
// WebSocket upgrades on the Outline-compatible paths /<secret>/tcp and
// /<secret>/udp and on the native tunnel /v1/tunnel (many streams on one
// WebSocket, codec/mux), authenticates the secret or bearer token before
// the 101 (Authenticator), connects to the assigned Outline member (per
// stream on a tunnel) and relays bytes both ways without decrypting them. Everything that does not become a session gets the decoy:
// the answer nginx would give it (decoy.go), or the Fallback web server.
//
// netpoll accepts connections and runs the handshake; established sessions
// run on the package's own epoll loops, which give each session real TCP
// backpressure, half-close, and no goroutine or buffer while idle. The
// design is in docs/04-gateway-design.md.
package gateway
