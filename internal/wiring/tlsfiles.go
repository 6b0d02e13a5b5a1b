package wiring

import (
	"flag"
	"fmt"

	"gopkg.in/yaml.v3"

	"github.com/httvps/httvps/internal/certs"
	"github.com/httvps/httvps/internal/cliconf"
)

// TLSLists are the certificate files' repeatable flags; a binary's
// cliconf.Spec lists them.
var TLSLists = []string{"tls-cert", "tls-key"}

// TLSFiles is -tls-cert/-tls-key, which httvps-gateway, httvps-control and
// `httvps up` share: certificate and key files paired in order, the first
// pair the default, the others chosen by SNI (internal/certs).
type TLSFiles struct {
	Pairs []certs.Pair // from Resolve; empty: none given

	certArgs fileList // -tls-cert values, paired with keyArgs in order
	keyArgs  fileList
	// From the config file (FileKey).
	fileCerts, fileKeys []string
}

// Register defines -tls-cert and -tls-key; servedOn names the listener
// the certificates are served on, for the help text.
func (t *TLSFiles) Register(fs *flag.FlagSet, servedOn string) {
	fs.Var(&t.certArgs, "tls-cert", "PEM certificate chain `file` (leaf first) served on "+servedOn+"; repeatable, paired in order with -tls-key; the first pair is the default (HTTVPS_TLS_CERT takes a comma-separated list)")
	fs.Var(&t.keyArgs, "tls-key", "PEM private key `file` for the -tls-cert at the same position; repeatable (HTTVPS_TLS_KEY takes a comma-separated list)")
}

// FileKey takes tls-cert and tls-key as a file name or a list of them. It
// is a cliconf.FileKeyFunc.
func (t *TLSFiles) FileKey(key string, node *yaml.Node) (bool, error) {
	if key != "tls-cert" && key != "tls-key" {
		return false, nil
	}
	var l []string
	if node.Kind == yaml.ScalarNode {
		l = []string{node.Value}
	} else if err := node.Decode(&l); err != nil {
		return true, fmt.Errorf("line %d: %s must be a file name or a list of them", node.Line, key)
	}
	if key == "tls-cert" {
		t.fileCerts = l
	} else {
		t.fileKeys = l
	}
	return true, nil
}

// Resolve takes certificate and key files from one source, the first of
// command line, environment and config file that names either, so a
// certificate never pairs with a key from elsewhere, and sets Pairs. The
// files themselves are loaded by certs.New.
func (t *TLSFiles) Resolve(ld *cliconf.Loaded) error {
	crts, keys := []string(t.certArgs), []string(t.keyArgs)
	from := "-tls-cert/-tls-key"
	switch ld.ListSource("tls-cert", "tls-key") {
	case cliconf.Environment:
		crts, keys = ld.EnvList("tls-cert"), ld.EnvList("tls-key")
		from = cliconf.EnvName("tls-cert") + "/" + cliconf.EnvName("tls-key")
	case cliconf.ConfigFile:
		crts, keys = t.fileCerts, t.fileKeys
		from = ld.ConfigFile + ": tls-cert/tls-key"
	}
	if len(crts) != len(keys) {
		return fmt.Errorf("%s: %d certificate files but %d key files; they go together, paired in order", from, len(crts), len(keys))
	}
	pairs := make([]certs.Pair, len(crts))
	for i := range crts {
		if crts[i] == "" || keys[i] == "" {
			return fmt.Errorf("%s: pair #%d has an empty file name", from, i+1)
		}
		pairs[i] = certs.Pair{CertFile: crts[i], KeyFile: keys[i]}
	}
	t.Pairs = pairs
	return nil
}
