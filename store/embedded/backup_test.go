package embedded

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/httvps/httvps/store"
)

// TestSnapshotWhileOpen takes a snapshot of a store that stays open and in
// use, and finds the token, its usage and the member in a store opened on
// the copy; writes after the snapshot are not in it.
func TestSnapshotWhileOpen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, filepath.Join(dir, "httvps.db"))
	tok := store.Token{ID: store.NewID(), Hash: store.HashToken("secret-1"), Label: "one"}
	if err := s.CreateToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if err := s.AddUsage(ctx, time.Now(), map[string]store.Usage{tok.ID: {Up: 100, Down: 2000}}); err != nil {
		t.Fatal(err)
	}
	m := store.Member{ID: "m1", Name: "ss", Backend: store.BackendStatic, Host: "127.0.0.1",
		Static: &store.StaticConfig{Port: 8388, Cipher: "chacha20-ietf-poly1305", Password: "pw"}}
	if err := s.PutMember(ctx, m); err != nil {
		t.Fatal(err)
	}
	wantID, err := s.InstallationID(ctx)
	if err != nil {
		t.Fatal(err)
	}

	var buf bytes.Buffer
	n, err := s.WriteSnapshot(ctx, &buf)
	if err != nil || n != int64(buf.Len()) {
		t.Fatalf("WriteSnapshot = %d, %v; wrote %d bytes", n, err, buf.Len())
	}
	// After the snapshot: not in the copy.
	if err := s.AddUsage(ctx, time.Now(), map[string]store.Usage{tok.ID: {Up: 1}}); err != nil {
		t.Fatal(err)
	}
	// The live file is locked by s; Inspect and SnapshotFile say so.
	if _, err := Inspect(filepath.Join(dir, "httvps.db")); err == nil {
		t.Error("Inspect of a file held by an open Store succeeded")
	}

	copyPath := filepath.Join(dir, "copy.db")
	if err := os.WriteFile(copyPath, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	sum, err := Inspect(copyPath)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Tokens != 1 || sum.Members != 1 || sum.Usage != 1 || sum.InstallationID != wantID {
		t.Errorf("Inspect = %+v, want 1 token, 1 member, 1 usage, installation %s", sum, wantID)
	}
	c := open(t, copyPath)
	got, err := c.GetTokenByHash(ctx, store.HashToken("secret-1"))
	if err != nil || got.ID != tok.ID || got.Label != "one" {
		t.Errorf("token in the copy: %+v, %v", got, err)
	}
	if u, err := c.GetUsage(ctx, tok.ID); err != nil || u != (store.Usage{Up: 100, Down: 2000}) {
		t.Errorf("usage in the copy: %+v, %v", u, err)
	}
	if gm, err := c.GetMember(ctx, "m1"); err != nil || gm.Static == nil || gm.Static.Password != "pw" {
		t.Errorf("member in the copy: %+v, %v", gm, err)
	}
	if id, _ := c.InstallationID(ctx); id != wantID {
		t.Errorf("installation id %q, want %q", id, wantID)
	}

	// A closed store's file can be copied directly.
	c.Close()
	var again bytes.Buffer
	if _, err := SnapshotFile(copyPath, &again); err != nil {
		t.Fatal(err)
	}
	if _, err := SnapshotFile(filepath.Join(dir, "httvps.db"), &again); err == nil {
		t.Error("SnapshotFile of a file held by an open Store succeeded")
	}
}

func TestInspectRejectsOtherFiles(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk")
	os.WriteFile(junk, bytes.Repeat([]byte("not a bolt file "), 1024), 0o600)
	if _, err := Inspect(junk); !errors.Is(err, ErrNotStore) {
		t.Errorf("Inspect(junk) = %v, want ErrNotStore", err)
	}
	if _, err := Inspect(filepath.Join(dir, "missing")); err == nil {
		t.Error("Inspect of a missing file succeeded")
	}
}
