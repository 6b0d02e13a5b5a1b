package deploytest_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/httvps/httvps/internal/testpeer"
)

// prebuilt maps deploy/docker/prebuilt/*.Dockerfile to the source-built
// Dockerfile whose runtime configuration it must repeat.
var prebuilt = map[string]string{"gateway.Dockerfile": "gateway.Dockerfile", "control.Dockerfile": "control.Dockerfile", "httvps.Dockerfile": "httvps.Dockerfile"}

// volumeLine matches a Dockerfile's VOLUME instructions.
var volumeLine = regexp.MustCompile(`(?m)^VOLUME .*$`)

// TestPrebuiltDockerfiles checks the images make and CI/CD build from static
// binaries against the source-built Dockerfiles: FROM scratch (nothing to
// pull), the same environment, ports, entrypoint, command and volumes, a
// numeric non-root user (runAsNonRoot can only verify a number), a data
// directory (where HTTVPS_DATA_DIR names one) that user owns, and the
// version labels.
func TestPrebuiltDockerfiles(t *testing.T) {
	r := root(t)
	for file, src := range prebuilt {
		p := parseDockerfile(t, filepath.Join(r, "deploy", "docker", "prebuilt", file))
		s := parseDockerfile(t, filepath.Join(r, "deploy", "docker", src))
		bin := dockerfiles[src]
		if !slices.Equal(p.froms, []string{"scratch"}) {
			t.Errorf("prebuilt/%s: FROM %v, want scratch only", file, p.froms)
		}
		if p.user != "65532:65532" {
			t.Errorf("prebuilt/%s: USER %q, want 65532:65532", file, p.user)
		}
		if p.entry != s.entry {
			t.Errorf("prebuilt/%s: ENTRYPOINT %s, %s has %s", file, p.entry, src, s.entry)
		}
		if p.cmd != s.cmd {
			t.Errorf("prebuilt/%s: CMD %s, %s has %s", file, p.cmd, src, s.cmd)
		}
		b, _ := os.ReadFile(filepath.Join(r, "deploy", "docker", "prebuilt", file))
		sb, _ := os.ReadFile(filepath.Join(r, "deploy", "docker", src))
		if pv, sv := volumeLine.FindAllString(string(b), -1), volumeLine.FindAllString(string(sb), -1); !slices.Equal(pv, sv) {
			t.Errorf("prebuilt/%s: %q, %s has %q", file, pv, src, sv)
		}
		// The embedded store's directory: the user must own it, since a
		// named volume mounted there takes its owner.
		if dir := s.env["HTTVPS_DATA_DIR"]; dir != "" {
			for name, d := range map[string]dockerfile{"prebuilt/" + file: p, src: s} {
				if !slices.ContainsFunc(d.copies, func(c string) bool {
					return strings.HasPrefix(c, "--") && strings.Contains(c, "--chown=65532:65532 ") && strings.TrimSuffix(c[strings.LastIndex(c, " ")+1:], "/") == dir
				}) {
					t.Errorf("%s: no COPY --chown=65532:65532 of an empty directory to HTTVPS_DATA_DIR %s", name, dir)
				}
			}
			if bin == "httvps" && !slices.Equal(volumeLine.FindAllString(string(b), -1), []string{`VOLUME ["` + dir + `"]`}) {
				t.Errorf("prebuilt/%s: want VOLUME [%q]: the single node's state is all in its data directory", file, dir)
			}
		}
		if fmt.Sprint(p.env) != fmt.Sprint(s.env) {
			t.Errorf("prebuilt/%s: ENV %v, %s has %v", file, p.env, src, s.env)
		}
		if !slices.Equal(p.expose, s.expose) {
			t.Errorf("prebuilt/%s: EXPOSE %v, %s has %v", file, p.expose, src, s.expose)
		}
		if !slices.ContainsFunc(p.copies, func(c string) bool {
			return c == "${TARGETOS}_${TARGETARCH}/"+bin+" /usr/local/bin/"+bin
		}) {
			t.Errorf("prebuilt/%s: no COPY of ${TARGETOS}_${TARGETARCH}/%s (what make image-bins stages)", file, bin)
		}
		for _, l := range []string{"org.opencontainers.image.version=\"${VERSION}\"", "org.opencontainers.image.revision=\"${REVISION}\""} {
			if !bytes.Contains(b, []byte(l)) {
				t.Errorf("prebuilt/%s: no LABEL %s", file, l)
			}
		}
	}
}

// imageConfig is the part of `podman image inspect` the test checks.
type imageConfig struct {
	Size   int64
	Config struct {
		User         string
		Entrypoint   []string
		Cmd          []string
		Env          []string
		ExposedPorts map[string]struct{}
		Labels       map[string]string
		StopSignal   string
	}
}

// runner starts an image's entrypoint with arguments and environment, on
// the host's loopback, as the image's user.
type runner interface {
	name() string
	start(t *testing.T, image string, env []string, args ...string) *imageProc
}

type imageProc struct {
	cmd  *exec.Cmd
	out  *bytes.Buffer
	done chan error
	stop func() // asks the process to stop as its orchestrator would (SIGTERM)
	// exec runs argv (argv[0] a path in the image) beside the process, in
	// its filesystem as the image's user, as docker exec does.
	exec func(t *testing.T, argv ...string) *imageProc
}

var errRunning = errors.New("still running")

// wait returns the process's exit, or errRunning after d.
func (p *imageProc) wait(d time.Duration) error {
	select {
	case err := <-p.done:
		p.done <- err
		return err
	default:
	}
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(d):
		return fmt.Errorf("%w after %v", errRunning, d)
	}
}

func startCmd(t *testing.T, cmd *exec.Cmd) *imageProc {
	t.Helper()
	p := &imageProc{cmd: cmd, out: &bytes.Buffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if errors.Is(p.wait(0), errRunning) {
			cmd.Process.Kill()
			p.wait(time.Minute)
		}
	})
	return p
}

// podmanRunner runs containers with podman on the host network.
type podmanRunner struct {
	podman string
	extra  []string // runtime choice and limits that work on this machine
}

func (r podmanRunner) name() string { return "podman run " + strings.Join(r.extra, " ") }

func (r podmanRunner) start(t *testing.T, image string, env []string, args ...string) *imageProc {
	t.Helper()
	name := "httvps-deploytest-" + randHex(6)
	a := append([]string{"run", "--rm", "--name", name, "--network", "host"}, r.extra...)
	for _, e := range env {
		a = append(a, "--env", e)
	}
	a = append(append(a, image), args...)
	p := startCmd(t, exec.Command(r.podman, a...))
	p.stop = func() { exec.Command(r.podman, "stop", "--time", "20", name).Run() }
	p.exec = func(t *testing.T, argv ...string) *imageProc {
		t.Helper()
		return startCmd(t, exec.Command(r.podman, append([]string{"exec", name}, argv...)...))
	}
	t.Cleanup(func() { exec.Command(r.podman, "rm", "--force", "--ignore", name).Run() })
	return p
}

// exportRunner runs the entrypoint from the image's exported filesystem,
// chrooted into it, as the image's user: for machines where podman builds
// but cannot run containers.
type exportRunner struct {
	roots map[string]string // image → unpacked root filesystem
	cfgs  map[string]imageConfig
}

func (r exportRunner) name() string { return "podman export + chroot as the image's user" }

func (r exportRunner) start(t *testing.T, image string, env []string, args ...string) *imageProc {
	t.Helper()
	cfg := r.cfgs[image].Config
	if len(args) == 0 {
		args = cfg.Cmd
	}
	cmd := r.command(t, image, env, append(slices.Clone(cfg.Entrypoint), args...))
	p := startCmd(t, cmd)
	p.stop = func() { cmd.Process.Signal(syscall.SIGTERM) }
	p.exec = func(t *testing.T, argv ...string) *imageProc {
		t.Helper()
		return startCmd(t, r.command(t, image, env, argv))
	}
	return p
}

// command is argv chrooted into image's filesystem, as its user, with its
// environment and env.
func (r exportRunner) command(t *testing.T, image string, env, argv []string) *exec.Cmd {
	t.Helper()
	cfg := r.cfgs[image].Config
	uid, gid, err := numericUser(cfg.User)
	if err != nil {
		t.Fatal(err)
	}
	// Path is resolved inside the chroot, so no LookPath on the host.
	cmd := &exec.Cmd{Path: argv[0], Args: argv, Dir: "/"}
	cmd.Env = append(slices.Clone(cfg.Env), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Chroot:     r.roots[image],
		Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}},
	}
	return cmd
}

func numericUser(u string) (uid, gid uint32, err error) {
	us, gs, _ := strings.Cut(u, ":")
	a, err1 := strconv.ParseUint(us, 10, 32)
	b, err2 := strconv.ParseUint(gs, 10, 32)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("image user %q is not numeric uid:gid", u)
	}
	return uint32(a), uint32(b), nil
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// podmanOut runs podman and returns its stdout, failing the test on error.
func podmanOut(t *testing.T, ctx context.Context, podman string, args ...string) []byte {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, podman, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// TestImages builds the three images with podman through the Makefile's
// own path (make images: static binaries, deploy/docker/prebuilt), checks
// their configuration and version, and runs them: the gateway relays a
// hash-checked stream to an echo upstream on a static route, the control
// plane answers /readyz on its operator listener, httvps up with a real
// ss-server as its static member serves a hash-checked download to a token
// that httvps admin, run beside it, issued; all exit 0 on SIGTERM. It runs them with podman when podman can run containers here,
// else from the exported filesystem as the image's user.
func TestImages(t *testing.T) {
	podman, err := exec.LookPath("podman")
	if err != nil {
		t.Skip("podman not installed: images not built (apt-get install podman runc to run this test)")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make not installed: the images are built with make images")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	defer cancel()
	r := root(t)
	const (
		registry = "localhost/httvps-deploytest"
		version  = "v0.0.0-imagetest"
		commit   = "0123abcdef0123abcdef0123abcdef0123abcdef"
	)
	tag := "t" + randHex(4)
	images := map[string]string{}
	for _, b := range []string{"httvps-gateway", "httvps-control", "httvps"} {
		images[b] = registry + "/" + b + ":" + tag
	}
	t.Cleanup(func() {
		for _, im := range images {
			exec.Command(podman, "rmi", "--force", im).Run()
		}
	})
	started := time.Now()
	mk := exec.CommandContext(ctx, "make", "--no-print-directory", "-C", r, "images",
		"CONTAINER="+podman, "REGISTRY="+registry, "TAG="+tag, "VERSION="+version, "COMMIT="+commit,
		"BIN="+t.TempDir())
	mk.Env = append(os.Environ(), "MAKEFLAGS=", "MAKELEVEL=")
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make images: %v\n%s", err, out)
	}
	t.Logf("make images (static binaries and three podman builds): %v", time.Since(started).Round(time.Second))

	cfgs := map[string]imageConfig{}
	for b, im := range images {
		var ic []imageConfig
		if err := json.Unmarshal(podmanOut(t, ctx, podman, "image", "inspect", im), &ic); err != nil || len(ic) != 1 {
			t.Fatalf("podman image inspect %s: %v", im, err)
		}
		c := ic[0].Config
		t.Logf("%s: %.1f MB, user %s, entrypoint %v", im, float64(ic[0].Size)/1e6, c.User, c.Entrypoint)
		if uid, _, err := numericUser(c.User); err != nil || uid == 0 {
			t.Errorf("%s: user %q, want a numeric non-root uid:gid", im, c.User)
		}
		if !slices.Equal(c.Entrypoint, []string{"/usr/local/bin/" + b}) {
			t.Errorf("%s: entrypoint %v", im, c.Entrypoint)
		}
		var cmd []string
		if dockerCmds[b] != "" {
			json.Unmarshal([]byte(dockerCmds[b]), &cmd)
		}
		if !slices.Equal(c.Cmd, cmd) {
			t.Errorf("%s: cmd %q, want %q", im, c.Cmd, cmd)
		}
		if c.Labels["org.opencontainers.image.version"] != version || c.Labels["org.opencontainers.image.revision"] != commit ||
			c.Labels["org.opencontainers.image.title"] != b {
			t.Errorf("%s: labels %v lack title %s, version %s, revision %s", im, c.Labels, b, version, commit)
		}
		if c.StopSignal != "SIGTERM" && c.StopSignal != "15" {
			t.Errorf("%s: stop signal %q", im, c.StopSignal)
		}
		// Minimal: a static binary and a few small files. The bound is
		// loose; the log line above carries the measured size.
		if ic[0].Size > 60<<20 {
			t.Errorf("%s: %d bytes: not minimal", im, ic[0].Size)
		}
		cfgs[im] = ic[0]
	}

	run := pickRunner(t, ctx, podman, images["httvps-gateway"], cfgs, images)
	t.Logf("running the images with %s", run.name())
	for b, im := range images {
		args := [][]string{{"-version"}}
		if b == "httvps" {
			args = append(args, []string{"version"})
		}
		for _, a := range args {
			p := run.start(t, im, nil, a...)
			if err := p.wait(time.Minute); err != nil {
				t.Fatalf("%s %s: %v\n%s", im, a[0], err, p.out)
			}
			if want := b + " " + version + " (commit " + commit + ", built "; !strings.HasPrefix(p.out.String(), want) || !strings.Contains(p.out.String(), ", go1.") {
				t.Errorf("%s %s: %q, want %q…", im, a[0], p.out, want)
			}
		}
	}

	t.Run("gateway", func(t *testing.T) {
		const secret = "deploytest-image-secret"
		up := testpeer.EchoServer(t)
		listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		p := run.start(t, images["httvps-gateway"], nil,
			"-listen="+listen, "-admin-listen="+admin, "-route="+secret+"="+up)
		waitHTTP(t, p, "http://"+admin+"/healthz")
		if code, body := get(t, "http://"+admin+"/readyz"); code != 200 {
			t.Errorf("gateway /readyz: %d %s", code, body)
		}
		if err := wsEcho(ctx, "ws://"+listen+"/"+secret+"/tcp", 4<<20+7); err != nil {
			t.Errorf("relay through the image's gateway: %v\n%s", err, p.out)
		}
		p.stop()
		if err := p.wait(time.Minute); err != nil {
			t.Errorf("gateway after SIGTERM: %v\n%s", err, p.out)
		}
	})

	t.Run("control", func(t *testing.T) {
		admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		p := run.start(t, images["httvps-control"], []string{"HTTVPS_ADMIN_KEY=" + randHex(32)},
			fmt.Sprintf("-listen=127.0.0.1:%d", freePort(t)), "-admin-listen="+admin)
		waitHTTP(t, p, "http://"+admin+"/healthz")
		// /readyz pings the embedded store in the image's own data
		// directory, which only the image's user can write.
		if code, body := get(t, "http://"+admin+"/readyz"); code != 200 {
			t.Errorf("control /readyz: %d %s\n%s", code, body, p.out)
		}
		p.stop()
		if err := p.wait(time.Minute); err != nil {
			t.Errorf("control after SIGTERM: %v\n%s", err, p.out)
		}
	})

	t.Run("httvps up", func(t *testing.T) {
		started := time.Now()
		upImage(t, ctx, run, images["httvps"])
		t.Logf("httvps up in the image: %v", time.Since(started).Round(100*time.Millisecond))
	})
}

// upImage runs `httvps up` from the httvps image (its own data directory)
// with a real ss-server as its static member, issues a token with httvps
// admin beside it (as docker exec runs it: the admin key and CA from the
// image's HTTVPS_DATA_DIR) and downloads a hash-checked body through the
// gateway, its chain checked against the CA the key pins.
func upImage(t *testing.T, ctx context.Context, run runner, image string) {
	if _, err := exec.LookPath("ss-server"); err != nil {
		t.Skip("ss-server not installed (make deps): no pool member for httvps up")
	}
	const method, password = testpeer.DefaultMethod, "deploytest-image-pass"
	ss := testpeer.SSServer(t, password, method)
	origin := testpeer.StartOrigin(t)
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	ctl := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := run.start(t, image, nil, "up", "-listen="+listen, "-control-listen="+ctl, "-admin-listen="+admin,
		"-member=static:"+ss+":"+method+":"+password, "-drain-timeout=2s")
	waitHTTP(t, p, "http://"+admin+"/healthz")
	if code, body := get(t, "http://"+admin+"/readyz"); code != 200 {
		t.Errorf("httvps up /readyz: %d %s\n%s", code, body, p.out)
	}

	a := p.exec(t, "/usr/local/bin/httvps", "admin", "-control=https://"+ctl, "tokens", "create", "--json", "--label", "image")
	if err := a.wait(time.Minute); err != nil {
		t.Fatalf("httvps admin tokens create: %v\n%s\n%s", err, a.out, p.out)
	}
	var tok struct {
		Token      string `json:"token"`
		Cipher     string `json:"cipher"`
		AccessKeys struct {
			HTTVPS string `json:"httvps"`
		} `json:"access_keys"`
	}
	if err := json.Unmarshal(a.out.Bytes(), &tok); err != nil || tok.Token == "" || tok.Cipher != method {
		t.Fatalf("httvps admin tokens create --json: %v: %s", err, a.out)
	}
	pin := regexp.MustCompile(`[?&]pin=([0-9a-f]{64})`).FindStringSubmatch(tok.AccessKeys.HTTVPS)
	if pin == nil {
		t.Fatalf("httvps:// key %q has no pin=", tok.AccessKeys.HTTVPS)
	}

	dctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	ws, err := testpeer.DialWSS(dctx, "wss://"+listen+"/"+tok.Token+"/tcp", pinnedTLS(pin[1]))
	if err != nil {
		t.Fatalf("session through httvps up: %v\n%s", err, p.out)
	}
	defer ws.Close()
	ws.NetConn().SetDeadline(time.Now().Add(time.Minute))
	// A static member serves its own password and cipher to every token.
	c, err := testpeer.NewCipher(method, password)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := c.NewSSConn(ws, origin.Addr)
	if err != nil {
		t.Fatal(err)
	}
	const n = 4<<20 + 7
	sum, got, err := testpeer.HTTPGetSHA256(sc, origin.Addr, "/bytes/"+strconv.Itoa(n))
	if err != nil || got != n || sum != testpeer.PseudoRandomSHA256(n, 0) {
		t.Errorf("download through httvps up: %d of %d bytes, err %v\n%s", got, n, err, p.out)
	}
	ws.Close()

	p.stop()
	if err := p.wait(time.Minute); err != nil {
		t.Errorf("httvps up after SIGTERM: %v\n%s", err, p.out)
	}
}

// pinnedTLS trusts a chain in which a certificate with SHA-256 pin (hex,
// of its DER) issued the leaf for 127.0.0.1, as the httvps:// key's pin=
// tells the reference client.
func pinnedTLS(pin string) *tls.Config {
	return &tls.Config{
		ServerName:         "127.0.0.1",
		InsecureSkipVerify: true, // VerifyConnection checks the pinned chain
		VerifyConnection: func(cs tls.ConnectionState) error {
			for _, c := range cs.PeerCertificates[1:] {
				if sum := sha256.Sum256(c.Raw); hex.EncodeToString(sum[:]) == pin {
					roots := x509.NewCertPool()
					roots.AddCert(c)
					_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, DNSName: "127.0.0.1"})
					return err
				}
			}
			return errors.New("no certificate of the served chain has the key's pin")
		},
	}
}

// pickRunner finds a way to run the images here: podman with the default
// runtime, then with runc, each with resource limits no higher than this
// process's (raising them needs CAP_SYS_RESOURCE, which a sandbox may not
// grant); else the exported filesystem, chrooted, as the image's user
// (HTTVPS_IMAGETEST_EXPORT=1 forces this path where podman runs).
func pickRunner(t *testing.T, ctx context.Context, podman, probe string, cfgs map[string]imageConfig, images map[string]string) runner {
	t.Helper()
	var nofile syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &nofile)
	limits := []string{"--ulimit", fmt.Sprintf("nofile=%d:%d", nofile.Max, nofile.Max), "--ulimit", "nproc=4096:4096"}
	tries := [][]string{limits}
	if _, err := exec.LookPath("runc"); err == nil {
		tries = append(tries, append([]string{"--runtime", "runc"}, limits...))
	}
	var failures []string
	if os.Getenv("HTTVPS_IMAGETEST_EXPORT") != "" {
		tries, failures = nil, []string{"HTTVPS_IMAGETEST_EXPORT set: not trying podman run"}
	}
	for _, extra := range tries {
		r := podmanRunner{podman: podman, extra: extra}
		out, err := exec.CommandContext(ctx, podman, append(append([]string{"run", "--rm", "--network", "host"}, extra...), probe, "-version")...).CombinedOutput()
		if err == nil {
			return r
		}
		failures = append(failures, fmt.Sprintf("%s: %v: %s", r.name(), err, bytes.TrimSpace(out)))
	}
	t.Logf("podman cannot run containers here:\n  %s", strings.Join(failures, "\n  "))
	if os.Geteuid() != 0 {
		t.Skip("podman cannot run containers and the export fallback needs root (chroot)")
	}
	er := exportRunner{roots: map[string]string{}, cfgs: cfgs}
	for _, im := range images {
		id := strings.TrimSpace(string(podmanOut(t, ctx, podman, "create", im)))
		dir := t.TempDir()
		tarFile := filepath.Join(dir, "rootfs.tar")
		podmanOut(t, ctx, podman, "export", "-o", tarFile, id)
		exec.Command(podman, "rm", "--force", id).Run()
		rootfs := filepath.Join(dir, "rootfs")
		if err := untar(tarFile, rootfs); err != nil {
			t.Fatalf("unpack %s: %v", im, err)
		}
		er.roots[im] = rootfs
	}
	return er
}

// untar unpacks an exported container filesystem with its owners and modes.
func untar(file, dst string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean("/" + h.Name)
		p := filepath.Join(dst, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			os.MkdirAll(filepath.Dir(p), 0o755)
			w, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(w, tr)
			w.Close()
			if err != nil {
				return err
			}
		case tar.TypeSymlink:
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.Symlink(h.Linkname, p); err != nil {
				return err
			}
			os.Lchown(p, h.Uid, h.Gid)
			continue
		default:
			continue
		}
		if err := os.Lchown(p, h.Uid, h.Gid); err != nil {
			return err
		}
		if err := os.Chmod(p, os.FileMode(h.Mode)&os.ModePerm|tarSpecial(h.Mode)); err != nil {
			return err
		}
	}
}

func tarSpecial(mode int64) os.FileMode {
	var m os.FileMode
	if mode&0o1000 != 0 {
		m |= os.ModeSticky
	}
	if mode&0o2000 != 0 {
		m |= os.ModeSetgid
	}
	if mode&0o4000 != 0 {
		m |= os.ModeSetuid
	}
	return m
}

// waitHTTP waits until url answers or the process exits.
func waitHTTP(t *testing.T, p *imageProc, url string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		if err := p.wait(0); !errors.Is(err, errRunning) {
			t.Fatalf("exited at start: %v\n%s", err, p.out)
		}
		c, err := (&net.Dialer{Timeout: time.Second}).Dial("tcp", strings.Split(strings.TrimPrefix(url, "http://"), "/")[0])
		if err == nil {
			c.Close()
			if code, _ := get(t, url); code == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never answered\n%s", url, p.out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// wsEcho sends n pseudo-random bytes in binary messages of mixed sizes
// through a WebSocket whose far end echoes, and compares the SHA-256 of
// what came back with what was sent.
func wsEcho(ctx context.Context, url string, n int) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	conn, _, _, err := ws.Dial(ctx, url)
	if err != nil {
		return fmt.Errorf("dial %s: %w", url, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	sent := sha256.New()
	werr := make(chan error, 1)
	go func() {
		sizes := []int{1, 125, 126, 65535, 65536, 16384, 100000, 7}
		buf := make([]byte, 100000)
		for off, i := 0, 0; off < n; i++ {
			m := min(sizes[i%len(sizes)], n-off)
			rand.Read(buf[:m])
			sent.Write(buf[:m])
			if err := wsutil.WriteClientBinary(conn, buf[:m]); err != nil {
				werr <- err
				return
			}
			off += m
		}
		werr <- nil
	}()
	got := sha256.New()
	for total := 0; total < n; {
		b, err := wsutil.ReadServerBinary(conn)
		if err != nil {
			return fmt.Errorf("read after %d of %d bytes: %w", total, n, err)
		}
		got.Write(b)
		total += len(b)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if !bytes.Equal(sent.Sum(nil), got.Sum(nil)) {
		return errors.New("echoed bytes differ from the bytes sent")
	}
	wsutil.WriteClientMessage(conn, ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
	return nil
}
