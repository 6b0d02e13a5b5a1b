package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUpFallbackFlag: `httvps up -fallback` (HTTVPS_FALLBACK, fallback: in
// the config file) is checked like the gateway's and reaches its config.
func TestUpFallbackFlag(t *testing.T) {
	e := func(vars map[string]string) env {
		return env{stdout: io.Discard, stderr: io.Discard, lookupEnv: func(k string) (string, bool) { v, ok := vars[k]; return v, ok }}
	}
	cfg := filepath.Join(t.TempDir(), "up.yaml")
	os.WriteFile(cfg, []byte("fallback: 127.0.0.1:8081\n"), 0o600)
	for name, args := range map[string][]string{"flag": {"-fallback", "127.0.0.1:8081"}, "file": {"-config", cfg}} {
		if o, err := loadUpOptions(args, e(nil)); err != nil || o.Fallback != "127.0.0.1:8081" {
			t.Errorf("%s: fallback %q, %v", name, o.Fallback, err)
		}
	}
	if o, err := loadUpOptions(nil, e(map[string]string{"HTTVPS_FALLBACK": "127.0.0.1:8081"})); err != nil || o.Fallback != "127.0.0.1:8081" {
		t.Errorf("env: fallback %q, %v", o.Fallback, err)
	}
	if _, err := loadUpOptions([]string{"-listen", ":8443", "-fallback", "127.0.0.1:8443"}, e(nil)); err == nil || !strings.Contains(err.Error(), "own -listen") {
		t.Errorf("fallback to itself: %v", err)
	}
}
