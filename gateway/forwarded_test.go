package gateway

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/httvps/httvps/internal/testpeer"
)

// wsForwarded upgrades from local address from (nil: 127.0.0.1) with the
// given extra headers; err is the dial's.
func wsForwarded(g *Gateway, from net.IP, hdr http.Header) (net.Conn, error) {
	d := ws.Dialer{Timeout: 5 * time.Second, Header: ws.HandshakeHeaderHTTP(hdr)}
	if from != nil {
		d.NetDial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: from}}
			return nd.DialContext(ctx, network, addr)
		}
	}
	c, _, _, err := d.Dial(context.Background(), "ws://"+g.Addr().String()+"/s3cret/tcp")
	return c, err
}

// TestForwardedCarriesClient: from a trusted HTTP front, the rightmost
// address of X-Forwarded-For (or Forwarded's for=) that is not a trusted
// front is the client in the log; without the headers the front is; from
// an untrusted peer the headers are ignored. Every session relays intact.
func TestForwardedCarriesClient(t *testing.T) {
	log := &remoteLog{msg: "forwarded"}
	g := startGateway(t, testpeer.EchoServer(t), func(c *Config) {
		c.ForwardedFrom = []netip.Prefix{trustedLB}
		c.Logger = slog.New(log)
	})
	for i, tc := range []struct {
		name string
		hdr  http.Header
		want string // "": the front's own address
	}{
		{"xff one", http.Header{"X-Forwarded-For": {"198.51.100.9"}}, "198.51.100.9:0"},
		{"xff chain", http.Header{"X-Forwarded-For": {"203.0.113.5, 198.51.100.10"}}, "198.51.100.10:0"},
		{"xff through two fronts", http.Header{"X-Forwarded-For": {"203.0.113.5, 198.51.100.11, 127.0.0.1"}}, "198.51.100.11:0"},
		{"xff two headers", http.Header{"X-Forwarded-For": {"203.0.113.5", "198.51.100.12"}}, "198.51.100.12:0"},
		{"xff ipv6 with port", http.Header{"X-Forwarded-For": {"[2001:db8::12]:4711"}}, "[2001:db8::12]:4711"},
		{"forwarded", http.Header{"Forwarded": {`for=203.0.113.5, for="[2001:db8::7]:4711";proto=https`}}, "[2001:db8::7]:4711"},
		{"xff wins over forwarded", http.Header{"Forwarded": {"for=203.0.113.5"}, "X-Forwarded-For": {"198.51.100.13"}}, "198.51.100.13:0"},
		{"garbage", http.Header{"X-Forwarded-For": {"198.51.100.14, not-an-address"}}, ""},
		{"only fronts", http.Header{"X-Forwarded-For": {"127.0.0.1"}}, ""},
		{"none", nil, ""},
	} {
		c, err := wsForwarded(g, nil, tc.hdr)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		echoThrough(t, c, 64<<10+i)
		c.Close()
		got := log.last()
		if tc.want == "" {
			if h, _, _ := net.SplitHostPort(got); h != "127.0.0.1" {
				t.Errorf("%s: remote %q, want the front's own address", tc.name, got)
			}
		} else if got != tc.want {
			t.Errorf("%s: remote %q, want %q", tc.name, got, tc.want)
		}
	}
	// From an untrusted peer: no forwarded line, the headers count for nothing.
	before := log.n()
	c, err := wsForwarded(g, untrustedIP, http.Header{"X-Forwarded-For": {"198.51.100.99"}})
	if err != nil {
		t.Fatal(err)
	}
	echoThrough(t, c, 1000)
	c.Close()
	if log.n() != before {
		t.Errorf("headers from an untrusted peer were read: %s", log.last())
	}
}

// TestForwardedAddressAdmission: the per-address rate limit counts the
// client the front names, not the front every connection comes from: with
// one new connection per address allowed (and pressure from a held
// handshake), client A's second upgrade gets the decoy (addr_rate) while
// client B, behind the same front, gets its session.
func TestForwardedAddressAdmission(t *testing.T) {
	m := &fbMetrics{}
	g := startGateway(t, testpeer.EchoServer(t), func(c *Config) {
		c.ForwardedFrom = []netip.Prefix{trustedLB}
		c.Metrics = m
		c.MaxHandshakes = 4 // under pressure from one handshake on
		c.AddrRate, c.AddrBurst = 0.001, 1
	})
	hold := dialFrom(t, g, untrustedIP, []byte("GET / HTTP/1.1\r\n"))
	for deadline := time.Now().Add(5 * time.Second); g.adm.inProgress() != 1; {
		if time.Now().After(deadline) {
			t.Fatal("the held handshake is not in progress")
		}
		time.Sleep(5 * time.Millisecond)
	}
	a := http.Header{"X-Forwarded-For": {"198.51.100.9"}}
	c, err := wsForwarded(g, nil, a)
	if err != nil {
		t.Fatalf("A's first session: %v", err)
	}
	echoThrough(t, c, 32<<10)
	c.Close()
	if _, err := wsForwarded(g, nil, a); err == nil {
		t.Fatal("A's second upgrade was accepted over its rate")
	}
	if n := m.rejected[RejectAddrRate].Load(); n != 1 {
		t.Errorf("%d addr_rate rejections, want 1", n)
	}
	c, err = wsForwarded(g, nil, http.Header{"X-Forwarded-For": {"198.51.100.77"}})
	if err != nil {
		t.Fatalf("B behind the same front: %v", err)
	}
	echoThrough(t, c, 32<<10)
	c.Close()
	hold.Close()
}
