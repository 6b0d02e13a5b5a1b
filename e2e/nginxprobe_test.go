package e2e

// Probe shapes and a real nginx to hold the gateway's answers against: the
// built-in decoy (decoy_nginx_test.go) and -fallback both have to answer
// every shape here the way Debian's nginx 1.22 does, byte for byte apart
// from the Date header, and close (or keep) the connection as it does.

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/httvps/httvps/internal/freeport"
	"github.com/httvps/httvps/internal/testpeer"
)

// nginxProbeSecret is the secret of the one route the gateways under test
// have; shapes that carry it probe what a valid secret may not unlock.
const nginxProbeSecret = "nginx-probe-secret"

// probeShape is one probe: req is written at once on a fresh connection.
// Shapes with tlsPort set are sent in the clear to the TLS listener (plain
// HTTP on an HTTPS port); every other shape is sent both to the plaintext
// listener and, inside TLS, to the TLS listener.
type probeShape struct {
	name    string
	req     []byte
	tlsPort bool
}

func wsUpgrade(path, extra string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" + extra + "\r\n"
}

// garbage is fixed bytes that are not HTTP and not TLS (the first byte is
// neither 0x16 nor ≥ 0x80, so nginx's TLS port treats them as plain HTTP).
var garbage = func() []byte {
	b := make([]byte, 300)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	b[0] = 'q'
	return b
}()

const chromeUA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"

// probeShapes are the shapes of issue 7 finding 5, and the neighbours that
// tell a hand-written emulation from nginx.
var probeShapes = []probeShape{
	{name: "GET11", req: []byte("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")},
	{name: "GET11Close", req: []byte("GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")},
	{name: "GET10", req: []byte("GET / HTTP/1.0\r\n\r\n")},
	{name: "GET10KeepAlive", req: []byte("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")},
	{name: "HEAD11", req: []byte("HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n")},
	{name: "HEAD10", req: []byte("HEAD /index.html HTTP/1.0\r\n\r\n")},
	{name: "POSTBody", req: []byte("POST /api HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello")},
	{name: "POSTPartialBody", req: []byte("POST /api HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nhello")},
	{name: "POSTChunked", req: []byte("POST /api HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")},
	{name: "POSTTooLarge", req: []byte("POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2000000\r\n\r\n")},
	{name: "POSTBadLength", req: []byte("POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: abc\r\n\r\n")},
	{name: "POSTLengthAndChunked", req: []byte("POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")},
	{name: "POSTGzipEncoding", req: []byte("POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip\r\n\r\n")},
	{name: "ExpectContinue", req: []byte("POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")},
	{name: "PipelinedGETs", req: []byte("GET /a HTTP/1.1\r\nHost: localhost\r\n\r\nGET /b HTTP/1.1\r\nHost: localhost\r\n\r\n")},
	{name: "PipelinedHEADThenClose", req: []byte("GET / HTTP/1.1\r\nHost: localhost\r\n\r\nHEAD / HTTP/1.1\r\nHost: localhost\r\n\r\nGET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\nGET /never HTTP/1.1\r\nHost: localhost\r\n\r\n")},
	{name: "PipelinedThenGarbage", req: []byte("GET / HTTP/1.1\r\nHost: localhost\r\n\r\nHELLO\r\n\r\n")},
	{name: "PipelinedPOSTThenGET", req: []byte("POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabcGET /x HTTP/1.1\r\nHost: localhost\r\n\r\n")},
	{name: "HTTP2Preface", req: []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")},
	{name: "CONNECT", req: []byte("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")},
	{name: "OPTIONSStar", req: []byte("OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n")},
	{name: "OPTIONSRoot", req: []byte("OPTIONS / HTTP/1.1\r\nHost: localhost\r\n\r\n")},
	{name: "LowercaseMethod", req: []byte("get / HTTP/1.1\r\nHost: localhost\r\n\r\n")},
	{name: "UnknownMethod", req: []byte("BREW /pot HTTP/1.1\r\nHost: localhost\r\n\r\n")},
	{name: "NULInValue", req: []byte("GET / HTTP/1.1\r\nHost: localhost\r\nX-A: a\x00b\r\n\r\n")},
	{name: "NULInName", req: []byte("GET / HTTP/1.1\r\nHost: localhost\r\nX-\x00A: b\r\n\r\n")},
	{name: "BareCRInValue", req: []byte("GET / HTTP/1.1\r\nHost: localhost\r\nX-A: a\rb\r\n\r\n")},
	{name: "BareLF", req: []byte("GET / HTTP/1.1\nHost: localhost\n\n")},
	{name: "MixedLineEnds", req: []byte("GET / HTTP/1.1\r\nHost: localhost\nAccept: */*\r\n\n")},
	{name: "Garbage", req: garbage},
	{name: "GarbageWord", req: []byte("HELLO\r\n\r\n")},
	{name: "LeadingBlankLines", req: []byte("\r\n\r\nGET / HTTP/1.1\r\nHost: localhost\r\n\r\n")},
	{name: "NoHost", req: []byte("GET / HTTP/1.1\r\n\r\n")},
	{name: "DuplicateHost", req: []byte("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")},
	{name: "BadHost", req: []byte("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n")},
	{name: "SpaceBeforeColon", req: []byte("GET / HTTP/1.1\r\nHost : localhost\r\n\r\n")},
	{name: "HeaderNoColon", req: []byte("GET / HTTP/1.1\r\nHost: localhost\r\nNoColon\r\n\r\n")},
	{name: "FoldedHeader", req: []byte("GET / HTTP/1.1\r\nHost: localhost\r\nX-A: a\r\n b\r\n\r\n")},
	{name: "LongURI", req: []byte("GET /" + strings.Repeat("a", 10000) + " HTTP/1.1\r\nHost: localhost\r\n\r\n")},
	{name: "URIUnderLimit", req: []byte("GET /" + strings.Repeat("b", 7900) + " HTTP/1.1\r\nHost: localhost\r\n\r\n")},
	{name: "OversizedHeader", req: []byte("GET / HTTP/1.1\r\nHost: localhost\r\nX-Pad: " + strings.Repeat("p", 16<<10) + "\r\n\r\n")},
	{name: "HTTP12", req: []byte("GET / HTTP/1.2\r\nHost: localhost\r\n\r\n")},
	{name: "HTTP20", req: []byte("GET / HTTP/2.0\r\nHost: localhost\r\n\r\n")},
	{name: "HTTP09Version", req: []byte("GET / HTTP/0.9\r\n\r\n")},
	{name: "HTTP09Simple", req: []byte("GET /\r\n")},
	{name: "BadVersion", req: []byte("GET / HTTX/1.1\r\nHost: localhost\r\n\r\n")},
	{name: "AbsoluteURI", req: []byte("GET http://example.com/x HTTP/1.1\r\nHost: other\r\n\r\n")},
	{name: "DotDotURI", req: []byte("GET /../etc/passwd HTTP/1.1\r\nHost: localhost\r\n\r\n")},
	{name: "QueryURI", req: []byte("GET /?q=1&r=%41 HTTP/1.1\r\nHost: localhost\r\n\r\n")},
	{name: "SpacesInRequestLine", req: []byte("GET  /  HTTP/1.1\r\nHost: localhost\r\n\r\n")},
	{name: "TabAfterMethod", req: []byte("GET\t/ HTTP/1.1\r\nHost: localhost\r\n\r\n")},
	{name: "ChromeUA", req: []byte("GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: " + chromeUA + "\r\n\r\n")},
	{name: "MSIEUA", req: []byte("GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)\r\n\r\n")},
	{name: "ChromeUABadRequest", req: []byte("GET / HTTP/1.1\r\nUser-Agent: " + chromeUA + "\r\n\r\n")},
	{name: "Incomplete", req: []byte("GET / HTTP/1.1\r\nHost: localhost\r\n")},
	{name: "Silent", req: nil},
	{name: "UpgradeRoot", req: []byte(wsUpgrade("/", ""))},
	{name: "UpgradeWrongSecret", req: []byte(wsUpgrade("/wrong-secret/tcp", ""))},
	{name: "UpgradeWrongPath", req: []byte(wsUpgrade("/"+nginxProbeSecret+"/tls", ""))},
	{name: "SecretNotUpgrade", req: []byte("GET /" + nginxProbeSecret + "/tcp HTTP/1.1\r\nHost: localhost\r\n\r\n")},
	{name: "SecretHTTP10", req: []byte("GET /" + nginxProbeSecret + "/tcp HTTP/1.0\r\n\r\n")},
	{name: "SecretNULHeader", req: []byte(wsUpgrade("/"+nginxProbeSecret+"/tcp", "X-A: a\x00b\r\n"))},
	{name: "SecretBareCR", req: []byte(wsUpgrade("/"+nginxProbeSecret+"/tcp", "X-A: a\rb\r\n"))},
	{name: "SecretNoHost", req: []byte("GET /" + nginxProbeSecret + "/tcp HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")},
	{name: "SecretDuplicateHost", req: []byte(wsUpgrade("/"+nginxProbeSecret+"/tcp", "Host: other\r\n"))},
	{name: "SecretLowercaseMethod", req: []byte(strings.Replace(wsUpgrade("/"+nginxProbeSecret+"/tcp", ""), "GET", "get", 1))},
	{name: "SecretHTTP20", req: []byte(strings.Replace(wsUpgrade("/"+nginxProbeSecret+"/tcp", ""), "HTTP/1.1", "HTTP/2.0", 1))},
	{name: "TRACE", req: []byte("TRACE / HTTP/1.1\r\nHost: localhost\r\n\r\n")},
	{name: "CONNECTPath", req: []byte("CONNECT / HTTP/1.1\r\nHost: localhost\r\n\r\n")},
	{name: "BadEscape", req: []byte("GET /%zz HTTP/1.1\r\nHost: localhost\r\n\r\n")},
	{name: "EscapedDotDot", req: []byte("GET /%2e%2e/x HTTP/1.1\r\nHost: localhost\r\n\r\n")},
	{name: "SpaceInURI", req: []byte("GET /a b HTTP/1.1\r\nHost: localhost\r\n\r\n")},
	{name: "DuplicateContentLength", req: []byte("POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nxx")},
	{name: "HTTP10Chunked", req: []byte("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")},
	{name: "CRCRLF", req: []byte("GET / HTTP/1.1\r\nHost: localhost\r\r\n\r\n")},
	{name: "UnderscoreHeader", req: []byte("GET / HTTP/1.1\r\nHost: localhost\r\nX_Y: z\r\n\r\n")},
	{name: "EmptyHost", req: []byte("GET / HTTP/1.1\r\nHost:\r\n\r\n")},
	{name: "RequestLine8192", req: []byte("GET /" + strings.Repeat("c", 8192-len("GET / HTTP/1.1\r\n")) + " HTTP/1.1\r\nHost: localhost\r\n\r\n")},
	{name: "RequestLine8193", req: []byte("GET /" + strings.Repeat("c", 8193-len("GET / HTTP/1.1\r\n")) + " HTTP/1.1\r\nHost: localhost\r\n\r\n")},
	// The control API's routes and the gateways' documents, asked by a
	// stranger: nginx (no such files) answers 404 to all of them.
	{name: "APITokens", req: []byte("GET /v1/tokens HTTP/1.1\r\nHost: localhost\r\n\r\n")},
	{name: "APITokensWrongKey", req: []byte("GET /v1/tokens HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer " + strings.Repeat("k", 48) + "\r\n\r\n")},
	{name: "APICreateToken", req: []byte("POST /v1/tokens HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")},
	{name: "APIDeleteToken", req: []byte("DELETE /v1/tokens/x HTTP/1.1\r\nHost: localhost\r\n\r\n")},
	{name: "APIOptions", req: []byte("OPTIONS /v1/tokens HTTP/1.1\r\nHost: localhost\r\nOrigin: http://evil\r\nAccess-Control-Request-Method: POST\r\n\r\n")},
	{name: "APIHealthz", req: []byte("GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")},
	{name: "APIMetrics", req: []byte("GET /metrics HTTP/1.0\r\n\r\n")},
	{name: "ClientConfigNoToken", req: []byte("GET /v1/client/config HTTP/1.1\r\nHost: localhost\r\n\r\n")},
	{name: "ClientConfigUnknownToken", req: []byte("GET /v1/client/config HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer " + strings.Repeat("A", 43) + "\r\n\r\n")},
	{name: "ClientConfigHEAD", req: []byte("HEAD /v1/client/config HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer " + strings.Repeat("A", 43) + "\r\n\r\n")},
	{name: "ClientConfigPOST", req: []byte("POST /v1/client/config HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabc")},
	{name: "OutlineUnknownSecret", req: []byte("GET /v1/outline/" + strings.Repeat("Q", 43) + " HTTP/1.1\r\nHost: localhost\r\n\r\n")},
	{name: "OutlineUnknownSecretHTTP10", req: []byte("GET /v1/outline/" + strings.Repeat("Q", 43) + " HTTP/1.0\r\nUser-Agent: " + chromeUA + "\r\n\r\n")},
	{name: "OutlineEmptySecret", req: []byte("GET /v1/outline/ HTTP/1.1\r\nHost: localhost\r\n\r\n")},
	{name: "PipelinedRefusals", req: []byte("GET /v1/client/config HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer x\r\n\r\n" +
		"GET /v1/outline/" + strings.Repeat("Q", 43) + " HTTP/1.1\r\nHost: localhost\r\n\r\n" +
		"GET /v1/tokens HTTP/1.1\r\nHost: localhost\r\n\r\nGET /v1/client/config HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")},
	{name: "ACMEChallengeUnknownToken", req: []byte("GET /.well-known/acme-challenge/" + strings.Repeat("t", 43) + " HTTP/1.1\r\nHost: localhost\r\n\r\n")},
	{name: "PlainGETOnTLSPort", req: []byte("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"), tlsPort: true},
	{name: "PlainHEADOnTLSPort", req: []byte("HEAD / HTTP/1.0\r\n\r\n"), tlsPort: true},
	{name: "PlainUpgradeOnTLSPort", req: []byte(wsUpgrade("/"+nginxProbeSecret+"/tcp", "")), tlsPort: true},
	{name: "PlainGarbageOnTLSPort", req: []byte("HELLO\r\n\r\n"), tlsPort: true},
	{name: "PlainNoHostOnTLSPort", req: []byte("GET / HTTP/1.1\r\n\r\n"), tlsPort: true},
	{name: "PlainPipelinedOnTLSPort", req: []byte("GET / HTTP/1.1\r\nHost: localhost\r\n\r\nGET / HTTP/1.1\r\nHost: localhost\r\n\r\n"), tlsPort: true},
}

// nginxServer is a running nginx with a plaintext and a TLS listener that
// answer 404 to every well-formed request, like the decoy.
type nginxServer struct {
	Plain, TLS string // host:port
	Dir        string // prefix: config, pid, error log
}

// nginxConfig answers every request with nginx's own page for a status, with
// server_tokens off (the decoy's default Server header is "nginx").
// Everything nginx writes stays in dir.
const nginxConfig = `daemon off;
master_process off;
worker_processes 1;
error_log %[1]s/error.log info;
pid %[1]s/nginx.pid;
events {
    worker_connections 1024;
}
http {
    access_log off;
    server_tokens off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    server {
        listen 127.0.0.1:%[2]d;
        listen 127.0.0.1:%[3]d ssl;
        ssl_certificate %[4]s;
        ssl_certificate_key %[5]s;
%[7]s
        location / {
            return %[6]d;
        }
    }
}
`

// startNginx runs /usr/sbin/nginx (or nginx on PATH) as the current user
// with its prefix in t.TempDir(), and stops it at test end. It skips the
// test when nginx is not installed.
func startNginx(t testing.TB, cert *testpeer.TestCert) *nginxServer {
	t.Helper()
	return startNginxStatus(t, cert, 404)
}

// startNginxStatus is startNginx with nginx answering "return status;".
func startNginxStatus(t testing.TB, cert *testpeer.TestCert, status int) *nginxServer {
	t.Helper()
	return startNginxConf(t, cert, status, "")
}

// startNginxConf is startNginxStatus with extra directives in the server
// block.
func startNginxConf(t testing.TB, cert *testpeer.TestCert, status int, extra string) *nginxServer {
	t.Helper()
	bin := "/usr/sbin/nginx"
	if _, err := os.Stat(bin); err != nil {
		if bin, err = exec.LookPath("nginx"); err != nil {
			t.Skip("nginx not installed (scripts/deps.sh installs it)")
		}
	}
	dir := t.TempDir()
	plain, err := freeport.TCP()
	if err != nil {
		t.Fatal(err)
	}
	tlsPort, err := freeport.TCP()
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, nginxConfig, dir, plain, tlsPort, cert.PEMFile, cert.KeyFile, status, extra), 0o600); err != nil {
		t.Fatal(err)
	}
	testpeer.StartProc(t, bin, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", conf)
	n := &nginxServer{Plain: net.JoinHostPort("127.0.0.1", strconv.Itoa(plain)), TLS: net.JoinHostPort("127.0.0.1", strconv.Itoa(tlsPort)), Dir: dir}
	for _, a := range []string{n.Plain, n.TLS} {
		if err := testpeer.WaitListening(a, 5*time.Second); err != nil {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx: %v\n%s", err, log)
		}
	}
	return n
}

// probeAnswer is what a server did with one shape.
type probeAnswer struct {
	b      []byte
	closed bool // the server closed (FIN or reset) within the wait
	reset  bool
}

// probeQuiet is how long a connection may stay silent before it counts as
// kept open.
const probeQuiet = 700 * time.Millisecond

// probeQuietBusy is the quiet period of the second try of a probe whose
// answers differed: on a busy machine an answer (a fallback's above all)
// can start later than probeQuiet, and only a real difference survives it.
const probeQuietBusy = 3 * time.Second

// sendShape dials addr (inside TLS when tc is set), writes req and collects
// the answer until the server closes or sends nothing for probeQuiet.
func sendShape(addr string, tc *tls.Config, req []byte) (probeAnswer, error) {
	return sendShapeQuiet(addr, tc, req, probeQuiet)
}

// sendShapeQuiet is sendShape with the given quiet period.
func sendShapeQuiet(addr string, tc *tls.Config, req []byte, quiet time.Duration) (probeAnswer, error) {
	var a probeAnswer
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return a, err
	}
	defer raw.Close()
	c := raw
	if tc != nil {
		tconn := tls.Client(raw, tc)
		tconn.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tconn.Handshake(); err != nil {
			return a, fmt.Errorf("tls handshake: %w", err)
		}
		c = tconn
	}
	if len(req) > 0 {
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(req); err != nil {
			return a, fmt.Errorf("write: %w", err)
		}
	}
	buf := make([]byte, 32<<10)
	end := time.Now().Add(15 * time.Second)
	for time.Now().Before(end) {
		c.SetReadDeadline(time.Now().Add(quiet))
		n, err := c.Read(buf)
		a.b = append(a.b, buf[:n]...)
		if err == nil {
			continue
		}
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			return a, nil
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			a.closed = true
			return a, nil
		case errors.Is(err, syscall.ECONNRESET):
			a.closed, a.reset = true, true
			return a, nil
		default:
			return a, err
		}
	}
	return a, errors.New("still sending after 15 s")
}

var dateRE = regexp.MustCompile(`\r\nDate: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT\r\n`)

// normalizeDate replaces every Date header value (which must be in
// http-date format) by a fixed one.
func normalizeDate(b []byte) []byte {
	return dateRE.ReplaceAll(b, []byte("\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n"))
}

// sameAnswer compares two answers apart from Date and says how they differ.
func sameAnswer(want, got probeAnswer) string {
	w, g := normalizeDate(want.b), normalizeDate(got.b)
	var d []string
	if !bytes.Equal(w, g) {
		d = append(d, fmt.Sprintf("bytes differ:\nnginx: %q\n  got: %q", clip(w), clip(g)))
	}
	if want.closed != got.closed {
		d = append(d, fmt.Sprintf("nginx closed=%v, got closed=%v", want.closed, got.closed))
	}
	return strings.Join(d, "\n")
}

func clip(b []byte) []byte {
	if len(b) > 600 {
		return append(b[:600:600], "…"...)
	}
	return b
}

// compareWithNginx sends every probe shape to nginx and to the gateway
// listeners (plain: the plaintext shapes; tlsGW: the same shapes inside
// TLS; tlsPortGW: the shapes sent in the clear to a TLS port), eight at a
// time, reports each answer that differs from nginx's (Date apart, and
// closed or kept alive alike) also on a second try with probeQuietBusy,
// and returns how many probes matched of how many were sent. An empty
// tlsGW or tlsPortGW leaves those runs out (a plain-HTTP-only server).
func compareWithNginx(t *testing.T, ngx *nginxServer, cert *testpeer.TestCert, plain, tlsGW, tlsPortGW string) (match, total int) {
	t.Helper()
	if len(probeShapes) < 48 {
		t.Fatalf("only %d probe shapes", len(probeShapes))
	}
	type run struct {
		name       string
		shape      probeShape
		ngx, gw    string
		overTLS    bool
		want, got  probeAnswer
		werr, gerr error
	}
	var runs []*run
	for _, s := range probeShapes {
		if s.tlsPort {
			if tlsPortGW != "" {
				runs = append(runs, &run{name: s.name, shape: s, ngx: ngx.TLS, gw: tlsPortGW})
			}
			continue
		}
		runs = append(runs, &run{name: s.name, shape: s, ngx: ngx.Plain, gw: plain})
		if tlsGW != "" {
			runs = append(runs, &run{name: s.name + "/TLS", shape: s, ngx: ngx.TLS, gw: tlsGW, overTLS: true})
		}
	}
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for _, r := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			tc := cert.ClientConfig(0)
			if !r.overTLS {
				tc = nil
			}
			r.want, r.werr = sendShape(r.ngx, tc, r.shape.req)
			r.got, r.gerr = sendShape(r.gw, tc, r.shape.req)
			if r.werr != nil || r.gerr != nil || sameAnswer(r.want, r.got) != "" {
				r.want, r.werr = sendShapeQuiet(r.ngx, tc, r.shape.req, probeQuietBusy)
				r.got, r.gerr = sendShapeQuiet(r.gw, tc, r.shape.req, probeQuietBusy)
			}
		}()
	}
	wg.Wait()
	for _, r := range runs {
		switch d := sameAnswer(r.want, r.got); {
		case r.werr != nil:
			t.Errorf("%s: nginx: %v", r.name, r.werr)
		case r.gerr != nil:
			t.Errorf("%s: gateway: %v", r.name, r.gerr)
		case d != "":
			t.Errorf("%s: %s", r.name, d)
		default:
			match++
		}
	}
	return match, len(runs)
}
