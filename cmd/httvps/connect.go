package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/httvps/httvps/client"
	"github.com/httvps/httvps/internal/cliconf"
)

const defaultConnectListen = "127.0.0.1:1080"

// connectOpts are `httvps connect`'s flags.
type connectOpts struct {
	listen, transport, token, cacert string
	socksUser, socksPass             string
	jsonLogs, insecureControl        bool
	allowOpenProxy                   bool
	logLevel                         string
	refresh                          time.Duration
	dataDir                          string
}

func (o *connectOpts) register(fs *flag.FlagSet) {
	fs.StringVar(&o.listen, "listen", o.listen, "local `address` of the SOCKS5 and HTTP proxy (default "+defaultConnectListen+")")
	fs.StringVar(&o.transport, "transport", o.transport, "`native` (one multiplexed tunnel) or outline (one WebSocket per connection); ss:// keys always go direct (default native)")
	fs.StringVar(&o.token, "token", o.token, "client `token` for a control-plane URL key ["+cliconf.EnvName("token")+"]; visible in ps, prefer the variable")
	fs.StringVar(&o.cacert, "cacert", o.cacert, "PEM `file` of a CA to trust for gateways and the control plane (a key's pin= needs none)")
	fs.StringVar(&o.socksUser, "socks-user", o.socksUser, "require this `user` name from proxy clients (SOCKS5 username/password, HTTP Basic)")
	fs.StringVar(&o.socksPass, "socks-pass", o.socksPass, "the `password` for -socks-user ["+cliconf.EnvName("socks-pass")+"]")
	fs.BoolVar(&o.allowOpenProxy, "allow-open-proxy", o.allowOpenProxy, "let -listen beyond loopback go without -socks-user (anyone who reaches the port can use the proxy)")
	fs.BoolVar(&o.jsonLogs, "json", o.jsonLogs, "logs as JSON lines (log/slog) on stderr, and no status line")
	fs.StringVar(&o.logLevel, "log-level", o.logLevel, "`level`: debug, info, warn, error (default info)")
	fs.DurationVar(&o.refresh, "refresh", o.refresh, "fetch the client config again this often when the key has a control plane (0: 5m; negative: never)")
	fs.StringVar(&o.dataDir, "data-dir", o.dataDir, "`directory` keeping this installation's device id (file device-id), sent with native tunnels so they count as one device of the token ["+cliconf.EnvName("data-dir")+"] (default $XDG_STATE_HOME/httvps, else ~/.local/state/httvps)")
}

func connectUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, `Usage: httvps connect [flags] KEY
       httvps connect [flags] -token TOKEN https://CONTROL-PLANE

Runs a local SOCKS5 (CONNECT, UDP ASSOCIATE) and HTTP proxy (CONNECT,
absolute-URI requests) on one listener and carries its connections,
Shadowsocks-encrypted end to end, through the key's gateways.

KEY is an httvps:// key, an ss:// key (plain Shadowsocks, or v2ray-plugin
websocket through a gateway), an ssconf:// Outline dynamic access key, or
a control-plane URL with -token. It may also come from HTTVPS_KEY.

Flags:
`)
	fs.PrintDefaults()
	fmt.Fprint(w, "\nExit status: 0 after SIGINT/SIGTERM, 1 when the proxy or the key's control plane fails, 2 for a bad key or flag.\n")
}

func runConnect(ctx context.Context, args []string, e env) int {
	o := &connectOpts{}
	fs := flag.NewFlagSet("httvps connect", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	o.register(fs)
	fs.Usage = func() { connectUsage(e.stderr, fs) }
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	keyText := e.getenv("HTTVPS_KEY")
	switch len(pos) {
	case 0:
	case 1:
		keyText = pos[0]
	default:
		fmt.Fprintln(e.stderr, "httvps connect: give one KEY")
		return exitUsage
	}
	if keyText == "" {
		fmt.Fprintln(e.stderr, "httvps connect: give a KEY (httvps://, ss://, ssconf:// or -token with https://CONTROL)")
		fs.Usage()
		return exitUsage
	}
	o.listen = firstNonEmpty(o.listen, defaultConnectListen)
	o.token = firstNonEmpty(o.token, e.getenv(cliconf.EnvName("token")))
	o.socksPass = firstNonEmpty(o.socksPass, e.getenv(cliconf.EnvName("socks-pass")))
	if (o.socksUser == "") != (o.socksPass == "") {
		fmt.Fprintln(e.stderr, "httvps connect: -socks-user and -socks-pass go together")
		return exitUsage
	}
	if beyondLoopback(o.listen) && o.socksUser == "" && !o.allowOpenProxy {
		fmt.Fprintln(e.stderr, openProxyRefusal)
		return exitUsage
	}
	switch o.transport {
	case "", client.TransportNative, client.TransportOutline:
	default:
		fmt.Fprintf(e.stderr, "httvps connect: -transport %q: want native or outline\n", o.transport)
		return exitUsage
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(firstNonEmpty(o.logLevel, "info"))); err != nil {
		fmt.Fprintf(e.stderr, "httvps connect: -log-level %q: want debug, info, warn or error\n", o.logLevel)
		return exitUsage
	}

	var tlsBase *tls.Config
	fetch := &client.Fetcher{}
	if o.cacert != "" {
		c, err := tlsForCA(o.cacert, false)
		if err != nil {
			fmt.Fprintf(e.stderr, "httvps connect: -cacert: %v\n", err)
			return exitUsage
		}
		tlsBase, fetch.RootCAs = c, c.RootCAs
	}

	term := !o.jsonLogs && isTerminal(e.stderr)
	status := &statusLine{w: e.stderr, on: term}
	var handler slog.Handler
	if o.jsonLogs {
		handler = slog.NewJSONHandler(e.stderr, &slog.HandlerOptions{Level: level})
	} else {
		handler = slog.NewTextHandler(status, &slog.HandlerOptions{Level: level})
	}
	log := slog.New(handler)

	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	key, err := client.ResolveKey(rctx, keyText, client.ResolveOptions{Token: o.token, Fetch: fetch})
	cancel()
	if err != nil {
		return connectKeyError(e, err)
	}

	transport := o.transport
	var native client.NativeFunc
	if nativeTunnel != nil {
		id := ""
		if dir := clientDataDir(o.dataDir, e); dir != "" {
			var err error
			if id, err = loadOrCreateDeviceID(filepath.Join(dir, deviceIDName)); err != nil {
				// Without a kept id the gateways count this client by
				// its address, as they count the Outline apps.
				log.Warn("no device id: native tunnels count as this address's device", "err", err)
			}
		}
		native = nativeTunnel(id)
	}
	if native == nil && transport == "" && !key.Direct() {
		log.Warn("the native tunnel is not in this build; using the Outline paths")
		transport = client.TransportOutline
	}
	sess, err := client.NewSession(client.SessionConfig{
		Key: key, Transport: transport, Native: native,
		Username: o.socksUser, Password: o.socksPass,
		Refresh: o.refresh, Fetch: fetch, TLSConfig: tlsBase, Logger: log,
	})
	if err != nil {
		fmt.Fprintf(e.stderr, "httvps connect: %v\n", err)
		if errors.Is(err, client.ErrBadKey) {
			return exitUsage
		}
		return exitFail
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		fmt.Fprintf(e.stderr, "httvps connect: -listen: %v\n", err)
		return exitFail
	}
	if ap, err := netip.ParseAddrPort(ln.Addr().String()); err == nil && !ap.Addr().IsLoopback() && o.socksUser == "" {
		// A host name that resolved beyond loopback: the same rule as above.
		if !o.allowOpenProxy {
			ln.Close()
			fmt.Fprintln(e.stderr, openProxyRefusal)
			return exitUsage
		}
		log.Warn("the proxy listens beyond loopback without -socks-user (-allow-open-proxy): anyone who reaches it can use it", "listen", ln.Addr().String())
	}
	log.Info("httvps connect: proxy listening", "listen", ln.Addr().String(), "transport", sess.Status().Transport,
		"key", key.String(), "socks_auth", o.socksUser != "")
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go status.run(sctx, sess, ln.Addr().String(), log)
	err = sess.Serve(ctx, ln)
	stop()
	status.finish()
	if err != nil {
		log.Error("httvps connect: the proxy stopped", "err", err)
		return exitFail
	}
	log.Info("httvps connect: stopped")
	return exitOK
}

// connectKeyError prints why a key cannot be used, in one line, and
// returns the exit status.
func connectKeyError(e env, err error) int {
	var ce *client.ControlError
	switch {
	case errors.As(err, &ce):
		fmt.Fprintf(e.stderr, "httvps connect: %s\n", ce.Reason())
		return exitFail
	case errors.Is(err, client.ErrKeyProvider):
		fmt.Fprintf(e.stderr, "httvps connect: %s\n", printable(strings.TrimPrefix(err.Error(), "client: ")))
		return exitFail
	case errors.Is(err, client.ErrBadKey):
		fmt.Fprintf(e.stderr, "httvps connect: %s\n", printable(strings.TrimPrefix(err.Error(), "client: ")))
		return exitUsage
	}
	fmt.Fprintf(e.stderr, "httvps connect: %s\n", printable(err.Error()))
	return exitFail
}

const openProxyRefusal = "httvps connect: -listen beyond loopback needs -socks-user (or -allow-open-proxy for a proxy open to anyone who reaches it)"

// beyondLoopback reports a -listen address that is not on loopback: no
// host (every interface) or an IP address that is not a loopback one.
// Other host names are checked on the bound address after listening.
func beyondLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false // net.Listen reports it
	}
	if host == "" {
		return true
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return !ip.IsLoopback()
	}
	return false
}
