package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Shadowsocks peers: the client speaks Shadowsocks (ssCipher) inside the
// WebSocket, end to end to a Shadowsocks server that decrypts and dials the
// sink. That is what an Outline deployment carries, so these peers compare
// like with like:
//
//	httvps-ss       our gateway (Outline-compatible path) + a real ss-server behind it
//	outline-ss      outline-ss-server alone (its websocket-stream listener decrypts itself)
//	nginx-ws        nginx http proxy_pass (Upgrade/Connection) + outline-ss-server behind it
//	httvps-ss-tls   httvps-ss with TLS on the gateway
//	nginx-wss       nginx-ws with TLS on nginx
//
// outline-ss-server v1.9.2 has no TLS listener (operators put Caddy or nginx
// in front), so there is no outline-ss-tls: nginx-wss is that deployment.
//
// httvps-tunnel-ss and httvps-tunnel-ss-tls are httvps-ss and httvps-ss-tls
// reached through the native tunnel: N Shadowsocks streams on one tunnel
// beside N Outline-path WebSockets.
const (
	PeerHTTVPSSS    = "httvps-ss"
	PeerHTTVPSSSTLS = "httvps-ss-tls"
	PeerTunnelSS    = "httvps-tunnel-ss"
	PeerTunnelSSTLS = "httvps-tunnel-ss-tls"
	PeerOutline     = "outline-ss"
	PeerNginxWS     = "nginx-ws"
	PeerNginxWSS    = "nginx-wss"
)

// ssPeer reports whether the peer's clients speak Shadowsocks.
func ssPeer(name string) bool {
	switch name {
	case PeerHTTVPSSS, PeerHTTVPSSSTLS, PeerOutline, PeerNginxWS, PeerNginxWSS, PeerTunnelSS, PeerTunnelSSTLS:
		return true
	}
	return false
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// ssServerBackend is a real ss-server (shadowsocks-libev) listening on
// loopback; its target is the client's choice (the sink).
func ssServerBackend(bin, password string) (*backend, string, error) {
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %s: %v", errPeerUnavailable, bin, err)
	}
	ver := "shadowsocks-libev"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if b, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f", "${Version}", "shadowsocks-libev").Output(); err == nil {
		ver += " " + string(b)
	}
	return &backend{name: "ss-server", argv: func(port int, _ string) []string {
		// -t: the socket timeout, as long as the gateway's idle timeout.
		return []string{path, "-s", "127.0.0.1", "-p", strconv.Itoa(port), "-k", password, "-m", ssCipher, "-t", "3600"}
	}}, ver, nil
}

// newHTTVPSSSPeer is our gateway (plaintext, or TLS with cert) in front of a
// real ss-server.
func newHTTVPSSSPeer(gw string, extra, env []string, ssBin string, cert *benchCert) (*peer, error) {
	var (
		pe  *peer
		err error
	)
	name := PeerHTTVPSSS
	if cert != nil {
		pe, err = newHTTVPSTLSPeer(gw, extra, env, cert)
		name = PeerHTTVPSSSTLS
	} else {
		pe, err = newHTTVPSPeer(gw, extra, env)
	}
	if err != nil {
		return nil, err
	}
	password := randomHex(12)
	b, ver, err := ssServerBackend(ssBin, password)
	if err != nil {
		return nil, err
	}
	pe.backend, pe.ssPassword = b, password
	pe.info.Name = name
	pe.info.Version += "; backend " + ver
	pe.info.Command += "  +  ss-server -s 127.0.0.1 -p PORT2 -k PASSWORD -m " + ssCipher + " -t 3600 (the gateway's route; CPU, RSS and fds summed over both)"
	return pe, nil
}

// outlineBinary is the outline-ss-server peer's binary: bin if set, else
// built from src (the tools module, its own go.mod) into dir.
func outlineBinary(bin, src, dir string) (string, error) {
	if bin != "" {
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("%w: %v", errPeerUnavailable, err)
		}
		return bin, nil
	}
	if _, err := os.Stat(filepath.Join(src, "go.mod")); err != nil {
		return "", fmt.Errorf("%w: outline-ss-server tools module: %v", errPeerUnavailable, err)
	}
	out, err := filepath.Abs(filepath.Join(dir, "outline-ss-bench"))
	if err != nil {
		return "", err
	}
	if err := buildTool(src, out); err != nil {
		return "", fmt.Errorf("%w: %v", errPeerUnavailable, err)
	}
	return out, nil
}

// buildTool builds the Go module in src (a tool with a go.mod of its own)
// into the binary out.
func buildTool(src, out string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, ".")
	cmd.Dir = src
	if b, err := cmd.CombinedOutput(); err != nil {
		line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
		return fmt.Errorf("go build in %s: %v: %s", src, err, line)
	}
	return nil
}

func outlineVersion(bin string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	b, _ := exec.CommandContext(ctx, bin, "-version").Output()
	if v := strings.TrimSpace(string(b)); v != "" {
		return v
	}
	return "unknown"
}

// outlineArgv is outline-ss-bench's command line; the secret goes in its
// environment.
func outlineArgv(bin, path string) func(int, string) []string {
	return func(port int, _ string) []string {
		return []string{bin, "-listen", "127.0.0.1:" + strconv.Itoa(port), "-path", path, "-udp-path", udpPath(path), "-cipher", ssCipher}
	}
}

// newOutlinePeer runs outline-ss-server (our small main around its service
// package, tools/outline-ss-server) with one websocket-stream listener on
// /SECRET/tcp, as an Outline access key's WebSocket endpoint names it.
func newOutlinePeer(bin string) *peer {
	password, secret := randomHex(12), randomHex(16)
	path := "/" + secret + "/tcp"
	return &peer{
		info: PeerInfo{Name: PeerOutline, Version: outlineVersion(bin),
			Command: bin + " -listen 127.0.0.1:PORT -path /SECRET/tcp -udp-path /SECRET/udp -cipher " + ssCipher + "  (OUTLINE_SS_SECRET=PASSWORD; websocket-stream and websocket-packet listeners, targets limited to loopback, no metrics)"},
		argv:       outlineArgv(bin, path),
		env:        []string{"OUTLINE_SS_SECRET=" + password},
		path:       path,
		ssPassword: password,
	}
}

// nginxWSConf is the nginx-ws / nginx-wss configuration: the http module as
// a WebSocket reverse proxy (proxy_pass with the Upgrade and Connection
// headers, HTTP/1.1 upstream) in front of outline-ss-server's websocket
// listener, as operators front Outline. Logs off, long timeouts; for
// wss, TLS as on nginx-tls (tickets and session cache off).
const nginxWSConf = `daemon off;
master_process on;
worker_processes 2;
worker_rlimit_nofile 20000;
error_log %[1]s/error.log warn;
pid %[1]s/nginx.pid;
events {
    worker_connections 20000;
}
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    server {
        listen 127.0.0.1:%[2]d%[3]s;
%[4]s
        location / {
            proxy_pass http://%[5]s;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_connect_timeout 5s;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
        }
    }
}
`

// newNginxWSPeer runs nginx (master + 2 workers; TLS when cert is set) in
// front of outline-ss-server; CPU and RSS are summed over all of them.
func newNginxWSPeer(nginxBin, dir, outline string, cert *benchCert) (*peer, error) {
	path, err := exec.LookPath(nginxBin)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", errPeerUnavailable, nginxBin, err)
	}
	name, ssl, tlsConf := PeerNginxWS, "", ""
	if cert != nil {
		name, ssl = PeerNginxWSS, " ssl"
		tlsConf = fmt.Sprintf("        ssl_certificate %s;\n        ssl_certificate_key %s;\n        ssl_protocols TLSv1.2 TLSv1.3;\n"+
			"        ssl_session_tickets off;\n        ssl_session_cache off;", cert.CertFile, cert.KeyFile)
	}
	ndir := filepath.Join(dir, name)
	if err := os.MkdirAll(ndir, 0o755); err != nil {
		return nil, err
	}
	conf := filepath.Join(ndir, "nginx.conf")
	o := newOutlinePeer(outline)
	pe := &peer{
		info: PeerInfo{Name: name, Version: nginxVersion(path) + "; backend " + o.info.Version,
			Command: path + " -p DIR -c DIR/nginx.conf  (http { server { listen 127.0.0.1:PORT" + ssl + "; location / { proxy_pass http://OUTLINE; proxy_http_version 1.1; Upgrade/Connection headers } } }, 2 workers)  +  " + o.info.Command},
		prestart: func(port int, upstream string) error {
			return os.WriteFile(conf, fmt.Appendf(nil, nginxWSConf, ndir, port, ssl, tlsConf, upstream), 0o644)
		},
		argv: func(int, string) []string {
			return []string{path, "-p", ndir, "-e", filepath.Join(ndir, "error.log"), "-c", conf}
		},
		group:      true,
		backend:    &backend{name: PeerOutline, argv: o.argv, env: o.env},
		path:       o.path,
		ssPassword: o.ssPassword,
	}
	if cert != nil {
		pe.tls = cert.clientTLS()
	}
	return pe, nil
}
