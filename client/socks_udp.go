package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// maxUDPPayload is the largest datagram payload relayed: outline-sdk's
// packet listener seals and opens packets in a 16 KiB buffer, which also
// holds the salt (up to 32), the tag (16) and the address (up to 259).
const maxUDPPayload = 16<<10 - 32 - 16 - 259

// maxPacketFailures ends an association whose reads fail this many times
// in a row.
const maxPacketFailures = 64

// hostAddr is a "host:port" destination for a Shadowsocks packet
// listener's WriteTo (it encodes addr.String()), names included.
type hostAddr string

func (a hostAddr) Network() string { return "udp" }
func (a hostAddr) String() string  { return string(a) }

// socksUDP serves UDP ASSOCIATE: a UDP socket on the address the client
// reached us on relays the client's datagrams (RSV FRAG ATYP ADDR PORT
// DATA) through one Shadowsocks association, and the answers back with
// their sources. It lasts as long as the TCP connection (RFC 1928 §7).
// Only datagrams from the client's IP (and the port it named, if any) are
// taken; fragments (FRAG ≠ 0) are dropped.
func (p *Proxy) socksUDP(c net.Conn, want string) error {
	local, _ := c.LocalAddr().(*net.TCPAddr)
	remote, _ := c.RemoteAddr().(*net.TCPAddr)
	if local == nil || remote == nil {
		socksReply(c, repGeneralFailure, nil)
		return fmt.Errorf("%w: udp associate over a non-TCP connection", errSOCKS)
	}
	uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: local.IP})
	if err != nil {
		socksReply(c, repGeneralFailure, nil)
		return fmt.Errorf("%w: udp associate: %w", errSOCKS, err)
	}
	defer uc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.DialTimeout)
	pc, err := p.cfg.Dialer.ListenPacket(ctx)
	cancel()
	if err != nil {
		socksReply(c, socksCode(err), nil)
		return fmt.Errorf("%w: udp associate: %w", errSOCKS, err)
	}
	defer pc.Close()
	if err := socksReply(c, repSucceeded, uc.LocalAddr().(*net.UDPAddr)); err != nil {
		return err
	}
	c.SetDeadline(time.Time{})

	wantPort := 0
	if _, ps, err := net.SplitHostPort(want); err == nil {
		wantPort, _ = strconv.Atoi(ps)
	}
	var (
		mu     sync.Mutex // guards client
		client *net.UDPAddr
	)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // client → Shadowsocks
		defer wg.Done()
		defer pc.Close()
		buf := make([]byte, 64<<10+512)
		for {
			n, from, err := uc.ReadFromUDP(buf)
			if err != nil {
				return
			}
			if !from.IP.Equal(remote.IP) || (wantPort != 0 && from.Port != wantPort) {
				continue
			}
			dgram := buf[:n]
			if n < 4 || dgram[0] != 0 || dgram[1] != 0 || dgram[2] != 0 {
				continue // short, bad RSV, or a fragment
			}
			addr, used, err := parseSOCKSAddr(dgram[3:])
			if err != nil {
				continue
			}
			payload := dgram[3+used:]
			if len(payload) > maxUDPPayload {
				continue
			}
			mu.Lock()
			client = from
			mu.Unlock()
			if _, err := pc.WriteTo(payload, hostAddr(addr)); err != nil {
				p.log.Debug("proxy: socks5 udp send", "err", err)
			}
		}
	}()
	go func() { // Shadowsocks → client
		defer wg.Done()
		defer uc.Close()
		buf := make([]byte, 64<<10)
		out := make([]byte, 0, 64<<10+262)
		failures := 0
		for {
			n, src, err := pc.ReadFrom(buf)
			if err != nil {
				// One bad packet (undecryptable, too long) must not end
				// the association; a closed or failing one does.
				if errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || failures >= maxPacketFailures {
					return
				}
				failures++
				continue
			}
			failures = 0
			mu.Lock()
			to := client
			mu.Unlock()
			if to == nil {
				continue
			}
			host, ps, err := net.SplitHostPort(src.String())
			if err != nil {
				continue
			}
			port, _ := strconv.Atoi(ps)
			out = appendSOCKSAddr(append(out[:0], 0, 0, 0), host, uint16(port))
			out = append(out, buf[:n]...)
			uc.WriteToUDP(out, to)
		}
	}()
	// The association ends with the TCP connection.
	io.Copy(io.Discard, c)
	uc.Close()
	pc.Close()
	wg.Wait()
	return nil
}
