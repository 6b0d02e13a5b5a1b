package wiring

import (
	"crypto/tls"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/httvps/httvps/internal/cliconf"
)

// Size is a size flag (see cliconf.ParseSize), at most 1 TiB − 1.
type Size int64

func (b *Size) String() string { return strconv.FormatInt(int64(*b), 10) }

func (b *Size) Set(s string) error {
	n, err := cliconf.ParseSize(s, 1<<40-1, "65536, 64KiB or 1MiB")
	if err != nil {
		return err
	}
	*b = Size(n)
	return nil
}

// TLSVersion is -tls-min-version; its zero value is TLS 1.2.
type TLSVersion struct {
	v   uint16
	set bool // given anywhere, even as the default value
}

func (t *TLSVersion) String() string {
	if t.v == tls.VersionTLS13 {
		return "1.3"
	}
	return "1.2"
}

func (t *TLSVersion) Set(s string) error {
	switch strings.TrimSpace(s) {
	case "1.2":
		t.v = tls.VersionTLS12
	case "1.3":
		t.v = tls.VersionTLS13
	default:
		return fmt.Errorf("%q is not 1.2 or 1.3", s)
	}
	t.set = true
	return nil
}

// Version is the crypto/tls constant.
func (t TLSVersion) Version() uint16 {
	if t.v == 0 {
		return tls.VersionTLS12
	}
	return t.v
}

// Given reports whether the flag was set anywhere, even to 1.2.
func (t TLSVersion) Given() bool { return t.set }

// secretList is a repeatable flag whose values are never printed.
type secretList []string

func (r *secretList) String() string { return "" }

func (r *secretList) Set(v string) error {
	*r = append(*r, v)
	return nil
}

// fileList is a repeatable file-name flag.
type fileList []string

func (l *fileList) String() string { return strings.Join(*l, ",") }

func (l *fileList) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// Prefixes is a comma-separated list of CIDR prefixes; a bare address is
// its own /32 or /128. A later value replaces an earlier one.
type Prefixes []netip.Prefix

func (p *Prefixes) String() string {
	l := make([]string, len(*p))
	for i, pf := range *p {
		l[i] = pf.String()
	}
	return strings.Join(l, ",")
}

func (p *Prefixes) Set(v string) error {
	var l Prefixes
	for _, s := range cliconf.SplitList(v) {
		pf, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil || a.Zone() != "" {
				return fmt.Errorf("%q is not a CIDR prefix or an IP address", s)
			}
			pf = netip.PrefixFrom(a, a.BitLen())
		}
		if pf.Addr().Zone() != "" {
			return fmt.Errorf("%q has a zone", s)
		}
		l = append(l, pf.Masked())
	}
	*p = l
	return nil
}

// List is the prefixes as gateway.Config takes them (nil when empty).
func (p Prefixes) List() []netip.Prefix {
	if len(p) == 0 {
		return nil
	}
	return append([]netip.Prefix(nil), p...)
}
