package certs

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	minRSABits = 2048
	// expiryWarning is how close to its not-after a certificate is logged
	// at warn level, long enough for a renewal that failed to be noticed.
	expiryWarning = 14 * 24 * time.Hour
)

// Candidates for one name are ranked by key type: ECDSA is cheapest to
// sign with, RSA the most widely supported, so it is the last resort.
const (
	rankECDSA = iota
	rankEd25519
	rankRSA
)

// loaded is one pair after checks, before indexing.
type loaded struct {
	cert *tls.Certificate
	rank int
}

// load reads and checks every pair, then indexes them. Every failing pair
// is reported, so one reload shows every problem.
func load(pairs []Pair, log *slog.Logger) (*certSet, error) {
	now := time.Now()
	stamps := statFiles(pairs) // before reading: a later change is then seen as one
	var errs []error
	var certs []loaded
	for _, p := range pairs {
		l, err := loadPair(p, now)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		certs = append(certs, l)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	set := index(certs, log)
	set.stamps = stamps
	for i, l := range certs {
		leaf := l.cert.Leaf
		attrs := []any{
			"cert_file", pairs[i].CertFile,
			"names", sanNames(leaf),
			"not_after", leaf.NotAfter.UTC(),
			"key", keyDescription(leaf),
			"default", i == 0,
		}
		if left := leaf.NotAfter.Sub(now); left < expiryWarning {
			log.Warn("tls certificate expires soon", append(attrs, "in", left.Round(time.Minute))...)
		} else {
			log.Info("tls certificate loaded", attrs...)
		}
	}
	return set, nil
}

func loadPair(p Pair, now time.Time) (loaded, error) {
	certPEM, err := os.ReadFile(p.CertFile)
	if err != nil {
		return loaded{}, err
	}
	keyPEM, err := os.ReadFile(p.KeyFile)
	if err != nil {
		return loaded{}, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return loaded{}, fmt.Errorf("%s with %s: %w", p.CertFile, p.KeyFile, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return loaded{}, fmt.Errorf("%s: %w", p.CertFile, err)
		}
	}
	leaf := cert.Leaf
	rank, err := keyRank(leaf)
	if err != nil {
		return loaded{}, fmt.Errorf("%s: %w", p.CertFile, err)
	}
	switch {
	case now.Before(leaf.NotBefore):
		return loaded{}, fmt.Errorf("%s: %w until %s", p.CertFile, ErrNotYetValid, leaf.NotBefore.UTC().Format(time.RFC3339))
	case now.After(leaf.NotAfter):
		return loaded{}, fmt.Errorf("%s: %w on %s", p.CertFile, ErrExpired, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if len(leaf.DNSNames) == 0 && len(leaf.IPAddresses) == 0 {
		// Clients have ignored the subject Common Name for years.
		return loaded{}, fmt.Errorf("%s: %w", p.CertFile, ErrNoNames)
	}
	return loaded{cert: &cert, rank: rank}, nil
}

func keyRank(leaf *x509.Certificate) (int, error) {
	switch k := leaf.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return 0, fmt.Errorf("%w: ECDSA on %s (use P-256 or P-384)", ErrKeyType, k.Curve.Params().Name)
		}
		return rankECDSA, nil
	case ed25519.PublicKey:
		return rankEd25519, nil
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < minRSABits {
			return 0, fmt.Errorf("%w: %d bits", ErrWeakKey, bits)
		}
		return rankRSA, nil
	}
	return 0, fmt.Errorf("%w: %T", ErrKeyType, leaf.PublicKey)
}

func keyDescription(leaf *x509.Certificate) string {
	switch k := leaf.PublicKey.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	case *rsa.PublicKey:
		return "RSA " + strconv.Itoa(k.N.BitLen())
	}
	return fmt.Sprintf("%T", leaf.PublicKey)
}

func sanNames(leaf *x509.Certificate) []string {
	names := slices.Clone(leaf.DNSNames)
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	return names
}

// index builds the lookup maps. Each list is in rank order, then pair
// order, so an earlier pair wins among certificates of the same key type.
func index(certs []loaded, log *slog.Logger) *certSet {
	set := &certSet{
		exact:    map[string][]*tls.Certificate{},
		wildcard: map[string][]*tls.Certificate{},
		ips:      map[netip.Addr][]*tls.Certificate{},
	}
	ranks := map[*tls.Certificate]int{}
	add := func(m map[string][]*tls.Certificate, k string, c *tls.Certificate) {
		if !slices.Contains(m[k], c) {
			m[k] = append(m[k], c)
		}
	}
	for _, l := range certs {
		c := l.cert
		ranks[c] = l.rank
		set.all = append(set.all, c)
		for _, n := range c.Leaf.DNSNames {
			n = strings.ToLower(strings.TrimSuffix(n, "."))
			switch rest, wild := strings.CutPrefix(n, "*."); {
			case !strings.Contains(n, "*"):
				add(set.exact, n, c)
			case wild && rest != "" && !strings.Contains(rest, "*"):
				add(set.wildcard, rest, c)
			default:
				log.Warn("tls certificate name ignored: only a whole first label may be a wildcard", "name", n)
			}
		}
		for _, ip := range c.Leaf.IPAddresses {
			if a, ok := netip.AddrFromSlice(ip); ok {
				a = a.Unmap()
				if !slices.Contains(set.ips[a], c) {
					set.ips[a] = append(set.ips[a], c)
				}
			}
		}
	}
	byRank := func(a, b *tls.Certificate) int { return ranks[a] - ranks[b] }
	for _, l := range set.exact {
		slices.SortStableFunc(l, byRank)
	}
	for _, l := range set.wildcard {
		slices.SortStableFunc(l, byRank)
	}
	for _, l := range set.ips {
		slices.SortStableFunc(l, byRank)
	}
	return set
}
