package certs

import (
	"context"
	"os"
	"strings"
	"syscall"
	"testing"
)

func TestReloadOnHUP(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	p, first := ca.writePair(t, dir, "site", leafSpec{dns: []string{"site.example"}})
	s, err := New([]Pair{p}, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	second := first
	for _, tc := range []struct {
		name   string
		store  *Store
		before func()
		want   string
	}{
		{"no store", nil, func() {}, "SIGHUP: nothing to reload here"},
		{"reloaded", s, func() {
			_, second = ca.writePair(t, dir, "site", leafSpec{dns: []string{"site.example"}})
		}, "SIGHUP: tls certificates reloaded"},
		{"broken file", s, func() { writeFile(t, p.CertFile, []byte("junk")) }, "keeping the previous ones"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log, buf := testLogger(t)
			ctx, cancel := context.WithCancel(context.Background())
			hups := make(chan os.Signal)
			done := make(chan struct{})
			go func() {
				ReloadOnHUP(ctx, hups, tc.store, log, "nothing to reload here")
				close(done)
			}()
			tc.before()
			hups <- syscall.SIGHUP
			hups <- syscall.SIGHUP // the first is handled once this is taken
			cancel()
			<-done
			if !strings.Contains(buf.String(), tc.want) {
				t.Errorf("log lacks %q:\n%s", tc.want, buf.String())
			}
		})
	}
	// The broken file left the second certificate in place.
	waitServed(t, s, "site.example", second)
}
