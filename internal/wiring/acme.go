package wiring

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/internal/acmecert"
	"github.com/httvps/httvps/store"
)

// ACMELists are the ACME set's repeatable flags.
var ACMELists = []string{"acme-domain"}

// ACMEStoreFile is the embedded store file in -acme-dir that holds the ACME
// account and certificates without -redis.
const ACMEStoreFile = "acme.db"

// ACME is the automatic-certificate option set (internal/acmecert) that
// httvps-gateway, httvps-control and `httvps up` share.
type ACME struct {
	// Mode is -acme: off, on or auto (ACMEAuto: on when no -tls-cert is
	// given and a name is, by -acme-domain or the binary's public host, a
	// public CA issues for). On is Mode decided by Decide.
	Mode ACMEMode
	On   bool
	// Dir is -acme-dir: the ACME account and certificates when there is
	// no shared store to keep them in; "" (httvps up): the embedded store.
	Dir      string
	Domains  fileList // -acme-domain; empty: the binary's public host
	Email    string
	CA       string
	CARoot   string // PEM file of roots for the CA's HTTPS endpoint
	HTTPAddr string // HTTP-01 listener; "" = TLS-ALPN-01 only
	// CheckEvery is how often certificates are checked for renewal and
	// the store for one another process renewed (0 = 10m).
	CheckEvery time.Duration
}

// ACMEMode is -acme: a boolean flag (-acme, -acme=false) that also takes
// auto. Its zero value is off.
type ACMEMode string

const (
	ACMEOff  ACMEMode = ""
	ACMEOn   ACMEMode = "on"
	ACMEAuto ACMEMode = "auto"
)

func (m *ACMEMode) String() string {
	switch *m {
	case ACMEOn:
		return "true"
	case ACMEAuto:
		return "auto"
	}
	return "false"
}

func (m *ACMEMode) Set(s string) error {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "auto":
		*m = ACMEAuto
	case "true", "on", "1", "yes":
		*m = ACMEOn
	case "false", "off", "0", "no":
		*m = ACMEOff
	default:
		return fmt.Errorf("%q is not auto, true or false", s)
	}
	return nil
}

func (m *ACMEMode) IsBoolFlag() bool { return true }

// Register defines the ACME flags with a.Mode as -acme's default (off on
// httvps-gateway and httvps-control, auto on `httvps up`); hostFlag names
// the flag whose host is the default name (-public-url, -public-host).
func (a *ACME) Register(fs *flag.FlagSet, hostFlag string) {
	fs.Var(&a.Mode, "acme", "obtain and renew the TLS certificate by ACME (Let's Encrypt by default) for -acme-domain, validated by TLS-ALPN-01 on this listener (the CA connects to port 443 of the name): true, false, or auto: on when no -tls-cert is given and -acme-domain is, or the host of "+hostFlag+" is a public DNS name")
	fs.Var(&a.Domains, "acme-domain", "DNS `name` to obtain a certificate for (repeatable; HTTVPS_ACME_DOMAIN takes a comma-separated list; default: the host of "+hostFlag+")")
	fs.StringVar(&a.Email, "acme-email", "", "contact `address` given to the CA for expiry notices (optional)")
	fs.StringVar(&a.CA, "acme-ca", acmecert.LetsEncrypt, "ACME directory `URL` of the CA")
	fs.StringVar(&a.CARoot, "acme-ca-root", "", "PEM `file` of roots that verify the CA's own HTTPS endpoint (a private CA such as step-ca or Pebble); default: the system roots")
	fs.DurationVar(&a.CheckEvery, "acme-check-every", 0, "check the certificates for renewal, and the store for a certificate another gateway renewed, this often (0 = 10m)")
	fs.StringVar(&a.HTTPAddr, "acme-http", "", "also answer HTTP-01 challenges on this plain-HTTP `address` (e.g. :80); every other request there gets the decoy")
}

// RegisterDir defines -acme-dir with a.Dir as its default, on a binary
// whose ACME state may have no store of its own to live in (the gateway
// without -redis; httvps-control always has its store). inStore says
// where the state is when it is "" (empty for a binary whose default is
// a directory).
func (a *ACME) RegisterDir(fs *flag.FlagSet, inStore string) {
	usage := "`directory` of the ACME account and certificates without -redis (with -redis they live in Redis, shared by the fleet)"
	if inStore != "" {
		usage += "; empty: " + inStore
	}
	fs.StringVar(&a.Dir, "acme-dir", a.Dir, usage)
}

// Decide sets On from Mode: auto is on when the binary has no certificate
// files of its own (ownCert) and a name to obtain one for, given by
// -acme-domain or host being a public DNS name.
func (a *ACME) Decide(ownCert bool, host string) {
	switch a.Mode {
	case ACMEOn:
		a.On = true
	case ACMEAuto:
		a.On = !ownCert && (len(a.Domains) > 0 || PublicName(host))
	default:
		a.On = false
	}
}

// HostOf is the host of a URL flag's value ("" when it has none).
func HostOf(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

// Check reports the ACME set's errors when it is on.
func (a *ACME) Check() []error {
	var errs []error
	if _, err := url.Parse(a.CA); err != nil || !strings.HasPrefix(a.CA, "https://") {
		errs = append(errs, fmt.Errorf("-acme-ca %q: not an https:// URL", a.CA))
	}
	for _, d := range a.Domains {
		if !PublicName(d) {
			errs = append(errs, fmt.Errorf("-acme-domain %q: not a DNS name a public CA issues for (not localhost, an IP address or a wildcard)", d))
		}
	}
	if a.CheckEvery < 0 {
		errs = append(errs, fmt.Errorf("-acme-check-every %v: negative", a.CheckEvery))
	}
	if a.HTTPAddr != "" {
		if _, _, err := net.SplitHostPort(a.HTTPAddr); err != nil {
			errs = append(errs, fmt.Errorf("-acme-http %q: %w", a.HTTPAddr, err))
		}
	}
	return errs
}

// PublicName reports whether name is one a public CA issues a
// certificate for (acmecert.PublicName).
func PublicName(name string) bool { return acmecert.PublicName(name) }

// Names are -acme-domain, or host when none was given.
func (a *ACME) Names(host string) []string {
	if len(a.Domains) > 0 {
		return append([]string(nil), a.Domains...)
	}
	if host == "" {
		return nil
	}
	return []string{host}
}

// NamesForURL are -acme-domain, or the host of publicURL.
func (a *ACME) NamesForURL(publicURL string) []string { return a.Names(HostOf(publicURL)) }

// Manager makes the acmecert.Manager for names, validated on the TLS
// listener at tlsAddr, keeping its state in st. files serves until (and
// beside) the ACME certificates; nil means an in-memory self-signed
// certificate for names (acmecert.SelfSigned). readFile reads
// -acme-ca-root.
func (a *ACME) Manager(names []string, st store.Store, tlsAddr string, files func(*tls.ClientHelloInfo) (*tls.Certificate, error),
	log *slog.Logger, readFile func(string) ([]byte, error)) (*acmecert.Manager, error) {
	if len(names) == 0 {
		return nil, errors.New("acme: no name to obtain a certificate for (give -acme-domain)")
	}
	if files == nil {
		self, err := acmecert.SelfSigned(names)
		if err != nil {
			return nil, err
		}
		files = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return self, nil }
	}
	c := acmecert.Config{
		Domains:  names,
		Email:    a.Email,
		CA:       a.CA,
		Store:    st,
		TLSAddr:  tlsAddr,
		HTTPAddr: a.HTTPAddr,
		Fallback: files,
		Logger:   log,

		RenewCheck: a.CheckEvery,
	}
	if a.CARoot != "" {
		pem, err := readFile(a.CARoot)
		if err != nil {
			return nil, fmt.Errorf("-acme-ca-root: %w", err)
		}
		c.CARoots = x509.NewCertPool()
		if !c.CARoots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-acme-ca-root %s: no PEM certificate in it", a.CARoot)
		}
	}
	return acmecert.New(c)
}

// WithACME makes tc serve m's certificates and answer its TLS-ALPN-01
// validations.
func WithACME(tc *gateway.TLSConfig, m *acmecert.Manager) {
	tc.GetCertificate = m.GetCertificate
	tc.ACMEChallenge = m.Challenge
}
