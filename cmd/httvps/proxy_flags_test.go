package main

import (
	"io"
	"net/netip"
	"testing"
)

// TestUpProxyProtocolFlag: `httvps up` takes -proxy-protocol-from (and
// HTTVPS_PROXY_PROTOCOL_FROM) from the shared gateway set.
func TestUpProxyProtocolFlag(t *testing.T) {
	e := func(vars map[string]string) env {
		return env{stdout: io.Discard, stderr: io.Discard, lookupEnv: func(k string) (string, bool) { v, ok := vars[k]; return v, ok }}
	}
	want := netip.MustParsePrefix("10.1.0.0/16")
	for name, o := range map[string]func() (*upOptions, error){
		"flag": func() (*upOptions, error) {
			return loadUpOptions([]string{"-proxy-protocol-from", "10.1.0.0/16"}, e(nil))
		},
		"env": func() (*upOptions, error) {
			return loadUpOptions(nil, e(map[string]string{"HTTVPS_PROXY_PROTOCOL_FROM": "10.1.0.0/16"}))
		},
	} {
		opts, err := o()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := opts.GatewayConfig().ProxyProtocolFrom; len(got) != 1 || got[0] != want {
			t.Errorf("%s: %v, want [%v]", name, got, want)
		}
	}
}
