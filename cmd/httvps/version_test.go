package main

import (
	"bytes"
	"context"
	"os"
	"runtime"
	"strings"
	"testing"
)

// `httvps version` and `httvps -version` print one line on stdout: the
// name, version, commit, build time and Go version; exit 0.
func TestVersionCommand(t *testing.T) {
	for _, arg := range []string{"version", "-version", "--version"} {
		var out, errs bytes.Buffer
		code := run(context.Background(), []string{arg}, env{stdout: &out, stderr: &errs, lookupEnv: os.LookupEnv})
		line := out.String()
		if code != 0 || errs.Len() != 0 || !strings.HasPrefix(line, "httvps ") || !strings.Contains(line, "(commit ") ||
			!strings.HasSuffix(line, runtime.Version()+")\n") || strings.Count(line, "\n") != 1 {
			t.Errorf("httvps %s: exit %d, stdout %q, stderr %q", arg, code, line, errs.String())
		}
	}
}
