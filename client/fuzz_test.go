package client

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParseKey: any text gives a key or an ErrBadKey, never a panic, and
// an error never spans lines (it is printed as one).
func FuzzParseKey(f *testing.F) {
	for _, seed := range []string{
		// the self-contained form with every parameter
		"httvps://tok@gw.example.com:8443/?cipher=aes-128-gcm&secret=s&gw=gw2:443&pin=" + string(bytes.Repeat([]byte("ab"), 32)) + "&tls=0&sni=x&control=https%3A%2F%2Fc#l",
		"httvps://tok@ctl.example.com/p/?scheme=http", // control-only
		"ss://YWVzLTEyOC1nY206cHc@1.2.3.4:8388#x",     // SIP002
		"ss://YWVzLTEyOC1nY206cHdAMS4yLjMuNDo4Mzg4",   // legacy
		"ss://YWVzLTEyOC1nY206cHc@gw:443/?plugin=v2ray-plugin%3Bmode%3Dwebsocket%3Bmux%3D0%3Bpath%3D%2Ft%2Ftcp",
		"httvps://@/", "ss://@:", "ss://%zz@x:1", "httvps://t@[::1/?cipher=x",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		k, err := ParseKey(text)
		if err != nil {
			if !errors.Is(err, ErrBadKey) {
				t.Fatalf("ParseKey(%q): %v is not ErrBadKey", text, err)
			}
			if bytes.ContainsAny([]byte(err.Error()), "\n\r") {
				t.Fatalf("ParseKey(%q): error spans lines: %q", text, err)
			}
			return
		}
		if k.NeedsConfig() && k.Control == "" {
			t.Fatalf("ParseKey(%q): a key with nothing to connect to and no control plane", text)
		}
	})
}

// FuzzParseSSConf: documents from the network never panic the parser.
func FuzzParseSSConf(f *testing.F) {
	f.Add([]byte(controlSSConf))
	f.Add([]byte(`{"server":"1.2.3.4","server_port":8388,"password":"p","method":"aes-128-gcm"}`))
	f.Add([]byte("error:\n  message: gone\n"))
	f.Add([]byte("transport:\n  $type: shadowsocks\n  endpoint: {$type: dial, address: '1.2.3.4:1'}\n  cipher: aes-128-gcm\n  secret: s\n"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		if _, err := ParseSSConf(doc); err != nil && !errors.Is(err, ErrBadKey) && !errors.Is(err, ErrKeyProvider) {
			t.Fatalf("ParseSSConf: %v", err)
		}
	})
}

// FuzzSOCKSAddr: a datagram's address is parsed within its bytes.
func FuzzSOCKSAddr(f *testing.F) {
	f.Add([]byte{atypIPv4, 127, 0, 0, 1, 0, 80, 'x'})
	f.Add(append([]byte{atypDomain, 3}, "abc\x01\xbb"...))
	f.Add([]byte{atypIPv6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 187})
	f.Add([]byte{atypDomain, 0, 0, 80})
	f.Fuzz(func(t *testing.T, b []byte) {
		addr, n, err := parseSOCKSAddr(b)
		if err != nil {
			return
		}
		if n > len(b) || addr == "" {
			t.Fatalf("parseSOCKSAddr(%x) = %q, %d", b, addr, n)
		}
	})
}
