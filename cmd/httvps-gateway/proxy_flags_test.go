package main

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// TestProxyProtocolFlag: -proxy-protocol-from comes from the command line,
// HTTVPS_PROXY_PROTOCOL_FROM or the config file, reaches gateway.Config as
// masked prefixes (a bare address is its own /32), is off by default, and a
// value that is not a prefix is refused.
func TestProxyProtocolFlag(t *testing.T) {
	const list = "10.0.0.0/8, 192.0.2.7,2001:db8::/32"
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.7/32"), netip.MustParsePrefix("2001:db8::/32")}
	files := map[string]string{"gw.yaml": "route: [" + oneRoute + "]\nproxy-protocol-from: " + list + "\n"}
	for name, src := range map[string]sources{
		"flag": fakeSources([]string{"-route", oneRoute, "-proxy-protocol-from", list}, nil, nil),
		"env":  fakeSources([]string{"-route", oneRoute}, map[string]string{"HTTVPS_PROXY_PROTOCOL_FROM": list}, nil),
		"file": fakeSources([]string{"-config", "gw.yaml"}, nil, files),
	} {
		o, err := loadOptions(src)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := o.GatewayConfig().ProxyProtocolFrom; !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
	o, err := loadOptions(fakeSources([]string{"-route", oneRoute}, nil, nil))
	if err != nil || o.GatewayConfig().ProxyProtocolFrom != nil {
		t.Fatalf("default: %v, %v; want off", err, o.GatewayConfig().ProxyProtocolFrom)
	}
	_, err = loadOptions(fakeSources([]string{"-route", oneRoute, "-proxy-protocol-from", "10.0.0.0/33"}, nil, nil))
	if err == nil || !strings.Contains(err.Error(), "proxy-protocol-from") {
		t.Errorf("bad prefix: error %v", err)
	}
}

// TestForwardedFromFlag: -forwarded-from (HTTVPS_FORWARDED_FROM) reaches
// gateway.Config as masked prefixes, off by default.
func TestForwardedFromFlag(t *testing.T) {
	want := []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("192.0.2.8/32")}
	for name, src := range map[string]sources{
		"flag": fakeSources([]string{"-route", oneRoute, "-forwarded-from", "10.1.2.3/16,192.0.2.8"}, nil, nil),
		"env":  fakeSources([]string{"-route", oneRoute}, map[string]string{"HTTVPS_FORWARDED_FROM": "10.1.0.0/16, 192.0.2.8"}, nil),
	} {
		o, err := loadOptions(src)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := o.GatewayConfig().ForwardedFrom; !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
	if o, err := loadOptions(fakeSources([]string{"-route", oneRoute}, nil, nil)); err != nil || o.GatewayConfig().ForwardedFrom != nil {
		t.Fatalf("default: %v; want off", err)
	}
}
