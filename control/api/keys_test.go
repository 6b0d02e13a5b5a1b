package api

import (
	"bytes"
	"net/http"
	"testing"
	"time"

	"github.com/httvps/httvps/client"
)

// The httvps:// key the control plane hands out is the self-contained form
// of docs/03: every gateway in the client-config order, the cipher and
// secret, the pin and the control plane; the reference client's parser
// reads it back to the same gateways, key and control URL.
func TestHTTVPSKeyIsSelfContained(t *testing.T) {
	pin := bytes.Repeat([]byte{0x5a}, 32)
	h := newHarness(t, embeddedStore(t), func(c *Config) { c.KeyPin = pin })
	h.heartbeat("gw-b", "https://gw2.example.com:8443", 5, time.Minute)
	h.heartbeat("gw-a", "wss://gw1.example.com", 1, time.Minute)
	h.heartbeat("gw-c", "http://plain.example.com", 7, time.Minute) // another scheme than the first: left out
	h.heartbeat("gw-d", "https://[2001:db8::7]", 9, time.Minute)

	c := h.createToken(`{"label":"alice","cipher":"aes-128-gcm"}`)
	cc := decode[clientConfigJSON](t, h.do("GET", "/v1/client/config", c.Token, ""))
	for _, key := range []string{c.AccessKeys.HTTVPS, cc.AccessKeys.HTTVPS} {
		k, err := client.ParseKey(key)
		if err != nil {
			t.Fatalf("ParseKey(%s): %v", key, err)
		}
		var addrs []string
		for _, g := range k.Gateways {
			addrs = append(addrs, g.Addr)
			if !g.TLS || !bytes.Equal(g.Pin, pin) {
				t.Errorf("gateway %+v: want TLS with the pin", g)
			}
		}
		want := []string{"gw1.example.com:443", "gw2.example.com:8443", "[2001:db8::7]:443"}
		if len(addrs) != len(want) {
			t.Fatalf("gateways %v, want %v (key %s)", addrs, want, key)
		}
		for i := range want {
			if addrs[i] != want[i] {
				t.Fatalf("gateways %v, want %v", addrs, want)
			}
		}
		if k.Token != c.Token || k.Cipher != "aes-128-gcm" || k.Secret != cc.Secret || k.Secret == "" ||
			k.Control != "https://ctl.example.com:8443" || k.Label != "alice" {
			t.Errorf("key %s parsed as token %v cipher %q control %q label %q", key, k.Token == c.Token, k.Cipher, k.Control, k.Label)
		}
	}
}

// Plaintext gateways (loopback tests) give tls=0 and no pin without
// KeyPin; with no gateway the key names only the control plane.
func TestHTTVPSKeyPlaintextAndControlOnly(t *testing.T) {
	h := newHarness(t, embeddedStore(t))
	c := h.createToken(`{}`)
	if want := "httvps://" + c.Token + "@ctl.example.com:8443/"; c.AccessKeys.HTTVPS != want {
		t.Errorf("no gateway: %q, want %q", c.AccessKeys.HTTVPS, want)
	}
	h.heartbeat("gw-a", "ws://127.0.0.1:8080", 0, time.Minute)
	r := h.do("GET", "/v1/client/config", c.Token, "")
	if r.StatusCode != http.StatusOK {
		t.Fatalf("config: %d", r.StatusCode)
	}
	cc := decode[clientConfigJSON](t, r)
	k, err := client.ParseKey(cc.AccessKeys.HTTVPS)
	if err != nil {
		t.Fatal(err)
	}
	if len(k.Gateways) != 1 || k.Gateways[0].Addr != "127.0.0.1:8080" || k.Gateways[0].TLS || k.Pin != nil {
		t.Errorf("plaintext gateway key %s: %+v", cc.AccessKeys.HTTVPS, k.Gateways)
	}
}
