package main

import (
	"strings"
	"testing"

	"github.com/httvps/httvps/internal/certs"
)

// TestTLSFlags: -tls-cert/-tls-key are the gateway's and `httvps up`'s
// definition: repeatable, paired in order, one source for both, lists in
// the environment and the config file.
func TestTLSFlags(t *testing.T) {
	want := []certs.Pair{{CertFile: "a.pem", KeyFile: "a.key"}, {CertFile: "b.pem", KeyFile: "b.key"}}
	for name, src := range map[string]sources{
		"flags": fakeSources([]string{"-admin-key", testKey, "-tls-cert", "a.pem", "-tls-key", "a.key", "-tls-cert", "b.pem", "-tls-key", "b.key"}, nil, nil),
		"env":   fakeSources([]string{"-admin-key", testKey}, map[string]string{"HTTVPS_TLS_CERT": "a.pem,b.pem", "HTTVPS_TLS_KEY": "a.key, b.key"}, nil),
		"file": fakeSources([]string{"-admin-key", testKey, "-config", "c.yaml"}, nil,
			map[string]string{"c.yaml": "tls-cert: [a.pem, b.pem]\ntls-key: [a.key, b.key]\n"}),
	} {
		o, err := loadOptions(src)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if len(o.TLS.Pairs) != 2 || o.TLS.Pairs[0] != want[0] || o.TLS.Pairs[1] != want[1] {
			t.Errorf("%s: pairs %v, want %v", name, o.TLS.Pairs, want)
		}
	}
	_, err := loadOptions(fakeSources([]string{"-admin-key", testKey, "-tls-cert", "a.pem", "-tls-key", "a.key", "-tls-cert", "b.pem"}, nil, nil))
	if err == nil || !strings.Contains(err.Error(), "2 certificate files but 1 key files") {
		t.Errorf("unpaired -tls-cert: %v", err)
	}
}
