// Package outlinefake is a fake Outline server for tests: it serves the
// Outline Server Management API (shadowbox, api.yml of outline-server) over
// HTTPS with a self-signed certificate, under a secret path prefix, with the
// documented paths, bodies and status codes — 201 on create, 204 on delete,
// 400 on an invalid body, 404 for a wrong prefix or unknown key, 409 for an
// existing key id — and restify's {"code","message"} error bodies. No
// Outline server runs in these tests; the fake stands in for one.
//
// Deviation: a real Outline server serves every key on one port, telling
// keys apart by password. ss-server cannot do that, so with
// Options.SSServer the fake starts one real ss-server per key on its own
// port and reports that port in the key's "port" field. Clients of the API
// must (and the pool does) take the port from each key, never assume one.
// Transfer counters are set by the test (SetTransfer), not measured.
package outlinefake

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/httvps/httvps/internal/testpeer"
	"github.com/httvps/httvps/store"
)

// Options configure a fake.
type Options struct {
	// SSServer starts a real ss-server (shadowsocks-libev) for each key so
	// traffic can flow; the test is skipped if ss-server is missing.
	SSServer bool
	// Cert is the certificate to serve (nil: a fresh self-signed one).
	Cert *tls.Certificate
}

// Key is an access key as the API shows it.
type Key struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Password  string     `json:"password"`
	Port      int        `json:"port"`
	Method    string     `json:"method"`
	DataLimit *DataLimit `json:"dataLimit,omitempty"`
	AccessURL string     `json:"accessUrl"`
}

// DataLimit is the API's data limit object.
type DataLimit struct {
	Bytes int64 `json:"bytes"`
}

// Server is a running fake.
type Server struct {
	// APIURL is the management URL with its secret prefix, as Outline
	// prints it ("apiUrl").
	APIURL string
	// CertSHA256 is the hex SHA-256 of the served certificate's DER
	// ("certSha256").
	CertSHA256 string
	// Host is the IP the Shadowsocks ports listen on.
	Host string

	t      testing.TB
	opts   Options
	prefix string
	srv    *httptest.Server

	mu          sync.Mutex
	keys        map[string]*key // guarded by mu
	order       []string        // key ids in creation order; guarded by mu
	nextID      int             // POST ids; guarded by mu
	transfer    map[string]int64
	unavailable bool
	closed      bool
	requests    []string // "METHOD path-after-prefix"; guarded by mu
}

type key struct {
	Key
	proc *testpeer.Proc // the key's ss-server, with Options.SSServer
}

// defaultPort is portForNewAccessKeys without Options.SSServer; nothing
// listens there.
const defaultPort = 9

// Start runs a fake until the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.SSServer {
		if _, err := exec.LookPath("ss-server"); err != nil {
			t.Skipf("outlinefake: ss-server not installed: %v", err)
		}
	}
	cert := opts.Cert
	if cert == nil {
		cert = &testpeer.SelfSignedCert(t).Cert
	}
	sum := sha256.Sum256(cert.Certificate[0])
	var secret [16]byte
	rand.Read(secret[:])
	s := &Server{
		CertSHA256: hex.EncodeToString(sum[:]),
		Host:       "127.0.0.1",
		t:          t,
		opts:       opts,
		prefix:     "/" + base64.RawURLEncoding.EncodeToString(secret[:]),
		keys:       map[string]*key{},
		transfer:   map[string]int64{},
	}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.srv.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}}
	// Pin-mismatch tests make clients abort handshakes; keep that quiet.
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.srv.StartTLS()
	s.APIURL = s.srv.URL + s.prefix
	t.Cleanup(s.Close)
	return s
}

// Close stops the API and every key's ss-server, as if the server died.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	keys := s.keys
	s.keys = map[string]*key{}
	s.mu.Unlock()
	s.srv.CloseClientConnections()
	s.srv.Close()
	for _, k := range keys {
		stopProc(k.proc)
	}
}

// SetUnavailable makes every API request answer 503 (true) or be served
// again (false); the Shadowsocks ports are not affected.
func (s *Server) SetUnavailable(v bool) {
	s.mu.Lock()
	s.unavailable = v
	s.mu.Unlock()
}

// SetTransfer sets the bytes GET /metrics/transfer reports for a key id.
func (s *Server) SetTransfer(id string, n int64) {
	s.mu.Lock()
	s.transfer[id] = n
	s.mu.Unlock()
}

// Keys returns the access keys in creation order.
func (s *Server) Keys() []Key {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Key, 0, len(s.order))
	for _, id := range s.order {
		out = append(out, s.keys[id].Key)
	}
	return out
}

// DropKey removes a key behind the API's back, as a reinstalled or reset
// server loses its keys: its ss-server stops, and no request is recorded.
// It reports whether the key existed.
func (s *Server) DropKey(id string) bool {
	k := s.drop(id)
	if k == nil {
		return false
	}
	stopProc(k.proc)
	return true
}

// Requests returns "METHOD /path" of every request that passed the prefix
// check, the prefix removed.
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

func stopProc(p *testpeer.Proc) {
	if p == nil {
		return
	}
	pid := p.Cmd.Process.Pid
	_ = syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-p.Exited():
	case <-time.After(2 * time.Second):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-p.Exited()
	}
}

// restify-style error answers.
func writeErr(w http.ResponseWriter, status int, code, format string, a ...any) {
	writeJSON(w, status, map[string]string{"code": code, "message": fmt.Sprintf(format, a...)})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	path := r.URL.EscapedPath()
	// Outline filters the prefix before routing and answers like its
	// router does for an unknown path.
	rest, ok := strings.CutPrefix(path, s.prefix)
	if !ok || (rest != "" && rest[0] != '/') {
		writeErr(w, http.StatusNotFound, "ResourceNotFound", "%s does not exist", path)
		return
	}
	s.mu.Lock()
	s.requests = append(s.requests, r.Method+" "+rest)
	unavailable := s.unavailable
	s.mu.Unlock()
	if unavailable {
		writeErr(w, http.StatusServiceUnavailable, "ServiceUnavailable", "fake set unavailable")
		return
	}
	seg := strings.Split(strings.Trim(rest, "/"), "/")
	switch {
	case rest == "/server":
		s.route(w, r, map[string]http.HandlerFunc{"GET": s.getServer})
	case rest == "/access-keys":
		s.route(w, r, map[string]http.HandlerFunc{"GET": s.listKeys, "POST": s.postKey})
	case len(seg) == 2 && seg[0] == "access-keys":
		id, err := url.PathUnescape(seg[1])
		if err != nil || id == "" {
			writeErr(w, http.StatusBadRequest, "MissingParameter", "Parameter `id` is missing")
			return
		}
		s.route(w, r, map[string]http.HandlerFunc{
			"GET":    func(w http.ResponseWriter, r *http.Request) { s.getKey(w, id) },
			"PUT":    func(w http.ResponseWriter, r *http.Request) { s.putKey(w, r, id) },
			"DELETE": func(w http.ResponseWriter, r *http.Request) { s.deleteKey(w, id) },
		})
	case rest == "/metrics/transfer":
		s.route(w, r, map[string]http.HandlerFunc{"GET": s.getTransfer})
	default:
		writeErr(w, http.StatusNotFound, "ResourceNotFound", "%s does not exist", path)
	}
}

func (s *Server) route(w http.ResponseWriter, r *http.Request, h map[string]http.HandlerFunc) {
	if f, ok := h[r.Method]; ok {
		f(w, r)
		return
	}
	writeErr(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "%s is not allowed", r.Method)
}

func (s *Server) getServer(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"name":                  "outlinefake",
		"serverId":              "00000000-0000-4000-8000-" + s.CertSHA256[:12],
		"metricsEnabled":        false,
		"createdTimestampMs":    1700000000000,
		"version":               "1.12.0-fake",
		"portForNewAccessKeys":  defaultPort,
		"hostnameForAccessKeys": s.Host,
	})
}

func (s *Server) listKeys(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"accessKeys": s.Keys()})
}

func (s *Server) getKey(w http.ResponseWriter, id string) {
	s.mu.Lock()
	k, ok := s.keys[id]
	s.mu.Unlock()
	if !ok {
		writeErr(w, http.StatusNotFound, "NotFoundError", "No access key found with id %s", id)
		return
	}
	writeJSON(w, http.StatusOK, k.Key)
}

func (s *Server) postKey(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	var id string
	for {
		id = strconv.Itoa(s.nextID)
		s.nextID++
		if _, taken := s.keys[id]; !taken {
			break
		}
	}
	s.mu.Unlock()
	s.create(w, r, id)
}

func (s *Server) putKey(w http.ResponseWriter, r *http.Request, id string) {
	s.create(w, r, id)
}

// params is the create body as the API reads it: every field optional,
// each checked for its type.
type params struct {
	Name     *string         `json:"name"`
	Method   *string         `json:"method"`
	Password *string         `json:"password"`
	Port     *json.Number    `json:"port"`
	Limit    json.RawMessage `json:"limit"`
}

func (s *Server) create(w http.ResponseWriter, r *http.Request, id string) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeErr(w, http.StatusBadRequest, "BadRequest", "reading body: %v", err)
		return
	}
	var p params
	if len(strings.TrimSpace(string(body))) > 0 {
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(body, &raw); err != nil {
			writeErr(w, http.StatusBadRequest, "InvalidContent", "Invalid JSON: %v", err)
			return
		}
		for _, f := range []struct {
			name string
			dst  any
		}{{"name", &p.Name}, {"method", &p.Method}, {"password", &p.Password}, {"port", &p.Port}} {
			if v, ok := raw[f.name]; ok && string(v) != "null" {
				if err := json.Unmarshal(v, f.dst); err != nil {
					writeErr(w, http.StatusBadRequest, "InvalidArgument", "Parameter `%s` has the wrong type", f.name)
					return
				}
			}
		}
		p.Limit = raw["limit"]
	}
	k := Key{ID: id, Method: store.DefaultCipher}
	if p.Name != nil {
		k.Name = *p.Name
	}
	if p.Method != nil {
		if !store.ValidCipher(*p.Method) {
			writeErr(w, http.StatusBadRequest, "InvalidArgument", "Unsupported encryption method: %s", *p.Method)
			return
		}
		k.Method = *p.Method
	}
	if p.Password != nil {
		if *p.Password == "" {
			writeErr(w, http.StatusBadRequest, "InvalidArgument", "Parameter `password` must be a non-empty string")
			return
		}
		k.Password = *p.Password
	} else {
		var b [16]byte
		rand.Read(b[:])
		k.Password = base64.RawURLEncoding.EncodeToString(b[:])
	}
	if p.Port != nil {
		n, err := strconv.Atoi(p.Port.String())
		if err != nil || n < 1 || n > 65535 {
			writeErr(w, http.StatusBadRequest, "InvalidArgument", "Specified port must be an integer from 1 through 65535")
			return
		}
		k.Port = n
	}
	if len(p.Limit) > 0 && string(p.Limit) != "null" {
		var l struct {
			Bytes *json.Number `json:"bytes"`
		}
		var n int64 = -1
		if json.Unmarshal(p.Limit, &l) == nil && l.Bytes != nil {
			if v, err := strconv.ParseInt(l.Bytes.String(), 10, 64); err == nil {
				n = v
			}
		}
		if n < 0 {
			writeErr(w, http.StatusBadRequest, "InvalidArgument", "`limit.bytes` must be an non-negative integer")
			return
		}
		k.DataLimit = &DataLimit{Bytes: n}
	}

	s.mu.Lock()
	_, exists := s.keys[id]
	closed := s.closed
	if !exists && !closed {
		s.keys[id] = &key{Key: k} // reserve the id while ss-server starts
		s.order = append(s.order, id)
	}
	s.mu.Unlock()
	if exists {
		writeErr(w, http.StatusConflict, "ConflictError", "Access key %q already exists", id)
		return
	}
	if closed {
		writeErr(w, http.StatusServiceUnavailable, "ServiceUnavailable", "closed")
		return
	}
	var proc *testpeer.Proc
	if s.opts.SSServer {
		proc, k.Port, err = s.startSS(k)
	} else if k.Port == 0 {
		k.Port = defaultPort
	}
	if err != nil {
		s.drop(id)
		writeErr(w, http.StatusConflict, "ConflictError", "Port %d is unavailable: %v", k.Port, err)
		return
	}
	k.AccessURL = fmt.Sprintf("ss://%s@%s/?outline=1",
		base64.URLEncoding.EncodeToString([]byte(k.Method+":"+k.Password)),
		net.JoinHostPort(s.Host, strconv.Itoa(k.Port)))
	s.mu.Lock()
	if cur, ok := s.keys[id]; ok && !s.closed {
		cur.Key, cur.proc = k, proc
		proc = nil
	}
	s.mu.Unlock()
	if proc != nil { // deleted or closed while starting
		stopProc(proc)
		writeErr(w, http.StatusNotFound, "NotFoundError", "No access key found with id %s", id)
		return
	}
	writeJSON(w, http.StatusCreated, k)
}

// startSS starts the key's ss-server, on the requested port or a free one.
func (s *Server) startSS(k Key) (*testpeer.Proc, int, error) {
	var last error
	for range 3 {
		port := k.Port
		if port == 0 {
			port = testpeer.FreePort(s.t)
		}
		addr := net.JoinHostPort(s.Host, strconv.Itoa(port))
		p := testpeer.StartProc(s.t, "ss-server", "-s", s.Host, "-p", strconv.Itoa(port),
			"-k", k.Password, "-m", k.Method, "-u", "-t", "60")
		if last = waitListening(p, addr); last == nil {
			return p, port, nil
		}
		stopProc(p)
		if k.Port != 0 {
			break
		}
	}
	return nil, k.Port, last
}

func waitListening(p *testpeer.Proc, addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-p.Exited():
			return fmt.Errorf("outlinefake: ss-server exited: %s", p.Output())
		default:
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *Server) drop(id string) *key {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[id]
	if !ok {
		return nil
	}
	delete(s.keys, id)
	s.order = slices.DeleteFunc(s.order, func(x string) bool { return x == id })
	delete(s.transfer, id)
	return k
}

func (s *Server) deleteKey(w http.ResponseWriter, id string) {
	k := s.drop(id)
	if k == nil {
		writeErr(w, http.StatusNotFound, "NotFoundError", "No access key found with id %s", id)
		return
	}
	stopProc(k.proc)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) getTransfer(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	m := make(map[string]int64, len(s.transfer))
	for id, n := range s.transfer {
		if _, ok := s.keys[id]; ok {
			m[id] = n
		}
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"bytesTransferredByUserId": m})
}
