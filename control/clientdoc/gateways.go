package clientdoc

import (
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/httvps/httvps/store"
)

// Gateway is a usable gateway: where clients reach it.
type Gateway struct {
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
func (g Gateway) WSURL(path string) string {
	scheme := "ws"
	if g.TLS {
		scheme = "wss"
	}
	return scheme + "://" + g.Host + path
}

// OrderGateways puts live gateways first, then the least loaded, and drops
// registrations whose public URL is unusable. Ties keep the store's ID
// order, so every client sees the same list.
func OrderGateways(gws []store.Gateway) []Gateway {
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
	out := make([]Gateway, 0, len(gws))
	for _, g := range gws {
		if a, ok := ParseGatewayURL(g.PublicURL); ok {
			out = append(out, a)
		}
	}
	return out
}

// ParseGatewayURL accepts https://, wss://, http:// and ws:// public URLs.
func ParseGatewayURL(raw string) (Gateway, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Hostname() == "" {
		return Gateway{}, false
	}
	a := Gateway{PublicURL: raw, Hostname: u.Hostname(), Port: u.Port()}
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
		return Gateway{}, false
	}
	a.Host = net.JoinHostPort(a.Hostname, a.Port)
	return a, true
}
