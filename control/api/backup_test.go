package api

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/httvps/httvps/store"
	"github.com/httvps/httvps/store/embedded"
)

// TestBackup: with the admin key, GET /v1/backup is the store file with its
// length, and a store opened on it has the token; without the key it is the
// decoy; without a Snapshot it is 501; a failing snapshot is a 5xx, never a
// short 200.
func TestBackup(t *testing.T) {
	st := embeddedStore(t)
	es := st.(*embedded.Store)
	dir := t.TempDir()
	h := newHarness(t, st, func(c *Config) { c.Snapshot, c.SnapshotDir = es.WriteSnapshot, dir })
	tok := store.Token{ID: store.NewID(), Hash: store.HashToken("backup-test-token"), Label: "kept"}
	if err := st.CreateToken(context.Background(), tok); err != nil {
		t.Fatal(err)
	}

	r := h.admin("GET", "/v1/backup", "")
	if r.StatusCode != http.StatusOK || r.Header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("GET /v1/backup: %d %q", r.StatusCode, r.Header.Get("Content-Type"))
	}
	if n, _ := strconv.Atoi(r.Header.Get("X-Httvps-Backup-Bytes")); n != len(r.body) || r.ContentLength != int64(n) {
		t.Errorf("body %d bytes, X-Httvps-Backup-Bytes %q, Content-Length %d", len(r.body), r.Header.Get("X-Httvps-Backup-Bytes"), r.ContentLength)
	}
	copyPath := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(copyPath, r.body, 0o600); err != nil {
		t.Fatal(err)
	}
	if sum, err := embedded.Inspect(copyPath); err != nil || sum.Tokens != 1 {
		t.Errorf("Inspect(copy) = %+v, %v", sum, err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("temporary files left in SnapshotDir: %v", left)
	}

	if r := h.do("GET", "/v1/backup", "", ""); r.StatusCode != http.StatusNotFound || r.Header.Get("Server") != "nginx" {
		t.Errorf("without the admin key: %d, Server %q; want the decoy", r.StatusCode, r.Header.Get("Server"))
	}

	none := newHarness(t, embeddedStore(t))
	if r := none.admin("GET", "/v1/backup", ""); r.StatusCode != http.StatusNotImplemented || decode[errorBody](t, r).Error.Code != codeNotImplemented {
		t.Errorf("without Snapshot: %d %s", r.StatusCode, r.body)
	}

	failing := newHarness(t, embeddedStore(t), func(c *Config) {
		c.Snapshot = func(_ context.Context, w io.Writer) (int64, error) {
			w.Write([]byte("half"))
			return 4, errors.New("disk on fire")
		}
		c.SnapshotDir = t.TempDir()
	})
	if r := failing.admin("GET", "/v1/backup", ""); r.StatusCode != http.StatusInternalServerError {
		t.Errorf("failing snapshot: %d %q", r.StatusCode, r.body)
	}
}
