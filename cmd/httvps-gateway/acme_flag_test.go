package main

import (
	"testing"
)

// TestACMEFlag: -acme is the one definition `httvps up` has too: a
// boolean, off by default, that also takes auto (on when no -tls-cert is
// given and -acme-domain is, or -public-url's host is a public DNS name).
func TestACMEFlag(t *testing.T) {
	fleet := []string{"-redis", "redis://127.0.0.1:6379/0", "-public-url", "wss://gw.example.com:443"}
	for _, tc := range []struct {
		args []string
		env  map[string]string
		on   bool
	}{
		{nil, nil, false},
		{[]string{"-acme"}, nil, true},
		{[]string{"-acme=false"}, map[string]string{"HTTVPS_ACME": "true"}, false},
		{nil, map[string]string{"HTTVPS_ACME": "auto"}, true},
		{[]string{"-acme=auto", "-tls-cert", "c.pem", "-tls-key", "k.pem"}, nil, false},
	} {
		o, err := loadOptions(fakeSources(append(append([]string(nil), fleet...), tc.args...), tc.env, nil))
		if err != nil {
			t.Errorf("%q %v: %v", tc.args, tc.env, err)
			continue
		}
		if o.ACME.On != tc.on {
			t.Errorf("%q %v: acme on %v, want %v", tc.args, tc.env, o.ACME.On, tc.on)
		}
	}
	// auto with a -public-url that is not a public name stays off.
	o, err := loadOptions(fakeSources([]string{"-redis", "redis://127.0.0.1:6379/0", "-public-url", "wss://127.0.0.1:8443", "-acme=auto"}, nil, nil))
	if err != nil || o.ACME.On {
		t.Errorf("auto with an IP address: on %v, %v", o != nil && o.ACME.On, err)
	}
}
