// Command outline-ss-bench is the harness's outline-ss-server peer: Jigsaw's
// outline-ss-server service package (pinned in go.mod) behind one
// websocket-stream listener (and, with -udp-path, one websocket-packet
// listener), wired as the stock binary wires it (the SDK's
// x/websocket upgrade, http.StripPrefix, gorilla ProxyHeaders, the
// Shadowsocks stream handler with a replay cache), with two differences
// that a loopback bench needs: targets must be loopback addresses (the stock
// binary refuses every non-public IP) and there are no Prometheus metrics
// (no metrics endpoint to serve; the NoOp metrics of the service package).
//
// It exists as a separate module so the main module never depends on
// outline-ss-server; httvps-bench builds it with `go build` in this
// directory.
package main

import (
	"container/list"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime/debug"

	"github.com/Jigsaw-Code/outline-sdk/transport/shadowsocks"
	"github.com/Jigsaw-Code/outline-sdk/x/websocket"
	"github.com/gorilla/handlers"

	onet "github.com/Jigsaw-Code/outline-ss-server/net"
	"github.com/Jigsaw-Code/outline-ss-server/service"
)

var errNotLoopback = errors.New("outline-ss-bench: target is not a loopback address")

// loopbackOnly replaces onet.RequirePublicIP: the bench's sink is on
// 127.0.0.1, and nothing else may be reached.
func loopbackOnly(ip net.IP) error {
	if ip == nil || !ip.IsLoopback() {
		return onet.NewConnectionError("ERR_ADDRESS_INVALID", "target is not loopback", errNotLoopback)
	}
	return nil
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "web server address")
	path := flag.String("path", "/tcp", "websocket-stream path (a prefix, stripped as the stock server does)")
	udpPath := flag.String("udp-path", "", "websocket-packet path (each binary message one Shadowsocks UDP packet); \"\" for none")
	cipher := flag.String("cipher", "chacha20-ietf-poly1305", "Shadowsocks cipher")
	replay := flag.Int("replay-history", 10000, "replay cache size (handshakes)")
	version := flag.Bool("version", false, "print the outline-ss-server module version and exit")
	flag.Parse()
	if *version {
		fmt.Println(moduleVersion())
		return
	}
	// The secret comes from the environment so it is not on the command line.
	secret := os.Getenv("OUTLINE_SS_SECRET")
	if secret == "" {
		fmt.Fprintln(os.Stderr, "outline-ss-bench: OUTLINE_SS_SECRET is empty")
		os.Exit(2)
	}
	key, err := shadowsocks.NewEncryptionKey(*cipher, secret)
	if err != nil {
		fmt.Fprintln(os.Stderr, "outline-ss-bench:", err)
		os.Exit(2)
	}
	entries := list.New()
	entry := service.MakeCipherEntry("bench", key, secret)
	entries.PushBack(&entry)
	ciphers := service.NewCipherList()
	ciphers.Update(entries)
	replayCache := service.NewReplayCache(*replay)
	streamHandler, associationHandler := service.NewShadowsocksHandlers(
		service.WithCiphers(ciphers),
		service.WithReplayCache(&replayCache),
		service.WithStreamDialer(service.MakeValidatingTCPStreamDialer(loopbackOnly, 0)),
		service.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))),
	)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := websocket.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		streamHandler.HandleStream(r.Context(), conn, &service.NoOpTCPConnMetrics{})
	})
	mux := http.NewServeMux()
	mux.Handle(*path, http.StripPrefix(*path, handlers.ProxyHeaders(handler)))
	if *udpPath != "" {
		// The websocket-packet listener as the stock binary wires it: the
		// association's client address is the HTTP peer's, as a UDP address.
		associationHandler.SetTargetIPValidator(loopbackOnly)
		packetHandler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			conn, err := websocket.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			defer conn.Close()
			var c net.Conn = conn
			if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
				c = &udpAddrConn{Conn: conn, raddr: net.UDPAddrFromAddrPort(ap)}
			} else if ip, err := netip.ParseAddr(r.RemoteAddr); err == nil {
				c = &udpAddrConn{Conn: conn, raddr: net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0))}
			}
			associationHandler.HandleAssociation(r.Context(), c, &service.NoOpUDPAssociationMetrics{})
		})
		mux.Handle(*udpPath, http.StripPrefix(*udpPath, handlers.ProxyHeaders(packetHandler)))
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "outline-ss-bench:", err)
		os.Exit(1)
	}
	fmt.Printf("listening %s\n", ln.Addr())
	if err := (&http.Server{Handler: mux}).Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, "outline-ss-bench:", err)
		os.Exit(1)
	}
}

// udpAddrConn is a WebSocket connection whose remote address is a UDP
// address, as the association handler requires.
type udpAddrConn struct {
	net.Conn
	raddr net.Addr
}

func (c *udpAddrConn) RemoteAddr() net.Addr { return c.raddr }

// moduleVersion names the outline-ss-server and SDK versions built in.
func moduleVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := ""
	for _, d := range bi.Deps {
		switch d.Path {
		case "github.com/Jigsaw-Code/outline-ss-server", "github.com/Jigsaw-Code/outline-sdk", "github.com/Jigsaw-Code/outline-sdk/x":
			v += d.Path + " " + d.Version + ", "
		}
	}
	return v + bi.GoVersion
}
