package e2e

// Helpers of the native-path tests (native_*_test.go): the real `httvps`
// binary built once, `httvps connect` run as a process with an httvps://
// key, curl through its SOCKS5 and HTTP proxy, and a SOCKS5 UDP ASSOCIATE
// client.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/httvps/httvps/internal/testpeer"
)

// TestMain removes the binaries built for the run.
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	if gatewayBuild.path != "" {
		os.RemoveAll(filepath.Dir(gatewayBuild.path))
	}
	os.Exit(code)
}

var (
	binDir   string
	binOnce  sync.Once
	binErr   error
	httvpsAt string
)

// httvpsBin builds cmd/httvps once per run and returns its path.
func httvpsBin(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "httvps-e2e-bin-"); binErr != nil {
			return
		}
		httvpsAt = filepath.Join(binDir, "httvps")
		if out, err := exec.Command("go", "build", "-o", httvpsAt, "../cmd/httvps").CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build ../cmd/httvps: %w\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return httvpsAt
}

// nativeKey is an httvps:// key: the token, the gateways in order (the first
// one in the authority), the Shadowsocks settings, and tls=0 or the pin.
type nativeKey struct {
	token, cipher, secret string
	gateways              []string
	pin                   []byte // nil: tls=0
	control               string // "": none
}

func (k nativeKey) String() string {
	q := []string{"cipher=" + url.QueryEscape(k.cipher), "secret=" + url.QueryEscape(k.secret)}
	for _, g := range k.gateways[1:] {
		q = append(q, "gw="+url.QueryEscape(g))
	}
	if k.pin == nil {
		q = append(q, "tls=0")
	} else {
		q = append(q, "pin="+hex.EncodeToString(k.pin))
	}
	if k.control != "" {
		q = append(q, "control="+url.QueryEscape(k.control))
	}
	return "httvps://" + url.User(k.token).String() + "@" + k.gateways[0] + "/?" + strings.Join(q, "&") + "#e2e"
}

func certPin(c *testpeer.TestCert) []byte {
	s := sha256.Sum256(c.Cert.Certificate[0])
	return s[:]
}

// connectProc is `httvps connect` running as its own process.
type connectProc struct {
	*testpeer.Proc
	listen string
}

// startNativeConnect runs `httvps connect` (the native transport, the
// default) with key on a free loopback port and waits for its listener.
func startNativeConnect(t *testing.T, key nativeKey, extra ...string) *connectProc {
	t.Helper()
	bin := httvpsBin(t)
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(testpeer.FreePort(t)))
	args := append([]string{"connect", "-listen", listen, "-refresh", "-1s"}, extra...)
	if !slices.Contains(extra, "-data-dir") {
		// The device id goes to the test's directory, never the home one.
		args = append(args, "-data-dir", t.TempDir())
	}
	p := testpeer.StartProc(t, bin, append(args, key.String())...)
	c := &connectProc{Proc: p, listen: listen}
	deadline := time.Now().Add(waitFor)
	for testpeer.WaitListening(listen, 200*time.Millisecond) != nil {
		select {
		case <-p.Exited():
			t.Fatalf("httvps connect exited:\n%s", p.Output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("httvps connect not listening on %s:\n%s", listen, p.Output())
		}
	}
	return c
}

// curlVia runs curl with proxy (curl's proxy flags, e.g. --socks5-hostname
// addr or -x http://addr) and returns the SHA-256 and length of its output.
func curlVia(ctx context.Context, proxy []string, args ...string) (string, int64, error) {
	args = append(append([]string{"-sS", "--fail", "--max-time", "90", "-H", "Expect:"}, proxy...), args...)
	cmd := exec.CommandContext(ctx, "curl", args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", 0, err
	}
	if err := cmd.Start(); err != nil {
		return "", 0, err
	}
	h := sha256.New()
	n, copyErr := io.CopyBuffer(h, out, make([]byte, 256<<10))
	if err := cmd.Wait(); err != nil {
		return "", n, fmt.Errorf("curl %v: %w: %s", args, err, stderr.String())
	}
	if copyErr != nil {
		return "", n, copyErr
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

func socksProxy(c *connectProc) []string { return []string{"--socks5-hostname", c.listen} }
func httpProxy(c *connectProc) []string  { return []string{"-x", "http://" + c.listen} }

// curlDown fetches n bytes of seed from origin through proxy and checks
// length and hash.
func curlDown(ctx context.Context, proxy []string, origin *testpeer.Origin, n int64, seed uint64) error {
	got, k, err := curlVia(ctx, proxy, origin.URL(fmt.Sprintf("/bytes/%d?seed=%d", n, seed)))
	if err != nil {
		return err
	}
	if want := testpeer.PseudoRandomSHA256(n, seed); k != n || got != want {
		return fmt.Errorf("download: %d bytes sha256 %s, want %d %s", k, got, n, want)
	}
	return nil
}

// upload is a file of PseudoRandom(n, seed) for curl --data-binary.
type upload struct {
	path string
	n    int64
	sum  string
}

func makeUpload(t *testing.T, n int64, seed uint64) upload {
	t.Helper()
	path := filepath.Join(t.TempDir(), "upload.bin")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyBuffer(f, testpeer.PseudoRandom(n, seed), make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return upload{path: path, n: n, sum: testpeer.PseudoRandomSHA256(n, seed)}
}

// curlUp posts u to the origin through proxy and checks the origin's
// answer (its hash and length of the body it got).
func curlUp(ctx context.Context, proxy []string, origin *testpeer.Origin, u upload) error {
	args := append(append([]string{"-sS", "--fail", "--max-time", "60", "-H", "Expect:"}, proxy...),
		"--data-binary", "@"+u.path, "-H", "Content-Type: application/octet-stream", origin.URL("/upload"))
	out, err := exec.CommandContext(ctx, "curl", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("curl upload: %w: %s", err, out)
	}
	sum, n, err := testpeer.ParseUploadAnswer(string(out))
	if err != nil {
		return err
	}
	if n != u.n || sum != u.sum {
		return fmt.Errorf("upload: origin got %d bytes sha256 %s, want %d %s", n, sum, u.n, u.sum)
	}
	return nil
}

// socksUDP is a SOCKS5 UDP ASSOCIATE (RFC 1928 §7): the TCP control
// connection and the local UDP socket that talks to the proxy's relay.
type socksUDP struct {
	ctl   net.Conn
	pc    *net.UDPConn
	relay *net.UDPAddr
}

func associate(t *testing.T, proxy string) *socksUDP {
	t.Helper()
	ctl, err := net.DialTimeout("tcp", proxy, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctl.Close() })
	ctl.SetDeadline(time.Now().Add(waitFor))
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	la := pc.LocalAddr().(*net.UDPAddr)
	req := []byte{5, 1, 0, 5, 3, 0, 1, 127, 0, 0, 1, byte(la.Port >> 8), byte(la.Port)}
	if _, err := ctl.Write(req); err != nil {
		t.Fatal(err)
	}
	var hello [2]byte
	if _, err := io.ReadFull(ctl, hello[:]); err != nil || hello != [2]byte{5, 0} {
		t.Fatalf("socks greeting answer %v %v", hello, err)
	}
	var rep [4]byte
	if _, err := io.ReadFull(ctl, rep[:]); err != nil || rep[0] != 5 || rep[1] != 0 {
		t.Fatalf("UDP ASSOCIATE reply %v %v", rep, err)
	}
	var ip net.IP
	switch rep[3] {
	case 1:
		ip = make(net.IP, 4)
	case 4:
		ip = make(net.IP, 16)
	default:
		t.Fatalf("UDP ASSOCIATE reply address type %d", rep[3])
	}
	var port [2]byte
	if _, err := io.ReadFull(ctl, ip); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(ctl, port[:]); err != nil {
		t.Fatal(err)
	}
	if ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return &socksUDP{ctl: ctl, pc: pc, relay: &net.UDPAddr{IP: ip, Port: int(binary.BigEndian.Uint16(port[:]))}}
}

// echo sends payload to target (an IPv4 host:port) through the relay,
// resending until the echo comes back (UDP may drop), and checks it.
func (s *socksUDP) echo(target string, payload []byte) error {
	ap, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		return err
	}
	hdr := []byte{0, 0, 0, 1}
	hdr = append(hdr, ap.IP.To4()...)
	hdr = binary.BigEndian.AppendUint16(hdr, uint16(ap.Port))
	pkt := append(hdr, payload...)
	buf := make([]byte, 65536)
	deadline := time.Now().Add(waitFor)
	for time.Now().Before(deadline) {
		if _, err := s.pc.WriteToUDP(pkt, s.relay); err != nil {
			return err
		}
		s.pc.SetReadDeadline(time.Now().Add(time.Second))
		for {
			n, _, err := s.pc.ReadFromUDP(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break // resend
				}
				return err
			}
			if n >= len(hdr) && bytes.Equal(buf[:len(hdr)], hdr) {
				if !bytes.Equal(buf[len(hdr):n], payload) {
					return fmt.Errorf("echo of %d bytes differs (%d back)", len(payload), n-len(hdr))
				}
				return nil
			}
		}
	}
	return fmt.Errorf("no echo of %d bytes within %v", len(payload), waitFor)
}

// needNativePeers skips unless the real peers are installed.
func needNativePeers(t *testing.T, bins ...string) {
	t.Helper()
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed", b)
		}
	}
}
