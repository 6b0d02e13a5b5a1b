package wiring

import (
	"flag"
	"io"
	"testing"
)

// TestControlNames: the control set registered with ControlPrefix names
// exactly the ControlCollisions otherwise, so it sits beside the gateway
// set on one FlagSet without a clash.
func TestControlNames(t *testing.T) {
	fs := flag.NewFlagSet("both", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var g Gateway
	g.Register(fs) // panics on a duplicate name
	c := NewControl()
	c.Register(fs, ControlPrefix)
	for _, n := range ControlCollisions {
		if fs.Lookup(ControlPrefix+n) == nil {
			t.Errorf("no -%s%s", ControlPrefix, n)
		}
		if c.Name(n) != ControlPrefix+n {
			t.Errorf("Name(%q) = %q", n, c.Name(n))
		}
	}
	if c.Name("replicas") != "replicas" || fs.Lookup("keys-url") == nil {
		t.Error("a name without a collision got the prefix")
	}
	alone := flag.NewFlagSet("control", flag.ContinueOnError)
	c2 := NewControl()
	c2.Register(alone, "")
	for _, n := range ControlCollisions {
		if alone.Lookup(n) == nil {
			t.Errorf("httvps-control has no -%s", n)
		}
	}
}

// TestACMEMode: -acme is a boolean flag that also takes auto; auto is on
// only without certificate files of one's own and with a public name.
func TestACMEMode(t *testing.T) {
	for _, tc := range []struct {
		set     string
		ownCert bool
		domains []string
		host    string
		on      bool
	}{
		{"false", false, nil, "vpn.example.com", false},
		{"true", true, nil, "127.0.0.1", true},
		{"auto", false, nil, "vpn.example.com", true},
		{"auto", true, nil, "vpn.example.com", false},
		{"auto", false, nil, "127.0.0.1", false},
		{"auto", false, []string{"vpn.example.com"}, "127.0.0.1", true},
		{"on", false, nil, "", true},
	} {
		a := ACME{Domains: tc.domains}
		if err := a.Mode.Set(tc.set); err != nil {
			t.Fatal(err)
		}
		a.Decide(tc.ownCert, tc.host)
		if a.On != tc.on {
			t.Errorf("%+v: on %v", tc, a.On)
		}
	}
	var m ACMEMode
	if m.Set("sometimes") == nil || m.String() != "false" || !m.IsBoolFlag() {
		t.Errorf("ACMEMode: %q", m.String())
	}
}
