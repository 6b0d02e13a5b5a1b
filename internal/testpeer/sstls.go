package testpeer

import (
	"fmt"
	"net"
	"strconv"
	"testing"
)

// V2RayPluginTLSOpts are the SIP003 options for a stock v2ray-plugin client
// talking to a TLS gateway: websocket mode over TLS with SNI and Host
// "localhost", no Mux.Cool, the secret's path, and certFile (PEM) trusted as
// the root (the plugin's client-mode "cert" option).
func V2RayPluginTLSOpts(secret, certFile string) string {
	return fmt.Sprintf("tls;host=localhost;path=/%s/tcp;mux=0;cert=%s", secret, certFile)
}

// SSLocalWithOpts is SSLocal with the plugin options given.
func SSLocalWithOpts(t testing.TB, gatewayAddr, password, method, pluginOpts string) string {
	t.Helper()
	gwHost, gwPort, err := net.SplitHostPort(gatewayAddr)
	if err != nil {
		t.Fatalf("testpeer: gateway address %q: %v", gatewayAddr, err)
	}
	var last error
	for range 3 {
		port := FreePort(t)
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		p := StartProc(t, "ss-local",
			"-s", gwHost, "-p", gwPort,
			"-b", "127.0.0.1", "-l", strconv.Itoa(port),
			"-k", password, "-m", method,
			"-t", "60", "-n", "20000",
			"--plugin", "ss-v2ray-plugin",
			"--plugin-opts", pluginOpts)
		if last = waitProcListening(p, addr, startTimeout); last == nil {
			return addr
		}
	}
	t.Fatalf("testpeer: ss-local: %v", last)
	return ""
}
