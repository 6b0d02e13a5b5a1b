package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/httvps/httvps/internal/testpeer"
	"github.com/httvps/httvps/internal/wiring"
	"github.com/httvps/httvps/store/redisstore"
)

// TestUpRedis: `httvps up -redis URL` runs its gateway and its control
// plane on that Redis, not on an embedded store: the gateway registers
// there under -public-url, the first token is stored there, the keys name
// -keys-url, and -admin-key is the admin key with nothing written.
func TestUpRedis(t *testing.T) {
	needPeers(t, "ss-server")
	const method, password = testpeer.DefaultMethod, "up-redis-password"
	ss := testpeer.SSServer(t, password, method)
	rd := testpeer.StartRedis(t, testpeer.RedisSpec{})
	redisURL := "redis://" + rd.Addr() + "/0"
	gwAddr := "127.0.0.1:" + strconv.Itoa(testpeer.FreePort(t))
	ctlAddr := "127.0.0.1:" + strconv.Itoa(testpeer.FreePort(t))
	dir := filepath.Join(t.TempDir(), "data")
	const adminKey = "up-redis-admin-key-0123456789abcdef"
	u := startUp(t, "-data-dir", dir, "-listen", gwAddr, "-control-listen", ctlAddr,
		"-redis", redisURL, "-public-url", "wss://gw.example.test:443", "-keys-url", "https://keys.example.test",
		"-admin-key", adminKey, "-member", "static:"+ss+":"+method+":"+password, "-drain-timeout", "1s")

	out := u.out.String()
	if !strings.Contains(out, "gateway       wss://gw.example.test:443 ") || !strings.Contains(out, "given by -admin-key") {
		t.Errorf("banner:\n%s", out)
	}
	for _, name := range []string{storeName, adminKeyName} {
		if _, err := os.Stat(filepath.Join(dir, name)); !os.IsNotExist(err) {
			t.Errorf("%s in the data directory with -redis and -admin-key: %v", name, err)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := redisstore.New(ctx, redisURL)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	gws, err := st.ListGateways(ctx)
	if err != nil || len(gws) != 1 || gws[0].PublicURL != "wss://gw.example.test:443" || !gws[0].Live {
		t.Errorf("gateways in Redis: %+v %v", gws, err)
	}
	toks, _, err := st.ListTokens(ctx, "", 10)
	if err != nil || len(toks) != 1 {
		t.Errorf("tokens in Redis: %d, %v", len(toks), err)
	}
	members, err := st.ListMembers(ctx)
	if err != nil || len(members) != 1 {
		t.Errorf("members in Redis: %d, %v", len(members), err)
	}
	keys := readSecretFile(t, filepath.Join(dir, firstTokenName))
	if ssconf := field(t, keys, "ssconf"); !strings.HasPrefix(ssconf, "ssconf://keys.example.test/") {
		t.Errorf("ssconf key %q does not name -keys-url", ssconf)
	}

	// The admin API takes -admin-key.
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer hc.CloseIdleConnections()
	// A wrong key gets the decoy, as every stranger does.
	for key, want := range map[string]bool{adminKey: true, adminKey + "x": false} {
		req, _ := http.NewRequest(http.MethodGet, "https://"+ctlAddr+"/v1/tokens", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if (resp.StatusCode == http.StatusOK) != want {
			t.Errorf("GET /v1/tokens with the right key %v: %s", want, resp.Status)
		}
	}
}

// TestUpURLs: -public-url, -keys-url and -control-public-url decide the
// URLs up hands out; without them they follow -public-host and the ports.
func TestUpURLs(t *testing.T) {
	for _, tc := range []struct {
		args               []string
		gateway, keys, ctl string
	}{
		{nil, "wss://vpn.example.com:8443", "https://vpn.example.com:8443", ""},
		{[]string{"-public-url", "wss://edge.example.com"}, "wss://edge.example.com", "https://edge.example.com", ""},
		{[]string{"-public-url", "wss://edge.example.com:443", "-keys-url", "https://keys.example.com/k"}, "wss://edge.example.com:443", "https://keys.example.com/k", ""},
		{[]string{"-control-public-url", "https://admin.example.com:9443"}, "wss://vpn.example.com:8443", "https://vpn.example.com:8443", "https://admin.example.com:9443"},
	} {
		o, err := loadUpOptions(append([]string{"-public-host", "vpn.example.com", "-acme=false"}, tc.args...), env{stdout: io.Discard, stderr: io.Discard, lookupEnv: noEnv})
		if err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		gw, keys := gatewayURLs(o, "8443")
		if gw != tc.gateway || keys != tc.keys || o.Control.PublicURL != tc.ctl {
			t.Errorf("%q: gateway %q keys %q control %q; want %q %q %q", tc.args, gw, keys, o.Control.PublicURL, tc.gateway, tc.keys, tc.ctl)
		}
	}
}

// TestUpFlagChecks: the flags up took from the separate binaries are
// checked as there, and by the names up gives them.
func TestUpFlagChecks(t *testing.T) {
	e := env{stdout: io.Discard, stderr: io.Discard, lookupEnv: noEnv}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-redis", "http://127.0.0.1:6379"}, "-redis"},
		{[]string{"-public-url", "https://gw.example.com"}, "-public-url"},
		{[]string{"-keys-url", "ftp://keys.example.com"}, "-keys-url"},
		{[]string{"-control-public-url", "wss://ctl.example.com"}, "-control-public-url"},
		{[]string{"-admin-key", "short"}, "admin key"},
		{[]string{"-admin-key", strings.Repeat("k", 40), "-admin-key-file", "f"}, "not both"},
		{[]string{"-acme=maybe"}, "auto, true or false"},
	} {
		_, err := loadUpOptions(tc.args, e)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v; want an error about %s", tc.args, err, tc.want)
		}
		if err != nil && tc.args[0] == "-redis" && strings.Contains(err.Error(), tc.args[1]) {
			t.Errorf("the -redis error quotes the URL: %v", err)
		}
	}
	// The prefixed names come from the environment and the config file
	// under the same rule.
	file := filepath.Join(t.TempDir(), "up.yaml")
	os.WriteFile(file, []byte("control-public-url: https://ctl.example.com\nkeys-url: https://keys.example.com\n"), 0o600)
	vars := map[string]string{"HTTVPS_CONTROL_LISTEN": "127.0.0.1:9", "HTTVPS_REDIS": "redis://127.0.0.1:1/0", "HTTVPS_ACME": "auto"}
	o, err := loadUpOptions([]string{"-config", file}, env{stdout: io.Discard, stderr: io.Discard, lookupEnv: func(k string) (string, bool) { v, ok := vars[k]; return v, ok }})
	if err != nil {
		t.Fatal(err)
	}
	if o.Control.Listen != "127.0.0.1:9" || o.Control.PublicURL != "https://ctl.example.com" || o.KeysURL != "https://keys.example.com" ||
		o.RedisURL != "redis://127.0.0.1:1/0" || o.ACME.Mode != wiring.ACMEAuto || o.acmeOn() {
		t.Errorf("options: control listen %q public %q keys %q redis %q acme %q/%v", o.Control.Listen, o.Control.PublicURL, o.KeysURL, o.RedisURL, o.ACME.Mode, o.acmeOn())
	}
}

// TestUpACMEDir: with -acme-dir the ACME account and certificate live in
// DIR/acme.db rather than the node's store, so a node on a new data
// directory but the same -acme-dir serves the same certificate.
func TestUpACMEDir(t *testing.T) {
	gwPort := testpeer.FreePort(t)
	pb := testpeer.StartPebble(t, testpeer.PebbleSpec{TLSPort: gwPort})
	_, roots := pb.Root(t)
	gwAddr := "127.0.0.1:" + strconv.Itoa(gwPort)
	acmeDir := filepath.Join(t.TempDir(), "acme")
	start := func() (*upProc, *x509.Certificate) {
		u := startUp(t, "-data-dir", filepath.Join(t.TempDir(), "data"), "-listen", gwAddr,
			"-control-listen", "127.0.0.1:"+strconv.Itoa(testpeer.FreePort(t)), "-public-host", upACMEName,
			"-acme-ca", pb.Directory, "-acme-ca-root", pb.APIRootFile, "-acme-dir", acmeDir, "-drain-timeout", "1s")
		trust := &tls.Config{RootCAs: roots, ServerName: upACMEName}
		deadline := time.Now().Add(2 * time.Minute)
		for {
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", gwAddr, trust)
			if err == nil {
				leaf := c.ConnectionState().PeerCertificates[0]
				c.Close()
				return u, leaf
			}
			if time.Now().After(deadline) {
				t.Fatalf("no certificate trusted by Pebble's root within 2 minutes: %v\n%s", err, u.errs)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	u, first := start()
	if fi, err := os.Stat(filepath.Join(acmeDir, "acme.db")); err != nil || fi.Size() == 0 {
		t.Fatalf("-acme-dir holds no acme.db: %v", err)
	}
	u.stop(t)
	_, again := start()
	if !bytes.Equal(first.Raw, again.Raw) {
		t.Errorf("a node on the same -acme-dir obtained another certificate (serial %v, then %v)", first.SerialNumber, again.SerialNumber)
	}
}
