package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/httvps/httvps/internal/testpeer"
)

func TestTLSOptions(t *testing.T) {
	files := map[string]string{
		"scalar.yaml": "tls-cert: /f/a.crt\ntls-key: /f/a.key\ntls-min-version: '1.3'\ntls-watch: 1m\n",
		"list.yaml":   "tls-cert: [/f/a.crt, /f/b.crt]\ntls-key:\n  - /f/a.key\n  - /f/b.key\n",
	}
	for _, tc := range []struct {
		name  string
		args  []string
		env   map[string]string
		pairs string // CertFile+KeyFile, space-separated
		minV  uint16
		watch time.Duration
	}{
		{"none", nil, nil, "", tls.VersionTLS12, 10 * time.Second},
		{"flags in order", []string{"-tls-cert", "a.crt", "-tls-key", "a.key", "-tls-cert", "b.crt", "-tls-key", "b.key"}, nil,
			"a.crt+a.key b.crt+b.key", tls.VersionTLS12, 10 * time.Second},
		{"flags, min 1.3, watch off", []string{"-tls-cert", "a.crt", "-tls-key", "a.key", "-tls-min-version", "1.3", "-tls-watch", "0"}, nil,
			"a.crt+a.key", tls.VersionTLS13, 0},
		{"env lists", nil, map[string]string{"HTTVPS_TLS_CERT": " /e/a.crt, /e/b.crt,", "HTTVPS_TLS_KEY": "/e/a.key,/e/b.key", "HTTVPS_TLS_WATCH": "30s"},
			"/e/a.crt+/e/a.key /e/b.crt+/e/b.key", tls.VersionTLS12, 30 * time.Second},
		{"file scalars", []string{"-config", "scalar.yaml"}, nil, "/f/a.crt+/f/a.key", tls.VersionTLS13, time.Minute},
		{"file lists", []string{"-config", "list.yaml"}, nil, "/f/a.crt+/f/a.key /f/b.crt+/f/b.key", tls.VersionTLS12, 10 * time.Second},
		{"env over file, as a pair", []string{"-config", "list.yaml"}, map[string]string{"HTTVPS_TLS_CERT": "/e/a.crt", "HTTVPS_TLS_KEY": "/e/a.key"},
			"/e/a.crt+/e/a.key", tls.VersionTLS12, 10 * time.Second},
		{"flags over env, as a pair", []string{"-tls-cert", "a.crt", "-tls-key", "a.key"}, map[string]string{"HTTVPS_TLS_CERT": "/e/a.crt,/e/b.crt", "HTTVPS_TLS_KEY": "/e/a.key,/e/b.key"},
			"a.crt+a.key", tls.VersionTLS12, 10 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := loadOptions(fakeSources(append([]string{"-route", oneRoute}, tc.args...), tc.env, files))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range o.TLSPairs {
				got = append(got, p.CertFile+"+"+p.KeyFile)
			}
			if strings.Join(got, " ") != tc.pairs || o.TLSMinVersion.Version() != tc.minV || o.TLSWatch != tc.watch {
				t.Errorf("pairs %q min %#x watch %v; want %q %#x %v", got, o.TLSMinVersion.Version(), o.TLSWatch, tc.pairs, tc.minV, tc.watch)
			}
		})
	}
}

func TestTLSValidation(t *testing.T) {
	files := map[string]string{
		"uneven.yaml": "tls-cert: [a.crt, b.crt]\ntls-key: a.key\n",
		"map.yaml":    "tls-cert: {a: b}\ntls-key: a.key\n",
	}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"cert without key", []string{"-tls-cert", "a.crt"}, nil, "-tls-cert/-tls-key: 1 certificate files but 0 key files"},
		{"key without cert", []string{"-tls-key", "a.key"}, nil, "0 certificate files but 1 key files"},
		{"uneven flags", []string{"-tls-cert", "a.crt", "-tls-key", "a.key", "-tls-cert", "b.crt"}, nil, "2 certificate files but 1 key files"},
		{"uneven env", nil, map[string]string{"HTTVPS_TLS_CERT": "a.crt,b.crt", "HTTVPS_TLS_KEY": "a.key"}, "HTTVPS_TLS_CERT/HTTVPS_TLS_KEY: 2 certificate"},
		{"env key only", nil, map[string]string{"HTTVPS_TLS_KEY": "a.key"}, "0 certificate files but 1"},
		{"uneven file", []string{"-config", "uneven.yaml"}, nil, "uneven.yaml: tls-cert/tls-key: 2 certificate"},
		{"file map", []string{"-config", "map.yaml"}, nil, "tls-cert must be a file name or a list"},
		{"empty file name", []string{"-tls-cert", "", "-tls-key", "a.key"}, nil, "pair #1 has an empty file name"},
		{"bad version", []string{"-tls-cert", "a.crt", "-tls-key", "a.key", "-tls-min-version", "1.1"}, nil, `"1.1" is not 1.2 or 1.3`},
		{"bad version in env", []string{"-tls-cert", "a.crt", "-tls-key", "a.key"}, map[string]string{"HTTVPS_TLS_MIN_VERSION": "tls13"}, "HTTVPS_TLS_MIN_VERSION"},
		{"version without certs", []string{"-tls-min-version", "1.3"}, nil, "-tls-min-version given without -tls-cert"},
		{"negative watch", []string{"-tls-cert", "a.crt", "-tls-key", "a.key", "-tls-watch", "-1s"}, nil, "-tls-watch: -1s is negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadOptions(fakeSources(append([]string{"-route", oneRoute}, tc.args...), tc.env, files))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestTLSHelp(t *testing.T) {
	var out strings.Builder
	src := fakeSources([]string{"-h"}, nil, nil)
	src.usage = &out
	loadOptions(src)
	for _, want := range []string{"-tls-cert file", "HTTVPS_TLS_CERT", "-tls-key file", "-tls-min-version version", `(default "1.2")`, "-tls-watch", `(default "10s")`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, out.String())
		}
	}
}

// Files that do not load are a configuration error, before anything listens.
func TestRunRejectsBadCertificates(t *testing.T) {
	dir := t.TempDir()
	crt, key := writeSelfSigned(t, dir, "site", "site.example", -time.Hour)
	junk := filepath.Join(dir, "junk.crt")
	os.WriteFile(junk, []byte("junk"), 0o600)
	for _, tc := range []struct{ name, crt, key, want string }{
		{"missing", filepath.Join(dir, "nope.crt"), key, "nope.crt"},
		{"junk", junk, key, "junk.crt"},
		{"expired", crt, key, "certificate expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log syncBuffer
			code := run(osSources([]string{"-route", oneRoute, "-listen", "127.0.0.1:0", "-admin-listen", "", "-tls-cert", tc.crt, "-tls-key", tc.key}), &log)
			if code != 2 || !strings.Contains(log.String(), tc.want) {
				t.Fatalf("exit %d, log:\n%s\nwant exit 2 and %q", code, log.String(), tc.want)
			}
		})
	}
}

// A real SIGHUP to a running gateway swaps the certificate for new
// handshakes and leaves a connection made before it working.
func TestSIGHUPKeepsConnections(t *testing.T) {
	dir := t.TempDir()
	crt, key := writeSelfSigned(t, dir, "site", "site.example", 0)
	addr := freePort(t)
	var log syncBuffer
	exit := make(chan int, 1)
	go func() {
		exit <- run(osSources([]string{
			"-route", oneRoute, "-listen", addr, "-admin-listen", "",
			"-tls-cert", crt, "-tls-key", key, "-tls-watch", "0", "-drain-timeout", "1s",
		}), &log)
	}()
	waitLog(t, &log, "gateway serving")
	stopped := false
	defer func() {
		if !stopped {
			syscall.Kill(os.Getpid(), syscall.SIGTERM)
			<-exit
		}
	}()

	dial := func() *tls.Conn {
		t.Helper()
		cfg := &tls.Config{ServerName: "site.example", InsecureSkipVerify: true}
		deadline := time.Now().Add(5 * time.Second)
		for {
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, cfg)
			if err == nil {
				return c
			}
			if time.Now().After(deadline) {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	before := dial()
	defer before.Close()
	firstLeaf := before.ConnectionState().PeerCertificates[0]

	writeSelfSigned(t, dir, "site", "site.example", 0)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, &log, "SIGHUP: tls certificates reloaded")

	after := dial()
	secondLeaf := after.ConnectionState().PeerCertificates[0]
	after.Close()
	if bytes.Equal(firstLeaf.Raw, secondLeaf.Raw) {
		t.Error("a handshake after SIGHUP still got the old certificate")
	}

	// The connection from before the reload still gets its answer (the
	// decoy, as this is no upgrade request).
	before.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(before, "GET / HTTP/1.1\r\nHost: site.example\r\n\r\n")
	status, err := bufio.NewReader(before).ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 ") {
		t.Fatalf("old connection after SIGHUP: %q, %v", status, err)
	}

	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	stopped = true
	if code := <-exit; code != 0 {
		t.Errorf("exit %d after SIGTERM, log:\n%s", code, log.String())
	}
}

// writeSelfSigned writes dir/name.crt and dir/name.key for dnsName; a
// negative expiresIn makes it expired that long ago, 0 means a day ahead.
func writeSelfSigned(t *testing.T, dir, name, dnsName string, expiresIn time.Duration) (crt, key string) {
	t.Helper()
	if expiresIn == 0 {
		expiresIn = 24 * time.Hour
	}
	c := testpeer.NewCert(t, testpeer.CertSpec{DNSNames: []string{dnsName}, NotAfter: time.Now().Add(expiresIn)})
	crt, key = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := c.WriteFiles(crt, key); err != nil {
		t.Fatal(err)
	}
	return crt, key
}

func freePort(t *testing.T) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(testpeer.FreePort(t)))
}

func waitLog(t *testing.T, b *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(b.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("log never showed %q:\n%s", want, b.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type syncBuffer = testpeer.LockedBuffer
