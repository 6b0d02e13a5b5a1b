package cliconf

import (
	"strings"
	"testing"
)

func TestCheckFallback(t *testing.T) {
	for _, c := range []struct {
		addr, listen, err string
	}{
		{"127.0.0.1:8081", ":8080", ""},
		{"site.example:80", ":443", ""},
		{"[::1]:80", "127.0.0.1:443", ""},
		{"10.0.0.5:8080", "127.0.0.1:8080", ""}, // another host, same port
		{"127.0.0.1:8080", "1.2.3.4:8080", ""},  // the gateway is not on loopback
		{"127.0.0.1:8080", ":8080", "own -listen"},
		{"localhost:8443", "0.0.0.0:8443", "own -listen"},
		{"1.2.3.4:8443", "1.2.3.4:8443", "own -listen"},
		{"127.0.0.1", ":8080", "missing port"},
		{"127.0.0.1:0", ":8080", "from 1 to 65535"},
		{"127.0.0.1:http", ":8080", "from 1 to 65535"},
		{":80", ":8080", "no host"},
	} {
		err := CheckFallback(c.addr, c.listen)
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("CheckFallback(%q, %q) = %v, want %q", c.addr, c.listen, err, c.err)
		}
	}
}
