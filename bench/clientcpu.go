package bench

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"time"
)

// ClientCell is one (client, direction, streams) measurement of the
// client-cpu scenario: the bytes go SOCKS5 → client → TLS WebSocket →
// gateway → ss-server → sink, and CPU is the client's.
type ClientCell struct {
	Client        string  `json:"client"`
	Direction     string  `json:"direction"`
	Streams       int     `json:"streams"`
	Bytes         int64   `json:"bytes"`
	Seconds       float64 `json:"seconds"`
	MBps          float64 `json:"mb_per_s"`
	CPUPerGiB     float64 `json:"client_cpu_s_per_gib"`
	GatewayPerGiB float64 `json:"gateway_cpu_s_per_gib"`
}

// Clients of the client-cpu scenario.
const (
	ClientNative  = "httvps-native"  // httvps connect, streams on the native tunnel
	ClientOutline = "httvps-outline" // httvps connect -transport outline: a WebSocket per connection
	ClientSSLocal = "ss-local+v2ray" // ss-local with ss-v2ray-plugin (mode=websocket, mux=0, tls)
)

// clientCipher is the Shadowsocks method every client of the scenario uses.
const clientCipher = "chacha20-ietf-poly1305"

// runClientCPU measures each client carrying the same bytes through one
// gateway (TLS, in front of a real ss-server in front of the sink).
func runClientCPU(ctx context.Context, cfg *Config, ps *procSet, cert *benchCert, rep *Report) error {
	_, sinkAddr, err := ps.startSelf("sink", []string{cfg.Self, "sink", "-listen", "127.0.0.1:0"})
	if err != nil {
		return err
	}
	ssPort, err := freePort()
	if err != nil {
		return err
	}
	var rb [12]byte
	rand.Read(rb[:])
	password := hex.EncodeToString(rb[:])
	rand.Read(rb[:])
	token := hex.EncodeToString(rb[:])
	ssAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ssPort))
	ss, err := ps.start("ss-server", []string{cfg.SSServerBin, "-s", "127.0.0.1", "-p", strconv.Itoa(ssPort), "-k", password, "-m", clientCipher}, nil)
	if err != nil {
		return fmt.Errorf("%w: %v", errPeerUnavailable, err)
	}
	if err := waitListening(ctx, ss, ssAddr); err != nil {
		return err
	}
	gwPort, err := freePort()
	if err != nil {
		return err
	}
	gwAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(gwPort))
	gw, err := ps.start("gateway", []string{cfg.GatewayBin, "-listen", gwAddr, "-admin-listen", "", "-route", token + "=" + ssAddr,
		"-log-level", "warn", "-idle-timeout", "1h", "-addr-rate", "-1", "-addr-handshakes", "-1",
		"-tls-cert", cert.CertFile, "-tls-key", cert.KeyFile}, nil)
	if err != nil {
		return err
	}
	if err := waitListening(ctx, gw, gwAddr); err != nil {
		return err
	}
	pin := sha256.Sum256(cert.DER)
	key := (&url.URL{Scheme: "httvps", User: url.User(token), Host: gwAddr, Path: "/", RawQuery: url.Values{
		"cipher": {clientCipher}, "secret": {password}, "pin": {hex.EncodeToString(pin[:])}, "sni": {tlsServerName},
	}.Encode()}).String()

	var errs []error
	for _, client := range []string{ClientNative, ClientOutline, ClientSSLocal} {
		if ctx.Err() != nil {
			break
		}
		if err := clientCells(ctx, cfg, ps, client, key, gwAddr, token, password, cert, sinkAddr, gw, rep); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", client, err))
		}
	}
	return errors.Join(errs...)
}

// clientCells starts one client and runs its cells.
func clientCells(ctx context.Context, cfg *Config, ps *procSet, client, key, gwAddr, token, password string, cert *benchCert,
	sinkAddr string, gw *Process, rep *Report) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	var argv []string
	group := false
	switch client {
	case ClientNative, ClientOutline:
		tr := "native"
		if client == ClientOutline {
			tr = "outline"
		}
		argv = []string{cfg.HTTVPSBin, "connect", "-listen", listen, "-transport", tr, "-json", "-log-level", "warn", key}
	case ClientSSLocal:
		if _, err := exec.LookPath(cfg.SSLocalBin); err != nil {
			rep.Notes = append(rep.Notes, fmt.Sprintf("client-cpu: %s skipped: %v", client, err))
			return nil
		}
		opts := "tls;host=" + tlsServerName + ";path=/" + token + "/tcp;mux=0;cert=" + cert.CertFile
		argv = []string{cfg.SSLocalBin, "-s", "127.0.0.1", "-p", portOf(gwAddr), "-l", strconv.Itoa(port), "-b", "127.0.0.1",
			"-k", password, "-m", clientCipher, "--plugin", cfg.V2RayBin, "--plugin-opts", opts}
		group = true // ss-local runs the plugin as its child
	}
	if _, err := os.Stat(argv[0]); err != nil && client != ClientSSLocal {
		rep.Notes = append(rep.Notes, fmt.Sprintf("client-cpu: %s skipped: %v", client, err))
		return nil
	}
	p, err := ps.start(client, argv, nil)
	if err != nil {
		return err
	}
	defer p.Stop()
	p.group = group
	if err := waitListening(ctx, p, listen); err != nil {
		return err
	}
	tr := Transport{Addr: listen, SOCKSTarget: sinkAddr}
	if _, err := transfer(ctx, tr, Download, 1, 1<<20, cfg.Message, 20*time.Second); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	for _, dir := range []string{Upload, Download} {
		for _, n := range []int{1, 16} {
			before, err := p.Sample()
			if err != nil {
				return err
			}
			gb, err := gw.Sample()
			if err != nil {
				return err
			}
			res, err := transfer(ctx, tr, dir, n, cfg.ClientBytes, cfg.Message, cfg.CellTimeout)
			if err != nil {
				return fmt.Errorf("%s x%d: %w", dir, n, err)
			}
			after, err := p.Sample()
			if err != nil {
				return err
			}
			ga, err := gw.Sample()
			if err != nil {
				return err
			}
			gib := float64(res.Bytes) / (1 << 30)
			c := ClientCell{Client: client, Direction: dir, Streams: n, Bytes: res.Bytes, Seconds: res.Wall.Seconds(),
				MBps: float64(res.Bytes) / 1e6 / res.Wall.Seconds(), CPUPerGiB: after.CPUSince(before).Seconds() / gib,
				GatewayPerGiB: ga.CPUSince(gb).Seconds() / gib}
			rep.Clients = append(rep.Clients, c)
			fmt.Fprintf(cfg.Log, "client-cpu %-15s %-8s x%-2d %8.1f MB/s  client %5.2f CPU s/GiB, gateway %5.2f\n",
				c.Client, c.Direction, c.Streams, c.MBps, c.CPUPerGiB, c.GatewayPerGiB)
		}
	}
	return nil
}

func portOf(hostport string) string {
	_, p, _ := net.SplitHostPort(hostport)
	return p
}

// socksConnect runs the SOCKS5 CONNECT handshake (no authentication) for
// target, an IP:port, on c.
func socksConnect(c net.Conn, target string) error {
	host, port, err := net.SplitHostPort(target)
	if err != nil {
		return err
	}
	ip := net.ParseIP(host).To4()
	pn, err := strconv.Atoi(port)
	if ip == nil || err != nil {
		return fmt.Errorf("bench: socks target %q: want IPv4:port", target)
	}
	req := []byte{5, 1, 0, 5, 1, 0, 1}
	req = append(req, ip...)
	req = binary.BigEndian.AppendUint16(req, uint16(pn))
	if _, err := c.Write(req); err != nil {
		return err
	}
	var b [12]byte // method choice (2) + reply with an IPv4 address (10)
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return fmt.Errorf("bench: socks reply: %w", err)
	}
	if b[0] != 5 || b[1] != 0 || b[2] != 5 || b[3] != 0 || b[5] != 1 {
		return fmt.Errorf("bench: socks refused: % x", b[:])
	}
	return nil
}
