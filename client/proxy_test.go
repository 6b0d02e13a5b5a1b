package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/httvps/httvps/internal/testpeer"
)

// curlSHA256 runs curl with args and returns the hex SHA-256 of what it
// wrote to stdout and how many bytes that was.
func curlSHA256(t *testing.T, args ...string) (string, int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "curl", append([]string{"-sS", "--fail", "--max-time", "80"}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, _ := io.Copy(h, out)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("curl %v: %v: %s", args, err, stderr.String())
	}
	return hex.EncodeToString(h.Sum(nil)), n
}

// curl through the proxy front to a local origin, over a real ss-server:
// SOCKS5 with the name resolved remotely, the HTTP proxy with an
// absolute URI, and the HTTP proxy's CONNECT; 64 MiB each way hashed.
func TestCurlThroughProxyDirect(t *testing.T) {
	srv := testpeer.SSServer(t, testPassword, "chacha20-ietf-poly1305")
	s, err := NewShadowsocks(NewDirect(srv), "chacha20-ietf-poly1305", testPassword)
	if err != nil {
		t.Fatal(err)
	}
	curlThroughProxy(t, s, 64<<20)
}

func curlThroughProxy(t *testing.T, d Dialer, n int64) {
	t.Helper()
	origin := testpeer.StartOrigin(t)
	proxy := startProxy(t, d, "", "")
	url := origin.URL(fmt.Sprintf("/bytes/%d?seed=7", n))
	want := testpeer.PseudoRandomSHA256(n, 7)
	for _, c := range []struct {
		name string
		args []string
	}{
		{"socks5-hostname", []string{"--socks5-hostname", proxy, url}},
		{"http absolute-uri", []string{"-x", "http://" + proxy, url}},
		{"http connect", []string{"-p", "-x", "http://" + proxy, url}},
	} {
		t.Run(c.name, func(t *testing.T) {
			sum, got := curlSHA256(t, c.args...)
			if got != n || sum != want {
				t.Fatalf("download: %d bytes sha256 %s, want %d bytes %s", got, sum, n, want)
			}
			// The upload goes the other way: the origin answers the hash.
			body := testpeer.PseudoRandom(n, 8)
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "curl", append([]string{"-sS", "--fail", "--max-time", "80", "--data-binary", "@-",
				"-H", "Content-Type: application/octet-stream"}, c.args[:len(c.args)-1]...)...)
			cmd.Args = append(cmd.Args, origin.URL("/upload"))
			cmd.Stdin = body
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("upload: %v: %s", err, out)
			}
			sumUp, nUp, err := testpeer.ParseUploadAnswer(string(out))
			if err != nil || nUp != n || sumUp != testpeer.PseudoRandomSHA256(n, 8) {
				t.Fatalf("upload: origin saw %d bytes %s (%v), want %d", nUp, sumUp, err, n)
			}
		})
	}
}

// socksConnect opens a SOCKS5 CONNECT by hand and returns the reply code.
func socksConnect(t *testing.T, proxy string, greeting, request []byte) (net.Conn, byte) {
	t.Helper()
	c, err := net.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	c.Write(greeting)
	var rep [2]byte
	if _, err := io.ReadFull(c, rep[:]); err != nil {
		t.Fatalf("method reply: %v", err)
	}
	if rep[1] == 0xff {
		return c, 0xff
	}
	c.Write(request)
	var r [10]byte
	if _, err := io.ReadFull(c, r[:]); err != nil {
		t.Fatalf("reply: %v", err)
	}
	return c, r[1]
}

func connectReq(addr string) []byte {
	a, _ := testpeer.EncodeSOCKSAddr(addr)
	return append([]byte{5, 1, 0}, a...)
}

// A client's half-close travels through the Shadowsocks stream: the echo
// target sees EOF, answers everything and ends its side, and the client
// then reads EOF — with the other direction open until then.
func TestSOCKSHalfClose(t *testing.T) {
	srv := goSSServer(t, "aes-128-gcm", testPassword, nil)
	s, _ := NewShadowsocks(NewDirect(srv), "aes-128-gcm", testPassword)
	proxy := startProxy(t, s, "", "")
	echo := testpeer.EchoServer(t)
	c, code := socksConnect(t, proxy, []byte{5, 1, 0}, connectReq(echo))
	defer c.Close()
	if code != repSucceeded {
		t.Fatalf("reply %d", code)
	}
	const n = 1<<20 + 5
	if _, err := io.Copy(c, testpeer.PseudoRandom(n, 3)); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	all, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read to EOF: %v", err)
	}
	if int64(len(all)) != n || sha(all) != testpeer.PseudoRandomSHA256(n, 3) {
		t.Fatalf("after half-close: %d bytes, want %d intact", len(all), n)
	}
}

// A half-close with no data sent at all still opens the stream (the
// address is flushed before the FIN).
func TestSOCKSHalfCloseBeforeData(t *testing.T) {
	srv := goSSServer(t, "aes-128-gcm", testPassword, nil)
	s, _ := NewShadowsocks(NewDirect(srv), "aes-128-gcm", testPassword)
	proxy := startProxy(t, s, "", "")
	greeting := []byte("hello from the target")
	target := testpeer.ListenTCP(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(20 * time.Second))
		if b, _ := io.ReadAll(c); len(b) != 0 {
			t.Errorf("target read %d bytes, want none", len(b))
		}
		c.Write(greeting)
	})
	c, code := socksConnect(t, proxy, []byte{5, 1, 0}, connectReq(target))
	defer c.Close()
	if code != repSucceeded {
		t.Fatalf("reply %d", code)
	}
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, greeting) {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestSOCKSAuthAndBounds(t *testing.T) {
	srv := goSSServer(t, "aes-128-gcm", testPassword, nil)
	s, _ := NewShadowsocks(NewDirect(srv), "aes-128-gcm", testPassword)
	echo := testpeer.EchoServer(t)
	open := startProxy(t, s, "", "")
	locked := startProxy(t, s, "alice", "s3cret")

	t.Run("no acceptable method", func(t *testing.T) {
		c, code := socksConnect(t, locked, []byte{5, 1, 0}, nil)
		c.Close()
		if code != 0xff {
			t.Fatalf("no-auth offered to a proxy that wants a password: %x", code)
		}
	})
	auth := func(user, pass string) []byte {
		return append(append(append([]byte{1, byte(len(user))}, user...), byte(len(pass))), pass...)
	}
	t.Run("password", func(t *testing.T) {
		for _, c := range []struct {
			user, pass string
			ok         bool
		}{{"alice", "s3cret", true}, {"alice", "wrong", false}, {"bob", "s3cret", false}} {
			conn, err := net.Dial("tcp", locked)
			if err != nil {
				t.Fatal(err)
			}
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			conn.Write([]byte{5, 2, 0, 2})
			var rep [2]byte
			io.ReadFull(conn, rep[:])
			if rep != [2]byte{5, 2} {
				t.Fatalf("method %x", rep)
			}
			conn.Write(auth(c.user, c.pass))
			io.ReadFull(conn, rep[:])
			if (rep[1] == 0) != c.ok {
				t.Errorf("%s/%s: auth status %d", c.user, c.pass, rep[1])
			}
			if c.ok {
				conn.Write(connectReq(echo))
				var r [10]byte
				io.ReadFull(conn, r[:])
				conn.Write([]byte("ping"))
				b := make([]byte, 4)
				if _, err := io.ReadFull(conn, b); err != nil || string(b) != "ping" {
					t.Errorf("echo after auth: %q %v", b, err)
				}
			}
			conn.Close()
		}
	})
	t.Run("curl with user", func(t *testing.T) {
		origin := testpeer.StartOrigin(t)
		sum, n := curlSHA256(t, "--socks5-hostname", locked, "--proxy-user", "alice:s3cret", origin.URL("/bytes/1000"))
		if n != 1000 || sum != testpeer.PseudoRandomSHA256(1000, 0) {
			t.Fatalf("curl with --proxy-user: %d bytes", n)
		}
		sum, n = curlSHA256(t, "-x", "http://alice:s3cret@"+locked, origin.URL("/bytes/1000"))
		if n != 1000 || sum != testpeer.PseudoRandomSHA256(1000, 0) {
			t.Fatalf("http proxy with Basic: %d bytes", n)
		}
		out, _ := exec.Command("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-x", "http://"+locked, origin.URL("/bytes/10")).Output()
		if string(out) != "407" {
			t.Fatalf("http proxy without credentials: status %s, want 407", out)
		}
	})
	t.Run("replies", func(t *testing.T) {
		for _, c := range []struct {
			name string
			req  []byte
			want byte
		}{
			{"bind", append([]byte{5, cmdBind, 0}, connectReq(echo)[3:]...), repCommandUnsupported},
			{"unknown address type", []byte{5, 1, 0, 9, 1, 2, 3, 4, 0, 80}, repAddressUnsupported},
		} {
			conn, code := socksConnect(t, open, []byte{5, 1, 0}, c.req)
			conn.Close()
			if code != c.want {
				t.Errorf("%s: reply %d, want %d", c.name, code, c.want)
			}
		}
	})
	t.Run("empty domain closes", func(t *testing.T) {
		conn, err := net.Dial("tcp", open)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		conn.Write([]byte{5, 1, 0, 5, 1, 0, 3, 0, 0, 80})
		b, _ := io.ReadAll(conn)
		if !bytes.Equal(b, []byte{5, 0}) {
			t.Fatalf("after an empty domain name: %x, want only the method reply then close", b)
		}
	})
	t.Run("handshake too long", func(t *testing.T) {
		conn, err := net.Dial("tcp", open)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		// An HTTP request head that never ends: closed at 64 KiB.
		go func() {
			io.WriteString(conn, "GET http://x/ HTTP/1.1\r\n")
			line := "X-Filler: " + strings.Repeat("a", 1000) + "\r\n"
			for i := 0; i < 200; i++ {
				if _, err := io.WriteString(conn, line); err != nil {
					return
				}
			}
		}()
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("no answer to an over-long head: %v", err)
		}
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("over-long head: status %d, want 400", resp.StatusCode)
		}
	})
}

// UDP ASSOCIATE through a real ss-server to a UDP echo: each datagram
// comes back intact with the echo's address in its header.
func TestSOCKSUDPAssociate(t *testing.T) {
	srv := testpeer.SSServer(t, testPassword, "aes-256-gcm")
	s, _ := NewShadowsocks(NewDirect(srv), "aes-256-gcm", testPassword)
	proxy := startProxy(t, s, "", "")
	echo := testpeer.UDPEcho(t)
	ctl, code := socksConnect(t, proxy, []byte{5, 1, 0}, []byte{5, cmdUDPAssociate, 0, 1, 0, 0, 0, 0, 0, 0})
	defer ctl.Close()
	if code != repSucceeded {
		t.Fatalf("udp associate: reply %d", code)
	}
	// socksConnect read a 10-byte reply; the relay's address is in it,
	// so ask again by hand to read it.
	ctl.Close()
	c, err := net.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	c.Write([]byte{5, 1, 0})
	var m [2]byte
	io.ReadFull(c, m[:])
	c.Write([]byte{5, cmdUDPAssociate, 0, 1, 0, 0, 0, 0, 0, 0})
	var r [10]byte
	if _, err := io.ReadFull(c, r[:]); err != nil || r[1] != 0 || r[3] != atypIPv4 {
		t.Fatalf("udp associate reply %x %v", r, err)
	}
	relay := &net.UDPAddr{IP: net.IP(r[4:8]), Port: int(binary.BigEndian.Uint16(r[8:10]))}
	uc, err := net.DialUDP("udp", nil, relay)
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	hdr, _ := testpeer.EncodeSOCKSAddr(echo)
	buf := make([]byte, 65536)
	for i, size := range []int{1, 100, 1300} {
		payload := bytes.Repeat([]byte{byte(i + 1)}, size)
		dgram := append(append([]byte{0, 0, 0}, hdr...), payload...)
		got := false
		for try := 0; try < 3 && !got; try++ {
			uc.Write(dgram)
			uc.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := uc.Read(buf)
			if err != nil {
				continue
			}
			if !bytes.Equal(buf[:n], dgram) {
				t.Fatalf("answer %d bytes, want the same %d-byte datagram with the echo's address", n, len(dgram))
			}
			got = true
		}
		if !got {
			t.Fatalf("no answer for %d bytes", size)
		}
	}
	// A fragment is dropped, not relayed: the next answer is the next
	// whole datagram's.
	frag := append(append([]byte{0, 0, 1}, hdr...), 'x')
	uc.Write(frag)
	whole := append(append([]byte{0, 0, 0}, hdr...), 'y')
	for try := 0; ; try++ {
		uc.Write(whole)
		uc.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := uc.Read(buf)
		if err != nil && try < 3 {
			continue
		}
		if err != nil || !bytes.Equal(buf[:n], whole) {
			t.Fatalf("after a fragment: %q, %v; want the whole datagram's echo", buf[:n], err)
		}
		break
	}
}

// The HTTP proxy drops hop-by-hop headers both ways (those the Connection
// header names too), sends the origin an origin-form request, and skips
// the origin's interim answers.
func TestHTTPProxyHopByHop(t *testing.T) {
	srv := goSSServer(t, "aes-128-gcm", testPassword, nil)
	s, _ := NewShadowsocks(NewDirect(srv), "aes-128-gcm", testPassword)
	proxy := startProxy(t, s, "", "")
	seen := make(chan *http.Request, 1)
	origin := testpeer.ListenTCP(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(20 * time.Second))
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			t.Errorf("origin: %v", err)
			return
		}
		seen <- req
		// An interim answer first: skipped, the final one follows.
		io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </style.css>\r\n\r\n")
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: X-Hop, close\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\nX-End: kept\r\n\r\nok")
	})
	c, err := net.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "GET http://%s/path?q=1 HTTP/1.1\r\nHost: %s\r\nProxy-Connection: keep-alive\r\nConnection: X-Client-Hop\r\nX-Client-Hop: 1\r\nTE: trailers\r\nX-End: kept\r\n\r\n", origin, origin)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	req := <-seen
	if req.RequestURI != "/path?q=1" || req.Host != origin {
		t.Errorf("origin got %q for host %q, want the origin form /path?q=1", req.RequestURI, req.Host)
	}
	for _, h := range []string{"Proxy-Connection", "X-Client-Hop", "Te"} {
		if req.Header.Get(h) != "" {
			t.Errorf("origin got hop-by-hop %s: %q", h, req.Header.Get(h))
		}
	}
	if req.Header.Get("X-End") != "kept" {
		t.Errorf("origin lost an end-to-end header: %v", req.Header)
	}
	if resp.StatusCode != 200 || string(body) != "ok" || resp.Header.Get("X-Hop") != "" || resp.Header.Get("Keep-Alive") != "" || resp.Header.Get("X-End") != "kept" {
		t.Errorf("client got %d %q headers %v", resp.StatusCode, body, resp.Header)
	}
}

// An origin that cannot be reached gives 502 on the HTTP proxy.
func TestHTTPProxyBadGateway(t *testing.T) {
	s, _ := NewShadowsocks(NewDirect(testpeer.DeadAddr(t)), "aes-128-gcm", testPassword)
	proxy := startProxy(t, s, "", "")
	out, _ := exec.Command("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-x", "http://"+proxy, "http://example.invalid/").Output()
	if string(out) != "502" {
		t.Fatalf("status %s, want 502", out)
	}
	c, code := socksConnect(t, proxy, []byte{5, 1, 0}, connectReq("example.invalid:80"))
	c.Close()
	if code != repConnectionRefused {
		t.Fatalf("socks reply %d, want %d (connection refused by the Shadowsocks server's address)", code, repConnectionRefused)
	}
}
