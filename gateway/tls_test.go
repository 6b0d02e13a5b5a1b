package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/httvps/httvps/internal/testpeer"
)

func startTLSGateway(t *testing.T, up string, mod func(*Config)) (*Gateway, *x509.CertPool) {
	cert := testpeer.SelfSignedCert(t)
	g := startGateway(t, up, func(c *Config) {
		c.TLS = &TLSConfig{GetCertificate: cert.GetCertificate}
		if mod != nil {
			mod(c)
		}
	})
	return g, cert.Pool
}

func dialWSS(t *testing.T, g *Gateway, pool *x509.CertPool, path string, maxV uint16) net.Conn {
	t.Helper()
	d := ws.Dialer{Timeout: 5 * time.Second, TLSConfig: &tls.Config{RootCAs: pool, ServerName: "localhost", MaxVersion: maxV}}
	c, br, _, err := d.Dial(context.Background(), "wss://"+g.Addr().String()+path)
	if err != nil {
		t.Fatal(err)
	}
	return testpeer.KeepEarly(c, br)
}

// echoThrough sends n random bytes as binary messages, closes with 1000 and
// checks the echo comes back intact followed by close 1000.
func echoThrough(t *testing.T, c net.Conn, n int) {
	t.Helper()
	data := make([]byte, n)
	rand.Read(data)
	want := sha256.Sum256(data)
	go func() {
		for p := data; len(p) > 0; {
			k := min(len(p), 1+len(p)%40000)
			if err := wsutil.WriteClientBinary(c, p[:k]); err != nil {
				return
			}
			p = p[k:]
		}
		ws.WriteFrame(c, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))))
	}()
	h := sha256.New()
	total := 0
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		hdr, err := ws.ReadHeader(c)
		if err != nil {
			t.Fatalf("after %d bytes: %v", total, err)
		}
		if hdr.OpCode == ws.OpClose {
			body := make([]byte, hdr.Length)
			io.ReadFull(c, body)
			if code, _ := ws.ParseCloseFrameData(body); code != ws.StatusNormalClosure {
				t.Fatalf("close %d", code)
			}
			break
		}
		k, err := io.CopyN(h, c, hdr.Length)
		total += int(k)
		if err != nil {
			t.Fatal(err)
		}
	}
	if total != n || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("got %d of %d bytes, hash ok=%v", total, n, bytes.Equal(h.Sum(nil), want[:]))
	}
}

func TestTLS13EchoHashes(t *testing.T) {
	g, pool := startTLSGateway(t, testpeer.EchoServer(t), nil)
	c := dialWSS(t, g, pool, "/s3cret/tcp", tls.VersionTLS13)
	defer c.Close()
	echoThrough(t, c, 16<<20)
}

func TestTLS12EchoHashes(t *testing.T) {
	g, pool := startTLSGateway(t, testpeer.EchoServer(t), nil)
	c := dialWSS(t, g, pool, "/s3cret/tcp", tls.VersionTLS12)
	defer c.Close()
	echoThrough(t, c, 8<<20)
}

func TestTLSDecoyIsSealed(t *testing.T) {
	g, pool := startTLSGateway(t, testpeer.EchoServer(t), nil)
	get := func(path string) []byte {
		c, err := tls.Dial("tcp", g.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "localhost"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		b, _ := io.ReadAll(c)
		return dropDate(b)
	}
	a, b := get("/"), get("/s3cret/tcp")
	if !bytes.HasPrefix(a, []byte("HTTP/1.1 404 Not Found\r\n")) || !bytes.Equal(a, b) {
		t.Fatalf("decoys: %q / %q", a, b)
	}
}

// TestTLSRecordErrorLoggedOnce: a record the gateway cannot open ends the
// session with EndProtocol, and the record layer's error is logged once, on
// the session's end line, at debug level (nothing at error level).
func TestTLSRecordErrorLoggedOnce(t *testing.T) {
	h := &endLog{}
	g, pool := startTLSGateway(t, testpeer.EchoServer(t), func(c *Config) { c.Logger = slog.New(h) })
	var raw net.Conn
	d := ws.Dialer{
		Timeout:   5 * time.Second,
		TLSConfig: &tls.Config{RootCAs: pool, ServerName: "localhost", MaxVersion: tls.VersionTLS13},
		NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			raw = c
			return c, err
		},
	}
	c, br, _, err := d.Dial(context.Background(), "wss://"+g.Addr().String()+"/s3cret/tcp")
	if err != nil {
		t.Fatal(err)
	}
	c = testpeer.KeepEarly(c, br)
	defer c.Close()
	if err := wsutil.WriteClientBinary(c, []byte("x")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := wsutil.ReadServerBinary(c); err != nil {
		t.Fatal(err)
	}
	// An application-data record whose bytes no key sealed.
	rec := make([]byte, 5+48)
	copy(rec, []byte{23, 3, 3, 0, 48})
	rand.Read(rec[5:])
	if _, err := raw.Write(rec); err != nil {
		t.Fatal(err)
	}
	// The gateway answers with an alert and lingers until the client goes.
	if _, err := wsutil.ReadServerBinary(c); err == nil {
		t.Fatal("a message after a record the gateway cannot open")
	}
	c.Close()
	for deadline := time.Now().Add(5 * time.Second); g.Sessions() != 0; {
		if time.Now().After(deadline) {
			t.Fatalf("the session did not end: %q", h.all)
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.lines) != 1 || h.lines[0]["end"] != "protocol" {
		t.Fatalf("session end lines %v, want one protocol end", h.lines)
	}
	cause := h.lines[0]["err"]
	if cause == "" || cause == "<nil>" {
		t.Fatalf("protocol end without its cause: %v", h.lines)
	}
	seen := 0
	for _, l := range h.all {
		if strings.HasPrefix(l, "ERROR") {
			t.Errorf("logged at error level: %q", l)
		}
		if strings.HasSuffix(l, ": "+cause) {
			seen++
		}
	}
	if seen != 1 {
		t.Errorf("the cause %q logged %d times, want once: %q", cause, seen, h.all)
	}
}
