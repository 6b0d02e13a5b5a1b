package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/httvps/httvps/codec/proxyproto"
)

// The PROXY protocol on the listener (docs/04-gateway-design.md, "Client
// addresses behind a load balancer").
//
// A connection from a peer in Config.ProxyProtocolFrom must start with a
// PROXY header (v1 or v2, codec/proxyproto); the client it names is then
// the connection's client: its per-address admission limits, its log
// lines. The header is read at the very start of the handshake, before the
// TLS ClientHello or the plain request, under the handshake deadline. A
// trusted peer that sends no header, or a broken one, is closed without an
// answer, as nginx's `listen … proxy_protocol` does. A connection from
// anyone else is not looked at: a header from it is just a bad first line
// and gets the decoy, as from nginx without proxy_protocol.

// maxProxyHeader bounds a v2 header with its TLVs (the balancers' TLVs —
// AWS's VPC endpoint, Azure's link id, GCP's PSC id — are tens of bytes).
const maxProxyHeader = 2048

// proxyPeers is the set of trusted peers; nil on a Gateway means the PROXY
// protocol is off. Fixed after New.
type proxyPeers struct {
	prefixes []netip.Prefix // unmapped
}

func newProxyPeers(field string, list []netip.Prefix) (*proxyPeers, error) {
	if len(list) == 0 {
		return nil, nil
	}
	p := &proxyPeers{}
	for _, pf := range list {
		if !pf.IsValid() {
			return nil, fmt.Errorf("gateway: %s: %v is not a valid prefix", field, pf)
		}
		if a := pf.Addr(); a.Is4In6() && pf.Bits() >= 96 {
			pf = netip.PrefixFrom(a.Unmap(), pf.Bits()-96)
		}
		p.prefixes = append(p.prefixes, pf.Masked())
	}
	return p, nil
}

// trusts reports whether the TCP peer a may send a PROXY header (or, as
// Gateway.fwd, forwarded-for headers).
func (p *proxyPeers) trusts(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return false
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return false
	}
	return p.containsAddr(ip)
}

// containsAddr reports whether ip is in one of the prefixes.
func (p *proxyPeers) containsAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, pf := range p.prefixes {
		if pf.Contains(ip) {
			return true
		}
	}
	return false
}

var errProxyRefused = errors.New("gateway: client address over its admission limits")

// readProxy reads the PROXY header of a connection from a trusted peer,
// waiting for its bytes under the handshake deadline (an idle wait:
// admission may evict it). It returns false when the connection is done
// with: timed out, evicted, or closed for a broken header or for the
// client address's limits. On true the header is consumed and the client
// address, if it named one, is the handshake's.
func (h *handshake) readProxy() bool {
	g := h.g
	r := h.c.Reader()
	for {
		buf, err := r.Peek(r.Len())
		if err != nil {
			return false
		}
		hd, n, err := proxyproto.Parse(buf, maxProxyHeader)
		if errors.Is(err, proxyproto.ErrShort) {
			if err := h.waitBytes(n, h.deadline()); err != nil {
				if !errors.Is(err, errEvicted) {
					h.expire()
				}
				return false
			}
			continue
		}
		if err == nil && hd.Src.IsValid() {
			h.client = net.TCPAddrFromAddrPort(netip.AddrPortFrom(hd.Src.Addr().Unmap(), hd.Src.Port()))
			if rej, ok := g.adm.rebook(h, keyOf(h.client), time.Now().UnixNano()); !ok {
				g.m.HandshakeRejected(rej)
				err = errProxyRefused
			}
		}
		if err != nil {
			if !errors.Is(err, errProxyRefused) {
				g.m.HandshakeRejected(RejectProxy)
			}
			if g.log.Enabled(context.Background(), slog.LevelDebug) {
				g.log.Debug("proxy protocol: connection closed", "peer", h.c.RemoteAddr().String(), "remote", h.remote().String(), "err", err)
			}
			if h.state.CompareAndSwap(hsReading, hsDead) {
				h.c.Close()
			}
			return false
		}
		r.Skip(n)
		h.proxied = false
		if g.log.Enabled(context.Background(), slog.LevelDebug) {
			g.log.Debug("proxy protocol", "version", hd.Version, "remote", h.remote().String(), "peer", h.c.RemoteAddr().String())
		}
		return true
	}
}

// remote is the client's address: the one a PROXY header named, else the
// TCP peer's.
func (h *handshake) remote() net.Addr {
	if h.client != nil {
		return h.client
	}
	return h.c.RemoteAddr()
}
