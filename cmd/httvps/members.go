package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// memberFlags describe a pool member, from `pool add` flags or a -member
// spec; request is the body of POST /v1/pool/members.
type memberFlags struct {
	backend, host, name string
	// static
	port             int
	cipher, password string
	// ss-manager
	managerAddr      string
	portMin, portMax int
	// outline-api
	apiURL, certSHA256 string
}

func (m *memberFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&m.backend, "backend", "", "`kind` of member: static, ss-manager or outline-api")
	fs.StringVar(&m.host, "host", "", "member `IP` the gateways dial (default: from -manager-addr or -api-url)")
	fs.StringVar(&m.name, "name", "", "member `name` (default: backend-host[-port])")
	fs.IntVar(&m.port, "port", 0, "static: Shadowsocks `port`")
	fs.StringVar(&m.cipher, "cipher", "", "static: Shadowsocks `method`")
	fs.StringVar(&m.password, "password", "", "static: Shadowsocks `password` (every key placed there shares it)")
	fs.StringVar(&m.managerAddr, "manager-addr", "", "ss-manager: its UDP `IP:PORT` (--manager-address)")
	fs.IntVar(&m.portMin, "port-min", 0, "ss-manager: lowest per-key `port`")
	fs.IntVar(&m.portMax, "port-max", 0, "ss-manager: highest per-key `port`")
	fs.StringVar(&m.apiURL, "api-url", "", "outline-api: Management API `URL` with its secret path")
	fs.StringVar(&m.certSHA256, "cert-sha256", "", "outline-api: `hex` SHA-256 of the server's certificate")
}

// check fills defaults and rejects what the API would; the API checks
// again.
func (m *memberFlags) check() error {
	switch m.backend {
	case "static":
		if m.port < 1 || m.port > 65535 || m.cipher == "" || m.password == "" {
			return errors.New("static needs -port, -cipher and -password")
		}
	case "ss-manager":
		ap, err := netip.ParseAddrPort(m.managerAddr)
		if err != nil {
			return errors.New("ss-manager needs -manager-addr IP:PORT")
		}
		if m.portMin < 1 || m.portMax > 65535 || m.portMin > m.portMax {
			return errors.New("ss-manager needs -port-min and -port-max, a range of ports")
		}
		if m.host == "" {
			m.host = ap.Addr().String()
		}
	case "outline-api":
		u, err := url.Parse(m.apiURL)
		if err != nil || u.Scheme != "https" || u.Hostname() == "" {
			return errors.New("outline-api needs -api-url https://IP:PORT/SECRET")
		}
		if m.certSHA256 == "" {
			return errors.New("outline-api needs -cert-sha256")
		}
		if m.host == "" {
			m.host = u.Hostname()
		}
	case "":
		return errors.New("give -backend static, ss-manager or outline-api")
	default:
		return fmt.Errorf("-backend %q is not static, ss-manager or outline-api", m.backend)
	}
	if _, err := netip.ParseAddr(m.host); err != nil {
		return fmt.Errorf("-host %q is not an IP address (gateways never resolve names)", m.host)
	}
	if m.name == "" {
		m.name = m.backend + "-" + m.host
		switch m.backend {
		case "static":
			m.name += "-" + strconv.Itoa(m.port)
		case "ss-manager":
			_, p, _ := net.SplitHostPort(m.managerAddr)
			m.name += "-" + p
		}
	}
	return nil
}

func (m *memberFlags) request() map[string]any {
	r := map[string]any{"name": m.name, "backend": m.backend, "host": m.host}
	switch m.backend {
	case "static":
		r["static"] = map[string]any{"port": m.port, "cipher": m.cipher, "password": m.password}
	case "ss-manager":
		r["ss_manager"] = map[string]any{"manager_addr": m.managerAddr, "port_min": m.portMin, "port_max": m.portMax}
	case "outline-api":
		r["outline"] = map[string]any{"api_url": m.apiURL, "cert_sha256": m.certSHA256}
	}
	return r
}

// sameAs reports whether an existing member is this one, so `up` adds a
// -member only once across restarts.
func (m *memberFlags) sameAs(x memberJSON) bool {
	if x.Backend != m.backend || x.Host != m.host {
		return false
	}
	switch m.backend {
	case "static":
		return x.Static != nil && x.Static.Port == m.port
	case "ss-manager":
		return x.SSManager != nil && x.SSManager.ManagerAddr == m.managerAddr
	case "outline-api":
		return x.Outline != nil && strings.EqualFold(x.Outline.CertSHA256, normalizePin(m.certSHA256))
	}
	return false
}

func normalizePin(s string) string { return strings.ToLower(strings.ReplaceAll(s, ":", "")) }

// parseMemberSpec reads a -member value:
//
//	static:HOST:PORT:CIPHER:PASSWORD
//	ss-manager:HOST:PORT:MIN-MAX
//	outline-api:CERTSHA256:https://IP:PORT/SECRET
//
// HOST is an IP literal, IPv6 in brackets. The password is the rest of the
// value, so it may hold colons.
func parseMemberSpec(spec string) (memberFlags, error) {
	kind, rest, ok := strings.Cut(spec, ":")
	if !ok {
		return memberFlags{}, errors.New("not KIND:...; see -h")
	}
	m := memberFlags{backend: kind}
	switch kind {
	case "static":
		host, rest, err := cutHost(rest)
		if err != nil {
			return m, err
		}
		f := strings.SplitN(rest, ":", 3)
		if len(f) != 3 || f[2] == "" {
			return m, errors.New("want static:HOST:PORT:CIPHER:PASSWORD")
		}
		if m.port, err = strconv.Atoi(f[0]); err != nil {
			return m, fmt.Errorf("port %q is not a number", f[0])
		}
		m.host, m.cipher, m.password = host, f[1], f[2]
	case "ss-manager":
		host, rest, err := cutHost(rest)
		if err != nil {
			return m, err
		}
		port, rng, ok := strings.Cut(rest, ":")
		lo, hi, ok2 := strings.Cut(rng, "-")
		if !ok || !ok2 {
			return m, errors.New("want ss-manager:HOST:PORT:MIN-MAX")
		}
		m.host = host
		m.managerAddr = net.JoinHostPort(host, port)
		if m.portMin, err = strconv.Atoi(lo); err != nil {
			return m, fmt.Errorf("port %q is not a number", lo)
		}
		if m.portMax, err = strconv.Atoi(hi); err != nil {
			return m, fmt.Errorf("port %q is not a number", hi)
		}
	case "outline-api":
		pin, apiURL, ok := strings.Cut(rest, ":")
		if !ok {
			return m, errors.New("want outline-api:CERTSHA256:https://IP:PORT/SECRET")
		}
		m.certSHA256, m.apiURL = pin, apiURL
	default:
		return m, fmt.Errorf("kind %q is not static, ss-manager or outline-api", kind)
	}
	return m, m.check()
}

// cutHost splits "HOST:rest" or "[V6]:rest".
func cutHost(s string) (host, rest string, err error) {
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]:")
		if end < 0 {
			return "", "", errors.New("IPv6 host must be [ADDR]:")
		}
		return s[1:end], s[end+2:], nil
	}
	host, rest, ok := strings.Cut(s, ":")
	if !ok {
		return "", "", errors.New("missing host")
	}
	return host, rest, nil
}

// memberList is the repeatable -member flag. Its values hold passwords,
// so it never prints them.
type memberList []string

func (l *memberList) String() string { return "" }

func (l *memberList) Set(v string) error {
	*l = append(*l, v)
	return nil
}
