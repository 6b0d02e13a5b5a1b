package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/httvps/httvps/internal/testpeer"
)

// upACMEName is the node's public name; Pebble's DNS server resolves it to
// 127.0.0.1, and the test's clients dial 127.0.0.1 for it.
const upACMEName = "node.httvps-test.example"

// loopbackFor dials 127.0.0.1 for upACMEName, as DNS would for a real name.
func loopbackFor(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, _ := net.SplitHostPort(addr)
	if host == upACMEName {
		addr = net.JoinHostPort("127.0.0.1", port)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// TestUpACME: `httvps up -public-host NAME` against Pebble obtains a
// certificate for NAME by TLS-ALPN-01 on the gateway's listener and serves
// it on both listeners; a client that trusts only Pebble's root (as the
// Outline app trusts the system's) fetches the ssconf:// key and carries
// bytes through the gateway URL it names.
func TestUpACME(t *testing.T) {
	needPeers(t, "ss-server")
	const method, password = testpeer.DefaultMethod, "up-acme-password"
	ss := testpeer.SSServer(t, password, method)
	origin := testpeer.StartOrigin(t)
	gwPort := testpeer.FreePort(t)
	pb := testpeer.StartPebble(t, testpeer.PebbleSpec{TLSPort: gwPort})
	gwAddr := "127.0.0.1:" + strconv.Itoa(gwPort)
	ctlAddr := "127.0.0.1:" + strconv.Itoa(testpeer.FreePort(t))
	dir := filepath.Join(t.TempDir(), "data")
	u := startUp(t, "-data-dir", dir, "-listen", gwAddr, "-control-listen", ctlAddr, "-public-host", upACMEName,
		"-acme-ca", pb.Directory, "-acme-ca-root", pb.APIRootFile,
		"-member", "static:"+ss+":"+method+":"+password, "-drain-timeout", "2s", "-log-level", "info")
	_, roots := pb.Root(t)
	trust := &tls.Config{RootCAs: roots, ServerName: upACMEName}

	// The self-signed certificate serves until Pebble's arrives.
	deadline := time.Now().Add(2 * time.Minute)
	var leaf *x509.Certificate
	for leaf == nil {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", gwAddr, trust)
		if err == nil {
			leaf = c.ConnectionState().PeerCertificates[0]
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no certificate trusted by Pebble's root on the gateway within 2 minutes: %v\n%s", err, u.errs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if leaf.VerifyHostname(upACMEName) != nil {
		t.Fatalf("served certificate for %v", leaf.DNSNames)
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ctlAddr, trust)
	if err != nil {
		t.Fatalf("control API with Pebble's root: %v", err)
	}
	c.Close()

	keys := readSecretFile(t, filepath.Join(dir, "first-token.txt"))
	ssconf := field(t, keys, "ssconf")
	url, _, _ := strings.Cut(strings.Replace(ssconf, "ssconf://", "https://", 1), "#")
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, DialContext: loopbackFor}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatalf("GET %s with Pebble's root: %v", url, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var doc outlineYAML
	if err := yaml.Unmarshal(body, &doc); err != nil || doc.Transport == nil {
		t.Fatalf("ssconf document (%v): %v\n%s", resp.Status, err, body)
	}
	wsURL := doc.Transport.TCP.Endpoint.URL
	if !strings.HasPrefix(wsURL, "wss://"+upACMEName+":"+strconv.Itoa(gwPort)+"/") {
		t.Fatalf("the key's endpoint %q is not the gateway at %s", wsURL, upACMEName)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, err := testpeer.DialWSS(ctx, strings.Replace(wsURL, upACMEName, "127.0.0.1", 1), trust)
	if err != nil {
		t.Fatalf("the key's endpoint over the ACME certificate: %v", err)
	}
	defer ws.Close()
	cph, err := testpeer.NewCipher(doc.Transport.TCP.Cipher, doc.Transport.TCP.Secret)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := cph.NewSSConn(ws, origin.Addr)
	if err != nil {
		t.Fatal(err)
	}
	const n = 3<<20 + 5
	sum, got, err := testpeer.HTTPGetSHA256(sc, origin.Addr, "/bytes/"+strconv.Itoa(n))
	if err != nil || got != n || sum != testpeer.PseudoRandomSHA256(n, 0) {
		t.Fatalf("download through the key's endpoint: %d bytes, err %v", got, err)
	}
}
