package wiring

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/httvps/httvps/control/clientdoc"
	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/store"
)

// Paths of the documents a gateway serves behind its decoy; the control
// API serves the same ones (docs/02-control-plane-api.md).
const (
	outlinePrefix = "/v1/outline/"
	configPath    = "/v1/client/config"
	// maxDocSecret bounds a secret in a document path (tokens are 43).
	maxDocSecret = 256
)

// Documents is the gateway's gateway.Documents on the store: the Outline
// dynamic access key at /v1/outline/<secret> and the client config at
// /v1/client/config (Authorization: Bearer), built by control/clientdoc
// exactly as the control API builds them. keysURL is where the client
// config's access keys point (the gateway's own public URL; wss:// and
// ws:// are taken as https:// and http://), pin goes into their httvps://
// key (nil: none).
func Documents(st store.Store, keysURL string, pin []byte) (gateway.Documents, error) {
	u, err := url.Parse(keysURL)
	if err != nil {
		return nil, fmt.Errorf("keys URL: %w", err)
	}
	switch u.Scheme {
	case "wss", "https":
		u.Scheme = "https"
	case "ws", "http":
		u.Scheme = "http"
	default:
		return nil, fmt.Errorf("keys URL %q: want https://, http://, wss:// or ws://", keysURL)
	}
	if u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("keys URL %q: want scheme://host[:port][/path]", keysURL)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return &documents{src: clientdoc.Source{Store: st}, base: u, pin: pin}, nil
}

type documents struct {
	src  clientdoc.Source
	base *url.URL
	pin  []byte
}

func (d *documents) Claims(path []byte) bool {
	return string(path) == configPath || bytes.HasPrefix(path, []byte(outlinePrefix))
}

func (d *documents) Serve(ctx context.Context, req gateway.DocRequest) (gateway.Document, gateway.DocResult, error) {
	if string(req.Path) == configPath {
		return d.config(ctx, req.Bearer)
	}
	secret := req.Path[len(outlinePrefix):]
	if !tokenChars(secret) {
		// Empty, "x/y", percent-encoded, too long: no token looks so.
		return gateway.Document{}, gateway.DocSecret, nil
	}
	body, found, err := d.src.Outline(ctx, string(secret))
	switch {
	case err != nil:
		return gateway.Document{}, gateway.DocStoreDown, err
	case !found:
		return gateway.Document{}, gateway.DocSecret, nil
	}
	return gateway.Document{ContentType: clientdoc.OutlineContentType, Body: body}, gateway.DocServed, nil
}

// config is the client config for the bearer token; only a token that
// grants access gets it (the control API tells an over-quota holder why;
// here every refusal is the decoy).
func (d *documents) config(ctx context.Context, bearer []byte) (gateway.Document, gateway.DocResult, error) {
	if !tokenChars(bearer) {
		return gateway.Document{}, gateway.DocSecret, nil
	}
	cc, state, err := d.src.Config(ctx, string(bearer), d.base, d.pin)
	switch {
	case err != nil:
		return gateway.Document{}, gateway.DocStoreDown, err
	case state == clientdoc.Unknown:
		return gateway.Document{}, gateway.DocSecret, nil
	case state != clientdoc.Active:
		return gateway.Document{}, gateway.DocRefused, nil
	}
	body, err := json.Marshal(cc)
	if err != nil {
		return gateway.Document{}, gateway.DocStoreDown, err
	}
	// As the control API writes it: one line.
	return gateway.Document{ContentType: "application/json", Body: append(body, '\n')}, gateway.DocServed, nil
}

// tokenChars reports whether s could be a client token: 1 to maxDocSecret
// bytes of base64url, the alphabet the control plane issues tokens in.
func tokenChars(s []byte) bool {
	if len(s) == 0 || len(s) > maxDocSecret {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
