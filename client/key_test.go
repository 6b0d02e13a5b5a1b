package client

import (
	"bytes"
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
	"testing"
)

const (
	testToken  = "q0c3o6V0Yh3H8b7mJ2x5oQ0yq8m8k1u2v3w4x5y6z7A"
	testSecret = "vO5u7Zp2/Jc9+Qd1&Ra8=Yb3"
)

func TestHTTVPSKeyRoundTrip(t *testing.T) {
	pin := bytes.Repeat([]byte{0xab}, 32)
	gws := []Gateway{
		{Addr: "gw1.example.com:443", TLS: true, SNI: "front.example.com", Pin: pin},
		{Addr: "gw2.example.com:8443", TLS: true, Pin: pin},
		{Addr: "[2001:db8::1]:443", TLS: true, Pin: pin},
	}
	text := FormatHTTVPS(testToken, gws, "aes-256-gcm", testSecret, pin, "https://ctl.example.com/x", "alice phone")
	k, err := ParseKey(text)
	if err != nil {
		t.Fatalf("ParseKey(%s): %v", text, err)
	}
	if k.Token != testToken || k.Cipher != "aes-256-gcm" || k.Secret != testSecret || k.Control != "https://ctl.example.com/x" || k.Label != "alice phone" {
		t.Fatalf("parsed %+v", k)
	}
	if len(k.Gateways) != 3 {
		t.Fatalf("gateways %+v", k.Gateways)
	}
	for i, g := range k.Gateways {
		if g.Addr != gws[i].Addr || g.TLS != gws[i].TLS || g.SNI != gws[i].SNI || !bytes.Equal(g.Pin, pin) {
			t.Errorf("gateway %d: %+v, want %+v", i, g, gws[i])
		}
	}
	again, err := k.HTTVPS()
	if err != nil || again != text {
		t.Fatalf("HTTVPS() = %q, %v; want %q", again, err, text)
	}
}

func TestHTTVPSKeyDefaults(t *testing.T) {
	k, err := ParseKey("httvps://tok@127.0.0.1/?cipher=chacha20-ietf-poly1305&secret=s&tls=0")
	if err != nil {
		t.Fatal(err)
	}
	if g := k.Gateways[0]; g.Addr != "127.0.0.1:80" || g.TLS {
		t.Fatalf("tls=0 gateway %+v, want 127.0.0.1:80 plaintext", g)
	}
	k, err = ParseKey("httvps://tok@gw.example.com/?cipher=AES-128-GCM&secret=s")
	if err != nil {
		t.Fatal(err)
	}
	if g := k.Gateways[0]; g.Addr != "gw.example.com:443" || !g.TLS || k.Cipher != "aes-128-gcm" {
		t.Fatalf("default gateway %+v cipher %q", g, k.Cipher)
	}
}

// The control plane's earlier keys name only the control plane (docs/02).
func TestHTTVPSControlOnlyKey(t *testing.T) {
	for _, c := range []struct{ key, control string }{
		{"httvps://tok@ctl.example.com:9443/#first", "https://ctl.example.com:9443"},
		{"httvps://tok@ctl.example.com/prefix/?scheme=http", "http://ctl.example.com/prefix"},
	} {
		k, err := ParseKey(c.key)
		if err != nil {
			t.Fatalf("%s: %v", c.key, err)
		}
		if k.Control != c.control || !k.NeedsConfig() || k.Token != "tok" {
			t.Errorf("%s: control %q needs %v", c.key, k.Control, k.NeedsConfig())
		}
	}
}

func TestBadKeys(t *testing.T) {
	for _, c := range []struct{ key, want string }{
		{"", "want httvps://"},
		{"vless://x@y", "unknown scheme"},
		{"httvps://gw.example.com/?cipher=aes-128-gcm&secret=" + testSecret, "no token"},
		{"httvps://tok:pw@gw.example.com/?cipher=aes-128-gcm&secret=x", "password"},
		{"httvps://tok@gw.example.com/?cipher=rc4-md5&secret=" + testSecret, "not supported"},
		{"httvps://tok@gw.example.com/?cipher=aes-128-gcm", "no secret"},
		{"httvps://tok@gw.example.com/?cipher=aes-128-gcm&secret=" + testSecret + "&pin=abcd", "pin"},
		{"httvps://tok@gw.example.com:99999/?cipher=aes-128-gcm&secret=" + testSecret, "bad port"},
		{"httvps://tok@gw.example.com/?cipher=aes-128-gcm&secret=" + testSecret + "&tls=no", "tls="},
		{"httvps://tok@gw.example.com/?cipher=aes-128-gcm&secret=" + testSecret + "&control=ftp://x", "control URL"},
		{"ss://" + b64("aes-128-gcm:"+testSecret) + "@1.2.3.4:8388/?plugin=obfs-local%3Bobfs%3Dhttp", "plugin \"obfs-local\" is not supported"},
		{"ss://" + b64("aes-128-gcm:"+testSecret) + "@1.2.3.4:8388/?plugin=v2ray-plugin%3Bpath%3D%2Fx", "mux=0"},
		{"ss://" + b64("aes-128-gcm:"+testSecret) + "@1.2.3.4:8388/?plugin=v2ray-plugin%3Bmode%3Dquic%3Bmux%3D0", "mode="},
		{"ss://" + b64("bf-cfb:"+testSecret) + "@1.2.3.4:8388", "not supported"},
		{"ss://" + b64("aes-128-gcm:"+testSecret) + "@1.2.3.4", "bad port"},
		{"ss://!!!", "neither"},
		{"ssconf://ctl.example.com/x", "must be fetched"},
	} {
		_, err := ParseKey(c.key)
		if !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseKey(%q) = %v; want ErrBadKey with %q", c.key, err, c.want)
			continue
		}
		if strings.Contains(err.Error(), testSecret) || strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseKey(%q): error %q quotes the secret or spans lines", c.key, err)
		}
	}
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestSSKeys(t *testing.T) {
	for _, c := range []struct {
		name, key string
		server    string
	}{
		{"sip002 base64url", "ss://" + b64("chacha20-ietf-poly1305:"+testSecret) + "@10.0.0.1:8388/#x", "10.0.0.1:8388"},
		{"sip002 padded std base64", "ss://" + base64.StdEncoding.EncodeToString([]byte("chacha20-ietf-poly1305:pw")) + "@10.0.0.1:8388", "10.0.0.1:8388"},
		{"sip002 plain userinfo", "ss://chacha20-ietf-poly1305:p%40ss@[::1]:8388", "[::1]:8388"},
		{"legacy", "ss://" + base64.StdEncoding.EncodeToString([]byte("chacha20-ietf-poly1305:p@ss@host.example:8388")) + "#x", "host.example:8388"},
	} {
		k, err := ParseKey(c.key)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if k.Server != c.server || !k.Direct() || k.Cipher != "chacha20-ietf-poly1305" || k.Secret == "" {
			t.Errorf("%s: %+v", c.name, k)
		}
	}
	k, _ := ParseKey("ss://chacha20-ietf-poly1305:p%40ss@[::1]:8388")
	if k.Secret != "p@ss" {
		t.Errorf("percent-encoded password: %q", k.Secret)
	}
	// A plain key prints back as itself.
	k, _ = ParseKey("ss://" + b64("aes-256-gcm:"+testSecret) + "@10.0.0.1:8388/#lab")
	if s, err := k.SS(); err != nil || s != "ss://"+b64("aes-256-gcm:"+testSecret)+"@10.0.0.1:8388/#lab" {
		t.Errorf("SS() = %q, %v", s, err)
	}
}

// The ss:// key the control plane writes goes through the gateway's
// Outline path.
func TestSSKeyV2RayPlugin(t *testing.T) {
	key := "ss://" + b64("chacha20-ietf-poly1305:"+testSecret) + "@gw1.example.com:443/?plugin=v2ray-plugin%3Bmode%3Dwebsocket%3Bmux%3D0%3Btls%3Bhost%3Dgw1.example.com%3Bpath%3D%2F" + testToken + "%2Ftcp#alice"
	k, err := ParseKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if k.Direct() || len(k.Gateways) != 1 || k.Gateways[0].Addr != "gw1.example.com:443" || !k.Gateways[0].TLS || k.Gateways[0].SNI != "" {
		t.Fatalf("gateways %+v", k.Gateways)
	}
	if k.Token != testToken || k.tcpPath() != "/"+testToken+"/tcp" || k.udpPath() != "/"+testToken+"/udp" || k.Label != "alice" {
		t.Fatalf("key %+v", k)
	}
	if s, err := k.SS(); err != nil || s != key {
		t.Errorf("SS() = %q, %v; want %q", s, err, key)
	}
}

// The document the control plane serves (docs/02, GET /v1/outline/{secret}).
const controlSSConf = `transport:
  $type: tcpudp
  tcp:
    $type: shadowsocks
    endpoint:
      $type: websocket
      url: wss://gw2.example.com:443/` + testToken + `/tcp
    cipher: chacha20-ietf-poly1305
    secret: vO5u7Zp2Jc9Qd1Ra8Yb3Lx4Wm6Tn0Ke2
  udp:
    $type: shadowsocks
    endpoint:
      $type: websocket
      url: wss://gw2.example.com:443/` + testToken + `/udp
    cipher: chacha20-ietf-poly1305
    secret: vO5u7Zp2Jc9Qd1Ra8Yb3Lx4Wm6Tn0Ke2
`

func TestParseSSConf(t *testing.T) {
	k, err := ParseSSConf([]byte(controlSSConf))
	if err != nil {
		t.Fatal(err)
	}
	if len(k.Gateways) != 1 || k.Gateways[0].Addr != "gw2.example.com:443" || !k.Gateways[0].TLS ||
		k.tcpPath() != "/"+testToken+"/tcp" || k.udpPath() != "/"+testToken+"/udp" || k.Token != testToken ||
		k.Secret != "vO5u7Zp2Jc9Qd1Ra8Yb3Lx4Wm6Tn0Ke2" {
		t.Fatalf("%+v", k)
	}

	k, err = ParseSSConf([]byte(`{"server":"10.0.0.9","server_port":8388,"password":"pw","method":"aes-128-gcm"}`))
	if err != nil || k.Server != "10.0.0.9:8388" || k.Secret != "pw" || k.Cipher != "aes-128-gcm" {
		t.Fatalf("legacy JSON: %+v, %v", k, err)
	}

	k, err = ParseSSConf([]byte("transport:\n  $type: shadowsocks\n  endpoint: 10.0.0.9:8388\n  cipher: aes-256-gcm\n  secret: pw\n"))
	if err != nil || k.Server != "10.0.0.9:8388" || k.Cipher != "aes-256-gcm" {
		t.Fatalf("shadowsocks transport: %+v, %v", k, err)
	}

	_, err = ParseSSConf([]byte("error:\n  message: This access key has been revoked.\n  details: Ask your provider for a new key.\n"))
	if !errors.Is(err, ErrKeyProvider) || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("error form: %v", err)
	}

	for _, doc := range []string{
		"transport:\n  $type: split\n",
		"transport:\n  $type: tcpudp\n  tcp:\n    $type: shadowsocks\n    endpoint: {$type: quic, url: x}\n    cipher: aes-128-gcm\n    secret: s\n",
		"transport:\n  $type: tcpudp\n  tcp:\n    $type: shadowsocks\n    endpoint: 1.2.3.4:1\n    cipher: aes-128-gcm\n    secret: s\n  udp:\n    $type: shadowsocks\n    endpoint: 1.2.3.4:1\n    cipher: aes-128-gcm\n    secret: other\n",
		"{not yaml",
		"hello: world\n",
	} {
		if _, err := ParseSSConf([]byte(doc)); !errors.Is(err, ErrBadKey) {
			t.Errorf("ParseSSConf(%q) = %v; want ErrBadKey", doc, err)
		}
	}
}

// TestBadKeyErrorsQuoteNoSecrets: a rejected websocket URL (its path is the
// Outline secret) or control URL (its user part may hold a password) is
// named by scheme and host only.
func TestBadKeyErrorsQuoteNoSecrets(t *testing.T) {
	const secret = "Zq7sEcretPathPart"
	_, err := ParseSSConf([]byte("transport:\n  $type: tcpudp\n  tcp:\n    $type: shadowsocks\n    endpoint: {$type: websocket, url: \"https://gw.example.com/" + secret + "/tcp\"}\n    cipher: aes-128-gcm\n    secret: s\n"))
	if !errors.Is(err, ErrBadKey) || strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), "gw.example.com") {
		t.Errorf("bad websocket url: %v; want ErrBadKey naming the host, not the path", err)
	}
	for _, key := range []string{
		"httvps://tok@gw.example.com/?cipher=aes-128-gcm&secret=x&control=https://alice:" + secret + "@ctl.example.com",
		"httvps://tok@gw.example.com/?cipher=aes-128-gcm&secret=x&control=" + url.QueryEscape("https://ctl.example.com/?k="+secret),
	} {
		_, err := ParseKey(key)
		if !errors.Is(err, ErrBadKey) || strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), "ctl.example.com") {
			t.Errorf("ParseKey(%q) = %v; want ErrBadKey naming the host, no secret", key, err)
		}
	}
	_, err = ResolveKey(testCtx(t), "https://alice:"+secret+"@ctl.example.com/x", ResolveOptions{Token: "tok"})
	if !errors.Is(err, ErrBadKey) || strings.Contains(err.Error(), secret) {
		t.Errorf("control URL with a password: %v; want ErrBadKey without it", err)
	}
}

// TestTokenLengthBound: the gateway takes tokens of at most 256 bytes; the
// client refuses a longer one up front instead of failing every handshake.
func TestTokenLengthBound(t *testing.T) {
	ok, long := strings.Repeat("t", 256), strings.Repeat("t", 257)
	if _, err := ParseKey("httvps://" + ok + "@gw.example.com/?cipher=aes-128-gcm&secret=x"); err != nil {
		t.Fatalf("256-byte token: %v", err)
	}
	_, err := ParseKey("httvps://" + long + "@gw.example.com/?cipher=aes-128-gcm&secret=x")
	if !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), "at most 256") || strings.Contains(err.Error(), long) {
		t.Errorf("257-byte token in a key: %v; want ErrBadKey, at most 256", err)
	}
	_, err = ResolveKey(testCtx(t), "https://ctl.example.com", ResolveOptions{Token: long})
	if !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), "at most 256") {
		t.Errorf("257-byte -token: %v; want ErrBadKey, at most 256", err)
	}
}
