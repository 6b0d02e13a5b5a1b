package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/httvps/httvps/control/api/wire"
	"github.com/httvps/httvps/internal/testpeer"
	"github.com/httvps/httvps/store"
	"github.com/httvps/httvps/store/embedded"
)

// openPTY returns a pseudo-terminal's slave side, a real terminal.
func openPTY(t *testing.T) *os.File {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetUint32(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(int(n)), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("pty slave: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestIsTerminal(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	file, err := os.Create(filepath.Join(t.TempDir(), "out.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	for name, w := range map[string]any{"pipe": pw, "file": file, "buffer": &bytes.Buffer{}} {
		if isTerminal(w.(interface{ Write([]byte) (int, error) })) {
			t.Errorf("%s taken for a terminal", name)
		}
	}
	if !isTerminal(openPTY(t)) {
		t.Error("a pseudo-terminal is not taken for a terminal")
	}
}

// bannerNode is a node as far as printBanner looks at it.
func bannerNode(dir string) (*node, *firstToken) {
	n := &node{
		o:            &upOptions{PublicHost: "vpn.example.com"},
		dataDir:      dir,
		adminKey:     "ADMINKEY-0123456789abcdefghijklmnopqrstuvw",
		adminKeyFile: filepath.Join(dir, adminKeyName),
		keyCreated:   true,
		certFile:     filepath.Join(dir, leafCertName),
		gatewayURL:   "wss://vpn.example.com:8443",
		controlURL:   "https://vpn.example.com:9443",
		adminURL:     "https://127.0.0.1:9443",
		gwPort:       "8443",
	}
	ft := &firstToken{id: "TOKENID", token: "TOKENSECRET-0123456789abcdefghijklmnopqrst", cfg: wire.ClientConfig{
		Cipher: "chacha20-ietf-poly1305", Secret: "SSPASSWORD-xyz",
		AccessKeys: wire.AccessKeys{
			SSConf: "ssconf://vpn.example.com:9443/v1/outline/TOKENSECRET-0123456789abcdefghijklmnopqrst#first",
			SS:     "ss://U1NVU0VSSU5GTw@vpn.example.com:8443/?plugin=x#first",
			HTTVPS: "httvps://TOKENSECRET-0123456789abcdefghijklmnopqrst@vpn.example.com:9443/#first",
		},
	}}
	return n, ft
}

// On a terminal the banner is what it always was: the new admin key, the
// first token, its keys and the ss-local command with the password.
// Anywhere else it holds none of them and names the files that do.
func TestBannerSecretsOnlyOnTerminal(t *testing.T) {
	dir := t.TempDir()
	n, ft := bannerNode(dir)
	secrets := []string{n.adminKey, ft.token, ft.cfg.Secret, "U1NVU0VSSU5GTw"}

	var term bytes.Buffer
	n.printBanner(&term, true, []store.Member{{Backend: store.BackendStatic}}, false, ft)
	for _, s := range secrets {
		if !strings.Contains(term.String(), s) {
			t.Errorf("terminal banner lacks %q:\n%s", s, term.String())
		}
	}
	if !strings.Contains(term.String(), "-k SSPASSWORD-xyz -m chacha20-ietf-poly1305") {
		t.Errorf("terminal banner lacks the ss-local command:\n%s", term.String())
	}
	// Each key says which client it is for, ssconf first as the Outline
	// apps' one; a static-only pool says its tokens share one password.
	banner := term.String()
	if i, j := strings.Index(banner, "  ssconf  the Outline apps"), strings.Index(banner, "  ss      ss-local with v2ray-plugin only"); i < 0 || j < i ||
		!strings.Contains(banner, "  httvps  httvps connect") {
		t.Errorf("terminal banner does not label its keys:\n%s", banner)
	}
	if !strings.Contains(banner, "static only: every token shares its one Shadowsocks password") {
		t.Errorf("terminal banner does not say a static member's tokens share a password:\n%s", banner)
	}
	var mixed bytes.Buffer
	n.printBanner(&mixed, true, []store.Member{{Backend: store.BackendStatic}, {Backend: store.BackendSSManager}}, false, ft)
	if strings.Contains(mixed.String(), "static only") {
		t.Errorf("the static-only note with an ss-manager member:\n%s", mixed.String())
	}

	file, err := n.saveFirstToken(ft)
	if err != nil {
		t.Fatal(err)
	}
	ft.file = file
	var pipe bytes.Buffer
	n.printBanner(&pipe, false, []store.Member{{Backend: store.BackendStatic}}, false, ft)
	for _, s := range secrets {
		if strings.Contains(pipe.String(), s) {
			t.Errorf("banner off a terminal holds %q:\n%s", s, pipe.String())
		}
	}
	if !strings.Contains(pipe.String(), n.adminKeyFile) || !strings.Contains(pipe.String(), file) ||
		!strings.Contains(pipe.String(), "token id TOKENID") {
		t.Errorf("banner off a terminal does not name the files and the token id:\n%s", pipe.String())
	}
	saved := readSecretFile(t, filepath.Join(dir, firstTokenName))
	for _, s := range secrets[1:] {
		if !strings.Contains(saved, s) {
			t.Errorf("%s lacks %q:\n%s", firstTokenName, s, saved)
		}
	}

	// A token that could not be saved is not shown either.
	ft.file, ft.saveErr = "", fmt.Errorf("disk full")
	pipe.Reset()
	n.printBanner(&pipe, false, []store.Member{{Backend: store.BackendStatic}}, false, ft)
	for _, s := range secrets {
		if strings.Contains(pipe.String(), s) {
			t.Errorf("banner after a failed save holds %q:\n%s", s, pipe.String())
		}
	}
	if !strings.Contains(pipe.String(), "tokens revoke TOKENID") {
		t.Errorf("banner after a failed save does not say to revoke the token:\n%s", pipe.String())
	}
}

func TestPrintable(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"alice", "alice"},
		{"Ålesund 鍵 \ufffd", "Ålesund 鍵 \ufffd"},
		{"a\nb", `a\nb`},
		{"a\tb\r", `a\tb\r`},
		{"\x1b[31mred", `\x1b[31mred`},
		{"bell\x07", `bell\x07`},
		{"del\x7f", `del\x7f`},
		{"csi\u009b2J", `csi\u009b2J`},
		{"nel\u0085", `nel\u0085`},
		{"bad\xffutf8\x9b", `bad\xffutf8\x9b`},
		{"", ""},
	} {
		if got := printable(tc.in); got != tc.want {
			t.Errorf("printable(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestEscapeJSONControls(t *testing.T) {
	in := []byte("{\"label\": \"a\u009b2J\x7fb\xffc é\"}")
	got := string(escapeJSONControls(in))
	if want := `{"label": "a\u009b2J\u007fb\ufffdc é"}`; got != want {
		t.Errorf("escapeJSONControls = %s, want %s", got, want)
	}
	var v struct{ Label string }
	if err := jsonUnmarshal([]byte(got), &v); err != nil || v.Label != "a\u009b2J\x7fb\ufffdc é" {
		t.Errorf("escaped JSON reads back as %q, %v", v.Label, err)
	}
}

// rawControl reports a control character (C0 but newline, DEL, C1) or a
// byte that is not UTF-8 in out.
func rawControl(out string) bool {
	return strings.ContainsFunc(out, func(r rune) bool {
		return r < 0x20 && r != '\n' || r == 0x7f || r >= 0x80 && r <= 0x9f || r == '\ufffd'
	})
}

// Labels and names stored before the API refused control characters
// reach `httvps admin` escaped: no forged rows, no escape sequence on the
// operator's terminal, in tables and in --json alike.
func TestAdminEscapesControlCharacters(t *testing.T) {
	dir := t.TempDir()
	ctlAddr := "127.0.0.1:" + strconv.Itoa(testpeer.FreePort(t))
	args := []string{"-data-dir", dir, "-listen", "127.0.0.1:0", "-control-listen", ctlAddr, "-log-level", "warn", "-drain-timeout", "1s"}
	u := startUp(t, args...)
	u.stop(t)

	const label = "evil\x1b[31m\nFORGED  active\r\u009b2J\x7f"
	const name = "m\x1b]0;pwned\x07"
	st, err := embedded.Open(filepath.Join(dir, storeName))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tok := store.Token{ID: store.NewID(), Hash: store.HashToken("not-a-real-token"), Label: label, Cipher: "chacha20-ietf-poly1305", SSPassword: "x"}
	if err := st.CreateToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if err := st.PutMember(ctx, store.Member{ID: store.NewID(), Name: name, Backend: store.BackendStatic, Host: "127.0.0.1",
		Static: &store.StaticConfig{Port: 1, Cipher: "chacha20-ietf-poly1305", Password: "x"}}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	startUp(t, args...)
	ctlURL := "https://" + ctlAddr

	out := mustAdmin(t, ctlURL, dir, "tokens", "list")
	lines := header(t, out, "ID", "LABEL", "STATUS", "CIPHER", "USED", "QUOTA", "MAX-SESSIONS", "MAX-DEVICES", "EXPIRES", "CREATED")
	if rawControl(out) || len(lines) != 1 || !strings.Contains(lines[0], `evil\x1b[31m\nFORGED  active\r\u009b2J\x7f `) {
		t.Errorf("tokens list:\n%q", out)
	}
	if out = mustAdmin(t, ctlURL, dir, "tokens", "show", tok.ID); rawControl(out) || !strings.Contains(out, `evil\x1b[31m\nFORGED`) {
		t.Errorf("tokens show:\n%q", out)
	}
	if out = mustAdmin(t, ctlURL, dir, "tokens", "list", "--json"); rawControl(out) || !strings.Contains(out, `\u001b[31m\nFORGED  active\r\u009b2J\u007f"`) {
		t.Errorf("tokens list --json:\n%q", out)
	}
	if out = mustAdmin(t, ctlURL, dir, "pool", "list"); rawControl(out) || !strings.Contains(out, ` m\x1b]0;pwned\x07 `) {
		t.Errorf("pool list:\n%q", out)
	}
}
