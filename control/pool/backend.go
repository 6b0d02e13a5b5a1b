package pool

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/httvps/httvps/store"
)

// Backend reaches one pool member. The Manager holds one per member and
// calls it from several goroutines; implementations are safe for
// concurrent use and honour ctx's deadline on every call.
type Backend interface {
	// CreateKey creates a Shadowsocks key named id with cipher and
	// password and returns the "ip:port" gateways dial for it and the
	// member's own id for the key (what DeleteKey takes).
	CreateKey(ctx context.Context, id, cipher, password string) (upstream, backendKeyID string, err error)
	// DeleteKey removes a key. Removing a key that is already gone
	// succeeds, so retries are safe.
	DeleteKey(ctx context.Context, backendKeyID string) error
	// Health checks the backend's API and that its Shadowsocks port(s)
	// accept TCP connections; it returns the number of keys and a load
	// figure (higher is busier).
	Health(ctx context.Context) (keys int, load float64, err error)
	// Transfer returns the bytes relayed per backend key id so far.
	Transfer(ctx context.Context) (map[string]int64, error)
}

// Sentinel errors of the backends.
var (
	// ErrCertPin: the Outline server's certificate is not the pinned one.
	ErrCertPin = errors.New("pool: certificate does not match certSha256")
	// ErrPortsExhausted: an ss-manager member has no free port in its range.
	ErrPortsExhausted = errors.New("pool: no free port in the member's range")
	// ErrSecretMismatch: a static member serves one fixed cipher and
	// password; the token's differ.
	ErrSecretMismatch = errors.New("pool: token's cipher or password differs from the static member's")
	// ErrBackend: the backend answered, but not as its protocol says it
	// should (unexpected status, malformed reply).
	ErrBackend = errors.New("pool: unexpected backend reply")
)

// maxProbes bounds the Shadowsocks ports a health check dials.
const maxProbes = 4

// probeTCP dials each addr once; any refusal is the member's error, since a
// gateway dialing that port would fail the same way.
func probeTCP(ctx context.Context, addrs []string) error {
	var d net.Dialer
	for _, a := range addrs {
		c, err := d.DialContext(ctx, "tcp", a)
		if err != nil {
			return fmt.Errorf("pool: shadowsocks port %s: %w", a, err)
		}
		c.Close()
	}
	return nil
}

// NewBackend returns the Backend for m (already validated) using cfg's
// timeouts and transport. Outline keys it creates carry no installation
// mark (their name is their id); the Manager's backends mark theirs.
func NewBackend(m store.Member, cfg Config) (Backend, error) {
	return newBackend(m, cfg, "")
}

// newBackend is NewBackend with the installation's mark for Outline key
// names (see installMark).
func newBackend(m store.Member, cfg Config, mark string) (Backend, error) {
	cfg = cfg.withDefaults()
	switch m.Backend {
	case store.BackendOutlineAPI:
		return newOutline(m.Host, *m.Outline, cfg, mark)
	case store.BackendSSManager:
		return newSSManager(m.Host, *m.SSManager, cfg), nil
	case store.BackendStatic:
		return newStatic(m.Host, *m.Static), nil
	}
	return nil, fmt.Errorf("%w: unknown backend %q", store.ErrInvalid, m.Backend)
}

// ValidateMember checks a member's configuration as AddMember does and
// returns it normalised (certificate pin in lower-case hex without colons).
// Errors wrap store.ErrInvalid and say which field is wrong.
func ValidateMember(m store.Member) (store.Member, error) {
	bad := func(format string, a ...any) (store.Member, error) {
		return m, fmt.Errorf("%w: member: "+format, append([]any{store.ErrInvalid}, a...)...)
	}
	if ip := net.ParseIP(m.Host); ip == nil {
		return bad("host %q must be an IP address (gateways dial it)", m.Host)
	}
	set := 0
	for _, p := range []bool{m.Outline != nil, m.SSManager != nil, m.Static != nil} {
		if p {
			set++
		}
	}
	if set != 1 {
		return bad("exactly one of outline, ssManager, static must be set")
	}
	switch m.Backend {
	case store.BackendOutlineAPI:
		if m.Outline == nil {
			return bad("backend %q needs its outline settings", m.Backend)
		}
		o := *m.Outline
		u, err := url.Parse(o.APIURL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return bad("outline apiUrl must be an https URL")
		}
		if strings.Trim(u.Path, "/") == "" {
			return bad("outline apiUrl must include the server's secret path prefix")
		}
		pin := strings.ToLower(strings.ReplaceAll(o.CertSHA256, ":", ""))
		if len(pin) != 64 || strings.Trim(pin, "0123456789abcdef") != "" {
			return bad("outline certSha256 must be 64 hex digits (SHA-256 of the certificate)")
		}
		o.APIURL = strings.TrimRight(o.APIURL, "/")
		o.CertSHA256 = pin
		m.Outline = &o
	case store.BackendSSManager:
		if m.SSManager == nil {
			return bad("backend %q needs its ssManager settings", m.Backend)
		}
		s := *m.SSManager
		host, port, err := net.SplitHostPort(s.ManagerAddr)
		if err != nil || host == "" || port == "" {
			return bad("ssManager managerAddr %q must be host:port", s.ManagerAddr)
		}
		if s.PortMin < 1 || s.PortMax > 65535 || s.PortMin > s.PortMax {
			return bad("ssManager port range %d..%d must lie within 1..65535 with min <= max", s.PortMin, s.PortMax)
		}
	case store.BackendStatic:
		if m.Static == nil {
			return bad("backend %q needs its static settings", m.Backend)
		}
		s := *m.Static
		if s.Port < 1 || s.Port > 65535 {
			return bad("static port %d out of range", s.Port)
		}
		if !store.ValidCipher(s.Cipher) {
			return bad("static cipher %q is not one of %s", s.Cipher, strings.Join(store.Ciphers, ", "))
		}
		if s.Password == "" {
			return bad("static password is empty")
		}
	default:
		return bad("backend %q is not one of %s, %s, %s", m.Backend,
			store.BackendOutlineAPI, store.BackendSSManager, store.BackendStatic)
	}
	return m, nil
}
