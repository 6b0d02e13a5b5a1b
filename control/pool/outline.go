package pool

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/httvps/httvps/store"
)

// maxAPIBody bounds what is read from an Outline API answer. The key list
// is the largest one (about 250 bytes per key).
const maxAPIBody = 32 << 20

// APIError is a non-success answer of the Outline Management API.
type APIError struct {
	Op      string // "PUT /access-keys/{id}", ...
	Status  int
	Code    string // restify's error code, e.g. "ConflictError"
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("pool: outline %s: %d %s: %s", e.Op, e.Status, e.Code, e.Message)
}

// Unwrap makes every APIError an ErrBackend.
func (e *APIError) Unwrap() error { return ErrBackend }

// outline talks to shadowbox's Management API. The secret path prefix in
// apiURL is the credential; the self-signed certificate is pinned by its
// SHA-256 instead of being checked against a CA.
type outline struct {
	// mark is the installation's mark put in the names of the keys it
	// creates (installMark); "" makes keys named by their id alone and
	// claims none as its own.
	mark       string
	host       string
	apiURL     string
	secretPath string // apiURL's path, kept out of error text
	client     *http.Client
}

// outlineKey is the API's AccessKey object.
type outlineKey struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Password string `json:"password"`
	Port     int    `json:"port"`
	Method   string `json:"method"`
}

func newOutline(host string, oc store.OutlineConfig, cfg Config, mark string) (*outline, error) {
	pin, err := hex.DecodeString(oc.CertSHA256)
	if err != nil || len(pin) != sha256.Size {
		return nil, fmt.Errorf("%w: outline certSha256 is not a hex SHA-256", store.ErrInvalid)
	}
	var tr *http.Transport
	if cfg.HTTPTransport != nil {
		tr = cfg.HTTPTransport.Clone()
	} else {
		tr = &http.Transport{
			DialContext:         (&net.Dialer{Timeout: cfg.DialTimeout}).DialContext,
			TLSHandshakeTimeout: cfg.DialTimeout,
			MaxIdleConnsPerHost: 2,
			IdleConnTimeout:     90 * time.Second,
		}
	}
	tr.TLSClientConfig = &tls.Config{
		// The chain cannot be verified (shadowbox's certificate is
		// self-signed); the pin below replaces that check.
		InsecureSkipVerify: true,
		MinVersion:         tls.VersionTLS12,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return ErrCertPin
			}
			sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
			if !bytes.Equal(sum[:], pin) {
				return ErrCertPin
			}
			return nil
		},
	}
	u, err := url.Parse(oc.APIURL)
	if err != nil || u.EscapedPath() == "" {
		return nil, fmt.Errorf("%w: outline apiUrl is not a URL with a path", store.ErrInvalid)
	}
	return &outline{
		mark:       mark,
		host:       host,
		apiURL:     oc.APIURL,
		secretPath: u.EscapedPath(),
		client: &http.Client{
			Transport: tr,
			// A redirect would leave the secret prefix; the API never
			// redirects the calls made here.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

// call sends one request and decodes a JSON answer into out (nil: none
// expected). want lists the success statuses.
func (o *outline) call(ctx context.Context, op, method, path string, body, out any, want ...int) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, o.apiURL+path, rd)
	if err != nil {
		return 0, fmt.Errorf("pool: outline %s: %w", op, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := o.client.Do(req)
	if err != nil {
		// url.Error keeps the cause (ErrCertPin, timeouts) for errors.Is
		// but also the URL, which holds the secret prefix: drop it.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, fmt.Errorf("pool: outline %s: %w", op, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIBody+1))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("pool: outline %s: reading answer: %w", op, err)
	}
	if len(data) > maxAPIBody {
		return resp.StatusCode, fmt.Errorf("%w: outline %s: answer larger than %d bytes", ErrBackend, op, maxAPIBody)
	}
	if !slices.Contains(want, resp.StatusCode) {
		ae := &APIError{Op: op, Status: resp.StatusCode}
		var eb struct{ Code, Message string }
		if json.Unmarshal(data, &eb) == nil {
			// restify echoes the request path, which holds the secret.
			ae.Code, ae.Message = eb.Code, strings.ReplaceAll(eb.Message, o.secretPath, "/<secret>")
		}
		return resp.StatusCode, ae
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%w: outline %s: %v", ErrBackend, op, err)
		}
	}
	return resp.StatusCode, nil
}

func keyPath(id string) string { return "/access-keys/" + url.PathEscape(id) }

// keyName is the name CreateKey gives key id: "httvps <mark> <id>", which
// the Outline Manager shows and which tells this installation's keys from
// those of another installation sharing the server; the bare id without a
// mark (as keys were named before marks existed).
func keyName(mark, id string) string {
	if mark == "" {
		return id
	}
	return "httvps " + mark + " " + id
}

// CreateKey uses PUT /access-keys/{id}, which creates the key with the
// chosen id, named keyName(o.mark, id). If the id exists already (409)
// with the same secret — a retry after a lost answer — the existing key is
// used.
func (o *outline) CreateKey(ctx context.Context, id, cipher, password string) (string, string, error) {
	body := map[string]any{"name": keyName(o.mark, id), "method": cipher, "password": password}
	var k outlineKey
	status, err := o.call(ctx, "PUT /access-keys/{id}", http.MethodPut, keyPath(id), body, &k, http.StatusCreated)
	if status == http.StatusConflict {
		keys, lerr := o.list(ctx)
		if lerr != nil {
			return "", "", errors.Join(err, lerr)
		}
		i := slices.IndexFunc(keys, func(k outlineKey) bool { return k.ID == id })
		if i < 0 || keys[i].Method != cipher || keys[i].Password != password {
			return "", "", err
		}
		k, err = keys[i], nil
	}
	if err != nil {
		return "", "", err
	}
	if k.Port < 1 || k.Port > 65535 || k.ID != id {
		return "", "", fmt.Errorf("%w: outline PUT /access-keys/{id}: key %q port %d", ErrBackend, k.ID, k.Port)
	}
	return net.JoinHostPort(o.host, strconv.Itoa(k.Port)), k.ID, nil
}

// DeleteKey uses DELETE /access-keys/{id}; 404 means it is gone already.
func (o *outline) DeleteKey(ctx context.Context, id string) error {
	_, err := o.call(ctx, "DELETE /access-keys/{id}", http.MethodDelete, keyPath(id), nil, nil,
		http.StatusNoContent, http.StatusNotFound)
	return err
}

func (o *outline) list(ctx context.Context) ([]outlineKey, error) {
	var l struct {
		AccessKeys []outlineKey `json:"accessKeys"`
	}
	_, err := o.call(ctx, "GET /access-keys", http.MethodGet, "/access-keys", nil, &l, http.StatusOK)
	return l.AccessKeys, err
}

// ServerInfo is the answer of GET /server.
type ServerInfo struct {
	Name                 string `json:"name"`
	ServerID             string `json:"serverId"`
	Version              string `json:"version"`
	PortForNewAccessKeys int    `json:"portForNewAccessKeys"`
}

func (o *outline) server(ctx context.Context) (ServerInfo, error) {
	var s ServerInfo
	_, err := o.call(ctx, "GET /server", http.MethodGet, "/server", nil, &s, http.StatusOK)
	if err == nil && s.ServerID == "" {
		err = fmt.Errorf("%w: outline GET /server: no serverId", ErrBackend)
	}
	return s, err
}

// Health asks GET /server and GET /access-keys, then dials the keys'
// ports (one port on a real Outline server). The API reports no load
// figure, so the load is the key count.
func (o *outline) Health(ctx context.Context) (int, float64, error) {
	if _, err := o.server(ctx); err != nil {
		return 0, 0, err
	}
	keys, err := o.list(ctx)
	if err != nil {
		return 0, 0, err
	}
	var addrs []string
	for _, k := range keys {
		a := net.JoinHostPort(o.host, strconv.Itoa(k.Port))
		if k.Port > 0 && !slices.Contains(addrs, a) && len(addrs) < maxProbes {
			addrs = append(addrs, a)
		}
	}
	if err := probeTCP(ctx, addrs); err != nil {
		return len(keys), float64(len(keys)), err
	}
	return len(keys), float64(len(keys)), nil
}

// Transfer reads GET /metrics/transfer.
func (o *outline) Transfer(ctx context.Context) (map[string]int64, error) {
	var t struct {
		Bytes map[string]int64 `json:"bytesTransferredByUserId"`
	}
	if _, err := o.call(ctx, "GET /metrics/transfer", http.MethodGet, "/metrics/transfer", nil, &t, http.StatusOK); err != nil {
		return nil, err
	}
	if t.Bytes == nil {
		t.Bytes = map[string]int64{}
	}
	return t.Bytes, nil
}

// Keys lists the access keys (GET /access-keys), for key repair and the
// stray-key sweep. A key is this installation's own when its id has the
// form of a token ID (store.NewID: 22 URL-safe base64 characters) and its
// name is keyName(o.mark, id), as CreateKey makes it: keys made in the
// Outline Manager get numeric ids from POST /access-keys, a key an
// operator renamed is left alone, and so are keys of another installation
// (another mark) and keys made before marks existed (name = id). Without
// a mark no key is claimed.
func (o *outline) Keys(ctx context.Context) (map[string]listedKey, error) {
	keys, err := o.list(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]listedKey, len(keys))
	for _, k := range keys {
		ours := o.mark != "" && isTokenID(k.ID) && k.Name == keyName(o.mark, k.ID)
		out[k.ID] = listedKey{ours: ours, fp: secretFP(k.Method, k.Password)}
	}
	return out, nil
}
