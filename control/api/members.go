package api

import (
	"context"
	"encoding/hex"
	"errors"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/httvps/httvps/control/pool"
	"github.com/httvps/httvps/store"
)

// drainTimeout bounds drain and remove requests, which move every key off
// the member one by one.
const drainTimeout = 2 * time.Minute

const maxMemberNameLen = 128

// memberRequest is the body of POST /v1/pool/members: exactly the config
// object matching backend is given.
type memberRequest struct {
	Name      string           `json:"name"`
	Backend   string           `json:"backend"`
	Host      string           `json:"host"`
	Outline   *outlineConfig   `json:"outline"`
	SSManager *ssManagerConfig `json:"ss_manager"`
	Static    *staticConfig    `json:"static"`
}

func viewMember(m store.Member) memberView {
	v := memberView{
		ID: m.ID, Name: m.Name, Backend: m.Backend, Host: m.Host,
		Draining: m.Draining, CreatedAt: m.CreatedAt.UTC(),
		Health: healthView{Up: m.Health.Up, LastError: m.Health.LastError, Keys: m.Health.Keys, Load: m.Health.Load},
	}
	if !m.Health.CheckedAt.IsZero() {
		c := m.Health.CheckedAt.UTC()
		v.Health.CheckedAt = &c
	}
	if m.Outline != nil {
		v.Outline = &outlineConfig{APIURL: redactURL(m.Outline.APIURL), CertSHA256: m.Outline.CertSHA256}
	}
	if m.SSManager != nil {
		v.SSManager = &ssManagerConfig{ManagerAddr: m.SSManager.ManagerAddr, PortMin: m.SSManager.PortMin, PortMax: m.SSManager.PortMax}
	}
	if m.Static != nil {
		v.Static = &staticConfig{Port: m.Static.Port, Cipher: m.Static.Cipher}
	}
	return v
}

// redactURL keeps scheme and host; the path is the Management API's secret.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(redacted)"
	}
	return u.Scheme + "://" + u.Host + "/(redacted)"
}

func checkPort(name string, p int) *apiError {
	if p < 1 || p > 65535 {
		return invalid("%s must be a port from 1 to 65535", name)
	}
	return nil
}

func parseMember(req *memberRequest) (store.Member, *apiError) {
	m := store.Member{Name: req.Name, Backend: req.Backend, Host: req.Host}
	if req.Name == "" || !checkText(req.Name, maxMemberNameLen) {
		return m, invalid("name is required: valid UTF-8 of at most %d bytes without control characters", maxMemberNameLen)
	}
	if _, err := netip.ParseAddr(req.Host); err != nil {
		return m, invalid("host must be the member's IP address (gateways dial it without resolving names)")
	}
	given := 0
	for _, set := range []bool{req.Outline != nil, req.SSManager != nil, req.Static != nil} {
		if set {
			given++
		}
	}
	if given > 1 {
		return m, invalid("give only the config object of the chosen backend")
	}
	switch req.Backend {
	case store.BackendOutlineAPI:
		c := req.Outline
		if c == nil {
			return m, invalid("backend outline-api needs outline: {api_url, cert_sha256}")
		}
		u, err := url.Parse(c.APIURL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return m, invalid("outline.api_url must be the https:// Management API URL with its secret path")
		}
		pin := strings.ToLower(strings.ReplaceAll(c.CertSHA256, ":", ""))
		if b, err := hex.DecodeString(pin); err != nil || len(b) != 32 {
			return m, invalid("outline.cert_sha256 must be 64 hex digits (SHA-256 of the server's DER certificate)")
		}
		m.Outline = &store.OutlineConfig{APIURL: c.APIURL, CertSHA256: pin}
	case store.BackendSSManager:
		c := req.SSManager
		if c == nil {
			return m, invalid("backend ss-manager needs ss_manager: {manager_addr, port_min, port_max}")
		}
		if _, err := netip.ParseAddrPort(c.ManagerAddr); err != nil {
			return m, invalid("ss_manager.manager_addr must be IP:PORT")
		}
		if e := checkPort("ss_manager.port_min", c.PortMin); e != nil {
			return m, e
		}
		if e := checkPort("ss_manager.port_max", c.PortMax); e != nil {
			return m, e
		}
		if c.PortMin > c.PortMax {
			return m, invalid("ss_manager.port_min is above port_max")
		}
		m.SSManager = &store.SSManagerConfig{ManagerAddr: c.ManagerAddr, PortMin: c.PortMin, PortMax: c.PortMax}
	case store.BackendStatic:
		c := req.Static
		if c == nil {
			return m, invalid("backend static needs static: {port, cipher, password}")
		}
		if e := checkPort("static.port", c.Port); e != nil {
			return m, e
		}
		if !store.ValidCipher(c.Cipher) {
			return m, invalid("static.cipher must be one of %s", strings.Join(store.Ciphers, ", "))
		}
		if c.Password == "" {
			return m, invalid("static.password is required")
		}
		m.Static = &store.StaticConfig{Port: c.Port, Cipher: c.Cipher, Password: c.Password}
	default:
		return m, invalid("backend must be outline-api, ss-manager or static")
	}
	return m, nil
}

func (s *Server) addMember(ctx *fasthttp.RequestCtx) {
	var req memberRequest
	if e := decodeJSON(ctx, &req); e != nil {
		s.writeError(ctx, e)
		return
	}
	m, e := parseMember(&req)
	if e != nil {
		s.writeError(ctx, e)
		return
	}
	rctx, cancel := s.reqCtx()
	defer cancel()
	m, err := s.pool.AddMember(rctx, m)
	if err != nil {
		s.writeError(ctx, memberErr(err))
		return
	}
	s.log.Info("pool member added", "member_id", m.ID, "backend", m.Backend)
	ctx.Response.Header.Set("Location", "/v1/pool/members/"+m.ID)
	writeJSON(ctx, fasthttp.StatusCreated, viewMember(m))
}

// memberErr maps pool errors; anything that is not a store condition is
// the member's backend failing.
func memberErr(err error) *apiError {
	switch {
	case errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrNotFound):
	case errors.Is(err, store.ErrInvalid):
		// The pool's validation messages name the field for the operator.
		msg := strings.TrimPrefix(err.Error(), store.ErrInvalid.Error()+": ")
		return &apiError{Status: fasthttp.StatusBadRequest, Code: codeInvalidArgument, Message: msg, Cause: err}
	case errors.Is(err, pool.ErrNoMembers):
		return &apiError{Status: fasthttp.StatusServiceUnavailable, Code: codeNoMembers,
			Message: "some of the member's keys have no other member to move to; add or repair a member and retry", Cause: err}
	}
	e := fromStoreErr(err, "member")
	if e.Code == codeInternal {
		// The cause may quote the Management API URL; it is logged only.
		return &apiError{Status: fasthttp.StatusBadGateway, Code: codeBackend, Message: "the member's backend did not answer as expected; see the control plane log", Cause: err}
	}
	return e
}

func (s *Server) listMembers(ctx *fasthttp.RequestCtx) {
	rctx, cancel := s.reqCtx()
	defer cancel()
	ms, err := s.st.ListMembers(rctx)
	if err != nil {
		s.writeError(ctx, fromStoreErr(err, "member"))
		return
	}
	out := memberList{Members: make([]memberView, 0, len(ms))}
	for _, m := range ms {
		out.Members = append(out.Members, viewMember(m))
	}
	writeJSON(ctx, fasthttp.StatusOK, out)
}

func (s *Server) drainMember(ctx *fasthttp.RequestCtx) {
	s.memberOp(ctx, max(drainTimeout, s.cfg.StoreTimeout), s.pool.DrainMember, "pool member draining")
}

func (s *Server) undrainMember(ctx *fasthttp.RequestCtx) {
	s.memberOp(ctx, s.cfg.StoreTimeout, s.pool.UndrainMember, "pool member undrained")
}

// memberOp runs op on the path's member and answers with the member.
func (s *Server) memberOp(ctx *fasthttp.RequestCtx, d time.Duration, op func(context.Context, string) error, logMsg string) {
	id := pathParam(ctx, "id")
	rctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := op(rctx, id); err != nil {
		s.writeError(ctx, memberErr(err))
		return
	}
	m, err := s.st.GetMember(rctx, id)
	if err != nil {
		s.writeError(ctx, fromStoreErr(err, "member"))
		return
	}
	s.log.Info(logMsg, "member_id", id)
	writeJSON(ctx, fasthttp.StatusOK, viewMember(m))
}

func (s *Server) removeMember(ctx *fasthttp.RequestCtx) {
	id := pathParam(ctx, "id")
	rctx, cancel := context.WithTimeout(context.Background(), max(drainTimeout, s.cfg.StoreTimeout))
	defer cancel()
	if err := s.pool.RemoveMember(rctx, id); err != nil {
		s.writeError(ctx, memberErr(err))
		return
	}
	s.log.Info("pool member removed", "member_id", id)
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}
