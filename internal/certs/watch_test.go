package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const pollEvery = 5 * time.Millisecond

// startWatch runs Watch until the test ends.
func startWatch(t *testing.T, s *Store, every time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Watch(ctx, every)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// waitServed waits until name is served with leaf.
func waitServed(t *testing.T, s *Store, name string, leaf *x509.Certificate) {
	t.Helper()
	hello := &tls.ClientHelloInfo{ServerName: name}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, _ := s.GetCertificate(hello)
		if bytes.Equal(c.Leaf.Raw, leaf.Raw) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still serving %v, want %v", name, c.Leaf.DNSNames, leaf.DNSNames)
		}
		time.Sleep(pollEvery)
	}
}

func TestWatchRewrittenFile(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	p, first := ca.writePair(t, dir, "site", leafSpec{dns: []string{"site.example"}})
	log, buf := testLogger(t)
	s, err := New([]Pair{p}, log)
	if err != nil {
		t.Fatal(err)
	}
	startWatch(t, s, pollEvery)

	_, second := ca.writePair(t, dir, "site", leafSpec{dns: []string{"site.example", "two.example"}})
	waitServed(t, s, "site.example", second)

	// A broken write is logged and the previous certificate kept; the
	// next good write is picked up.
	writeFile(t, p.CertFile, []byte("-----BEGIN CERTIFICATE-----\ngarbage\n"))
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(buf.String(), "do not load") {
		if time.Now().After(deadline) {
			t.Fatalf("broken file not reported:\n%s", buf.String())
		}
		time.Sleep(pollEvery)
	}
	waitServed(t, s, "site.example", second)
	_, third := ca.writePair(t, dir, "site", leafSpec{dns: []string{"site.example", "three.example"}})
	waitServed(t, s, "site.example", third)
	if bytes.Equal(third.Raw, first.Raw) {
		t.Fatal("test issued the same certificate twice")
	}
}

// Kubernetes updates a mounted secret by writing a new timestamped
// directory and renaming the ..data symlink over the old one; tls.crt and
// tls.key are symlinks through ..data and never change themselves.
func TestWatchKubernetesSymlinkSwap(t *testing.T) {
	ca := newCA(t)
	mount := t.TempDir()
	writeVersion := func(version string, spec leafSpec) *x509.Certificate {
		t.Helper()
		dir := filepath.Join(mount, version)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		certPEM, keyPEM, leaf := ca.issue(t, spec)
		writeFile(t, filepath.Join(dir, "tls.crt"), certPEM)
		writeFile(t, filepath.Join(dir, "tls.key"), keyPEM)
		tmp := filepath.Join(mount, "..data_tmp")
		if err := os.Symlink(version, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(mount, "..data")); err != nil {
			t.Fatal(err)
		}
		return leaf
	}
	first := writeVersion("..2026_01_01_00_00_00.1", leafSpec{dns: []string{"site.example"}})
	for _, f := range []string{"tls.crt", "tls.key"} {
		if err := os.Symlink(filepath.Join("..data", f), filepath.Join(mount, f)); err != nil {
			t.Fatal(err)
		}
	}
	p := Pair{CertFile: filepath.Join(mount, "tls.crt"), KeyFile: filepath.Join(mount, "tls.key")}
	s, err := New([]Pair{p}, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	waitServed(t, s, "site.example", first)
	startWatch(t, s, pollEvery)

	// The same size and the same key: only the inode and mtime differ.
	second := writeVersion("..2026_01_02_00_00_00.2", leafSpec{dns: []string{"site.example"}})
	if err := os.RemoveAll(filepath.Join(mount, "..2026_01_01_00_00_00.1")); err != nil {
		t.Fatal(err)
	}
	waitServed(t, s, "site.example", second)
}

// A SIGHUP reload between two polls leaves the next poll nothing to do.
func TestPollSkipsWhatReloadLoaded(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	p, _ := ca.writePair(t, dir, "site", leafSpec{dns: []string{"site.example"}})
	log, buf := testLogger(t)
	s, err := New([]Pair{p}, log)
	if err != nil {
		t.Fatal(err)
	}
	seen := s.poll(s.set.Load().stamps)
	ca.writePair(t, dir, "site", leafSpec{dns: []string{"site.example", "two.example"}})
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	seen = s.poll(seen)
	if n := strings.Count(buf.String(), "tls certificate loaded"); n != 2 {
		t.Errorf("%d loads, want 2 (New, Reload):\n%s", n, buf.String())
	}
	_, third := ca.writePair(t, dir, "site", leafSpec{dns: []string{"site.example", "three.example"}})
	s.poll(seen)
	waitServed(t, s, "site.example", third)
}

func TestWatchStops(t *testing.T) {
	ca := newCA(t)
	p, _ := ca.writePair(t, t.TempDir(), "site", leafSpec{dns: []string{"site.example"}})
	s, err := New([]Pair{p}, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	s.Watch(context.Background(), 0) // disabled: returns at once
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		s.Watch(ctx, time.Hour)
		close(done)
	}()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return after cancel")
	}
}
