package api

import (
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/httvps/httvps/store"
)

func (s *Server) listGateways(ctx *fasthttp.RequestCtx) {
	rctx, cancel := s.reqCtx()
	defer cancel()
	gws, err := s.st.ListGateways(rctx)
	if err != nil {
		s.writeError(ctx, fromStoreErr(err, "gateway"))
		return
	}
	out := gatewayList{Gateways: make([]gatewayView, 0, len(gws))}
	for _, g := range gws {
		out.Gateways = append(out.Gateways, gatewayView{
			ID: g.ID, PublicURL: g.PublicURL, Sessions: g.Sessions,
			Started: g.Started.UTC(), LastHeartbeat: g.LastHeartbeat.UTC(),
			ExpiresAt: g.ExpiresAt.UTC(), Live: g.Live, Version: g.Version,
		})
	}
	writeJSON(ctx, fasthttp.StatusOK, out)
}

// gatewayAddr is a usable gateway: where clients reach it.
type gatewayAddr struct {
	PublicURL string
	// Host is "host:port" with the port always present.
	Host string
	// Hostname is Host without the port (the TLS server name).
	Hostname string
	Port     string
	// TLS: the gateway is reached with wss:// (public_url https or wss).
	TLS bool
}

// WSURL is the gateway's WebSocket URL for path (which starts with "/").
func (g gatewayAddr) WSURL(path string) string {
	scheme := "ws"
	if g.TLS {
		scheme = "wss"
	}
	return scheme + "://" + g.Host + path
}

// orderGateways puts live gateways first, then the least loaded, and drops
// registrations whose public URL is unusable. Ties keep the store's ID
// order, so every client sees the same list.
func orderGateways(gws []store.Gateway) []gatewayAddr {
	gws = slices.Clone(gws)
	slices.SortStableFunc(gws, func(a, b store.Gateway) int {
		if a.Live != b.Live {
			if a.Live {
				return -1
			}
			return 1
		}
		if a.Sessions != b.Sessions {
			return a.Sessions - b.Sessions
		}
		return strings.Compare(a.ID, b.ID)
	})
	out := make([]gatewayAddr, 0, len(gws))
	for _, g := range gws {
		if a, ok := parseGatewayURL(g.PublicURL); ok {
			out = append(out, a)
		}
	}
	return out
}

// parseGatewayURL accepts https://, wss://, http:// and ws:// public URLs.
func parseGatewayURL(raw string) (gatewayAddr, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Hostname() == "" {
		return gatewayAddr{}, false
	}
	a := gatewayAddr{PublicURL: raw, Hostname: u.Hostname(), Port: u.Port()}
	switch u.Scheme {
	case "https", "wss":
		a.TLS = true
		if a.Port == "" {
			a.Port = "443"
		}
	case "http", "ws":
		if a.Port == "" {
			a.Port = "80"
		}
	default:
		return gatewayAddr{}, false
	}
	a.Host = net.JoinHostPort(a.Hostname, a.Port)
	return a, true
}
