package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestPortsAreBelowEphemeralAndBindable(t *testing.T) {
	lo := ephemeralLow()
	seen := map[int]bool{}
	for range 50 {
		p, err := TCPUDP()
		if err != nil {
			t.Fatal(err)
		}
		if p < lowest || p >= lo {
			t.Fatalf("port %d outside [%d, %d)", p, lowest, lo)
		}
		seen[p] = true
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("returned port %d not bindable: %v", p, err)
		}
		ln.Close()
	}
	if len(seen) < 40 {
		t.Fatalf("only %d distinct ports in 50 picks", len(seen))
	}
}

func TestBusyPortIsSkipped(t *testing.T) {
	p, err := TCP()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if free(p, false) {
		t.Fatalf("port %d reported free while listened on", p)
	}
}
