package gateway

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"time"
)

// Client addresses from an HTTP-level front (docs/04-gateway-design.md,
// "Client addresses behind a load balancer"). A connection from a peer in
// Config.ForwardedFrom (an nginx, HAProxy or cloud HTTP load balancer that
// terminates nothing of ours but proxies the WebSocket upgrade) carries
// the client's address in X-Forwarded-For or Forwarded (RFC 7239). The
// gateway reads both headers of the upgrade request and takes, from the
// right, the first address that is not itself a trusted front: the address
// the nearest trusted front saw (entries to its left are whatever the
// client wrote). That address then stands in for the peer in the
// per-address admission limits and the log lines, as a PROXY header's
// does. Without the headers the front itself is the client. From anyone
// else the headers are ignored, as nginx's realip module ignores them from
// untrusted peers.

// maxForwarded bounds what is kept of the headers' values (a chain of a
// few dozen addresses).
const maxForwarded = 1024

// onForwarded keeps a value of X-Forwarded-For or Forwarded of a request
// from a trusted front (value is only valid during the call).
func (h *handshake) onForwarded(key, value []byte) {
	var kind byte
	switch {
	case bytes.EqualFold(key, []byte("X-Forwarded-For")):
		kind = 'x'
	case bytes.EqualFold(key, []byte("Forwarded")):
		kind = 'f'
	default:
		return
	}
	if len(h.fwd)+len(value)+2 > maxForwarded {
		h.fwdBad = true // too long to trust: the front is the client
		return
	}
	// Several headers of one kind are one list in order (RFC 9110 5.3);
	// X-Forwarded-For wins over Forwarded if both came, so they are kept
	// apart by a leading kind byte per header.
	h.fwd = append(h.fwd, kind)
	h.fwd = append(h.fwd, value...)
	h.fwd = append(h.fwd, '\n')
}

// forwardedClient is the client address the kept headers name, or an
// invalid AddrPort for none.
func (h *handshake) forwardedClient() netip.AddrPort {
	if h.fwdBad {
		return netip.AddrPort{}
	}
	for _, want := range []byte{'x', 'f'} {
		var list [][]byte
		for _, line := range bytes.Split(h.fwd, []byte{'\n'}) {
			if len(line) > 0 && line[0] == want {
				list = append(list, bytes.Split(line[1:], []byte{','})...)
			}
		}
		if len(list) == 0 {
			continue
		}
		for i := len(list) - 1; i >= 0; i-- {
			var ap netip.AddrPort
			var ok bool
			if want == 'x' {
				ap, ok = parseForwardedAddr(bytes.TrimSpace(list[i]))
			} else {
				ap, ok = forwardedFor(list[i])
			}
			if !ok {
				return netip.AddrPort{} // a list we cannot read is not trusted
			}
			if !h.g.fwd.containsAddr(ap.Addr()) {
				return ap
			}
		}
		return netip.AddrPort{} // only trusted fronts in the chain
	}
	return netip.AddrPort{}
}

// forwardedFor is the for= node of one Forwarded element ("for=192.0.2.1;
// proto=https", `for="[2001:db8::1]:443"`).
func forwardedFor(elem []byte) (netip.AddrPort, bool) {
	for _, pair := range bytes.Split(elem, []byte{';'}) {
		pair = bytes.TrimSpace(pair)
		if len(pair) < 4 || !bytes.EqualFold(pair[:4], []byte("for=")) {
			continue
		}
		v := pair[4:]
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		return parseForwardedAddr(v)
	}
	return netip.AddrPort{}, false
}

// parseForwardedAddr reads "IP", "IP:port", "[IPv6]" or "[IPv6]:port" (a
// missing port is 0).
func parseForwardedAddr(v []byte) (netip.AddrPort, bool) {
	s := string(v)
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
	}
	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		s = s[1 : len(s)-1]
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a.Unmap(), 0), true
}

// bookForwarded, for a request from a trusted front about to be upgraded,
// sets the client from its headers and books the handshake against it (or
// against the front, when they name none); false: that client is over its
// admission limits (h.reject says which), and gets the decoy.
func (h *handshake) bookForwarded() bool {
	g := h.g
	peer := h.c.RemoteAddr()
	if ap := h.forwardedClient(); ap.IsValid() {
		h.client = net.TCPAddrFromAddrPort(ap)
	}
	rej, ok := g.adm.rebook(h, keyOf(h.remote()), time.Now().UnixNano())
	if g.log.Enabled(context.Background(), slog.LevelDebug) {
		g.log.Debug("forwarded", "remote", h.remote().String(), "peer", peer.String(), "admitted", ok)
	}
	if !ok {
		h.reject = rej // counted when the decoy answers
	}
	return ok
}
