// Package clientdoc builds what a client fetches to connect: the Outline
// dynamic access key (the YAML behind ssconf://), the reference client's
// config (GET /v1/client/config) and the access keys (ss://, ssconf://,
// httvps://), from the shared store. It knows no HTTP: control/api serves
// the documents on the control plane's listener and internal/wiring hands
// them to the gateway, which serves them on its own listener behind the
// decoy (docs/04-gateway-design.md, "Documents behind the decoy").
package clientdoc

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/httvps/httvps/control/api/wire"
	"github.com/httvps/httvps/store"
)

// MaxSecretLen bounds the token a request may present; real tokens are 43
// bytes and admin keys rarely exceed a few hundred.
const MaxSecretLen = 1024

// State is whether a token grants access now.
type State uint8

const (
	Active    State = iota // known, not revoked or expired, under its quota
	Unknown                // no token has that secret
	Revoked                // revoked
	Expired                // past its expiry
	OverQuota              // its usage reached its quota
)

// StoreError is a store call that failed; What names the resource
// ("token" or "gateway") for the caller's error answer.
type StoreError struct {
	What string
	Err  error
}

func (e *StoreError) Error() string { return fmt.Sprintf("clientdoc: %s: %v", e.What, e.Err) }
func (e *StoreError) Unwrap() error { return e.Err }

// Source reads documents from the store. The zero Now is time.Now.
type Source struct {
	Store store.Store
	// Now is the clock that decides expiry (nil → time.Now).
	Now func() time.Time
}

func (s *Source) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

// StateOf is t's state without its usage (never OverQuota).
func (s *Source) StateOf(t store.Token) State {
	switch {
	case t.Revoked:
		return Revoked
	case !t.ExpiresAt.IsZero() && !s.now().Before(t.ExpiresAt):
		return Expired
	}
	return Active
}

// OverQuotaOf reports whether u reached t's quota.
func OverQuotaOf(t store.Token, u store.Usage) bool {
	return t.QuotaBytes > 0 && u.Total() >= t.QuotaBytes
}

// lookup finds the token whose client token is secret.
func (s *Source) lookup(ctx context.Context, secret string) (store.Token, bool, error) {
	t, err := s.Store.GetTokenByHash(ctx, store.HashToken(secret))
	if errors.Is(err, store.ErrNotFound) {
		return t, false, nil
	}
	if err != nil {
		return t, false, &StoreError{What: "token", Err: err}
	}
	return t, true, nil
}

// Config is the reference client's config for the holder of secret, with
// access keys whose base URL is base (the control plane's, or the gateways'
// where they serve the documents) and pin (KeyPin of the keys, nil: none).
// A state other than Active means no config: the caller refuses.
func (s *Source) Config(ctx context.Context, secret string, base *url.URL, pin []byte) (wire.ClientConfig, State, error) {
	t, found, err := s.lookup(ctx, secret)
	if err != nil || !found {
		return wire.ClientConfig{}, Unknown, err
	}
	if st := s.StateOf(t); st != Active {
		return wire.ClientConfig{}, st, nil
	}
	u, err := s.Store.GetUsage(ctx, t.ID)
	if err != nil {
		return wire.ClientConfig{}, Unknown, &StoreError{What: "token", Err: err}
	}
	u = u.At(s.now()) // the current period's
	if OverQuotaOf(t, u) {
		return wire.ClientConfig{}, OverQuota, nil
	}
	gws, err := s.Store.ListGateways(ctx)
	if err != nil {
		return wire.ClientConfig{}, Unknown, &StoreError{What: "gateway", Err: err}
	}
	ordered := OrderGateways(gws)
	out := wire.ClientConfig{
		TokenID:     t.ID,
		Gateways:    make([]string, 0, len(ordered)),
		Cipher:      t.Cipher,
		Secret:      t.SSPassword,
		QuotaBytes:  t.QuotaBytes,
		MaxSessions: t.MaxSessions,
		MaxDevices:  t.MaxDevices,
		Usage:       &wire.UsageView{Up: u.Up, Down: u.Down, Total: u.Total()},
		AccessKeys:  Keys(base, t, secret, ordered, pin),
	}
	if !t.ExpiresAt.IsZero() {
		e := t.ExpiresAt.UTC()
		out.ExpiresAt = &e
	}
	for _, g := range ordered {
		out.Gateways = append(out.Gateways, g.PublicURL)
	}
	return out, Active, nil
}
