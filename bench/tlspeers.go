package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// TLS peer names. Each terminates TLS with the run's one certificate.
const (
	PeerHTTVPSTLS = "httvps-tls"        // our gateway, wss://…/SECRET/tcp
	PeerV2RayTLS  = "v2ray-tls"         // v2ray-plugin -tls, wss://…/
	PeerNginxTLS  = "nginx-tls"         // nginx stream: TLS-terminating TCP proxy, no WebSocket
	PeerTunnelTLS = "httvps-tunnel-tls" // our gateway, streams on one wss://…/v1/tunnel
	// PeerGoTLS is the Go floor: crypto/tls on std net, a goroutine pair per
	// connection (GoCopyRelay behind tls.Listen), raw TLS like nginx-tls.
	PeerGoTLS = "gotls"
)

// tlsPeer reports whether name is one of the TLS peers.
func tlsPeer(name string) bool {
	return name == PeerHTTVPSTLS || name == PeerV2RayTLS || name == PeerNginxTLS || name == PeerTunnelTLS || name == PeerGoTLS ||
		name == PeerHTTVPSSSTLS || name == PeerNginxWSS || name == PeerTunnelSSTLS
}

// tunnelPeer reports whether name is reached through the native tunnel.
func tunnelPeer(name string) bool {
	return name == PeerTunnel || name == PeerTunnelTLS || name == PeerTunnelSS || name == PeerTunnelSSTLS
}

// newHTTVPSTLSPeer runs our gateway with -tls-cert/-tls-key on the
// Outline-compatible tcp path.
func newHTTVPSTLSPeer(bin string, extra, env []string, cert *benchCert) (*peer, error) {
	pe, err := newHTTVPSPeer(bin, extra, env)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	help, _ := exec.CommandContext(ctx, bin, "-h").CombinedOutput()
	if !strings.Contains(string(help), "-tls-cert") {
		return nil, fmt.Errorf("%w: %s has no -tls-cert flag", errPeerUnavailable, bin)
	}
	plain := pe.argv
	tlsArgs := []string{"-tls-cert", cert.CertFile, "-tls-key", cert.KeyFile}
	pe.argv = func(port int, sink string) []string {
		return append(plain(port, sink), tlsArgs...)
	}
	pe.info.Name = PeerHTTVPSTLS
	pe.info.Command = strings.TrimSpace(pe.info.Command) + " -tls-cert CERT -tls-key KEY"
	pe.tls = cert.clientTLS()
	return pe, nil
}

// newV2RayTLSPeer runs ss-v2ray-plugin as a TLS WebSocket server (the
// plaintext v2ray peer plus -tls -cert -key -host).
func newV2RayTLSPeer(bin string, cert *benchCert) (*peer, error) {
	pe, err := newV2RayPeer(bin)
	if err != nil {
		return nil, err
	}
	plain := pe.argv
	tlsArgs := []string{"-tls", "-cert", cert.CertFile, "-key", cert.KeyFile, "-host", tlsServerName}
	pe.argv = func(port int, sink string) []string {
		return append(plain(port, sink), tlsArgs...)
	}
	pe.info.Name = PeerV2RayTLS
	pe.info.Command += " -tls -cert CERT -key KEY -host " + tlsServerName
	pe.tls = cert.clientTLS()
	return pe, nil
}

// nginxStreamModule is where Debian's libnginx-mod-stream installs the
// stream module; nginx-light has none built in.
const nginxStreamModule = "/usr/lib/nginx/modules/ngx_stream_module.so"

// nginxConf is the whole nginx configuration of the nginx-tls peer: a
// stream (TCP) server that terminates TLS and proxies the plaintext bytes
// to the sink. No WebSocket: nginx's http proxy would need a WebSocket
// backend (another relay process) in front of the TCP sink, so the client
// speaks raw TLS to nginx instead. Session tickets are issued, as nginx
// does by default and as httvps and v2ray-plugin do, so every peer does
// the same work per handshake; the session cache is off, and the harness's
// client never resumes, so every handshake is a full one.
const nginxConf = `load_module %[1]s;
daemon off;
master_process on;
worker_processes 2;
worker_rlimit_nofile 20000;
error_log %[2]s/error.log warn;
pid %[2]s/nginx.pid;
events {
    worker_connections 20000;
}
stream {
    server {
        listen 127.0.0.1:%[3]d ssl;
        ssl_certificate %[4]s;
        ssl_certificate_key %[5]s;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_tickets on;
        ssl_session_cache off;
        proxy_connect_timeout 5s;
        proxy_timeout 1h;
        proxy_pass %[6]s;
    }
}
`

// newNginxTLSPeer runs nginx (master + 2 workers) with nginxConf written
// into dir. Its CPU and RSS are summed over master and workers.
func newNginxTLSPeer(bin, dir string, cert *benchCert) (*peer, error) {
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", errPeerUnavailable, bin, err)
	}
	if _, err := os.Stat(nginxStreamModule); err != nil {
		return nil, fmt.Errorf("%w: %s missing (Debian package libnginx-mod-stream)", errPeerUnavailable, nginxStreamModule)
	}
	ndir := filepath.Join(dir, "nginx")
	if err := os.MkdirAll(ndir, 0o755); err != nil {
		return nil, err
	}
	conf := filepath.Join(ndir, "nginx.conf")
	return &peer{
		info: PeerInfo{Name: PeerNginxTLS, Version: nginxVersion(path),
			Command: path + " -p DIR -e DIR/error.log -c DIR/nginx.conf  (stream { server { listen 127.0.0.1:PORT ssl; proxy_pass SINK; } }, 2 workers, tickets on, session cache off)"},
		prestart: func(port int, sink string) error {
			return os.WriteFile(conf, fmt.Appendf(nil, nginxConf, nginxStreamModule, ndir, port, cert.CertFile, cert.KeyFile, sink), 0o644)
		},
		argv: func(int, string) []string {
			return []string{path, "-p", ndir, "-e", filepath.Join(ndir, "error.log"), "-c", conf}
		},
		tls:   cert.clientTLS(),
		group: true,
	}, nil
}

func nginxVersion(path string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, path, "-V").CombinedOutput()
	var v []string
	for _, l := range strings.Split(string(out), "\n") {
		if s, ok := strings.CutPrefix(l, "nginx version: "); ok {
			v = append(v, s)
		}
		if strings.HasPrefix(l, "built with ") {
			v = append(v, strings.TrimSpace(l))
		}
	}
	for _, pkg := range []string{"nginx-light", "libnginx-mod-stream"} {
		if b, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f", "${Version}", pkg).Output(); err == nil {
			v = append(v, "Debian "+pkg+" "+string(b))
		}
	}
	if len(v) == 0 {
		return "unknown"
	}
	return strings.Join(v, ", ")
}

// newGoTLSPeer runs GoCopyRelay behind crypto/tls (the relay subcommand
// with -tls-cert/-tls-key): what a TLS 1.3 handshake costs in Go with
// nothing of ours around it, the floor for httvps-tls's new sessions.
func newGoTLSPeer(self string, cert *benchCert) *peer {
	pe := newGoCopyPeer(self, true)
	plain := pe.argv
	pe.argv = func(port int, sink string) []string {
		return append(plain(port, sink), "-tls-cert", cert.CertFile, "-tls-key", cert.KeyFile)
	}
	pe.info.Name = PeerGoTLS
	pe.info.Version = "crypto/tls + io.Copy relay (32 KiB buffer), " + runtime.Version()
	pe.info.Command += " -tls-cert CERT -tls-key KEY"
	pe.tls = cert.clientTLS()
	return pe
}
