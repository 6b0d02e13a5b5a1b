package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/httvps/httvps/client"
	"github.com/httvps/httvps/internal/testpeer"
)

// connectProc is `httvps connect` running in-process.
type connectProc struct {
	errs   *lockedBuffer
	cancel context.CancelFunc
	done   chan int
}

func startConnect(t *testing.T, args ...string) *connectProc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &connectProc{errs: &lockedBuffer{}, cancel: cancel, done: make(chan int, 1)}
	go func() {
		c.done <- run(ctx, append([]string{"connect"}, args...), env{stdout: io.Discard, stderr: c.errs, lookupEnv: noEnv})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-c.done:
			if code != 0 {
				t.Errorf("httvps connect exited with %d:\n%s", code, c.errs)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("httvps connect did not stop:\n%s", c.errs)
		}
	})
	return c
}

// waitFor polls cond until it holds (a failure bound, not a timing assert).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func curlHash(t *testing.T, args ...string) (string, int64, error) {
	t.Helper()
	cmd := exec.Command("curl", append([]string{"-sS", "--fail", "--max-time", "60"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, _ := io.Copy(h, out)
	if err := cmd.Wait(); err != nil {
		return "", n, fmt.Errorf("curl: %w: %s", err, stderr.String())
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// The whole client against a real single node: `httvps up` (gateway,
// control plane, a real ss-server member, its own certificate pinned
// with -key-pin) hands out a self-contained httvps:// key; `httvps
// connect` with that key serves SOCKS5 and the HTTP proxy that curl goes
// through to a local origin, hashes matching (Outline paths and native
// tunnel); `httvps key` prints the
// token's keys; after the token is revoked, connect says why in one line.
func TestConnectAgainstUp(t *testing.T) {
	needPeers(t, "ss-server", "curl")
	const method, password = testpeer.DefaultMethod, "connect-test-password"
	ss := testpeer.SSServer(t, password, method)
	origin := testpeer.StartOrigin(t)
	dir := filepath.Join(t.TempDir(), "data")
	cert := testpeer.SelfSignedCert(t)
	certFile, keyFile := filepath.Join(t.TempDir(), "cert.pem"), filepath.Join(t.TempDir(), "key.pem")
	if err := cert.WriteFiles(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	pin := sha256.Sum256(cert.Cert.Certificate[0])
	gwAddr := "127.0.0.1:" + strconv.Itoa(testpeer.FreePort(t))
	ctlAddr := "127.0.0.1:" + strconv.Itoa(testpeer.FreePort(t))
	ctlURL := "https://" + ctlAddr
	startUp(t, "-data-dir", dir, "-listen", gwAddr, "-control-listen", ctlAddr,
		"-member", "static:"+ss+":"+method+":"+password, "-tls-cert", certFile, "-tls-key", keyFile,
		"-key-pin", hex.EncodeToString(pin[:]), "-drain-timeout", "2s")
	keys := readSecretFile(t, filepath.Join(dir, "first-token.txt"))
	token, tokenID, httvpsKey := field(t, keys, "token"), field(t, keys, "token id"), field(t, keys, "httvps")

	k, err := client.ParseKey(httvpsKey)
	if err != nil {
		t.Fatalf("the key up printed: %v", err)
	}
	if len(k.Gateways) != 1 || k.Gateways[0].Addr != gwAddr || !bytes.Equal(k.Pin, pin[:]) || k.Control != "https://"+gwAddr ||
		k.Token != token || k.Cipher != method || k.Secret != password {
		t.Fatalf("the key up printed is not self-contained: gateways %+v control %q", k.Gateways, k.Control)
	}

	listen := "127.0.0.1:" + strconv.Itoa(testpeer.FreePort(t))
	c := startConnect(t, "-listen", listen, "-transport", "outline", httvpsKey)
	waitFor(t, "connect to listen", func() bool { return testpeer.WaitListening(listen, 100*time.Millisecond) == nil })
	const n = 8 << 20
	want := testpeer.PseudoRandomSHA256(n, 11)
	url := origin.URL(fmt.Sprintf("/bytes/%d?seed=11", n))
	for _, args := range [][]string{{"--socks5-hostname", listen, url}, {"-x", "http://" + listen, url}} {
		sum, got, err := curlHash(t, args...)
		if err != nil || got != n || sum != want {
			t.Fatalf("curl %v: %d bytes %s, %v; want %d bytes %s\n%s", args, got, sum, err, n, want, c.errs)
		}
	}
	// The same through the native tunnel (the default transport).
	nlisten := "127.0.0.1:" + strconv.Itoa(testpeer.FreePort(t))
	nc := startConnect(t, "-listen", nlisten, httvpsKey)
	waitFor(t, "native connect to listen", func() bool { return testpeer.WaitListening(nlisten, 100*time.Millisecond) == nil })
	for _, args := range [][]string{{"--socks5-hostname", nlisten, url}, {"-x", "http://" + nlisten, url}} {
		sum, got, err := curlHash(t, args...)
		if err != nil || got != n || sum != want {
			t.Fatalf("native: curl %v: %d bytes %s, %v; want %d bytes %s\n%s", args, got, sum, err, n, want, nc.errs)
		}
	}
	if !strings.Contains(nc.errs.String(), "transport=native") {
		t.Fatalf("connect without -transport did not use the native tunnel:\n%s", nc.errs)
	}
	for _, leak := range []string{token, password} {
		if strings.Contains(c.errs.String(), leak) || strings.Contains(nc.errs.String(), leak) {
			t.Fatalf("connect's log holds a secret:\n%s\n%s", c.errs, nc.errs)
		}
	}

	// httvps key, asking the control plane with the token.
	var out, errs bytes.Buffer
	code := run(context.Background(), []string{"key", "-control", ctlURL, "-cacert", certFile, "-token", token, "-qr", "none"},
		env{stdout: &out, stderr: &errs, lookupEnv: noEnv})
	if code != 0 {
		t.Fatalf("httvps key: %d %s", code, errs.String())
	}
	for _, name := range []string{"ss", "ssconf", "httvps"} {
		if got := field(t, "  "+strings.ReplaceAll(out.String(), "\n", "\n  "), name); got != field(t, keys, name) {
			t.Errorf("httvps key %s = %q, want %q", name, got, field(t, keys, name))
		}
	}

	// Revoked: the gateway answers the decoy, connect asks the key's
	// control URL — the gateway, which serves the client config behind
	// the same decoy — and says what it can.
	mustAdmin(t, ctlURL, dir, "-cacert", certFile, "tokens", "revoke", tokenID)
	const reason = "every gateway refused the connection: the server does not accept the token: it is unknown, revoked, expired or over its quota (404, as for any unknown request)"
	waitFor(t, "the refusal reason in connect's log", func() bool {
		curlHash(t, "--socks5-hostname", listen, origin.URL("/bytes/10"))
		return strings.Contains(c.errs.String(), reason)
	})

	// A control-plane URL key with the revoked token: one line, exit 1.
	errs.Reset()
	code = run(context.Background(), []string{"connect", "-cacert", certFile, "-token", token, ctlURL},
		env{stdout: io.Discard, stderr: &errs, lookupEnv: noEnv})
	if code != 1 || strings.Count(errs.String(), "\n") != 1 || !strings.Contains(errs.String(), "unknown, revoked, expired or over its quota (404, as for any unknown request)") {
		t.Fatalf("connect with a revoked token: exit %d, %q", code, errs.String())
	}
}

// Bad keys are one line and exit 2.
func TestConnectBadKey(t *testing.T) {
	for _, key := range []string{"nope://x", "httvps://tok@gw.example.com/?cipher=rc4&secret=s", "ss://" + strings.Repeat("!", 10)} {
		var errs bytes.Buffer
		code := run(context.Background(), []string{"connect", key}, env{stdout: io.Discard, stderr: &errs, lookupEnv: noEnv})
		if code != 2 || strings.Count(errs.String(), "\n") != 1 || !strings.HasPrefix(errs.String(), "httvps connect: bad key: ") {
			t.Errorf("connect %q: exit %d, %q", key, code, errs.String())
		}
	}
}

// The QR renderer draws exactly the code's modules: reading the blocks
// back gives the bitmap (light = block, two rows per line).
func TestRenderQR(t *testing.T) {
	bm := [][]bool{{true, false, true}, {false, true, false}, {true, true, false}}
	out := drawModules(bm)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	size := len(bm) + 2*qrQuiet
	if len(lines) != (size+1)/2 {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), (size+1)/2, out)
	}
	for y := 0; y < size; y++ {
		row := []rune(lines[y/2])
		if len(row) != size {
			t.Fatalf("line %d has %d columns, want %d", y/2, len(row), size)
		}
		for x := 0; x < size; x++ {
			r := row[x]
			light := r == '█' || (y%2 == 0 && r == '▀') || (y%2 == 1 && r == '▄')
			by, bx := y-qrQuiet, x-qrQuiet
			dark := by >= 0 && bx >= 0 && by < len(bm) && bx < len(bm) && bm[by][bx]
			if light == dark {
				t.Fatalf("module (%d,%d): light %v, want dark %v\n%s", y, x, light, dark, out)
			}
		}
	}
	if _, err := renderQR("httvps://" + strings.Repeat("x", 300)); err != nil {
		t.Fatal(err)
	}
}

// httvps key with a key on the command line prints the forms that key
// allows: a plain ss:// key has no ssconf:// or httvps:// form.
func TestKeyFromKey(t *testing.T) {
	ssKey := "ss://" + "YWVzLTI1Ni1nY206cHc" + "@10.0.0.1:8388/#lab"
	var out, errs bytes.Buffer
	if code := run(context.Background(), []string{"key", "-json", ssKey}, env{stdout: &out, stderr: &errs, lookupEnv: noEnv}); code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	var keys struct{ SS, SSConf, HTTVPS string }
	if err := json.Unmarshal(out.Bytes(), &keys); err != nil || keys.SS != ssKey || keys.SSConf != "" || keys.HTTVPS != "" {
		t.Fatalf("keys %+v (%v) from %s", keys, err, out.String())
	}
	hk := "httvps://tok@gw.example.com/?cipher=aes-128-gcm&secret=s&tls=0"
	out.Reset()
	if code := run(context.Background(), []string{"key", "-qr", "httvps", hk}, env{stdout: &out, stderr: &errs, lookupEnv: noEnv}); code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	if !strings.Contains(out.String(), "httvps  httvps://tok@gw.example.com/?cipher=aes-128-gcm&secret=s&tls=0") ||
		!strings.Contains(out.String(), "█") || !strings.Contains(out.String(), "ss      ss://") {
		t.Fatalf("output:\n%s", out.String())
	}
	errs.Reset()
	if code := run(context.Background(), []string{"key", "-qr", "ssconf", ssKey}, env{stdout: io.Discard, stderr: &errs, lookupEnv: noEnv}); code != 1 || !strings.Contains(errs.String(), "no ssconf form") {
		t.Fatalf("-qr ssconf for a plain key: exit %d %q", code, errs.String())
	}
}

// TestConnectRefusesOpenProxy: -listen beyond loopback without -socks-user
// is refused (exit 2, one line) unless -allow-open-proxy says so.
func TestConnectRefusesOpenProxy(t *testing.T) {
	key := "ss://" + base64.RawURLEncoding.EncodeToString([]byte("aes-128-gcm:pw")) + "@127.0.0.1:9"
	for _, listen := range []string{"0.0.0.0:0", ":0", "[::]:0"} {
		var errs bytes.Buffer
		code := run(context.Background(), []string{"connect", "-listen", listen, key}, env{stdout: io.Discard, stderr: &errs, lookupEnv: noEnv})
		if code != 2 || strings.Count(errs.String(), "\n") != 1 || !strings.Contains(errs.String(), "-socks-user") {
			t.Errorf("connect -listen %s: exit %d, %q; want 2 and one line naming -socks-user", listen, code, errs.String())
		}
	}
	c := startConnect(t, "-listen", "0.0.0.0:0", "-allow-open-proxy", key)
	waitFor(t, "the proxy listening with -allow-open-proxy", func() bool { return strings.Contains(c.errs.String(), "proxy listening") })
}
