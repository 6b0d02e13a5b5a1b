package main

import (
	"strings"
	"testing"
)

// TestFallbackFlags: -fallback and -max-fallbacks come from the command
// line, HTTVPS_FALLBACK / HTTVPS_MAX_FALLBACKS or the config file's
// fallback: key, reach gateway.Config, and a fallback that is the
// gateway's own listener or not host:port is refused.
func TestFallbackFlags(t *testing.T) {
	files := map[string]string{"gw.yaml": "route: [" + oneRoute + "]\nfallback: 127.0.0.1:8081\nmax-fallbacks: 7\n"}
	for name, src := range map[string]sources{
		"flag": fakeSources([]string{"-route", oneRoute, "-fallback", "127.0.0.1:8081", "-max-fallbacks", "7"}, nil, nil),
		"env":  fakeSources([]string{"-route", oneRoute}, map[string]string{"HTTVPS_FALLBACK": "127.0.0.1:8081", "HTTVPS_MAX_FALLBACKS": "7"}, nil),
		"file": fakeSources([]string{"-config", "gw.yaml"}, nil, files),
	} {
		o, err := loadOptions(src)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if c := o.GatewayConfig(); c.Fallback != "127.0.0.1:8081" || c.MaxFallbacks != 7 {
			t.Errorf("%s: Fallback %q, MaxFallbacks %d", name, c.Fallback, c.MaxFallbacks)
		}
	}
	o, err := loadOptions(fakeSources([]string{"-route", oneRoute}, nil, nil))
	if err != nil || o.GatewayConfig().Fallback != "" {
		t.Fatalf("default: %v, fallback %q; want none", err, o.GatewayConfig().Fallback)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-fallback", "127.0.0.1"}, "-fallback"},
		{[]string{"-listen", ":8080", "-fallback", "127.0.0.1:8080"}, "own -listen"},
		{[]string{"-fallback", "127.0.0.1:80", "-max-fallbacks", "-1"}, "-max-fallbacks"},
	} {
		_, err := loadOptions(fakeSources(append([]string{"-route", oneRoute}, tc.args...), nil, nil))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one containing %q", tc.args, err, tc.want)
		}
	}
}
