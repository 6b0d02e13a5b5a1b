package gateway

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// clientAuth admits "s3cret" and records who asked.
type clientAuth struct {
	mu    sync.Mutex
	calls int
	last  Client // Device copied: it is only valid during the call
}

func (a *clientAuth) Authenticate(secret []byte, _ PathKind, c Client) (Route, Reject, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	a.last = Client{Addr: c.Addr, Device: bytes.Clone(c.Device)}
	if string(secret) != "s3cret" {
		return Route{}, RejectSecret, false
	}
	return Route{Upstream: "127.0.0.1:1"}, 0, true
}

func (a *clientAuth) seen() (int, Client) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls, a.last
}

// The HTTVPS-Device header reaches the Authenticator on the tunnel path,
// with the client's address; an invalid or repeated one is a probe (the
// decoy, counted as device_id) and never reaches it; the Outline paths
// ignore it.
func TestDeviceHeader(t *testing.T) {
	m := &fbMetrics{}
	auth := &clientAuth{}
	g := startGateway(t, "127.0.0.1:1", func(c *Config) { c.Metrics = m; c.Auth = auth })
	req := func(path, headers string) []byte {
		conn, err := net.Dial("tcp", g.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade, close\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"+headers+"\r\n")
		br := bufio.NewReader(conn)
		line, _ := br.ReadString('\n')
		if strings.HasPrefix(line, "HTTP/1.1 101 ") {
			return []byte(line)
		}
		rest, _ := io.ReadAll(br)
		return dropDate(append([]byte(line), rest...))
	}
	const tunnel = "Sec-WebSocket-Protocol: httvps.v1\r\nAuthorization: Bearer s3cret\r\n"
	decoy := req("/v1/tunnel", "") // no subprotocol
	id := "Abc_def-0123456789xyz"
	if got := req("/v1/tunnel", tunnel+"HTTVPS-Device: "+id+"\r\n"); !bytes.HasPrefix(got, []byte("HTTP/1.1 101 ")) {
		t.Fatalf("valid device id: %q", got)
	}
	n, c := auth.seen()
	if n != 1 || string(c.Device) != id || c.Addr != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("authenticator saw %d calls, last %+v", n, c)
	}
	if got := req("/v1/tunnel", tunnel); !bytes.HasPrefix(got, []byte("HTTP/1.1 101 ")) {
		t.Fatalf("no device id: %q", got)
	}
	if n, c = auth.seen(); n != 2 || c.Device != nil || !c.Addr.IsValid() {
		t.Fatalf("no device id: authenticator saw %+v", c)
	}
	bad := map[string]string{
		"too short":    "HTTVPS-Device: abcdefghij12345\r\n", // 15
		"too long":     "HTTVPS-Device: " + strings.Repeat("a", MaxDeviceID+1) + "\r\n",
		"bad char":     "HTTVPS-Device: abcdefghij123456.\r\n",
		"space inside": "HTTVPS-Device: abcdefgh ij123456\r\n",
		"empty":        "HTTVPS-Device: \r\n",
		"two":          "HTTVPS-Device: " + id + "\r\nhttvps-device: " + id + "\r\n",
	}
	for name, h := range bad {
		if got := req("/v1/tunnel", tunnel+h); !bytes.Equal(got, decoy) {
			t.Errorf("%s: %q, want the decoy", name, got)
		}
	}
	if n, _ := auth.seen(); n != 2 {
		t.Errorf("invalid device ids reached the authenticator: %d calls", n)
	}
	if got := m.rejected[RejectDeviceID].Load(); got != int64(len(bad)) {
		t.Errorf("device_id rejects %d, want %d", got, len(bad))
	}
	// The Outline paths ignore the header, valid or not.
	req("/s3cret/tcp", "HTTVPS-Device: x\r\n")
	if n, c = auth.seen(); n != 3 || c.Device != nil || !c.Addr.IsValid() {
		t.Fatalf("outline path: %d calls, last %+v", n, c)
	}
}

func TestValidDeviceID(t *testing.T) {
	for id, want := range map[string]bool{
		"0123456789abcdef":       true, // 16
		strings.Repeat("Z", 64):  true,
		strings.Repeat("Z", 65):  false,
		"0123456789abcde":        false,
		"0123456789abcdef=":      false, // padding is not base64url without padding
		"0123456789abcdef\x00":   false,
		"0123456789abc:ef":       false, // never an address
		"0123456789abc.ef":       false,
		"Native_device-01234567": true,
	} {
		if got := ValidDeviceID([]byte(id)); got != want {
			t.Errorf("ValidDeviceID(%q) = %v, want %v", id, got, want)
		}
	}
}
