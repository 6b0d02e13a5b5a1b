// Package client is the reference HTTVPS client behind `httvps connect`.
//
// A key (httvps://, ss://, ssconf:// or a control-plane URL with a token) names
// gateways, a Shadowsocks cipher and secret. A Transport carries Shadowsocks
// ciphertext to the Outline member: the native tunnel (NewTunnel, docs/03), the
// Outline-path WebSockets (/<token>/tcp and /<token>/udp), or directly to a plain
// Shadowsocks server for ss:// keys. The Shadowsocks layer (outline-sdk) runs on
// top of the Transport, and the local proxy front (SOCKS5 and HTTP proxy on one
// listener) feeds it.
//
// Layers, bottom up:
//
//	Transport   (transport.go; tunnel*.go, outline*.go, direct*.go)
//	Shadowsocks (ss*.go)
//	proxy front (proxy*.go, socks*.go, httpproxy*.go)
package client
