// Package bench is the HTTVPS benchmark harness: it runs each relay (peer) as
// its own process, drives the same byte streams through it from a client in
// this process to a sink process, checks every stream's SHA-256 at both ends,
// and reads the relay's CPU time and RSS from /proc. CPU time is the sum of
// the relay's threads' run time (/proc/PID/task/*/schedstat, nanoseconds),
// so a short cell's figure does not carry the 10 ms clock tick; utime+stime
// (ticks) stands in when the two disagree, i.e. a thread exited during the
// cell, and the report counts those readings (ProcSample.CPUSince).
//
// Sink protocol (one TCP connection per stream): the client's first 9 bytes
// are a mode byte and a big-endian uint64 argument.
//
//	'U' n  upload: the sink reads exactly n bytes, replies their 32-byte SHA-256
//	'D' n  download: the sink sends n bytes of the deterministic pattern
//	'E' 0  echo until end of stream
//	'I' 0  idle: the sink replies one byte ('K') and holds the connection
//
// After its reply the sink half-closes and waits (bounded) for the client's
// end of stream before closing, so no relay needs to pass half-close for a
// run to succeed; length-delimited modes also keep v2ray-plugin, which does
// not propagate half-close, measurable.
//
// TLS scenarios (tls-throughput, tls-idle, tls-connect, tls-connect-busy) run the same sink
// protocol through the TLS peers, which all serve one certificate generated
// for the run (ECDSA P-256 or RSA-2048): our gateway and v2ray-plugin as
// wss:// servers, and nginx's stream module as a TLS-terminating TCP proxy
// that its client reaches with raw TLS (nginx has no WebSocket-to-TCP
// bridge). nginx forks, so its CPU and RSS are summed over its process group.
// tls-connect-busy is tls-connect with one spinning "hog" child process per
// core running beside every peer, as on a machine with other work on it.
//
// Shadowsocks peers (sspeers.go) compare HTTVPS with Outline like with
// like: the client speaks Shadowsocks AEAD inside the WebSocket to a server
// that decrypts it and dials the sink — httvps-ss (our gateway + a real
// ss-server), outline-ss (outline-ss-server alone, built from the tools
// module tools/outline-ss-server), nginx-ws (nginx's http WebSocket proxy in
// front of outline-ss-server), and the TLS pair httvps-ss-tls / nginx-wss.
//
// The latency scenario (latency.go) runs on every peer and on the sink
// alone: small messages echoed at 1, 100 and 1,000 concurrently active
// streams, every byte checked, and the time to the first byte of new
// sessions.
//
// The handshake-flood scenario (flood.go) runs on every TLS peer and the
// plaintext Shadowsocks peers (not the tunnel peers): stalled clients
// (half send nothing, half a partial TLS ClientHello — a partial HTTP
// request on plaintext peers — each reopened 50 ms after the peer closes
// it) from source addresses 127.0.1.x, 250 each, and garbage connections
// (1 KiB of random bytes) at a fixed rate, while established sessions of a
// client on 127.0.0.x download (SHA-256 checked) and echo small messages;
// the same sessions' figures without the flood come just before, on the
// same peer. Our gateway runs here with its default per-address limits
// (-addr-rate, -addr-handshakes), which every other scenario turns off.
//
// The udp scenario (udp.go) runs on the Shadowsocks peers with a packet
// path (httvps-ss and httvps-ss-tls with ss-server -u behind the gateway,
// outline-ss, nginx-ws, nginx-wss; httvps-tunnel-ss(-tls): a udp stream on
// the native tunnel, one DATA frame per packet): Shadowsocks UDP packets,
// one per binary message on ws(s)://…/SECRET/udp, to the sink's UDP echo (the
// sink serves UDP on its TCP port) and back, a window of packets in flight
// per association; each echo is authenticated and its association,
// sequence number and bytes checked; a packet not back in 500 ms is a
// drop, counted. Figures: round trips per second and the relay's CPU per
// million.
//
// Progress: one line per step, or on a terminal (Config.Live) one status
// line redrawn in place; the run plan (steps per scenario, estimated
// duration from the sizes: estimateStep) is logged first, and
// Config.PlanOnly prints it alone. The short run (-short) takes about 7
// minutes on 2 cores, the full run (5 runs) about an hour.
//
// The control scenario runs once, on no relay, against a redis-server the
// harness starts: storeauth.Authenticate in this process on a cache hit and
// on a cache miss (a Redis round trip per check), GET /v1/client/config
// against the httvps-control binary over keep-alive loopback HTTP, and
// redis-benchmark GET/SET on the same Redis for scale.
package bench
