package bench

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// writeCharts draws the report's charts (SVG and PNG) into dir from its
// JSON, with the benchcharts tool (tools/benchcharts, gonum.org/v1/plot in a
// module of its own) built into work. It returns the files written.
func writeCharts(src, work, dir, jsonPath string) ([]string, error) {
	bin, err := filepath.Abs(filepath.Join(work, "benchcharts"))
	if err != nil {
		return nil, err
	}
	if err := buildTool(src, bin); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-in", jsonPath, "-out", dir).Output()
	files := strings.Fields(string(out))
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		return files, fmt.Errorf("benchcharts: %w", err)
	}
	return files, nil
}
