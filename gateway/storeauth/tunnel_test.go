package storeauth

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/httvps/httvps/codec/mux"
	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/internal/testpeer"
)

// The native tunnel's bearer token is the client token: the store-backed
// Authenticator admits it on /v1/tunnel (one session per tunnel) and a
// wrong one gets the decoy.
func TestTunnelTokenAccepted(t *testing.T) {
	r := startRedis(t)
	n := startNode(t, r, fastConfig())
	secret, tok := newToken(t, n.st, []string{testpeer.EchoServer(t)}, nil)
	route, _, ok := n.auth.Authenticate([]byte(secret), gateway.PathTunnel, gateway.Client{})
	if !ok || route.Account.Key() != tok.ID {
		t.Fatalf("tunnel token: %+v %v", route, ok)
	}
	route.Account.Release()

	dialTunnel := func(token string) error {
		h := http.Header{"Authorization": {"Bearer " + token}}
		d := ws.Dialer{Timeout: 5 * time.Second, Protocols: []string{mux.Subprotocol}, Header: ws.HandshakeHeaderHTTP(h)}
		c, _, _, err := d.Dial(context.Background(), "ws://"+n.addr+"/v1/tunnel")
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := dialTunnel(secret); err != nil {
		t.Fatalf("tunnel with the token: %v", err)
	}
	if err := dialTunnel("not-a-token"); err == nil {
		t.Fatal("tunnel with a wrong token was upgraded")
	}
}
