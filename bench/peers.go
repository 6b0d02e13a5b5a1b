package bench

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"debug/buildinfo"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Peer names.
const (
	PeerHTTVPS = "httvps"
	PeerGoCopy = "gocopy"
	PeerGoBuf  = "gobuf"
	PeerV2Ray  = "v2ray"
	// PeerTunnel is our gateway reached through the native tunnel: each
	// client stream is a stream on one shared tunnel (bench/mux.go).
	PeerTunnel = "httvps-tunnel"
)

// PeerInfo describes a relay for the report.
type PeerInfo struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Command string `json:"command"` // command line, with the sink address as SINK
}

// peer starts one relay process in front of a sink.
type peer struct {
	info PeerInfo
	// argv builds the command line; listen is the port to listen on (0 for
	// self subcommands that choose their own), sink the upstream address.
	argv func(listen int, sink string) []string
	self bool   // prints "listening ADDR"
	path string // WebSocket path, "" for a raw byte stream
	// token, when set, is the native tunnel's token: streams are opened
	// on a shared tunnel (Transport.mux) instead of paths of their own.
	token  string
	tunnel bool
	// tls, when set, is the client configuration: the peer terminates TLS.
	tls *tls.Config
	// group: the peer forks (nginx); its CPU and RSS are summed over its
	// process group.
	group bool
	// prestart, when set, runs before each start (nginx writes its
	// configuration for this port and sink).
	prestart func(listen int, sink string) error
	// env is extra KEY=VALUE environment of the relay process.
	env []string
	// backend, when set, is a second process the relay forwards to
	// (ss-server behind our gateway, outline-ss-server behind nginx): the
	// relay's argv gets the backend's address as its sink, and the backend
	// joins the relay's process group, so CPU, RSS and fds are the pair's.
	backend *backend
	// ssPassword, when set, makes the client speak Shadowsocks (ssCipher)
	// inside the stream to the peer's Shadowsocks server, for the sink.
	ssPassword string
}

// backend is the second process of a two-process peer.
type backend struct {
	name string
	argv func(listen int, target string) []string
	env  []string
}

// running is a started relay.
type running struct {
	proc      *Process
	transport Transport
}

func (pe *peer) start(ctx context.Context, ps *procSet, sink string) (*running, error) {
	if pe.self {
		p, addr, err := ps.startSelf(pe.info.Name, pe.argv(0, sink))
		if err != nil {
			return nil, err
		}
		return &running{proc: p, transport: Transport{Addr: addr, TLS: pe.tls}}, nil
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	upstream, bport := sink, 0
	if pe.backend != nil {
		if bport, err = freePort(); err != nil {
			return nil, err
		}
		upstream = net.JoinHostPort("127.0.0.1", strconv.Itoa(bport))
	}
	if pe.prestart != nil {
		if err := pe.prestart(port, upstream); err != nil {
			return nil, err
		}
	}
	p, err := ps.startOpts(pe.info.Name, pe.argv(port, upstream), startOptions{Env: pe.env})
	if err != nil {
		return nil, err
	}
	p.group = pe.group || pe.backend != nil
	if b := pe.backend; b != nil {
		bp, err := ps.startOpts(b.name, b.argv(bport, sink), startOptions{Env: b.env, Pgid: p.Pid()})
		if err != nil {
			p.Stop()
			return nil, err
		}
		if err := waitListening(ctx, bp, upstream); err != nil {
			p.Stop()
			return nil, err
		}
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := waitListening(ctx, p, addr); err != nil {
		p.Stop()
		return nil, err
	}
	tr := Transport{Addr: addr, Path: pe.path, TLS: pe.tls}
	if pe.tunnel {
		tr.mux = newMuxClient(tr, pe.token)
	}
	if pe.ssPassword != "" {
		if tr.ss, err = newSSTarget(pe.ssPassword, sink); err != nil {
			p.Stop()
			return nil, err
		}
	}
	return &running{proc: p, transport: tr}, nil
}

// newGoCopyPeer runs GoCopyRelay as its own process; buffered selects the
// user-space copy (gobuf) instead of splice (gocopy).
func newGoCopyPeer(self string, buffered bool) *peer {
	name, ver, flag := PeerGoCopy, "io.Copy relay (splice), ", "-buffered=false"
	if buffered {
		name, ver, flag = PeerGoBuf, "io.Copy relay (32 KiB user-space buffer), ", "-buffered=true"
	}
	return &peer{
		info: PeerInfo{Name: name, Version: ver + runtime.Version(),
			Command: "httvps-bench relay -listen 127.0.0.1:0 -target SINK " + flag},
		argv: func(_ int, sink string) []string {
			return []string{self, "relay", "-listen", "127.0.0.1:0", "-target", sink, flag}
		},
		self: true,
	}
}

// newV2RayPeer runs ss-v2ray-plugin in server mode, websocket, path "/".
// Checked on v2ray-plugin 1.3.1 (Debian) by experiment and in its main.go:
// with flags, a server LISTENS on -localAddr:-localPort and forwards to
// -remoteAddr:-remotePort (only the SIP003 SS_* variables are swapped in
// server mode). Without -mux 0 the server expects Mux.Cool from the client
// ("invalid metalen"); with it, each binary message is a piece of the raw
// stream, as ss-local + v2ray-plugin mux=0 and Outline clients send it.
func newV2RayPeer(bin string) (*peer, error) {
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", errPeerUnavailable, bin, err)
	}
	return &peer{
		info: PeerInfo{Name: PeerV2Ray, Version: v2rayVersion(path),
			Command: path + " -server -mode websocket -path / -mux 0 -loglevel none -localAddr 127.0.0.1 -localPort PORT -remoteAddr SINKHOST -remotePort SINKPORT"},
		argv: func(port int, sink string) []string {
			h, p, _ := net.SplitHostPort(sink)
			return []string{path, "-server", "-mode", "websocket", "-path", "/", "-mux", "0", "-loglevel", "none",
				"-localAddr", "127.0.0.1", "-localPort", strconv.Itoa(port),
				"-remoteAddr", h, "-remotePort", p}
		},
		path: "/",
	}, nil
}

// newHTTVPSPeer runs our gateway on the Outline-compatible tcp path.
func newHTTVPSPeer(bin string, extra, env []string) (*peer, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", errPeerUnavailable, bin, err)
	}
	// env (e.g. GOMAXPROCS=4) goes through env(1), which execs the
	// gateway in the same process, so its CPU is still the one measured.
	var pre []string
	if len(env) > 0 {
		pre = append([]string{"/usr/bin/env"}, env...)
	}
	var sb [16]byte
	rand.Read(sb[:])
	secret := hex.EncodeToString(sb[:])
	return &peer{
		info: PeerInfo{Name: PeerHTTVPS, Version: goBinaryVersion(bin),
			Command: strings.Join(append(slices.Clone(env), bin), " ") + " -listen 127.0.0.1:PORT -admin-listen '' -route SECRET=SINK -log-level warn -idle-timeout 1h -addr-rate -1 -addr-handshakes -1 " + strings.Join(extra, " ")},
		argv: func(port int, sink string) []string {
			// The bench's clients are a handful of loopback addresses
			// opening thousands of sessions a second: the per-address
			// limits, meant for hostile hosts, are off.
			a := append(slices.Clone(pre), bin, "-listen", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
				"-admin-listen", "", "-route", secret+"="+sink, "-log-level", "warn",
				"-idle-timeout", "1h", "-addr-rate", "-1", "-addr-handshakes", "-1")
			return append(a, extra...)
		},
		path:  "/" + secret + "/tcp",
		token: secret,
	}, nil
}

// asTunnel makes pe (httvps or httvps-tls) the peer name, the same gateway
// reached through the native tunnel.
func asTunnel(pe *peer, name string) {
	pe.info.Name = name
	pe.tunnel = true
}

// goBinaryVersion describes a Go binary from its embedded build info.
func goBinaryVersion(path string) string {
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if len(s.Value) > 12 {
				s.Value = s.Value[:12]
			}
			v += " rev " + s.Value
		case "vcs.modified":
			if s.Value == "true" {
				v += " (modified)"
			}
		}
	}
	v += ", " + bi.GoVersion
	if st, err := os.Stat(path); err == nil {
		v += ", built " + st.ModTime().UTC().Format(time.RFC3339)
	}
	if b, err := os.ReadFile(path); err == nil {
		sum := sha256.Sum256(b)
		v += ", sha256 " + hex.EncodeToString(sum[:6])
	}
	return v
}

func v2rayVersion(path string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, path, "-version").Output()
	v := strings.Join(strings.Fields(strings.SplitN(string(out), "\n", 2)[0]), " ")
	if pkg, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f", "${Version}", "shadowsocks-v2ray-plugin").Output(); err == nil {
		v += ", Debian shadowsocks-v2ray-plugin " + string(pkg)
	}
	if bi, err := buildinfo.ReadFile(path); err == nil {
		v += ", " + bi.GoVersion
	}
	return v
}
