package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/httvps/httvps/control/api/wire"
)

const (
	// fetchTimeout is the Outline apps' ssconf:// fetch timeout; the
	// client config call gets the same.
	fetchTimeout = 10 * time.Second
	// maxDocument bounds an ssconf document or a client config answer.
	maxDocument = 256 << 10
)

// ErrControl wraps every failure to ask the control plane (network, TLS,
// an answer that is not the API's); an API error answer is a *ControlError.
var ErrControl = errors.New("client: control plane")

// ControlError is an error answer of GET /v1/client/config.
type ControlError struct {
	Status  int
	Code    string // "unauthorized", "quota_exceeded", …
	Message string
}

func (e *ControlError) Error() string {
	if e.Status == http.StatusNotFound && e.Code == "http_404" {
		return "control plane: " + e.Reason()
	}
	return fmt.Sprintf("control plane: %d %s: %s", e.Status, e.Code, printableLabel(e.Message))
}

// Reason is the one line a user reads: why the token is refused.
func (e *ControlError) Reason() string {
	switch {
	case e.Status == http.StatusForbidden && e.Code == "quota_exceeded":
		return "the token has used its data quota (403 quota_exceeded)"
	case e.Status == http.StatusNotFound && e.Code == "http_404":
		// Gateways and the control API answer strangers with the decoy: a
		// token they do not accept gets the answer any stranger gets.
		return "the server does not accept the token: it is unknown, revoked, expired or over its quota (404, as for any unknown request)"
	}
	return fmt.Sprintf("the control plane answered %d %s: %s", e.Status, e.Code, printableLabel(e.Message))
}

// Fetcher fetches ssconf:// documents and client configs.
type Fetcher struct {
	// HTTP, when set, is used as is (tests); otherwise each call builds a
	// client that trusts the system roots and, for a key with a pin, that
	// certificate too. Requests never go through a proxy from the
	// environment and never follow redirects (the token would go along).
	HTTP *http.Client
	// RootCAs, when set, replaces the system roots for chain verification.
	RootCAs *x509.CertPool
}

func (f *Fetcher) client(pin []byte, host string) *http.Client {
	if f.HTTP != nil {
		return f.HTTP
	}
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: fetchTimeout}).DialContext,
		TLSHandshakeTimeout: fetchTimeout,
		TLSClientConfig:     pinnedOrVerified(pin, f.RootCAs, host),
		MaxIdleConns:        1,
		IdleConnTimeout:     30 * time.Second,
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       fetchTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// pinnedOrVerified verifies the chain for host as usual, but also accepts
// what the pin accepts (checkPin: the pinned leaf, or a leaf for host
// that the pinned CA in the chain signed, as `httvps up` serves).
func pinnedOrVerified(pin []byte, roots *x509.CertPool, host string) *tls.Config {
	conf := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}
	if len(pin) == 0 {
		return conf
	}
	conf.InsecureSkipVerify = true // replaced by VerifyConnection
	conf.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("no certificate")
		}
		if checkPin(cs.PeerCertificates, pin, host) == nil {
			return nil
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		// host, not cs.ServerName: that is empty for an IP address.
		_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: host, Intermediates: inter, Roots: roots})
		return err
	}
	return conf
}

// get fetches url (with the bearer token if set) and returns a bounded body.
func (f *Fetcher) get(ctx context.Context, u, bearer string, pin []byte) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %w", ErrControl, err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	hc := f.client(pin, req.URL.Hostname())
	if f.HTTP == nil {
		// A client of its own per call: leave no idle connection behind.
		defer hc.CloseIdleConnections()
	}
	resp, err := hc.Do(req)
	if err != nil {
		// *url.Error quotes the URL, which may hold the token (ssconf).
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, nil, fmt.Errorf("%w: %w", ErrControl, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocument+1))
	if err != nil {
		return 0, nil, fmt.Errorf("%w: reading the answer: %w", ErrControl, err)
	}
	if len(body) > maxDocument {
		return 0, nil, fmt.Errorf("%w: answer larger than %d bytes", ErrControl, maxDocument)
	}
	return resp.StatusCode, body, nil
}

// ClientConfig asks GET /v1/client/config with k's token.
func (f *Fetcher) ClientConfig(ctx context.Context, k *Key) (*wire.ClientConfig, error) {
	if k.Control == "" || k.Token == "" {
		return nil, fmt.Errorf("%w: the key names no control plane", ErrControl)
	}
	status, body, err := f.get(ctx, k.Control+"/v1/client/config", k.Token, k.Pin)
	if err != nil {
		return nil, err
	}
	if status/100 != 2 {
		var eb struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		ce := &ControlError{Status: status, Code: fmt.Sprintf("http_%d", status), Message: "not the HTTVPS control API?"}
		if json.Unmarshal(body, &eb) == nil && eb.Error.Code != "" {
			ce.Code, ce.Message = eb.Error.Code, eb.Error.Message
		}
		return nil, ce
	}
	var cfg wire.ClientConfig
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&cfg); err != nil {
		return nil, fmt.Errorf("%w: the client config is not JSON: %w", ErrControl, err)
	}
	return &cfg, nil
}

// WithConfig is k with the gateways, cipher and secret of cfg. The key's
// pin applies to every gateway; the SNI of its first gateway to that host
// only.
func (k *Key) WithConfig(cfg *wire.ClientConfig) (*Key, error) {
	n := k.Clone()
	cipher, err := checkCipher(cfg.Cipher)
	if err != nil {
		return nil, fmt.Errorf("control plane config: %w", err)
	}
	if cfg.Secret == "" {
		return nil, fmt.Errorf("%w: control plane config has no secret", ErrBadKey)
	}
	n.Cipher, n.Secret = cipher, cfg.Secret
	sni := map[string]string{}
	for _, g := range k.Gateways {
		if g.SNI != "" {
			sni[g.Addr] = g.SNI
		}
	}
	n.Gateways = nil
	for _, raw := range cfg.Gateways {
		g, err := gatewayFromURL(raw)
		if err != nil {
			continue // the control plane leaves such URLs out; skip rather than fail
		}
		g.Pin, g.SNI = k.Pin, sni[g.Addr]
		n.Gateways = append(n.Gateways, g)
	}
	if len(n.Gateways) == 0 {
		if len(k.Gateways) == 0 {
			return nil, fmt.Errorf("%w: the control plane lists no gateway (none online?)", ErrBadKey)
		}
		n.Gateways = k.Gateways // keep what the key had
	}
	return n, nil
}

// gatewayFromURL reads a gateway's public URL (https, wss, http, ws).
func gatewayFromURL(raw string) (Gateway, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return Gateway{}, fmt.Errorf("%w: gateway URL %q", ErrBadKey, printableLabel(raw))
	}
	g := Gateway{}
	def := "80"
	switch u.Scheme {
	case "https", "wss":
		g.TLS, def = true, "443"
	case "http", "ws":
	default:
		return Gateway{}, fmt.Errorf("%w: gateway URL %q: want https, wss, http or ws", ErrBadKey, printableLabel(raw))
	}
	if g.Addr, err = hostPort(u.Host, def); err != nil {
		return Gateway{}, err
	}
	return g, nil
}
