package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/internal/testpeer"
)

// curl runs curl through the SOCKS5 proxy (names resolved by the proxy)
// and returns the SHA-256 and length of its output.
func curl(ctx context.Context, socks string, args ...string) (string, int64, error) {
	return curlVia(ctx, []string{"--socks5-hostname", socks}, args...)
}

// curlOutput runs curl through the proxy and returns its output.
func curlOutput(ctx context.Context, socks string, args ...string) (string, error) {
	args = append([]string{"-sS", "--fail", "--max-time", "90", "--socks5-hostname", socks, "-H", "Expect:"}, args...)
	out, err := exec.CommandContext(ctx, "curl", args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("curl %v: %w: %s", args, err, out)
	}
	return string(out), nil
}

// TestSSLocalV2RayPlugin64MiB: stock ss-local + v2ray-plugin (websocket,
// mux=0, path=/<secret>/tcp) → gateway → ss-server → origin, driven by curl.
func TestSSLocalV2RayPlugin64MiB(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()

	origin := testpeer.StartOrigin(t)
	ss := testpeer.SSServer(t, testpeer.DefaultPassword, testpeer.DefaultMethod)
	const secret = "ssLocalSecret-7f3a"
	m := &countMetrics{}
	_, gw := startGateway(t, gateway.Config{Metrics: m}, map[string]string{secret: ss})
	socks := testpeer.SSLocal(t, gw, secret, testpeer.DefaultPassword, testpeer.DefaultMethod)

	// The plugin starts a moment after ss-local: wait for a first fetch.
	if err := testpeer.WaitSOCKSReady(socks, origin, 15*time.Second); err != nil {
		t.Fatal(err)
	}

	const size = 64 << 20
	want := testpeer.PseudoRandomSHA256(size, 64)
	start := time.Now()
	got, n, err := curl(ctx, socks, origin.URL(fmt.Sprintf("/bytes/%d?seed=64", size)))
	if err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	if n != size || got != want {
		t.Fatalf("download: %d bytes sha256 %s, want %d %s", n, got, size, want)
	}
	t.Logf("64 MiB download in %v (%.0f MiB/s)", el.Round(time.Millisecond), float64(size)/(1<<20)/el.Seconds())

	const upSize = 8<<20 + 777
	file := filepath.Join(t.TempDir(), "upload.bin")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, testpeer.PseudoRandom(upSize, 8)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out, err := curlOutput(ctx, socks, "--data-binary", "@"+file, "-H", "Content-Type: application/octet-stream", origin.URL("/upload"))
	if err != nil {
		t.Fatal(err)
	}
	gotUp, upN, err := testpeer.ParseUploadAnswer(out)
	if err != nil {
		t.Fatal(err)
	}
	if wantUp := testpeer.PseudoRandomSHA256(upSize, 8); upN != upSize || gotUp != wantUp {
		t.Fatalf("upload: origin got %d bytes sha256 %s, want %d %s", upN, gotUp, upSize, wantUp)
	}
	if m.handshakeOK.Load() < 3 {
		t.Errorf("gateway counted %d upgrades, want ≥ 3", m.handshakeOK.Load())
	}
}
