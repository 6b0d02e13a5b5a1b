package main

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
	"os"
	"strings"
	"syscall"
	"time"
)

const (
	// requestTimeout bounds one admin API call; drain and remove move every
	// key of a member and may take minutes.
	requestTimeout     = 30 * time.Second
	longRequestTimeout = 3 * time.Minute
	maxAnswerBytes     = 16 << 20
)

// apiError is an error answer of the control plane: the code is stable,
// the message is for people.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string {
	if strings.HasPrefix(e.Code, "http_") {
		return e.Message // not the API's answer: the message says what came
	}
	return e.Code + ": " + e.Message
}

// apiClient calls one control plane's JSON API.
type apiClient struct {
	base *url.URL // scheme://host[:port][/path], no trailing slash
	key  string   // admin key, sent as a bearer token
	hc   *http.Client
}

// newAPIClient builds a client for base (https://host:port) with tlsConf
// for https (nil: system roots). dialAddr, if set, is dialled instead of
// the URL's host, so `up` can reach itself on loopback under its public
// name.
func newAPIClient(base, key string, tlsConf *tls.Config, dialAddr string) (*apiClient, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" {
		return nil, fmt.Errorf("control URL %q: want https://host:port", base)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	tr := &http.Transport{
		TLSClientConfig:     tlsConf,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
		// The admin key must not travel through whatever proxy the
		// environment names.
		Proxy: nil,
	}
	d := &net.Dialer{Timeout: 10 * time.Second}
	if dialAddr != "" {
		tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, dialAddr)
		}
	} else {
		tr.DialContext = d.DialContext
	}
	return &apiClient{base: u, key: key, hc: &http.Client{
		Transport: tr,
		// Redirects would carry the bearer token elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}, nil
}

func (c *apiClient) close() { c.hc.CloseIdleConnections() }

// call sends a request with the admin key and returns the answer body; a
// non-2xx answer is an *apiError. in, when not nil, is sent as JSON.
func (c *apiClient) call(ctx context.Context, method, path string, query url.Values, in any) ([]byte, error) {
	return c.callAs(ctx, c.key, method, path, query, in)
}

// callAs is call with another bearer token (a client token for the client
// API).
func (c *apiClient) callAs(ctx context.Context, bearer, method, path string, query url.Values, in any) ([]byte, error) {
	u := *c.base
	u.Path += path
	u.RawQuery = query.Encode()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		// url.Error quotes the URL, which never holds a secret here: token
		// paths go through callAs only for /v1/client/config.
		if u.Scheme == "http" && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
			// A TLS listener drops a plaintext request without an answer.
			return nil, fmt.Errorf("%w (the control plane closed the connection without answering: it serves HTTPS, try -control https://%s)", err, u.Host)
		}
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode/100 == 2 {
		return raw, nil
	}
	return nil, answerError(&u, method, path, resp, raw, bearer != c.key)
}

// download GETs path with the admin key and streams a 2xx answer's body
// to w, failing when it is shorter than its Content-Length.
func (c *apiClient) download(ctx context.Context, path string, w io.Writer) (int64, error) {
	u := *c.base
	u.Path += path
	req, err := http.NewRequestWithContext(ctx, "GET", u.String(), nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
		return 0, answerError(&u, "GET", path, resp, raw, false)
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("GET %s: after %d bytes: %w", path, n, err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return n, fmt.Errorf("GET %s: %d bytes of %d", path, n, resp.ContentLength)
	}
	return n, nil
}

// answerError is the error for a non-2xx answer with body raw: the API's
// JSON error, or what the answer suggests went wrong. clientCall says the
// bearer was a client token, not the admin key.
func answerError(u *url.URL, method, path string, resp *http.Response, raw []byte, clientCall bool) error {
	var eb struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(raw, &eb) == nil && eb.Error.Code != "" {
		return &apiError{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message}
	}
	msg := fmt.Sprintf("%s %s answered %s (not the HTTVPS control API?)", method, path, resp.Status)
	switch {
	case u.Scheme == "http" && resp.StatusCode == http.StatusBadRequest && bytes.Contains(raw, []byte("plain HTTP request was sent to HTTPS port")):
		msg = fmt.Sprintf("%s %s: the control plane answered that plain HTTP was sent to its HTTPS port: it serves HTTPS, try -control https://%s", method, path, u.Host)
	case resp.StatusCode == http.StatusNotFound:
		// The control API answers strangers with the gateways' decoy.
		who := "the admin key is not this control plane's (see -admin-key, or admin.key in -data-dir)"
		if clientCall {
			who = "the token is unknown, revoked or expired"
		}
		msg = fmt.Sprintf("%s %s answered 404 as it answers strangers: %s, or -control does not name an HTTVPS control API", method, path, who)
	}
	return &apiError{Status: resp.StatusCode, Code: fmt.Sprintf("http_%d", resp.StatusCode), Message: msg}
}

// getJSON calls and decodes a JSON answer into out.
func (c *apiClient) getJSON(ctx context.Context, method, path string, query url.Values, in, out any) ([]byte, error) {
	raw, err := c.call(ctx, method, path, query, in)
	if err != nil {
		return nil, err
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return raw, fmt.Errorf("%s %s: answer is not the expected JSON: %w", method, path, err)
		}
	}
	return raw, nil
}

// tlsForCA trusts the PEM certificates in file (a self-signed server
// certificate is its own root), or nothing but the system roots when file
// is empty.
func tlsForCA(file string, insecure bool) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if insecure {
		conf.InsecureSkipVerify = true
		return conf, nil
	}
	if file == "" {
		return conf, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", file)
	}
	conf.RootCAs = pool
	return conf, nil
}

// tlsPinned accepts exactly the certificate current returns (its DER):
// `up` calling its own API over loopback, whatever names the certificate
// carries, and still after a reload swapped it.
func tlsPinned(current func() []byte) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // replaced by the pin below
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || !bytes.Equal(cs.PeerCertificates[0].Raw, current()) {
				return errors.New("control API presented another certificate than the one loaded")
			}
			return nil
		},
	}
}

func jsonUnmarshal(raw []byte, v any) error { return json.Unmarshal(raw, v) }
