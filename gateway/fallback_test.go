package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudwego/netpoll"

	"github.com/httvps/httvps/internal/testpeer"
)

// fbMetrics counts what the fallback tests look at; the rest is nopMetrics.
type fbMetrics struct {
	nopMetrics
	rejected [NumRejects]atomic.Int64
	drops    [NumDrops]atomic.Int64
}

func (m *fbMetrics) HandshakeRejected(r Reject) { m.rejected[r].Add(1) }
func (m *fbMetrics) Dropped(d Drop, _ int)      { m.drops[d].Add(1) }

// fallbackWeb starts a real net/http server as the fallback web server:
// "/" is a page, POST /upload answers with the length and SHA-256 of the
// body, GET /big sends bigSize bytes of a fixed stream, everything else is
// net/http's 404. No Date header, so answers compare byte for byte.
func fallbackWeb(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Date"] = nil
		w.Header().Set("Server", "fallback-test")
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, "the operator's home page\n")
	})
	mux.HandleFunc("POST /upload", func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Date"] = nil
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintf(w, "%d %x\n", n, h.Sum(nil))
	})
	mux.HandleFunc("GET /big", func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Date"] = nil
		w.Header().Set("Content-Length", fmt.Sprint(bigSize))
		w.Write(bigStream())
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

const bigSize = 8 << 20

var bigOnce = sync.OnceValue(func() []byte {
	b := make([]byte, bigSize)
	r := rand.NewChaCha8([32]byte{7})
	r.Read(b)
	return b
})

func bigStream() []byte { return bigOnce() }

// recorder is a raw fallback: it reads each connection to its end of
// stream, then answers with the length and SHA-256 of every byte it got
// and closes, so a test sees exactly what arrived and that half-close works.
func recorder(t *testing.T) string {
	t.Helper()
	return testpeer.ListenTCP(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(30 * time.Second))
		h := sha256.New()
		n, _ := io.Copy(h, c)
		fmt.Fprintf(c, "%d %x", n, h.Sum(nil))
	})
}

// fbClient is one side of a probe: a plain TCP or a TLS connection.
type fbClient struct {
	net.Conn
	halfClose func() error
}

func dialFB(t *testing.T, addr string, pool *x509.CertPool) fbClient {
	t.Helper()
	if pool == nil {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return fbClient{c, c.(*net.TCPConn).CloseWrite}
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	return fbClient{c, c.CloseWrite}
}

// probe sends the pieces (50 ms apart, so each is its own read), half-closes
// and returns everything that comes back until the server's end of stream.
func probe(t *testing.T, addr string, pool *x509.CertPool, pieces ...string) []byte {
	t.Helper()
	return probeHC(t, addr, pool, true, pieces...)
}

// probeHC is probe with the half-close optional: the built-in decoy is lost
// to a client that half-closes before it is sent (netpoll closes the
// connection at the client's FIN), so decoy answers are read without one.
func probeHC(t *testing.T, addr string, pool *x509.CertPool, halfClose bool, pieces ...string) []byte {
	t.Helper()
	c := dialFB(t, addr, pool)
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	for i, p := range pieces {
		if i > 0 {
			time.Sleep(50 * time.Millisecond)
		}
		if _, err := io.WriteString(c, p); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	if !halfClose {
	} else if err := c.halfClose(); err != nil {
		t.Fatalf("half-close: %v", err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read after %d bytes: %v", len(b), err)
	}
	return b
}

const wsHeaders = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"

// fallbackProbes are requests that each take a different way to the decoy.
var fallbackProbes = []struct {
	name   string
	pieces []string
}{
	{"get", []string{"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"}},
	{"not-found-close", []string{"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"}},
	{"head", []string{"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"}},
	{"wrong-secret-upgrade", []string{"GET /wrong/tcp HTTP/1.1\r\nHost: x\r\n" + wsHeaders + "\r\n"}},
	{"secret-no-upgrade", []string{"GET /s3cret/tcp HTTP/1.1\r\nHost: x\r\n\r\n"}},
	{"http10", []string{"GET / HTTP/1.0\r\n\r\n"}},
	{"garbage", []string{"\x16\x03\x01\x00\x05hello world"}},
	{"lowercase", []string{"get / HTTP/1.1\r\nHost: x\r\n\r\n"}},
	{"split", []string{"GET / HT", "TP/1.1\r\nHo", "st: x\r\n\r\n"}},
	{"pipelined", []string{"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\nHEAD / HTTP/1.1\r\nHost: x\r\n\r\n"}},
	{"too-large", []string{"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("a", 10000) + "\r\n\r\n"}},
	{"post-body", []string{"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello", " world"}},
}

// TestFallbackAnswersLikeTheWebServer: plaintext and TLS probes through the
// gateway get exactly what the fallback web server answers directly.
func TestFallbackAnswersLikeTheWebServer(t *testing.T) {
	web := fallbackWeb(t)
	m := &fbMetrics{}
	mod := func(c *Config) { c.Fallback = web; c.Metrics = m }
	plain := startGateway(t, testpeer.EchoServer(t), mod)
	tg, pool := startTLSGateway(t, testpeer.EchoServer(t), mod)
	for _, p := range fallbackProbes {
		t.Run(p.name, func(t *testing.T) {
			want := probe(t, web, nil, p.pieces...)
			if len(want) == 0 {
				t.Fatal("the web server itself gave no answer")
			}
			if bytes.Equal(want, plain.decoy) {
				t.Fatal("the web server's answer is the built-in decoy; the test would prove nothing")
			}
			if got := probe(t, plain.Addr().String(), nil, p.pieces...); !bytes.Equal(got, want) {
				t.Errorf("plaintext listener:\n got %q\nwant %q", trim(got), trim(want))
			}
			if got := probe(t, tg.Addr().String(), pool, p.pieces...); !bytes.Equal(got, want) {
				t.Errorf("TLS listener:\n got %q\nwant %q", trim(got), trim(want))
			}
		})
	}
	if n := m.rejected[RejectSecret].Load(); n != 2 {
		t.Errorf("wrong secret counted %d times, want 2 (one per listener)", n)
	}
	waitFallbacks(t, plain, 0)
	waitFallbacks(t, tg, 0)
}

func trim(b []byte) []byte {
	if len(b) > 300 {
		return b[:300]
	}
	return b
}

// waitFallbacks waits until g relays n fallback connections and, for 0,
// until every slot they held is given back.
func waitFallbacks(t *testing.T, g *Gateway, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for g.Fallbacks() != n || (n == 0 && (g.active.Load() != 0 || g.handshakes.Load() != 0)) {
		if time.Now().After(deadline) {
			t.Fatalf("fallbacks %d (want %d), active %d, handshakes %d", g.Fallbacks(), n, g.active.Load(), g.handshakes.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestFallbackCarriesEveryByte: the bytes the gateway read before the
// hand-off (a request split across reads, pipelined requests, the start of
// a large body) and everything after reach the fallback intact, the
// client's half-close reaches it as end of stream, and its answer still
// comes back.
func TestFallbackCarriesEveryByte(t *testing.T) {
	rec := recorder(t)
	mod := func(c *Config) { c.Fallback = rec }
	plain := startGateway(t, testpeer.EchoServer(t), mod)
	tg, pool := startTLSGateway(t, testpeer.EchoServer(t), mod)
	body := make([]byte, 4<<20+123)
	rand.NewChaCha8([32]byte{1}).Read(body)
	head := "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: " + fmt.Sprint(len(body)) + "\r\n\r\n"
	cases := map[string][]string{
		"split":      {"GET / HT", "TP/1.1\r\nHo", "st: x\r\n", "\r\n"},
		"pipelined":  {"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\n\r\n"},
		"garbage":    {"\x00\x01\x02garbage\r\n\r\n", "more garbage"},
		"large-post": {head + string(body[:1000]), string(body[1000:])},
	}
	for name, pieces := range cases {
		all := strings.Join(pieces, "")
		sum := sha256.Sum256([]byte(all))
		want := fmt.Sprintf("%d %x", len(all), sum)
		for _, l := range []struct {
			name string
			addr string
			pool *x509.CertPool
		}{{"plain", plain.Addr().String(), nil}, {"tls", tg.Addr().String(), pool}} {
			t.Run(name+"/"+l.name, func(t *testing.T) {
				if got := string(probe(t, l.addr, l.pool, pieces...)); got != want {
					t.Fatalf("fallback got %q, want %q", got, want)
				}
			})
		}
	}
	// Over TLS an incomplete request followed by close_notify is handed
	// over with its end of stream (the record layer saw it first).
	t.Run("incomplete-close-notify/tls", func(t *testing.T) {
		req := "GET / HTTP/1.1\r\nHost: x\r\n"
		sum := sha256.Sum256([]byte(req))
		if got, want := string(probe(t, tg.Addr().String(), pool, req)), fmt.Sprintf("%d %x", len(req), sum); got != want {
			t.Fatalf("fallback got %q, want %q", got, want)
		}
	})
	waitFallbacks(t, plain, 0)
	waitFallbacks(t, tg, 0)
}

// TestFallbackLargeTransfers hashes a large POST body at the web server and
// a large download at the client, through both listeners.
func TestFallbackLargeTransfers(t *testing.T) {
	web := fallbackWeb(t)
	mod := func(c *Config) { c.Fallback = web }
	plain := startGateway(t, testpeer.EchoServer(t), mod)
	tg, pool := startTLSGateway(t, testpeer.EchoServer(t), mod)
	body := make([]byte, 16<<20)
	rand.NewChaCha8([32]byte{2}).Read(body)
	sum := sha256.Sum256(body)
	wantPost := fmt.Sprintf("%d %x\n", len(body), sum)
	bigSum := sha256.Sum256(bigStream())
	for _, l := range []struct {
		name string
		addr string
		pool *x509.CertPool
	}{{"plain", plain.Addr().String(), nil}, {"tls", tg.Addr().String(), pool}} {
		t.Run(l.name, func(t *testing.T) {
			c := dialFB(t, l.addr, l.pool)
			defer c.Close()
			c.SetDeadline(time.Now().Add(60 * time.Second))
			go func() {
				fmt.Fprintf(c, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", len(body))
				c.Write(body)
				io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			}()
			b, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("read after %d bytes: %v", len(b), err)
			}
			first, rest, ok := bytes.Cut(b, []byte("\r\n\r\n"))
			if !ok || !bytes.HasPrefix(first, []byte("HTTP/1.1 200 OK")) {
				t.Fatalf("first answer %q", trim(b))
			}
			if !bytes.HasPrefix(rest, []byte(wantPost)) {
				t.Fatalf("upload: web server saw %q, want %q", trim(rest), wantPost)
			}
			_, big, ok := bytes.Cut(rest[len(wantPost):], []byte("\r\n\r\n"))
			if got := sha256.Sum256(big); !ok || len(big) != bigSize || got != bigSum {
				t.Fatalf("download: %d bytes, want %d, hash ok %v", len(big), bigSize, got == bigSum)
			}
		})
	}
}

// normDate blanks the value of a Date header, the one part of two answers
// given at different moments that may differ.
func normDate(b []byte) []byte {
	return dateRE.ReplaceAll(b, []byte("\r\nDate: -\r\n"))
}

var dateRE = regexp.MustCompile(`\r\nDate: [^\r\n]*\r\n`)

// decoyReq asks for a close, so that a decoy answer ends the connection
// however the decoy treats keep-alive.
const decoyReq = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

// TestFallbackDeadGivesDecoy: a fallback that cannot be reached means the
// built-in decoy (what a gateway without Fallback answers), counted.
func TestFallbackDeadGivesDecoy(t *testing.T) {
	m := &fbMetrics{}
	mod := func(c *Config) { c.Fallback = testpeer.DeadAddr(t); c.Metrics = m }
	plain := startGateway(t, testpeer.EchoServer(t), mod)
	tg, pool := startTLSGateway(t, testpeer.EchoServer(t), mod)
	refPlain := startGateway(t, testpeer.EchoServer(t), nil)
	refTLS, refPool := startTLSGateway(t, testpeer.EchoServer(t), nil)
	want := normDate(probeHC(t, refPlain.Addr().String(), nil, false, decoyReq))
	if !bytes.Contains(want, []byte(" 404 ")) {
		t.Fatalf("reference decoy %q", trim(want))
	}
	if got := normDate(probeHC(t, plain.Addr().String(), nil, false, decoyReq)); !bytes.Equal(got, want) {
		t.Fatalf("plaintext: got %q, want the decoy %q", trim(got), trim(want))
	}
	want = normDate(probeHC(t, refTLS.Addr().String(), refPool, false, decoyReq))
	if got := normDate(probeHC(t, tg.Addr().String(), pool, false, decoyReq)); !bytes.Equal(got, want) {
		t.Fatalf("TLS: got %q, want the decoy %q", trim(got), trim(want))
	}
	if n, r := m.drops[DropFallbackDial].Load(), m.rejected[RejectPath].Load(); n != 2 || r != 2 {
		t.Fatalf("fallback_dial %d, path rejects %d; want 2 and 2", n, r)
	}
	waitFallbacks(t, plain, 0)
	waitFallbacks(t, tg, 0)
}

// holder is a fallback that keeps every connection open, reading, until the
// client's end of stream; it counts connections.
func holder(t *testing.T) (string, *atomic.Int64) {
	var n atomic.Int64
	return testpeer.ListenTCP(t, func(c *net.TCPConn) {
		n.Add(1)
		c.SetDeadline(time.Now().Add(30 * time.Second))
		io.Copy(io.Discard, c)
	}), &n
}

// TestFallbackCapAndSessionBeside: at MaxFallbacks the next connection gets
// the decoy; a slot given back is used again; a session works meanwhile;
// Shutdown ends fallback connections.
func TestFallbackCapAndSessionBeside(t *testing.T) {
	addr, accepted := holder(t)
	m := &fbMetrics{}
	g := startGateway(t, testpeer.EchoServer(t), func(c *Config) { c.Fallback = addr; c.MaxFallbacks = 2; c.Metrics = m })
	open := func() net.Conn {
		c, err := net.Dial("tcp", g.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		return c
	}
	a, b := open(), open()
	defer a.Close()
	defer b.Close()
	waitFallbacks(t, g, 2)
	ref := startGateway(t, testpeer.EchoServer(t), nil)
	want := normDate(probeHC(t, ref.Addr().String(), nil, false, decoyReq))
	if got := normDate(probeHC(t, g.Addr().String(), nil, false, decoyReq)); !bytes.Equal(got, want) {
		t.Fatalf("past the cap: got %q, want the decoy %q", trim(got), trim(want))
	}
	if n := m.drops[DropFallbackBusy].Load(); n != 1 {
		t.Fatalf("fallback_busy %d, want 1", n)
	}
	if g.Fallbacks() != 2 {
		t.Fatalf("fallbacks %d, want 2", g.Fallbacks())
	}

	ws := dialWS(t, g, "/s3cret/tcp")
	echoThrough(t, ws, 1<<20)
	ws.Close()

	a.Close()
	waitFallbacks(t, g, 1)
	c := open()
	defer c.Close()
	waitFallbacks(t, g, 2)
	for accepted.Load() != 3 {
		time.Sleep(5 * time.Millisecond)
	}

	start := time.Now()
	g.Shutdown(t.Context())
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("after Shutdown the fallback connection did not end: %v", err)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("Shutdown took %v", d)
	}
	if g.Fallbacks() != 0 {
		t.Fatalf("fallbacks %d after Shutdown", g.Fallbacks())
	}
}

// TestFallbackIdleTimeout: a fallback connection where neither side sends
// is closed after FallbackIdleTimeout, and its slots are given back.
func TestFallbackIdleTimeout(t *testing.T) {
	addr, _ := holder(t)
	for _, tlsOn := range []bool{false, true} {
		t.Run(fmt.Sprint("tls=", tlsOn), func(t *testing.T) {
			mod := func(c *Config) { c.Fallback = addr; c.FallbackIdleTimeout = 300 * time.Millisecond }
			var g *Gateway
			var pool *x509.CertPool
			if tlsOn {
				g, pool = startTLSGateway(t, testpeer.EchoServer(t), mod)
			} else {
				g = startGateway(t, testpeer.EchoServer(t), mod)
			}
			c := dialFB(t, g.Addr().String(), pool)
			defer c.Close()
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			waitFallbacks(t, g, 1)
			start := time.Now()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			io.ReadAll(c)
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("idle connection lasted %v", d)
			}
			waitFallbacks(t, g, 0)
		})
	}
}

// TestFallbackQuiesceFindsNetpollState: quiesce relies on netpoll v0.7.2's
// internals; a netpoll upgrade that moves them fails here, not silently in
// production.
func TestFallbackQuiesceFindsNetpollState(t *testing.T) {
	got := make(chan bool, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nl, err := netpoll.ConvertListener(ln)
	if err != nil {
		t.Fatal(err)
	}
	el, err := netpoll.NewEventLoop(func(ctx context.Context, c netpoll.Connection) error {
		p := operatorState(c)
		ok := p != nil && atomic.LoadInt32(p) != 0 && quiesce(c) && atomic.LoadInt32(p) == 0
		select {
		case got <- ok:
		default:
		}
		c.Reader().Skip(c.Reader().Len())
		return c.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
	go el.Serve(nl)
	defer el.Shutdown(context.Background())
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("x"))
	select {
	case ok := <-got:
		if !ok {
			t.Fatal("quiesce cannot reach netpoll's operator state")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no request")
	}
}
