package main

import (
	"strings"
	"testing"
)

// TestControlFrameFlags: -max-control-rate and -max-control-burst (and their
// HTTVPS_* variables) reach gateway.Config; a negative rate is the
// documented "no bound", a negative burst is refused.
func TestControlFrameFlags(t *testing.T) {
	o, err := loadOptions(fakeSources([]string{"-route", oneRoute, "-max-control-rate", "5", "-max-control-burst", "20"}, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	if c := o.GatewayConfig(); c.MaxControlRate != 5 || c.MaxControlBurst != 20 {
		t.Errorf("MaxControlRate %d, MaxControlBurst %d; want 5, 20", c.MaxControlRate, c.MaxControlBurst)
	}
	o, err = loadOptions(fakeSources([]string{"-route", oneRoute}, map[string]string{"HTTVPS_MAX_CONTROL_RATE": "-1"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if c := o.GatewayConfig(); c.MaxControlRate != -1 || c.MaxControlBurst != 0 {
		t.Errorf("from the environment: MaxControlRate %d, MaxControlBurst %d; want -1, 0", c.MaxControlRate, c.MaxControlBurst)
	}
	_, err = loadOptions(fakeSources([]string{"-route", oneRoute, "-max-control-burst", "-3"}, nil, nil))
	if err == nil || !strings.Contains(err.Error(), "-max-control-burst") {
		t.Errorf("negative burst: %v, want an error naming -max-control-burst", err)
	}
}
