// Package freeport picks loopback ports for tests, the bench and demos.
//
// A port taken from a listen on port 0 comes from the kernel's ephemeral
// range, and between the moment it is closed and the moment a child process
// binds it, any outgoing connection on the machine may be given the same
// port: "bind: Address already in use" in a peer's log, once in a few hundred
// runs on a busy machine. Ports here are drawn at random from below the
// ephemeral range instead, which outgoing connections never use, and are
// checked free for TCP (and UDP, when asked) before they are returned.
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// lowest is the first port handed out; below it are well-known and
// registered service ports that a developer machine may be running.
const lowest = 10000

// TCP returns a port on 127.0.0.1 that nothing listened on a moment ago.
func TCP() (int, error) { return pick(false) }

// TCPUDP returns a port on 127.0.0.1 that was free for both TCP and UDP.
func TCPUDP() (int, error) { return pick(true) }

func pick(udp bool) (int, error) {
	hi := ephemeralLow() - 1
	if hi <= lowest {
		return 0, fmt.Errorf("freeport: ephemeral range starts at %d, no room below it", hi+1)
	}
	for range 200 {
		p := lowest + rand.IntN(hi-lowest+1)
		if free(p, udp) {
			return p, nil
		}
	}
	return 0, errors.New("freeport: no free port found in 200 tries")
}

func free(p int, udp bool) bool {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	defer ln.Close()
	if udp {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return false
		}
		pc.Close()
	}
	return true
}

// ephemeralLow reads the first port of the kernel's ephemeral range
// (32768 when it cannot be read, the Linux default).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n <= 0 || n > 65535 {
		return 32768
	}
	return n
}
