package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/Jigsaw-Code/outline-sdk/transport/shadowsocks"
	"github.com/gobwas/ws"
)

// ScenarioUDP sends Shadowsocks UDP packets through the Shadowsocks peers'
// packet paths (wss://…/SECRET/udp: each binary message one Shadowsocks UDP
// packet, as outline-ss-server's websocket-packet listener and the Outline
// apps carry UDP) to the sink's UDP echo and back: packets per second and
// the relay's CPU per million round trips. Every echoed packet is
// authenticated (AEAD), and its sequence number and pattern checked; a
// packet not back in time is a drop, counted.
const ScenarioUDP = "udp"

// UDPResult is one (peer, associations) UDP measurement.
type UDPResult struct {
	Peer         string `json:"peer"`
	Associations int    `json:"associations"`
	PayloadBytes int    `json:"payload_bytes"`
	Window       int    `json:"window"`
	Sent         int64  `json:"sent"`
	Echoed       int64  `json:"echoed"`
	Drops        int64  `json:"drops"`
	// Late are echoes that came after their packet was counted dropped.
	Late       int64   `json:"late"`
	Seconds    float64 `json:"seconds"`
	PPS        float64 `json:"round_trips_per_s"`
	CPUSeconds float64 `json:"cpu_seconds"`
	// CPUPerMillion is the relay's CPU seconds per million round trips
	// (a packet each way).
	CPUPerMillion float64 `json:"cpu_s_per_million"`
	Runs          int     `json:"runs,omitempty"`
	PPSRange      *Span   `json:"round_trips_per_s_range,omitempty"`
	CPURange      *Span   `json:"cpu_s_per_million_range,omitempty"`
}

// udpPeer reports whether the UDP scenario runs on the named peer.
func udpPeer(name string) bool {
	switch name {
	case PeerHTTVPSSS, PeerHTTVPSSSTLS, PeerOutline, PeerNginxWS, PeerNginxWSS, PeerTunnelSS, PeerTunnelSSTLS:
		return true
	}
	return false
}

// withUDP is pe with its ss-server backend relaying UDP too (-u).
func withUDP(pe *peer) *peer {
	if pe.backend == nil || pe.backend.name != "ss-server" {
		return pe
	}
	cp, b := *pe, *pe.backend
	argv := b.argv
	b.argv = func(port int, target string) []string { return append(argv(port, target), "-u") }
	cp.backend = &b
	return &cp
}

// packetConn carries whole Shadowsocks UDP packets.
type packetConn interface {
	WritePacket(p []byte) error
	ReadPacket(buf []byte) (int, error)
	Close() error
	SetDeadline(t time.Time) error
}

// wsPacketConn is a client WebSocket on a packet path: one binary message
// per packet.
type wsPacketConn struct{ s *wsStream }

func (c wsPacketConn) WritePacket(p []byte) error         { _, err := c.s.Write(p); return err }
func (c wsPacketConn) ReadPacket(buf []byte) (int, error) { return c.s.readMessage(buf) }
func (c wsPacketConn) Close() error                       { return c.s.Close() }
func (c wsPacketConn) SetDeadline(t time.Time) error      { return c.s.SetDeadline(t) }

// readMessage reads one whole binary message into buf (control frames are
// handled on the way); a message larger than buf is an error.
func (s *wsStream) readMessage(buf []byte) (int, error) {
	if s.remaining != 0 {
		return 0, errors.New("bench: readMessage inside a message")
	}
	n := 0
	for {
		h, err := s.readHeader()
		if err != nil {
			return 0, err
		}
		switch h.OpCode {
		case ws.OpBinary, ws.OpContinuation:
			if int64(n)+h.Length > int64(len(buf)) {
				return 0, fmt.Errorf("%w: %d-byte message", errServerFrame, int64(n)+h.Length)
			}
			if _, err := io.ReadFull(s.r, buf[n:n+int(h.Length)]); err != nil {
				return 0, err
			}
			n += int(h.Length)
			if h.Fin {
				return n, nil
			}
		case ws.OpClose:
			io.CopyN(io.Discard, s.r, h.Length)
			s.gotClose = true
			return 0, io.EOF
		case ws.OpPing:
			body := make([]byte, h.Length)
			if _, err := io.ReadFull(s.r, body); err != nil {
				return 0, err
			}
			if err := s.writeFrame(ws.OpPong, body); err != nil {
				return 0, err
			}
		default:
			if _, err := io.CopyN(io.Discard, s.r, h.Length); err != nil {
				return 0, err
			}
		}
	}
}

// udpPath is the packet path beside a peer's /SECRET/tcp.
func udpPath(tcpPath string) string { return strings.TrimSuffix(tcpPath, "/tcp") + "/udp" }

// dialPacket opens a packet association through the relay.
func dialPacket(ctx context.Context, tr Transport, src net.IP) (packetConn, error) {
	if tr.mux != nil {
		// A udp stream on the native tunnel.
		return tr.mux.openPacket(ctx)
	}
	t := tr
	t.Path, t.mux, t.ss, t.LocalIP = udpPath(tr.Path), nil, nil, src
	s, _, err := t.dialStream(ctx)
	if err != nil {
		return nil, err
	}
	w, ok := s.(*wsStream)
	if !ok {
		s.Close()
		return nil, errors.New("bench: udp needs a WebSocket peer")
	}
	return wsPacketConn{w}, nil
}

// udpAssoc drives one association: a window of packets in flight, each
// echoed packet checked, a packet not back within udpWait a drop.
type udpAssoc struct {
	c       packetConn
	key     *shadowsocks.EncryptionKey
	addr    []byte // SOCKS address of the sink
	id      uint32
	payload int
}

const udpWait = 500 * time.Millisecond

// udpPayload fills p with the association's sequence header and the
// pattern at an offset that depends on both.
func udpPayload(p []byte, id uint32, seq uint64) {
	binary.BigEndian.PutUint32(p[0:4], id)
	binary.BigEndian.PutUint64(p[4:12], seq)
	off := int64(seq)*7 + int64(id)
	for q := p[12:]; len(q) > 0; {
		k := copy(q, patternAt(off, len(q)))
		q, off = q[k:], off+int64(k)
	}
}

// checkUDPPayload reports the sequence number of a well-formed echo.
func checkUDPPayload(p []byte, id uint32, size int) (uint64, error) {
	if len(p) != size {
		return 0, fmt.Errorf("%w: echo of %d bytes, sent %d", errIntegrity, len(p), size)
	}
	if binary.BigEndian.Uint32(p[0:4]) != id {
		return 0, fmt.Errorf("%w: echo of association %d on %d", errIntegrity, binary.BigEndian.Uint32(p[0:4]), id)
	}
	seq := binary.BigEndian.Uint64(p[4:12])
	if !patternEqual(int64(seq)*7+int64(id), p[12:]) {
		return 0, fmt.Errorf("%w: echo of packet %d differs", errIntegrity, seq)
	}
	return seq, nil
}

type udpCounts struct{ sent, echoed, drops, late int64 }

// run sends packets packets, at most window of them in flight: each echo
// (checked) frees its slot, and a packet not back within udpWait is
// counted dropped and frees its slot, so a loss never stalls the
// association. It stops sending early (without error) at stopAt.
func (a *udpAssoc) run(ctx context.Context, packets int64, window int, stopAt time.Time) (udpCounts, error) {
	var (
		mu      sync.Mutex
		cnt     udpCounts
		pending = make(map[uint64]time.Time, window)
		next    uint64 // sequence numbers below next were sent
		credits = make(chan struct{}, window)
		failed  = make(chan error, 1)
		done    = make(chan struct{})
	)
	for range window {
		credits <- struct{}{}
	}
	fail := func(err error) {
		select {
		case failed <- err:
		default:
		}
	}
	a.c.SetDeadline(time.Time{})
	// Receiver.
	var rwg sync.WaitGroup
	rwg.Add(1)
	go func() {
		defer rwg.Done()
		in := make([]byte, 70000)
		for {
			m, err := a.c.ReadPacket(in)
			if err != nil {
				select {
				case <-done:
				default:
					fail(fmt.Errorf("read: %w", err))
				}
				return
			}
			text, err := shadowsocks.Unpack(nil, in[:m], a.key)
			if err != nil {
				fail(fmt.Errorf("%w: echoed packet fails authentication: %v", errIntegrity, err))
				return
			}
			// The reply starts with the SOCKS address of the sink.
			if len(text) < len(a.addr) || string(text[:len(a.addr)]) != string(a.addr) {
				fail(fmt.Errorf("%w: echo from another address", errIntegrity))
				return
			}
			s, err := checkUDPPayload(text[len(a.addr):], a.id, a.payload)
			if err != nil {
				fail(err)
				return
			}
			mu.Lock()
			_, ok := pending[s]
			switch {
			case ok:
				delete(pending, s)
				cnt.echoed++
			case s < next:
				cnt.late++ // already counted dropped
			default:
				mu.Unlock()
				fail(fmt.Errorf("%w: packet %d echoed but never sent", errIntegrity, s))
				return
			}
			mu.Unlock()
			if ok {
				credits <- struct{}{}
			}
		}
	}()
	// Reaper: packets not back in time are drops.
	reap := func() int {
		now := time.Now()
		mu.Lock()
		freed := 0
		for s, t := range pending {
			if now.Sub(t) > udpWait {
				delete(pending, s)
				cnt.drops++
				freed++
			}
		}
		left := len(pending)
		mu.Unlock()
		for range freed {
			credits <- struct{}{}
		}
		return left
	}
	stopReaper := make(chan struct{})
	var reaperWG sync.WaitGroup
	reaperWG.Add(1)
	go func() {
		defer reaperWG.Done()
		t := time.NewTicker(udpWait / 5)
		defer t.Stop()
		for {
			select {
			case <-stopReaper:
				return
			case <-t.C:
				reap()
			}
		}
	}()
	plain := make([]byte, len(a.addr)+a.payload)
	copy(plain, a.addr)
	out := make([]byte, len(plain)+64)
	var err error
send:
	for int64(next) < packets && time.Now().Before(stopAt) {
		select {
		case <-credits:
		case err = <-failed:
			break send
		case <-ctx.Done():
			err = ctx.Err()
			break send
		}
		udpPayload(plain[len(a.addr):], a.id, next)
		pkt, perr := shadowsocks.Pack(out, plain, a.key)
		if perr != nil {
			err = perr
			break
		}
		mu.Lock()
		pending[next] = time.Now()
		next++
		cnt.sent++
		mu.Unlock()
		if werr := a.c.WritePacket(pkt); werr != nil {
			err = fmt.Errorf("write: %w", werr)
			break
		}
	}
	// Wait for the last echoes (or their drop).
	for err == nil {
		mu.Lock()
		left := len(pending)
		mu.Unlock()
		if left == 0 {
			break
		}
		select {
		case err = <-failed:
		case <-ctx.Done():
			err = ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	close(stopReaper)
	reaperWG.Wait()
	close(done)
	a.c.SetDeadline(time.Unix(1, 0))
	rwg.Wait()
	if err == nil {
		select {
		case err = <-failed:
		default:
		}
	}
	mu.Lock()
	defer mu.Unlock()
	return cnt, err
}

// udpCell runs assocs associations at once, packets between them.
func udpCell(ctx context.Context, tr Transport, assocs int, packets int64, payload, window int, timeout time.Duration) (UDPResult, time.Duration, udpCounts, error) {
	if tr.ss == nil {
		return UDPResult{}, 0, udpCounts{}, errors.New("bench: udp needs a Shadowsocks peer")
	}
	addr, err := socksAddr(tr.ss.Target)
	if err != nil {
		return UDPResult{}, 0, udpCounts{}, err
	}
	if tr.mux != nil {
		tr.mux = tr.mux.fresh()
		defer tr.mux.close()
	}
	as := make([]*udpAssoc, assocs)
	defer func() {
		for _, a := range as {
			if a != nil {
				a.c.Close()
			}
		}
	}()
	for i := range as {
		c, err := dialPacket(ctx, tr, net.IPv4(127, 0, 0, byte(2+i%idleSourceIPs)))
		if err != nil {
			return UDPResult{}, 0, udpCounts{}, fmt.Errorf("association %d: %w", i, err)
		}
		as[i] = &udpAssoc{c: c, key: tr.ss.Key, addr: addr, id: uint32(i + 1), payload: payload}
	}
	// One packet each before the clock: every association exists end to end.
	for i, a := range as {
		if c, err := a.run(ctx, 1, 1, time.Now().Add(time.Minute)); err != nil || c.echoed != 1 {
			// A warm-up packet may be lost: one more try.
			if c, err = a.run(ctx, 1, 1, time.Now().Add(time.Minute)); err == nil && c.echoed == 1 {
				continue
			}
			return UDPResult{}, 0, udpCounts{}, fmt.Errorf("association %d warm-up: %d echoed: %v", i, c.echoed, err)
		}
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total udpCounts
		ec    errCollector
	)
	start := time.Now()
	stopAt := start.Add(timeout)
	for i, a := range as {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := a.run(ctx, packets/int64(assocs), window, stopAt)
			mu.Lock()
			total.sent += c.sent
			total.echoed += c.echoed
			total.drops += c.drops
			total.late += c.late
			mu.Unlock()
			if err != nil {
				ec.fail(fmt.Errorf("association %d: %w", i, err))
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	if err := ec.err(assocs); err != nil {
		return UDPResult{}, wall, total, err
	}
	return UDPResult{Associations: assocs, PayloadBytes: payload, Window: window, Sent: total.sent, Echoed: total.echoed,
		Drops: total.drops, Late: total.late, Seconds: wall.Seconds(), PPS: float64(total.echoed) / wall.Seconds()}, wall, total, nil
}

// runUDP measures one peer at each association count.
func runUDP(ctx context.Context, cfg *Config, ps *procSet, pe *peer, rep *Report) error {
	r, err := startPair(ctx, cfg, ps, withUDP(pe))
	if err != nil {
		return err
	}
	if _, _, _, err := udpCell(ctx, r.transport, 1, 200, cfg.UDPPayload, 16, cfg.CellTimeout); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	for _, n := range cfg.UDPAssociations {
		before, err := r.proc.Sample()
		if err != nil {
			return err
		}
		x, _, _, err := udpCell(ctx, r.transport, n, cfg.UDPPackets, cfg.UDPPayload, cfg.UDPWindow, cfg.CellTimeout)
		if err != nil {
			return fmt.Errorf("x%d: %w", n, err)
		}
		after, err := r.proc.Sample()
		if err != nil {
			return err
		}
		x.Peer = pe.info.Name
		x.CPUSeconds = after.CPUSince(before).Seconds()
		if x.Echoed > 0 {
			x.CPUPerMillion = x.CPUSeconds / (float64(x.Echoed) / 1e6)
		}
		rep.UDP = append(rep.UDP, x)
		fmt.Fprintf(cfg.Log, "udp        %-13s x%-3d %8.0f round trips/s  %6.2f CPU s/M  %d dropped of %d (%.2fs)\n",
			x.Peer, n, x.PPS, x.CPUPerMillion, x.Drops, x.Sent, x.Seconds)
	}
	return nil
}

// aggregateUDP replaces repeated UDP rows by their medians.
func aggregateUDP(rs []UDPResult) []UDPResult {
	return aggregateRows(rs, func(c UDPResult) string { return fmt.Sprint(c.Peer, "/", c.Associations) }, func(c *UDPResult, g []UDPResult) {
		c.Runs = len(g)
		c.PPS, c.PPSRange = spanned(g, func(x UDPResult) float64 { return x.PPS })
		c.CPUPerMillion, c.CPURange = spanned(g, func(x UDPResult) float64 { return x.CPUPerMillion })
		var d, t float64
		for _, x := range g {
			d += float64(x.Drops)
			t += float64(x.Sent)
		}
		c.Drops, c.Sent = int64(d), int64(t) // summed over the runs
		medians(c, g, func(x *UDPResult) []*float64 { return []*float64{&x.Seconds, &x.CPUSeconds} })
	})
}

// udpSummary is httvps-ss ÷ outline-ss and nginx-ws (and the TLS pair) per
// association count.
func (r *Report) udpSummary() []SummaryRow {
	var out []SummaryRow
	for _, pair := range [][2]string{{PeerHTTVPSSS, PeerOutline}, {PeerHTTVPSSS, PeerNginxWS}, {PeerHTTVPSSSTLS, PeerNginxWSS},
		{PeerTunnelSS, PeerOutline}, {PeerTunnelSS, PeerNginxWS}, {PeerTunnelSSTLS, PeerNginxWSS}} {
		for _, a := range r.UDP {
			if a.Peer != pair[0] {
				continue
			}
			for _, b := range r.UDP {
				if b.Peer != pair[1] || b.Associations != a.Associations {
					continue
				}
				if a.PPS > 0 && b.PPS > 0 {
					out = append(out, SummaryRow{Scenario: ScenarioUDP, Metric: fmt.Sprintf("round trips per second, %d associations", a.Associations), Peer: a.Peer, Versus: b.Peer, Ratio: a.PPS / b.PPS})
				}
				if a.CPUPerMillion > 0 && b.CPUPerMillion > 0 {
					out = append(out, SummaryRow{Scenario: ScenarioUDP, Metric: fmt.Sprintf("CPU per million round trips, %d associations", a.Associations), Peer: a.Peer, Versus: b.Peer, Ratio: a.CPUPerMillion / b.CPUPerMillion})
				}
			}
		}
	}
	return out
}

// ServeUDPEcho echoes every datagram on pc to its sender until pc fails.
func ServeUDPEcho(pc net.PacketConn) error {
	buf := make([]byte, 65536)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return err
		}
		pc.WriteTo(buf[:n], from)
	}
}
