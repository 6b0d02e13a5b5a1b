package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/httvps/httvps/gateway"
	"github.com/httvps/httvps/internal/testpeer"
)

// TestTLSGoClientEcho: crypto/tls through gobwas ws.Dialer (wss://) carries
// an echo of 8 MiB in messages of mixed sizes, hash-checked, ending with
// close 1000 both ways.
func TestTLSGoClientEcho(t *testing.T) {
	const secret = "tls-go-echo"
	m := &countMetrics{}
	_, gw, cert := startTLSGateway(t, gateway.Config{Metrics: m}, map[string]string{secret: testpeer.EchoServer(t)})
	c := dialWSS(t, gw, cert, secret, tls.VersionTLS13)
	sizes := []int{1, 2, 125, 126, 65535, 65536, 16384, 16383, 100000, 7}
	if err := echoCheck(c, 8<<20+13, 1, func(i int) int { return sizes[i%len(sizes)] }, nil); err != nil {
		t.Fatal(err)
	}
	waitEnd(t, m, gateway.EndNormal)
}

// TestTLSCurlDecoy: curl over TLS gets the same decoy bytes as a plaintext
// client gets from a plaintext gateway; with the certificate trusted for
// localhost, too.
func TestTLSCurlDecoy(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	up := testpeer.EchoServer(t)
	_, plainGW := startGateway(t, gateway.Config{}, map[string]string{"curl-secret": up})
	ref, err := sendShape(plainGW, nil, []byte("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := dropHeader(ref.b, "Date")
	_, gw, cert := startTLSGateway(t, gateway.Config{}, map[string]string{"curl-secret": up})
	port := gw[strings.LastIndexByte(gw, ':')+1:]
	runs := [][]string{
		{"-k", "https://" + gw + "/"},
		{"-k", "https://" + gw + "/curl-secret/tcp"},
		{"--cacert", cert.PEMFile, "--resolve", "localhost:" + port + ":127.0.0.1", "https://localhost:" + port + "/"},
		{"-k", "--tlsv1.2", "--tls-max", "1.2", "https://" + gw + "/"},
	}
	for _, args := range runs {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		out, err := exec.CommandContext(ctx, "curl", append([]string{"-sS", "-i", "--http1.1", "--max-time", "10"}, args...)...).CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("curl %v: %v: %s", args, err, out)
			continue
		}
		if out = dropHeader(out, "Date"); !bytes.Equal(out, want) {
			t.Errorf("curl %v:\n%q\nwant the plaintext decoy\n%q", args, out, want)
		}
	}
}

// TestTLSV2RayPluginShadowsocks: stock ss-local + ss-v2ray-plugin in tls
// mode (trusting the gateway's self-signed certificate through the plugin's
// cert option) → TLS gateway → ss-server → origin: three 16 MiB downloads
// and an 8 MiB upload, hash-checked.
func TestTLSV2RayPluginShadowsocks(t *testing.T) {
	origin := testpeer.StartOrigin(t)
	ss := testpeer.SSServer(t, testpeer.DefaultPassword, testpeer.DefaultMethod)
	const secret = "tls-v2ray-secret"
	m := &countMetrics{}
	_, gw, cert := startTLSGateway(t, gateway.Config{Metrics: m}, map[string]string{secret: ss})
	socks := testpeer.SSLocalWithOpts(t, gw, testpeer.DefaultPassword, testpeer.DefaultMethod,
		testpeer.V2RayPluginTLSOpts(secret, cert.PEMFile))
	if err := testpeer.WaitSOCKSReady(socks, origin, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Three downloads: the gateway + v2ray-plugin close sequence has lost the
	// tail of a download in about one run of three (plaintext too).
	const down = 16<<20 + 5
	for i := range 3 {
		c, err := testpeer.SOCKS5Dial(ctx, socks, origin.Addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(60 * time.Second))
		sum, n, err := testpeer.HTTPGetSHA256(c, origin.Addr, fmt.Sprintf("/bytes/%d?seed=%d", down, 31+i))
		c.Close()
		if err != nil {
			t.Fatalf("download %d: %v after %d of %d bytes (gateway session ends:%s)", i, err, n, down, m.endsString())
		}
		if want := testpeer.PseudoRandomSHA256(down, uint64(31+i)); n != down || sum != want {
			t.Fatalf("download %d: %d bytes %s, want %d %s", i, n, sum, down, want)
		}
	}

	const up = 8<<20 + 3
	c, err := testpeer.SOCKS5Dial(ctx, socks, origin.Addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	sum, n, err := testpeer.HTTPPostSHA256(c, origin.Addr, testpeer.PseudoRandom(up, 32), up)
	c.Close()
	if err != nil {
		t.Fatalf("upload: %v (gateway session ends:%s)", err, m.endsString())
	}
	if want := testpeer.PseudoRandomSHA256(up, 32); n != up || sum != want {
		t.Fatalf("upload: origin got %d bytes %s, want %d %s", n, sum, up, want)
	}
	if m.handshakeOK.Load() < 3 {
		t.Errorf("gateway counted %d upgrades, want ≥ 3", m.handshakeOK.Load())
	}
}

// sClient is `openssl s_client` in interactive mode, fed through its stdin
// (where a read starting with K or k is a KeyUpdate command), its stdout
// read by the test and its stderr collected.
type sClient struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout io.Reader
	stderr *lockedText
}

type lockedText struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedText) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedText) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *lockedText) waitFor(s string, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for strings.Count(l.String(), s) < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("no %d× %q after %v", n, s, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

func startSClient(t *testing.T, gw string, extra ...string) *sClient {
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	// -quiet keeps the session summary off stdout (our byte stream); it
	// implies -ign_eof, which turns off the K/k commands, so -no_ign_eof
	// must come after it.
	args := append([]string{"s_client", "-connect", gw, "-servername", "localhost", "-tls1_3", "-quiet", "-no_ign_eof"}, extra...)
	cmd := exec.Command(bin, args...)
	s := &sClient{cmd: cmd, stderr: &lockedText{}}
	cmd.Stderr = s.stderr
	if s.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.stdout = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("s_client stderr:\n%s", s.stderr.String())
		}
	})
	return s
}

// commandFree reports whether b may begin a read of s_client's stdin
// without being taken for a command (Q quit, R renegotiate, K/k KeyUpdate).
func commandFree(b byte) bool { return b != 'Q' && b != 'R' && b != 'K' && b != 'k' }

// sClientFrame builds a masked binary frame of n payload bytes in which no
// byte on the wire is a command letter, since any byte may start one of
// s_client's stdin reads. It returns the frame and its payload.
func sClientFrame(n int) (frame, payload []byte) {
	pick := func() byte {
		var b [1]byte
		for {
			rand.Read(b[:])
			if commandFree(b[0]) {
				return b[0]
			}
		}
	}
	var mask [4]byte
	for i := range mask {
		mask[i] = pick()
	}
	frame = []byte{0x82}
	switch {
	case n < 126:
		frame = append(frame, 0x80|byte(n))
	default:
		frame = append(frame, 0x80|126, byte(n>>8), byte(n))
	}
	for _, b := range frame {
		if !commandFree(b) {
			panic("frame length byte is a command letter")
		}
	}
	frame = append(frame, mask[:]...)
	payload = make([]byte, n)
	for i := range payload {
		w := pick()
		payload[i] = w ^ mask[i%4]
		frame = append(frame, w)
	}
	return frame, payload
}

// TestTLSOpenSSLWebSocket: openssl s_client (TLS 1.3, each suite) does the
// WebSocket upgrade by hand and exchanges masked frames with an echo
// upstream; mid-stream it sends KeyUpdate with update_requested ("K") and
// later without ("k"); the data before and after each is hash-checked, and
// stdin EOF (close_notify from s_client) after close 1000 ends the session
// cleanly.
func TestTLSOpenSSLWebSocket(t *testing.T) {
	const secret = "tls-openssl-ws"
	m := &countMetrics{}
	g, gw, _ := startTLSGateway(t, gateway.Config{Metrics: m}, map[string]string{secret: testpeer.EchoServer(t)})
	for _, suite := range []uint16{tls.TLS_AES_128_GCM_SHA256, tls.TLS_AES_256_GCM_SHA384, tls.TLS_CHACHA20_POLY1305_SHA256} {
		t.Run(tls.CipherSuiteName(suite), func(t *testing.T) {
			testOpenSSLWebSocket(t, gw, secret, suite)
			waitSessions(t, g, 0)
		})
	}
	if n := m.ends[gateway.EndNormal].Load(); n != 3 {
		t.Errorf("session ends:%s, want normal=3", m.endsString())
	}
}

func testOpenSSLWebSocket(t *testing.T, gw, secret string, suite uint16) {
	s := startSClient(t, gw, "-ciphersuites", tls.CipherSuiteName(suite))
	var key [16]byte
	rand.Read(key[:])
	k := base64.StdEncoding.EncodeToString(key[:])
	req := "GET /" + secret + "/tcp HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + k + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(s.stdin, req); err != nil {
		t.Fatal(err)
	}
	acc := sha1.Sum([]byte(k + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	wantAccept := "Sec-WebSocket-Accept: " + base64.StdEncoding.EncodeToString(acc[:]) + "\r\n"

	var mu sync.Mutex // guards what the reader found
	var got int64
	var readErr error
	var closeCode ws.StatusCode
	h := sha256.New()
	done := make(chan struct{})
	upgraded := make(chan struct{})
	go func() {
		defer close(done)
		fail := func(err error) {
			mu.Lock()
			readErr = err
			mu.Unlock()
		}
		// The 101 byte by byte, so no frame byte is taken with it.
		var resp []byte
		var b [1]byte
		for !bytes.HasSuffix(resp, []byte("\r\n\r\n")) {
			if _, err := io.ReadFull(s.stdout, b[:]); err != nil || len(resp) > 4096 {
				fail(fmt.Errorf("reading the 101: %v after %q", err, resp))
				return
			}
			resp = append(resp, b[0])
		}
		if !bytes.HasPrefix(resp, []byte("HTTP/1.1 101 ")) || !bytes.Contains(resp, []byte(wantAccept)) {
			fail(fmt.Errorf("upgrade answer %q", resp))
			return
		}
		close(upgraded) // RFC 6455 §4.1: no frame before the 101
		for {
			hd, err := ws.ReadHeader(s.stdout)
			if err != nil {
				fail(fmt.Errorf("frame header: %w", err))
				return
			}
			if hd.Masked || hd.Length > 1<<20 {
				fail(fmt.Errorf("bad server frame %+v", hd))
				return
			}
			p := make([]byte, hd.Length)
			if _, err := io.ReadFull(s.stdout, p); err != nil {
				fail(fmt.Errorf("frame payload: %w", err))
				return
			}
			mu.Lock()
			if hd.OpCode == ws.OpClose {
				closeCode, _ = ws.ParseCloseFrameData(p)
				mu.Unlock()
				return
			}
			h.Write(p)
			got += int64(len(p))
			mu.Unlock()
		}
	}()
	want := sha256.New()
	var sent int64
	// waitEcho waits until everything sent came back: s_client has then
	// read all of its stdin, so the next write starts a read of its own.
	waitEcho := func() {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			mu.Lock()
			g, err := got, readErr
			mu.Unlock()
			if err != nil {
				t.Fatal(err)
			}
			if g == sent {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("echo: %d of %d bytes after 20 s", g, sent)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	sendData := func(n int) {
		t.Helper()
		var buf []byte
		for n > 0 {
			k := min(n, 1+int(sent*7919%4000))
			f, p := sClientFrame(k)
			buf = append(buf, f...)
			want.Write(p)
			sent += int64(k)
			n -= k
			if len(buf) > 32<<10 || n == 0 {
				if _, err := s.stdin.Write(buf); err != nil {
					t.Fatal(err)
				}
				buf = buf[:0]
			}
		}
		waitEcho()
	}
	command := func(c string, n int) {
		t.Helper()
		if _, err := io.WriteString(s.stdin, c+"\n"); err != nil {
			t.Fatal(err)
		}
		if err := s.stderr.waitFor("KEYUPDATE", n, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-upgraded:
	case <-done:
		t.Fatal(readErr)
	case <-time.After(10 * time.Second):
		t.Fatal("no 101 after 10 s")
	}
	sendData(300 << 10)
	command("K", 1) // KeyUpdate, update_requested: the gateway answers with its own
	sendData(300 << 10)
	command("k", 2) // KeyUpdate, update_not_requested
	sendData(300 << 10)
	command("K", 3)
	sendData(1000)

	// close 1000, masked with command-free bytes.
	for {
		var mask [4]byte
		rand.Read(mask[:])
		body := []byte{0x03, 0xe8}
		f := append([]byte{0x88, 0x82}, mask[:]...)
		f = append(f, body[0]^mask[0], body[1]^mask[1])
		ok := true
		for _, b := range f {
			ok = ok && commandFree(b)
		}
		if ok {
			if _, err := s.stdin.Write(f); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("no close frame from the gateway")
	}
	mu.Lock()
	defer mu.Unlock()
	if readErr != nil {
		t.Fatal(readErr)
	}
	if got != sent || !bytes.Equal(h.Sum(nil), want.Sum(nil)) {
		t.Fatalf("echo: %d of %d bytes, hash match %v", got, sent, bytes.Equal(h.Sum(nil), want.Sum(nil)))
	}
	if closeCode != ws.StatusNormalClosure {
		t.Fatalf("close code %d", closeCode)
	}
	s.stdin.Close() // s_client sends close_notify (if still connected) and exits
	exited := make(chan error, 1)
	go func() { exited <- s.cmd.Wait() }()
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("s_client still running 5 s after stdin EOF")
	}
	if strings.Contains(s.stderr.String(), "alert") {
		t.Errorf("s_client reported an alert:\n%s", s.stderr.String())
	}
}
