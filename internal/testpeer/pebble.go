package testpeer

// Pebble, Let's Encrypt's ACME test server, with pebble-challtestsrv as
// its DNS server (every name resolves to 127.0.0.1), so certificates are
// issued on loopback after real TLS-ALPN-01 or HTTP-01 validation against
// the listener under test. Both are built from the module's tool
// dependencies (go.mod), once per test process.

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var pebbleBuild struct {
	once sync.Once
	dir  string
	err  error
}

// pebbleBinaries builds pebble and pebble-challtestsrv into a directory
// that lives as long as the test process.
func pebbleBinaries(t testing.TB) string {
	t.Helper()
	pebbleBuild.once.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			pebbleBuild.err = fmt.Errorf("no go command to build pebble with: %w", err)
			return
		}
		dir, err := os.MkdirTemp("", "httvps-pebble-")
		if err != nil {
			pebbleBuild.err = err
			return
		}
		for _, cmd := range []string{"pebble", "pebble-challtestsrv"} {
			out, err := exec.Command(goBin, "build", "-o", filepath.Join(dir, cmd), "github.com/letsencrypt/pebble/v2/cmd/"+cmd).CombinedOutput()
			if err != nil {
				pebbleBuild.err = fmt.Errorf("go build %s: %v: %s", cmd, err, out)
				return
			}
		}
		pebbleBuild.dir = dir
	})
	if pebbleBuild.err != nil {
		t.Fatalf("testpeer: %v", pebbleBuild.err)
	}
	return pebbleBuild.dir
}

// Pebble is a running ACME CA on loopback.
type Pebble struct {
	// Directory is the ACME directory URL.
	Directory string
	// APIRoots verifies Pebble's own HTTPS endpoint (for the ACME client).
	APIRoots *x509.CertPool
	// APIRootFile is APIRoots' certificate in PEM.
	APIRootFile string
	mgmt        string // management API, https://127.0.0.1:port
	proc        *Proc
}

// PebbleSpec says where Pebble validates: the CA connects to TLSPort for
// TLS-ALPN-01 and HTTPPort for HTTP-01, on 127.0.0.1 for every name.
type PebbleSpec struct {
	TLSPort, HTTPPort int
	// Validity of issued certificates; 0 means 90 days.
	Validity time.Duration
}

// StartPebble runs Pebble and its DNS server until the test ends.
func StartPebble(t testing.TB, spec PebbleSpec) *Pebble {
	t.Helper()
	bin := pebbleBinaries(t)
	dnsPort := FreePort(t)
	dns := "127.0.0.1:" + strconv.Itoa(dnsPort)
	StartProc(t, filepath.Join(bin, "pebble-challtestsrv"),
		"-dnsserver", dns, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
		"-http01", "", "-https01", "", "-doh", "", "-tlsalpn01", "", "-management", "127.0.0.1:"+strconv.Itoa(FreePort(t)))

	api := NewCert(t, CertSpec{})
	validity := spec.Validity
	if validity <= 0 {
		validity = 90 * 24 * time.Hour
	}
	apiPort, mgmtPort := FreePort(t), FreePort(t)
	httpPort := spec.HTTPPort
	if httpPort == 0 {
		httpPort = FreePort(t) // nothing listens: HTTP-01 fails there
	}
	tlsPort := spec.TLSPort
	if tlsPort == 0 {
		tlsPort = FreePort(t)
	}
	conf := map[string]any{"pebble": map[string]any{
		"listenAddress":                  "127.0.0.1:" + strconv.Itoa(apiPort),
		"managementListenAddress":        "127.0.0.1:" + strconv.Itoa(mgmtPort),
		"certificate":                    api.PEMFile,
		"privateKey":                     api.KeyFile,
		"httpPort":                       httpPort,
		"tlsPort":                        tlsPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm":                   "ecdsa",
		"profiles": map[string]any{
			"default": map[string]any{"description": "test", "validityPeriod": int(validity / time.Second)},
		},
	}}
	b, _ := json.Marshal(conf)
	confFile := filepath.Join(t.TempDir(), "pebble.json")
	if err := os.WriteFile(confFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProcEnv(t, []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0"},
		filepath.Join(bin, "pebble"), "-config", confFile, "-dnsserver", dns)
	addr := "127.0.0.1:" + strconv.Itoa(apiPort)
	if err := waitProcListening(p, addr, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := waitProcListening(p, "127.0.0.1:"+strconv.Itoa(mgmtPort), 30*time.Second); err != nil {
		t.Fatal(err)
	}
	return &Pebble{
		Directory:   "https://" + addr + "/dir",
		APIRoots:    api.Pool,
		APIRootFile: api.PEMFile,
		mgmt:        "https://127.0.0.1:" + strconv.Itoa(mgmtPort),
		proc:        p,
	}
}

// issuedLine is how Pebble's CA logs every certificate it issues.
var issuedLine = regexp.MustCompile(`Issued certificate serial ([0-9a-f]+) for order`)

// Issued are the serials (lower-case hex, as big.Int's %x prints them)
// of the certificates Pebble has issued so far, in order: the CA's own
// count of orders that ended in a certificate.
func (p *Pebble) Issued() []string {
	var serials []string
	for _, m := range issuedLine.FindAllStringSubmatch(p.proc.Output(), -1) {
		serials = append(serials, strings.TrimLeft(m[1], "0"))
	}
	return serials
}

// get fetches a management API path.
func (p *Pebble) get(path string) ([]byte, error) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.APIRoots}}}
	resp, err := c.Get(p.mgmt + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("pebble %s: %s", path, resp.Status)
	}
	return body, nil
}

// Root is the root certificate Pebble issues under, in PEM, and as a pool:
// what a client that trusts this CA trusts. Pebble makes a new root at
// every start.
func (p *Pebble) Root(t testing.TB) ([]byte, *x509.CertPool) {
	t.Helper()
	pem, err := p.get("/roots/0")
	if err != nil {
		t.Fatalf("testpeer: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("testpeer: pebble root: no PEM certificate in %q", pem)
	}
	return pem, pool
}
