package testpeer

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// redisDo sends one command in RESP and returns the first line of the
// answer.
func redisDo(t *testing.T, r *Redis, args ...string) string {
	t.Helper()
	var c net.Conn
	var err error
	if r.tls != nil {
		c, err = tls.Dial("tcp", r.Addr(), r.tls)
	} else {
		c, err = net.Dial("tcp", r.Addr())
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	cmd := fmt.Sprintf("*%d\r\n", len(args))
	for _, a := range args {
		cmd += fmt.Sprintf("$%d\r\n%s\r\n", len(a), a)
	}
	fmt.Fprint(c, cmd)
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(line)
}

// A durable Redis keeps what it acknowledged across Kill and Start, on the
// same port; Signal freezes and thaws it.
func TestRedisDurableRestart(t *testing.T) {
	r := StartRedis(t, RedisSpec{Durable: true})
	if got := redisDo(t, r, "SET", "k", "v"); got != "+OK" {
		t.Fatalf("SET: %q", got)
	}
	r.Kill()
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	if got := redisDo(t, r, "GET", "k"); got != "$1" {
		t.Fatalf("GET after restart: %q, want the value back", got)
	}
	if err := r.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if r.answers() {
		t.Error("a frozen server answered")
	}
	r.Signal(syscall.SIGCONT)
	if !r.answers() {
		t.Error("no answer after SIGCONT")
	}
}

// A password and TLS are in the URL; without the password the server
// refuses.
func TestRedisTLSPassword(t *testing.T) {
	c := NewCert(t, CertSpec{IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Leaf: true})
	r := StartRedis(t, RedisSpec{TLS: c, Password: "pw"})
	if want := fmt.Sprintf("rediss://:pw@127.0.0.1:%d/0", r.Port); r.URL() != want {
		t.Errorf("URL %q, want %q", r.URL(), want)
	}
	if got := redisDo(t, r, "PING"); !strings.HasPrefix(got, "-NOAUTH") {
		t.Errorf("PING without the password: %q", got)
	}
}
