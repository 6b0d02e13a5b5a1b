package main

import (
	"context"

	"github.com/httvps/httvps/control/pool"
	"github.com/httvps/httvps/control/store"
)

// A static member serves one fixed Shadowsocks secret, so a key can be
// placed there only if the token has that secret (docs/05-outline-pool.md).
// The control API gives every new token a random secret; on a node whose
// only usable members are static, secretStore swaps in a static member's
// cipher and password when the token is stored, and staticPool hands the
// pool the stored token, so placement succeeds. The client API and the
// ssconf:// document read the stored token and so serve the right secret.

// secretStore is the embedded store with the static secret swap on
// CreateToken.
type secretStore struct {
	store.Store
}

func (s secretStore) CreateToken(ctx context.Context, t store.Token) error {
	if ms, err := s.ListMembers(ctx); err == nil {
		if c := staticSecret(ms, t.Cipher); c != nil {
			t.Cipher, t.SSPassword = c.Cipher, c.Password
		}
	}
	return s.Store.CreateToken(ctx, t)
}

// staticSecret picks the static member whose secret a new token should
// get: none when a member that can take any secret is usable; otherwise a
// usable static member, one with the requested cipher first.
func staticSecret(ms []store.Member, cipher string) *store.StaticConfig {
	var pick *store.StaticConfig
	for _, m := range ms {
		if m.Draining || !m.Health.Up {
			continue
		}
		if m.Backend != store.BackendStatic {
			return nil
		}
		if m.Static == nil {
			continue
		}
		if pick == nil || (pick.Cipher != cipher && m.Static.Cipher == cipher) {
			pick = m.Static
		}
	}
	return pick
}

// staticPool is the pool manager as the API uses it, placing and removing
// the stored version of a token.
type staticPool struct {
	*pool.Manager
	st store.Store
}

func (p staticPool) stored(ctx context.Context, t store.Token) store.Token {
	if s, err := p.st.GetToken(ctx, t.ID); err == nil {
		t.Cipher, t.SSPassword = s.Cipher, s.SSPassword
	}
	return t
}

func (p staticPool) PlaceKey(ctx context.Context, t store.Token) ([]store.Assignment, error) {
	return p.Manager.PlaceKey(ctx, p.stored(ctx, t))
}

func (p staticPool) RemoveKey(ctx context.Context, t store.Token) error {
	return p.Manager.RemoveKey(ctx, p.stored(ctx, t))
}
