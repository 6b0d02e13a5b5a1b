package client

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"fmt"
)

// checkPin accepts the certificates a server presented (leaf first) when
// pin is the SHA-256 of one of them:
//   - the leaf: exactly that certificate, whatever signed it and whatever
//     names it carries (a self-signed server; keys that pinned a leaf);
//   - another certificate of the chain, a private CA such as `httvps up`'s,
//     whose pin stays valid when the leaf is renewed: the leaf must then
//     verify up to it for serverName. A copy of the pinned CA sent along
//     with a leaf it did not sign does not pass.
//
// Every failure wraps ErrPinMismatch.
func checkPin(chain []*x509.Certificate, pin []byte, serverName string) error {
	if len(chain) == 0 {
		return ErrPinMismatch
	}
	if pinMatches(chain[0], pin) {
		return nil
	}
	var anchor *x509.Certificate
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		if anchor == nil && pinMatches(c, pin) {
			anchor = c
			continue
		}
		inter.AddCert(c)
	}
	if anchor == nil {
		return ErrPinMismatch
	}
	roots := x509.NewCertPool()
	roots.AddCert(anchor)
	if _, err := chain[0].Verify(x509.VerifyOptions{DNSName: serverName, Roots: roots, Intermediates: inter}); err != nil {
		return fmt.Errorf("%w: the certificate does not verify under the pinned CA: %w", ErrPinMismatch, err)
	}
	return nil
}

func pinMatches(c *x509.Certificate, pin []byte) bool {
	sum := sha256.Sum256(c.Raw)
	return subtle.ConstantTimeCompare(sum[:], pin) == 1
}
