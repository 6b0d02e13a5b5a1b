// Package certs holds the gateway's TLS certificates: it loads PEM
// certificate/key pairs, picks one per handshake by SNI (exact names,
// wildcards, IP SANs; ECDSA before RSA when the client can use it), and swaps
// in re-read files atomically, so handshakes never wait on a reload and a
// broken file never replaces a working set.
package certs

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
)

// Errors a load can wrap; the message around them names the file.
var (
	ErrNoPairs     = errors.New("certs: no certificate/key pairs")
	ErrKeyType     = errors.New("certs: unsupported key type")
	ErrWeakKey     = errors.New("certs: RSA key shorter than 2048 bits")
	ErrExpired     = errors.New("certs: certificate expired")
	ErrNotYetValid = errors.New("certs: certificate not valid yet")
	ErrNoNames     = errors.New("certs: certificate has no DNS or IP subject alternative name")
)

// Pair names one certificate chain file and its private key file, both PEM,
// as in a Kubernetes TLS secret (tls.crt, tls.key). The chain file holds the
// leaf first, then any intermediates.
type Pair struct{ CertFile, KeyFile string }

// Store serves certificates to a tls.Config through GetCertificate. It is
// safe for concurrent use; GetCertificate takes no lock.
type Store struct {
	pairs []Pair
	log   *slog.Logger

	set atomic.Pointer[certSet]
	mu  sync.Mutex // serialises Reload, so swaps happen in the order files were read
}

// certSet is one immutable generation of loaded certificates.
type certSet struct {
	exact    map[string][]*tls.Certificate     // lower-case DNS SAN
	wildcard map[string][]*tls.Certificate     // "example.com" for "*.example.com"
	ips      map[netip.Addr][]*tls.Certificate // IP SAN, IPv4 unmapped
	all      []*tls.Certificate                // pair order; all[0] is the default
	stamps   []fileStamp                       // the files as stat'ed before they were read
}

// New loads every pair and fails if any of them does not load. The first
// pair is served to clients that send no SNI, or a name no certificate
// covers. A nil log means slog.Default().
func New(pairs []Pair, log *slog.Logger) (*Store, error) {
	if len(pairs) == 0 {
		return nil, ErrNoPairs
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Store{pairs: append([]Pair(nil), pairs...), log: log}
	set, err := load(s.pairs, log)
	if err != nil {
		return nil, err
	}
	s.set.Store(set)
	return s, nil
}

// Reload re-reads every pair. On success the new set serves every later
// handshake; on any error the previous set stays in place and the error,
// naming each failing file, is returned. Established connections are never
// touched either way.
func (s *Store) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	set, err := load(s.pairs, s.log)
	if err != nil {
		return err
	}
	s.set.Store(set)
	return nil
}

// GetCertificate is a tls.Config.GetCertificate. It looks the SNI name up
// exactly, then as a one-label wildcard; without SNI it looks up the local
// IP address the client connected to. Among several matches it returns the
// first the client supports, ECDSA before Ed25519 before RSA. Without a
// match it returns the first pair's certificate. The error is always nil.
func (s *Store) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	set := s.set.Load()
	if c := choose(hello, set.lookup(hello)); c != nil {
		return c, nil
	}
	return choose(hello, set.all), nil
}

func (set *certSet) lookup(hello *tls.ClientHelloInfo) []*tls.Certificate {
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if name == "" {
		// Clients never put an IP literal in SNI (RFC 6066), so the address
		// they dialled is the local address of the connection.
		if hello.Conn == nil {
			return nil
		}
		if a, ok := hello.Conn.LocalAddr().(*net.TCPAddr); ok {
			return set.ips[a.AddrPort().Addr().Unmap()]
		}
		return nil
	}
	if ip, err := netip.ParseAddr(name); err == nil {
		return set.ips[ip.Unmap()]
	}
	if c := set.exact[name]; c != nil {
		return c
	}
	if dot := strings.IndexByte(name, '.'); dot > 0 {
		return set.wildcard[name[dot+1:]]
	}
	return nil
}

// choose returns the first candidate the client can use, or the first
// candidate when it can use none (the handshake then fails in crypto/tls,
// which reports why).
func choose(hello *tls.ClientHelloInfo, cands []*tls.Certificate) *tls.Certificate {
	switch len(cands) {
	case 0:
		return nil
	case 1:
		return cands[0]
	}
	for _, c := range cands {
		if hello.SupportsCertificate(c) == nil {
			return c
		}
	}
	return cands[0]
}
