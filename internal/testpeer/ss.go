package testpeer

import (
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"
)

// Default Shadowsocks settings used by the tests.
const (
	DefaultMethod   = "chacha20-ietf-poly1305"
	DefaultPassword = "testpeer-password"
)

const startTimeout = 10 * time.Second

// SSServer starts shadowsocks-libev's ss-server on a free loopback port with
// the UDP relay on (-u) and returns its "127.0.0.1:port" (TCP and UDP).
func SSServer(t testing.TB, password, method string) string {
	t.Helper()
	var last error
	for range 3 { // the free port can be taken between pick and bind
		port := FreePort(t)
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		p := StartProc(t, "ss-server",
			"-s", "127.0.0.1", "-p", strconv.Itoa(port),
			"-k", password, "-m", method, "-u",
			"-t", "60", "-n", "20000")
		if last = waitProcListening(p, addr, startTimeout); last == nil {
			return addr
		}
	}
	t.Fatalf("testpeer: ss-server: %v", last)
	return ""
}

// V2RayPluginOpts are the SIP003 options for a stock v2ray-plugin client that
// talks to the gateway's Outline TCP path: websocket mode, no Mux.Cool, the
// secret's path, plain ws.
func V2RayPluginOpts(secret string) string {
	return fmt.Sprintf("mode=websocket;mux=0;path=/%s/tcp;host=127.0.0.1", secret)
}

// SSLocal starts ss-local with ss-v2ray-plugin pointed at gatewayAddr and
// returns its SOCKS5 address. The plugin starts after ss-local listens; use
// WaitSOCKSReady before the first real transfer.
func SSLocal(t testing.TB, gatewayAddr, secret, password, method string) string {
	t.Helper()
	return SSLocalWithOpts(t, gatewayAddr, password, method, V2RayPluginOpts(secret))
}

// V2RayPluginServer starts ss-v2ray-plugin in server mode: it accepts
// WebSocket connections on path and forwards each raw stream to upstream. It
// is the stock peer that stands in for the gateway when validating this
// package's clients. It returns the WebSocket listen address.
func V2RayPluginServer(t testing.TB, path, upstream string) string {
	t.Helper()
	upHost, upPort, err := net.SplitHostPort(upstream)
	if err != nil {
		t.Fatalf("testpeer: upstream %q: %v", upstream, err)
	}
	var last error
	for range 3 {
		port := FreePort(t)
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		// Found by experiment: in server mode the plugin's flags listen on
		// local* and forward to remote* (the reverse of SIP003's env names).
		p := StartProc(t, "ss-v2ray-plugin", "-server",
			"-localAddr", "127.0.0.1", "-localPort", strconv.Itoa(port),
			"-remoteAddr", upHost, "-remotePort", upPort,
			"-mode", "websocket", "-path", path, "-host", "127.0.0.1",
			"-mux", "0", // the server also assumes Mux.Cool unless told otherwise
			"-loglevel", "warning")
		if last = waitProcListening(p, addr, startTimeout); last == nil {
			return addr
		}
	}
	t.Fatalf("testpeer: ss-v2ray-plugin -server: %v", last)
	return ""
}
