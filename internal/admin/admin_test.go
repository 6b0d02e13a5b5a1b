package admin

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestEndpoints(t *testing.T) {
	var ready atomic.Bool
	set := metrics.NewSet()
	set.NewCounter(`admin_test_total{x="y"}`).Add(3)
	metrics.RegisterSet(set)
	defer metrics.UnregisterSet(set, true)

	s, err := Start("127.0.0.1:0", Config{Ready: ready.Load})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	base := "http://" + s.Addr().String()

	if code, body := get(t, base+"/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, _ := get(t, base+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz before ready = %d, want 503", code)
	}
	ready.Store(true)
	if code, _ := get(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz when ready = %d, want 200", code)
	}

	code, body := get(t, base+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{`admin_test_total{x="y"} 3`, "go_goroutines ", "process_resident_memory_bytes ", "httvps_build_info{version="} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	if code, _ := get(t, base+"/nope"); code != http.StatusNotFound {
		t.Errorf("/nope = %d, want 404", code)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.Done():
		if err != nil {
			t.Errorf("serve error after Shutdown: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("server did not stop")
	}
}

func TestNilReadyMeansReady(t *testing.T) {
	s, err := Start("127.0.0.1:0", Config{WriteMetrics: func(w io.Writer) { io.WriteString(w, "x 1\n") }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	base := "http://" + s.Addr().String()
	if code, _ := get(t, base+"/readyz"); code != 200 {
		t.Errorf("/readyz = %d, want 200", code)
	}
	if _, body := get(t, base+"/metrics"); body != "x 1\n" {
		t.Errorf("/metrics = %q", body)
	}
}

func TestStartReportsListenError(t *testing.T) {
	s, err := Start("127.0.0.1:0", Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	if _, err := Start(s.Addr().String(), Config{}); err == nil {
		t.Fatal("second Start on a taken port succeeded")
	}
}
