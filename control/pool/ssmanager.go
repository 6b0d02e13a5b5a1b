package pool

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/httvps/httvps/store"
)

// ss-manager protocol (shadowsocks-libev 3.x), one UDP datagram each way:
//
//	add: {"server_port":N,"password":"…","method":"…"}  → "ok" | "port is not available"
//	remove: {"server_port":N}                           → "ok" (also for unknown ports)
//	ping                                                → "stat: {"N":bytes,…}"
//	list                                                → [{"server_port":"N","password":"…","method":"…"},…]
//
// Unparsable commands get no answer at all. ss-manager checks that it can
// bind the port before spawning ss-server for it, so "port is not available"
// also covers ports used by other programs on its host.
const (
	ssmReplyOK       = "ok"
	ssmReplyNotAvail = "port is not available"
	// maxSSMReply bounds one reply; UDP cannot carry more.
	maxSSMReply = 64 << 10
	// maxPortTries bounds the ports one CreateKey attempts.
	maxPortTries = 32
)

// ssManager drives a shadowsocks-libev ss-manager: every key gets its own
// ss-server on a port from PortMin..PortMax.
type ssManager struct {
	host    string
	cfg     store.SSManagerConfig
	timeout time.Duration

	// mu serialises port allocation in this process so two keys are never
	// offered the same port at once. Other processes are caught by
	// ss-manager's own bind check.
	mu sync.Mutex
}

func newSSManager(host string, cfg store.SSManagerConfig, c Config) *ssManager {
	return &ssManager{host: host, cfg: cfg, timeout: c.DialTimeout}
}

// request sends one command and returns the reply. A fresh socket per
// request keeps concurrent replies apart.
func (s *ssManager) request(ctx context.Context, cmd []byte) ([]byte, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", s.cfg.ManagerAddr)
	if err != nil {
		return nil, fmt.Errorf("pool: ss-manager %s: %w", s.cfg.ManagerAddr, err)
	}
	defer c.Close()
	// A lost datagram (or a dead ss-manager whose ss-servers still hold
	// its inherited socket) gives no error: never wait longer than timeout.
	dl := time.Now().Add(s.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	c.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	if _, err := c.Write(cmd); err != nil {
		return nil, fmt.Errorf("pool: ss-manager %s: %w", s.cfg.ManagerAddr, err)
	}
	buf := make([]byte, maxSSMReply)
	n, err := c.Read(buf)
	if err != nil {
		return nil, fmt.Errorf("pool: ss-manager %s: %w", s.cfg.ManagerAddr, err)
	}
	return buf[:n], nil
}

// stat sends ping and parses "stat: {...}".
func (s *ssManager) stat(ctx context.Context) (map[string]int64, error) {
	r, err := s.request(ctx, []byte("ping"))
	if err != nil {
		return nil, err
	}
	body, ok := bytes.CutPrefix(r, []byte("stat: "))
	if !ok {
		return nil, fmt.Errorf("%w: ss-manager ping answered %.40q", ErrBackend, r)
	}
	m := map[string]int64{}
	if err := json.Unmarshal(bytes.TrimSpace(body), &m); err != nil {
		return nil, fmt.Errorf("%w: ss-manager stat: %v", ErrBackend, err)
	}
	return m, nil
}

type ssmAdd struct {
	Port     int    `json:"server_port"`
	Password string `json:"password"`
	Method   string `json:"method"`
}

// CreateKey picks a port in the member's range that ss-manager does not
// serve, starting at a random offset (so that several control-plane
// processes rarely race for the same port), adds it, and waits until the
// spawned ss-server accepts connections. The id is not sent: ss-manager
// knows ports only, so the port is the backend key id.
func (s *ssManager) CreateKey(ctx context.Context, id, cipher, password string) (string, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	used, err := s.stat(ctx)
	if err != nil {
		return "", "", err
	}
	span := s.cfg.PortMax - s.cfg.PortMin + 1
	start := rand.IntN(span)
	tries := 0
	for i := range span {
		port := s.cfg.PortMin + (start+i)%span
		if _, ok := used[strconv.Itoa(port)]; ok {
			continue
		}
		if tries++; tries > maxPortTries {
			break
		}
		cmd, _ := json.Marshal(ssmAdd{Port: port, Password: password, Method: cipher})
		r, err := s.request(ctx, append([]byte("add: "), cmd...))
		if err != nil {
			return "", "", err
		}
		switch string(bytes.TrimSpace(r)) {
		case ssmReplyOK:
		case ssmReplyNotAvail:
			continue
		default:
			return "", "", fmt.Errorf("%w: ss-manager add answered %.40q", ErrBackend, r)
		}
		addr := net.JoinHostPort(s.host, strconv.Itoa(port))
		if err := s.waitListening(ctx, addr); err != nil {
			// ss-server did not come up (bad method, crash): take the
			// port back so it is not left half-allocated.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
			rerr := s.DeleteKey(rctx, strconv.Itoa(port))
			cancel()
			return "", "", errors.Join(fmt.Errorf("pool: ss-manager: ss-server for port %d: %w", port, err), rerr)
		}
		return addr, strconv.Itoa(port), nil
	}
	return "", "", fmt.Errorf("%w (ss-manager %s, %d..%d)", ErrPortsExhausted, s.cfg.ManagerAddr, s.cfg.PortMin, s.cfg.PortMax)
}

// waitListening dials addr until it accepts or ctx ends: ss-manager answers
// "ok" before the ss-server it spawned has bound the port.
func (s *ssManager) waitListening(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// DeleteKey sends remove for the port; ss-manager stops its ss-server.
func (s *ssManager) DeleteKey(ctx context.Context, backendKeyID string) error {
	port, err := strconv.Atoi(backendKeyID)
	if err != nil || port < 1 || port > 65535 {
		return fmt.Errorf("%w: ss-manager key id %q is not a port", store.ErrInvalid, backendKeyID)
	}
	r, err := s.request(ctx, fmt.Appendf(nil, `remove: {"server_port":%d}`, port))
	if err != nil {
		return err
	}
	if string(bytes.TrimSpace(r)) != ssmReplyOK {
		return fmt.Errorf("%w: ss-manager remove answered %.40q", ErrBackend, r)
	}
	return nil
}

// Health pings ss-manager and dials a few of its ports. ss-manager reports
// no load figure, so the load is the key (port) count.
func (s *ssManager) Health(ctx context.Context) (int, float64, error) {
	st, err := s.stat(ctx)
	if err != nil {
		return 0, 0, err
	}
	var addrs []string
	for p := range st { // map order: a different sample each check
		if len(addrs) == maxProbes {
			break
		}
		addrs = append(addrs, net.JoinHostPort(s.host, p))
	}
	return len(st), float64(len(st)), probeTCP(ctx, addrs)
}

// Transfer is ping's stat: bytes per port since each ss-server started.
func (s *ssManager) Transfer(ctx context.Context) (map[string]int64, error) {
	return s.stat(ctx)
}

// Keys lists the ports ss-manager serves (ping's stat), for key repair and
// the stray-key sweep. A port is httvps's own when it lies in the member's
// PortMin..PortMax, the only ports CreateKey allocates: ports outside it
// are someone else's. Each port's secret comes from list, best effort: a
// port list does not describe (an answer cut at one datagram on a member
// with several hundred keys) gets no fingerprint and is never swept.
func (s *ssManager) Keys(ctx context.Context) (map[string]listedKey, error) {
	st, err := s.stat(ctx)
	if err != nil {
		return nil, err
	}
	secrets := s.list(ctx)
	out := make(map[string]listedKey, len(st))
	for p := range st {
		port, err := strconv.Atoi(p)
		out[p] = listedKey{ours: err == nil && port >= s.cfg.PortMin && port <= s.cfg.PortMax, fp: secrets[p]}
	}
	return out, nil
}

// ssmListLine is one entry of list's answer as shadowsocks-libev 3.3
// writes it, one per line, with the password not escaped.
var ssmListLine = regexp.MustCompile(`^\s*\{"server_port":"?(\d+)"?,"password":"(.*)","method":"([^"]*)"`)

// list sends list and returns the secret fingerprint of each port it
// describes; nil when the request fails. The answer is JSON unless a
// password holds a quote or it was cut at the datagram size, so it is read
// line by line.
func (s *ssManager) list(ctx context.Context) map[string]string {
	r, err := s.request(ctx, []byte("list"))
	if err != nil {
		return nil
	}
	out := map[string]string{}
	for line := range strings.Lines(string(r)) {
		if m := ssmListLine.FindStringSubmatch(line); m != nil {
			out[m[1]] = secretFP(m[3], m[2])
		}
	}
	return out
}
