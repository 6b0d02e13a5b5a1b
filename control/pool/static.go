package pool

import (
	"context"
	"crypto/subtle"
	"fmt"
	"net"
	"strconv"

	"github.com/httvps/httvps/store"
)

// static is a fixed Shadowsocks listener shared by every key placed on it:
// there is nothing to create or delete, so a token can only be placed there
// if its cipher and password are the member's own.
type static struct {
	addr string
	cfg  store.StaticConfig
}

func newStatic(host string, cfg store.StaticConfig) *static {
	return &static{addr: net.JoinHostPort(host, strconv.Itoa(cfg.Port)), cfg: cfg}
}

func (s *static) CreateKey(ctx context.Context, id, cipher, password string) (string, string, error) {
	if cipher != s.cfg.Cipher || subtle.ConstantTimeCompare([]byte(password), []byte(s.cfg.Password)) != 1 {
		return "", "", fmt.Errorf("%w (member %s)", ErrSecretMismatch, s.addr)
	}
	return s.addr, id, nil
}

func (s *static) DeleteKey(context.Context, string) error { return nil }

// Health only dials the port: a static member has no API, and its key
// count is unknown to it (the health round counts the store's assignments
// instead).
func (s *static) Health(ctx context.Context) (int, float64, error) {
	return 0, 0, probeTCP(ctx, []string{s.addr})
}

// Transfer is empty: a plain ss-server reports no counters.
func (s *static) Transfer(context.Context) (map[string]int64, error) {
	return map[string]int64{}, nil
}

// accepts reports whether a token with this cipher and password can be
// placed on the static member.
func (s *static) accepts(cipher, password string) bool {
	return cipher == s.cfg.Cipher && subtle.ConstantTimeCompare([]byte(password), []byte(s.cfg.Password)) == 1
}
