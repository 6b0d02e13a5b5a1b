package clientdoc

import (
	"context"

	"gopkg.in/yaml.v3"
)

// OutlineContentType is the Content-Type of an Outline document.
const OutlineContentType = "application/yaml; charset=utf-8"

// Outline dynamic access key documents (the YAML the Outline apps fetch
// through ssconf://).
type outlineDoc struct {
	Transport *outlineTransport `yaml:"transport,omitempty"`
	Error     *outlineError     `yaml:"error,omitempty"`
}

type outlineTransport struct {
	Type string        `yaml:"$type"`
	TCP  outlineDialer `yaml:"tcp"`
	UDP  outlineDialer `yaml:"udp"`
}

type outlineDialer struct {
	Type     string          `yaml:"$type"`
	Endpoint outlineEndpoint `yaml:"endpoint"`
	Cipher   string          `yaml:"cipher"`
	Secret   string          `yaml:"secret"`
}

type outlineEndpoint struct {
	Type string `yaml:"$type"`
	URL  string `yaml:"url"`
}

type outlineError struct {
	Message string `yaml:"message"`
	Details string `yaml:"details,omitempty"`
}

// Messages the Outline app shows for keys that no longer work.
var (
	outlineRevoked   = outlineError{Message: "This access key has been revoked.", Details: "Ask your provider for a new key."}
	outlineExpired   = outlineError{Message: "This access key has expired.", Details: "Ask your provider to renew it."}
	outlineQuota     = outlineError{Message: "This access key has used its data limit.", Details: "Ask your provider for more data."}
	outlineNoGateway = outlineError{Message: "The service is temporarily unavailable.", Details: "No gateway is online; try again in a few minutes."}
)

// Outline is the Outline dynamic access key document of the token whose
// client token is secret: the transport through the best gateway, or,
// for a key that stopped working (revoked, expired, over quota, no
// gateway), the YAML error form, which the Outline apps show as written
// (they treat any status above 299 as a fetch failure with a generic
// message). found is false for an unknown secret, which callers answer as
// they answer an unknown path.
func (s *Source) Outline(ctx context.Context, secret string) (doc []byte, found bool, err error) {
	t, found, err := s.lookup(ctx, secret)
	if err != nil || !found {
		return nil, false, err
	}
	switch s.StateOf(t) {
	case Revoked:
		return marshalOutline(outlineDoc{Error: &outlineRevoked})
	case Expired:
		return marshalOutline(outlineDoc{Error: &outlineExpired})
	}
	u, err := s.Store.GetUsage(ctx, t.ID)
	if err != nil {
		return nil, false, &StoreError{What: "token", Err: err}
	}
	u = u.At(s.now()) // the current period's
	if OverQuotaOf(t, u) {
		return marshalOutline(outlineDoc{Error: &outlineQuota})
	}
	gws, err := s.Store.ListGateways(ctx)
	if err != nil {
		return nil, false, &StoreError{What: "gateway", Err: err}
	}
	ordered := OrderGateways(gws)
	if len(ordered) == 0 {
		return marshalOutline(outlineDoc{Error: &outlineNoGateway})
	}
	g := ordered[0]
	dialer := func(kind string) outlineDialer {
		return outlineDialer{
			Type:     "shadowsocks",
			Endpoint: outlineEndpoint{Type: "websocket", URL: g.WSURL("/" + secret + "/" + kind)},
			Cipher:   t.Cipher,
			Secret:   t.SSPassword,
		}
	}
	return marshalOutline(outlineDoc{Transport: &outlineTransport{Type: "tcpudp", TCP: dialer("tcp"), UDP: dialer("udp")}})
}

func marshalOutline(d outlineDoc) ([]byte, bool, error) {
	b, err := yaml.Marshal(d)
	if err != nil {
		return nil, false, err
	}
	return b, true, nil
}
