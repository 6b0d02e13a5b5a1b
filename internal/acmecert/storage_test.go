package acmecert

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"testing"
	"time"

	"github.com/httvps/httvps/store/embedded"
)

// TestStorageFileSemantics: certmagic's Storage contract (keys with
// directory semantics by path component) on the store's shared files.
func TestStorageFileSemantics(t *testing.T) {
	st, err := embedded.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := newStorage(st)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, k := range []string{"certs/a/a.crt", "certs/a/a.key", "certs/ab/ab.crt", "acme/x", "top"} {
		if err := s.Store(ctx, k, []byte("v:"+k)); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := s.Load(ctx, "certs/a/a.key"); err != nil || string(v) != "v:certs/a/a.key" {
		t.Fatalf("Load = %q, %v", v, err)
	}
	if _, err := s.Load(ctx, "certs/a"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a directory: %v, want fs.ErrNotExist", err)
	}
	list := func(path string, recursive bool, want string) {
		t.Helper()
		got, err := s.List(ctx, path, recursive)
		if fmt.Sprint(got, err) != want {
			t.Errorf("List(%q, %v) = %v %v, want %s", path, recursive, got, err, want)
		}
	}
	list("certs", false, "[certs/a certs/ab] <nil>")
	list("certs", true, "[certs/a/a.crt certs/a/a.key certs/ab/ab.crt] <nil>")
	list("nothing", false, "[] file does not exist")
	if ki, err := s.Stat(ctx, "certs/a"); err != nil || ki.IsTerminal {
		t.Errorf("Stat of a directory = %+v, %v", ki, err)
	}
	if ki, err := s.Stat(ctx, "top"); err != nil || !ki.IsTerminal || ki.Size != int64(len("v:top")) || ki.Modified.IsZero() {
		t.Errorf("Stat of a file = %+v, %v", ki, err)
	}
	if _, err := s.Stat(ctx, "cert"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat of a key prefix that is no component: %v, want fs.ErrNotExist", err)
	}
	// Deleting a directory takes what is under it, not its siblings whose
	// names start the same.
	if err := s.Delete(ctx, "certs/a"); err != nil {
		t.Fatal(err)
	}
	list("certs", true, "[certs/ab/ab.crt] <nil>")
	if !s.Exists(ctx, "acme/x") || s.Exists(ctx, "certs/a") {
		t.Error("Exists after Delete")
	}
	if err := s.Delete(ctx, "gone"); err != nil {
		t.Errorf("Delete of a missing key: %v", err)
	}
}
