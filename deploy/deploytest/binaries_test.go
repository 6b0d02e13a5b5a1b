package deploytest_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/httvps/httvps/internal/testpeer"
)

// flagDef is one flag of a binary as its -h output shows it.
type flagDef struct {
	name, typ, env string
}

// binary is a built command with its flags.
type binary struct {
	name  string
	path  string
	flags map[string]flagDef // by flag name
	envs  map[string]string  // HTTVPS_* → flag name
}

var (
	buildOnce sync.Once
	built     map[string]*binary
	buildErr  error
)

// helpLine matches "  -name type\t[HTTVPS_NAME]" in the binaries' usage.
var helpLine = regexp.MustCompile(`(?m)^  -([a-z0-9-]+)(?: ([a-zA-Z]+))?\s*\t\[(HTTVPS_[A-Z0-9_]+)\]`)

// versionPkg holds what -version prints (set with -ldflags -X).
const versionPkg = "github.com/httvps/httvps/internal/version"

// binaries builds httvps-gateway and httvps-control once per test process
// and reads their flags from -h.
func binaries(t *testing.T) map[string]*binary {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "httvps-deploytest-")
		if err != nil {
			buildErr = err
			return
		}
		built = map[string]*binary{}
		for _, name := range []string{"httvps-gateway", "httvps-control"} {
			out := filepath.Join(dir, name)
			cmd := exec.Command("go", "build", "-ldflags", "-X "+versionPkg+".Version=v0.0.0-deploytest -X "+versionPkg+".Commit=0123abc", "-o", out, "./cmd/"+name)
			cmd.Dir = root(t)
			if b, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build ./cmd/%s: %v\n%s", name, err, b)
				return
			}
			// -version prints the linker's version and commit and the Go
			// version on stdout, and exits 0 (images carry it).
			if v, err := exec.Command(out, "-version").Output(); err != nil ||
				!strings.HasPrefix(string(v), name+" v0.0.0-deploytest (commit 0123abc, built ") || !strings.Contains(string(v), ", go1.") {
				buildErr = fmt.Errorf("%s -version: %q, %v", name, v, err)
				return
			}
			var help bytes.Buffer
			h := exec.Command(out, "-h")
			h.Stdout, h.Stderr = &help, &help
			h.Run() // -h exits 0 or 2 depending on the flag package's mode
			b := &binary{name: name, path: out, flags: map[string]flagDef{}, envs: map[string]string{}}
			for _, m := range helpLine.FindAllStringSubmatch(help.String(), -1) {
				b.flags[m[1]] = flagDef{name: m[1], typ: m[2], env: m[3]}
				b.envs[m[3]] = m[1]
			}
			if len(b.flags) < 10 {
				buildErr = fmt.Errorf("%s -h: only %d flags parsed from:\n%s", name, len(b.flags), help.String())
				return
			}
			built[name] = b
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

// binaryOf names the httvps binary a container image runs, or "".
func binaryOf(image string) string {
	for _, b := range []string{"httvps-gateway", "httvps-control"} {
		if strings.Contains(image, "/"+b+":") || strings.HasSuffix(strings.SplitN(image, ":", 2)[0], "/"+b) {
			return b
		}
	}
	return ""
}

// splitArg splits "-name=value" (or "--name=value", "-name") into its parts.
func splitArg(a string) (name, value string, hasValue bool) {
	a = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
	name, value, hasValue = strings.Cut(a, "=")
	return
}

// checkValue checks a value against the flag's type from -h.
func checkValue(typ, v string) error {
	switch typ {
	case "duration":
		_, err := time.ParseDuration(v)
		return err
	case "int":
		_, err := strconv.Atoi(v)
		return err
	case "address":
		_, _, err := net.SplitHostPort(v)
		return err
	case "URL":
		if !regexp.MustCompile(`^(wss|https|redis|rediss)://`).MatchString(v) {
			return fmt.Errorf("not a wss/https/redis URL")
		}
	}
	return nil
}

// TestContainerFlags checks every flag and HTTVPS_* variable that the
// manifests and the Dockerfiles give the binaries against their -h output.
func TestContainerFlags(t *testing.T) {
	bins := binaries(t)
	seen := map[string]bool{}
	for _, o := range workloads(manifests(t)) {
		for _, c := range containers(o) {
			bn := binaryOf(str(c["image"]))
			if bn == "" {
				continue
			}
			seen[bn] = true
			b := bins[bn]
			where := fmt.Sprintf("%s container %s (%s)", o, str(c["name"]), bn)
			if c["command"] != nil {
				t.Errorf("%s: command overrides the image's entrypoint", where)
			}
			for _, a := range list(c["args"]) {
				s := str(a)
				if !strings.HasPrefix(s, "-") {
					t.Errorf("%s: argument %q: write flags as -name=value", where, s)
					continue
				}
				name, v, hasV := splitArg(s)
				f, ok := b.flags[name]
				if !ok {
					t.Errorf("%s: %s -h has no flag -%s", where, bn, name)
					continue
				}
				if !hasV && f.typ != "" {
					t.Errorf("%s: -%s needs =value in one argument", where, name)
				}
				if err := checkValue(f.typ, v); hasV && err != nil {
					t.Errorf("%s: -%s=%s: %v", where, name, v, err)
				}
			}
			for _, e := range list(c["env"]) {
				n := str(mapOf(e)["name"])
				if strings.HasPrefix(n, "HTTVPS_") {
					f, ok := b.envs[n]
					if !ok {
						t.Errorf("%s: %s -h has no environment variable %s", where, bn, n)
						continue
					}
					if v, ok := mapOf(e)["value"].(string); ok {
						if err := checkValue(b.flags[f].typ, v); err != nil {
							t.Errorf("%s: %s=%s: %v", where, n, v, err)
						}
					}
				}
			}
		}
	}
	for _, bn := range []string{"httvps-gateway", "httvps-control"} {
		if !seen[bn] {
			t.Errorf("no container runs %s", bn)
		}
	}
	r := root(t)
	for file, bn := range dockerfiles {
		d := parseDockerfile(t, filepath.Join(r, "deploy", "docker", file))
		for k := range d.env {
			// unitBinary: the httvps image runs `httvps up` by default.
			if _, ok := unitBinary(t, bn).envs[k]; strings.HasPrefix(k, "HTTVPS_") && !ok {
				t.Errorf("%s: ENV %s is not a variable of %s", file, k, bn)
			}
		}
	}
	// The secrets example names the binaries' own variables.
	vals, _ := envFile(t, filepath.Join(r, "deploy", "secrets.example.env"))
	for k := range vals {
		if !strings.HasPrefix(k, "HTTVPS_") {
			continue
		}
		if _, g := bins["httvps-gateway"].envs[k]; !g {
			if _, c := bins["httvps-control"].envs[k]; !c {
				t.Errorf("secrets.example.env: %s is a variable of neither binary", k)
			}
		}
	}
	// Flags quoted in the docker README and the README's Deploying section.
	checkDocFlags(t, bins, filepath.Join(r, "deploy", "docker", "README.md"), "")
	checkDocFlags(t, bins, filepath.Join(r, "README.md"), "## Deploying")
}

// checkDocFlags checks "httvps-gateway ... -flag" command lines in a
// document's code blocks (from the heading on, when heading is given).
func checkDocFlags(t *testing.T, bins map[string]*binary, path, heading string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	if heading != "" {
		i := strings.Index(text, "\n"+heading+"\n")
		if i < 0 {
			t.Errorf("%s: no %q section", path, heading)
			return
		}
		text = text[i+1:]
		if j := strings.Index(text[len(heading):], "\n## "); j >= 0 {
			text = text[:len(heading)+j]
		}
	}
	// Join shell continuation lines, then look at each command.
	text = strings.ReplaceAll(text, "\\\n", " ")
	for _, line := range strings.Split(text, "\n") {
		for bn, bin := range bins {
			i := strings.Index(line, bn+":")
			if j := strings.Index(line, bn+" "); i < 0 || (j >= 0 && j < i) {
				i = j
			}
			if i < 0 {
				continue
			}
			for _, m := range regexp.MustCompile(`\s-([a-z][a-z0-9-]*)`).FindAllStringSubmatch(line[i:], -1) {
				if _, ok := bin.flags[m[1]]; !ok && !isDockerFlag(m[1]) && m[1] != "h" {
					t.Errorf("%s: %q: %s has no flag -%s", filepath.Base(path), strings.TrimSpace(line), bn, m[1])
				}
			}
		}
	}
}

func isDockerFlag(f string) bool {
	return slices.Contains([]string{"f", "t", "d", "p", "e", "v", "name", "stop-timeout", "ulimit", "platform", "push", "s", "n"}, f)
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	return testpeer.FreePort(t)
}

// testCert writes a self-signed certificate for the example names.
func testCert(t *testing.T, dir string) (certPEM []byte) {
	t.Helper()
	c := testpeer.NewCert(t, testpeer.CertSpec{
		DNSNames: []string{"vpn.example.com", "api.vpn.example.com", "localhost"},
		IPs:      []net.IP{net.IPv4(127, 0, 0, 1)},
		NotAfter: time.Now().Add(90 * 24 * time.Hour),
		Leaf:     true,
	})
	os.MkdirAll(dir, 0o700)
	if err := c.WriteFiles(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")); err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Cert.Certificate[0]})
}

// redisURL starts redis-server on a loopback port when it is installed.
func redisURL(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Log("redis-server not installed: binaries run without -redis; store metrics come from cmd/httvps-gateway/store.go")
		return ""
	}
	return testpeer.StartRedis(t, testpeer.RedisSpec{}).URL()
}

// running is one binary started with a container's configuration.
type running struct {
	bin       string
	ports     map[int]int // containerPort → loopback port
	admin     string      // loopback address of -admin-listen
	listen    string      // loopback address of -listen
	container map[string]any
	pod       map[string]any
	cmd       *exec.Cmd
	out       *bytes.Buffer
	done      chan error
	certPEM   []byte
}

// start runs a manifest container's binary with its args and env: listen
// addresses become loopback ports, files under a volume mount are written
// into a temporary directory, secrets get test values.
func start(t *testing.T, bin *binary, o obj, c map[string]any, redis string) *running {
	t.Helper()
	tmp := t.TempDir()
	rn := &running{bin: bin.name, ports: map[int]int{}, container: c, pod: podSpec(o), out: &bytes.Buffer{}, done: make(chan error, 1)}
	adminKey := make([]byte, 32)
	rand.Read(adminKey)
	secretValue := func(secret, key string) string {
		switch secret + "/" + key {
		case "httvps-redis/url":
			return redis
		case "httvps-control/admin-key":
			return hex.EncodeToString(adminKey)
		}
		t.Fatalf("no test value for secret %s key %s", secret, key)
		return ""
	}
	// Volume mounts → directories in tmp with the secret's files.
	mounts := map[string]string{}
	volumes := map[string]map[string]any{}
	for _, v := range list(rn.pod["volumes"]) {
		volumes[str(mapOf(v)["name"])] = mapOf(v)
	}
	for _, vm := range list(c["volumeMounts"]) {
		mp := str(mapOf(vm)["mountPath"])
		dir := filepath.Join(tmp, strings.ReplaceAll(strings.Trim(mp, "/"), "/", "_"))
		mounts[mp] = dir
		sec := mapOf(dig(volumes[str(mapOf(vm)["name"])], "secret"))
		if sec == nil {
			t.Fatalf("mount %s is not a secret volume", mp)
		}
		name := str(sec["secretName"])
		if strings.HasSuffix(name, "-tls") {
			rn.certPEM = testCert(t, dir)
			continue
		}
		os.MkdirAll(dir, 0o700)
		for _, it := range list(sec["items"]) {
			os.WriteFile(filepath.Join(dir, str(mapOf(it)["path"])), []byte(secretValue(name, str(mapOf(it)["key"]))+"\n"), 0o600)
		}
	}
	rewrite := func(v string) string {
		for mp, dir := range mounts {
			if rest, ok := strings.CutPrefix(v, mp+"/"); ok {
				return filepath.Join(dir, rest)
			}
		}
		return v
	}
	var args []string
	for _, a := range list(c["args"]) {
		name, v, _ := splitArg(str(a))
		switch {
		case name == "listen" || name == "admin-listen":
			_, p, err := net.SplitHostPort(v)
			if err != nil {
				t.Fatalf("-%s=%s: %v", name, v, err)
			}
			cp, _ := strconv.Atoi(p)
			lp := freePort(t)
			rn.ports[cp] = lp
			addr := fmt.Sprintf("127.0.0.1:%d", lp)
			if name == "listen" {
				rn.listen = addr
			} else {
				rn.admin = addr
			}
			v = addr
		default:
			v = rewrite(v)
		}
		args = append(args, "-"+name+"="+v)
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + tmp}
	for _, e := range list(c["env"]) {
		n := str(mapOf(e)["name"])
		var v string
		if r := mapOf(dig(e, "valueFrom", "secretKeyRef")); r != nil {
			v = secretValue(str(r["name"]), str(r["key"]))
		} else {
			v = rewrite(str(mapOf(e)["value"]))
		}
		if redis == "" && (n == "HTTVPS_REDIS" || n == "HTTVPS_PUBLIC_URL" && bin.name == "httvps-gateway") {
			continue // no Redis here: run on static routes / the embedded store
		}
		env = append(env, n+"="+v)
	}
	if redis == "" {
		switch bin.name {
		case "httvps-gateway":
			args = append(args, "-route=deploytest-secret-0123456789=127.0.0.1:9")
		case "httvps-control":
			args = append(args, "-data-dir="+filepath.Join(tmp, "data"))
		}
	}
	if rn.admin == "" || rn.listen == "" {
		t.Fatalf("%s: the manifest must give -listen and -admin-listen", bin.name)
	}
	rn.cmd = exec.Command(bin.path, args...)
	rn.cmd.Env = env
	rn.cmd.Dir = tmp
	rn.cmd.Stdout, rn.cmd.Stderr = rn.out, rn.out
	if err := rn.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { rn.done <- rn.cmd.Wait() }()
	t.Cleanup(func() {
		if rn.cmd.ProcessState == nil {
			rn.cmd.Process.Kill()
			<-rn.done
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-rn.done:
			rn.done <- err
			t.Fatalf("%s %v exited at start: %v\n%s", bin.name, args, err, rn.out.String())
		default:
		}
		if res, err := http.Get("http://" + rn.admin + "/healthz"); err == nil {
			res.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: admin listener %s never answered\n%s", bin.name, rn.admin, rn.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return rn
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	res, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

var (
	scrapeMu sync.Mutex
	scrapes  = map[string]string{} // binary → /metrics body
)

// TestManifestsRun starts each httvps container of the manifests with its
// own arguments and checks that the probes and the scrape annotation reach
// the real admin endpoints, that the client port serves TLS with the mounted
// certificate, and that SIGTERM drains and exits 0 within the grace period.
func TestManifestsRun(t *testing.T) {
	bins := binaries(t)
	redis := redisURL(t)
	for _, o := range workloads(manifests(t)) {
		for _, c := range containers(o) {
			bn := binaryOf(str(c["image"]))
			if bn == "" {
				continue
			}
			t.Run(bn, func(t *testing.T) {
				rn := start(t, bins[bn], o, c, redis)
				portOf := func(p any) int {
					for _, cp := range list(c["ports"]) {
						n, _ := mapOf(cp)["containerPort"].(int)
						if mapOf(cp)["name"] == p || n == p {
							return n
						}
					}
					return 0
				}
				for probe, path := range map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz"} {
					hg := mapOf(dig(c, probe, "httpGet"))
					if hg == nil {
						t.Errorf("%s: %s is not an httpGet probe", bn, probe)
						continue
					}
					if str(hg["path"]) != path {
						t.Errorf("%s: %s path %q, want %s", bn, probe, hg["path"], path)
					}
					cp := portOf(hg["port"])
					lp, ok := rn.ports[cp]
					if !ok || fmt.Sprintf("127.0.0.1:%d", lp) != rn.admin {
						t.Errorf("%s: %s port %v (container port %d) is not -admin-listen", bn, probe, hg["port"], cp)
						continue
					}
					if code, body := get(t, fmt.Sprintf("http://127.0.0.1:%d%s", lp, str(hg["path"]))); code != 200 {
						t.Errorf("%s: %s %s: %d %s", bn, probe, hg["path"], code, body)
					}
				}
				ann := mapOf(dig(o.m, "spec", "template", "metadata", "annotations"))
				ap, _ := strconv.Atoi(str(ann["prometheus.io/port"]))
				lp, ok := rn.ports[ap]
				if !ok || fmt.Sprintf("127.0.0.1:%d", lp) != rn.admin {
					t.Errorf("%s: prometheus.io/port %d is not -admin-listen", bn, ap)
				} else {
					code, body := get(t, fmt.Sprintf("http://127.0.0.1:%d%s", lp, str(ann["prometheus.io/path"])))
					if code != 200 || !strings.Contains(body, "process_resident_memory_bytes") {
						t.Errorf("%s: scrape: %d", bn, code)
					}
					scrapeMu.Lock()
					scrapes[bn] = body
					scrapeMu.Unlock()
				}

				// The client port speaks TLS with the mounted certificate.
				if rn.certPEM != nil {
					pool := x509.NewCertPool()
					pool.AppendCertsFromPEM(rn.certPEM)
					d := tls.Dialer{Config: &tls.Config{RootCAs: pool, ServerName: "vpn.example.com"}, NetDialer: &net.Dialer{Timeout: 5 * time.Second}}
					conn, err := d.DialContext(context.Background(), "tcp", rn.listen)
					if err != nil {
						t.Errorf("%s: TLS on -listen %s: %v", bn, rn.listen, err)
					} else {
						conn.Close()
					}
				}

				// SIGTERM: drain, exit 0, well within the grace period.
				grace, _ := rn.pod["terminationGracePeriodSeconds"].(int)
				start := time.Now()
				rn.cmd.Process.Signal(syscall.SIGTERM)
				select {
				case err := <-rn.done:
					if err != nil {
						t.Errorf("%s: exit after SIGTERM: %v\n%s", bn, err, rn.out.String())
					}
				case <-time.After(time.Duration(grace) * time.Second):
					t.Errorf("%s: still running %ds (terminationGracePeriodSeconds) after SIGTERM with no sessions", bn, grace)
				}
				t.Logf("%s stopped %v after SIGTERM", bn, time.Since(start).Round(time.Millisecond))
			})
		}
	}
}

// sourceSeconds reads "name = N * time.Second" from a command's source, so
// the grace periods follow the binaries; def when the constant moved.
func sourceSeconds(t *testing.T, file, name string, def int) time.Duration {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(root(t), file))
	m := regexp.MustCompile(`\b` + name + `\s*=\s*(\d+)\s*\*\s*time\.Second`).FindSubmatch(b)
	if m == nil {
		t.Logf("%s: %s not found; assuming %ds", file, name, def)
		return time.Duration(def) * time.Second
	}
	n, _ := strconv.Atoi(string(m[1]))
	return time.Duration(n) * time.Second
}

// TestGracePeriods checks terminationGracePeriodSeconds against preStop and
// the binaries' own shutdown bounds: the gateway needs -drain-timeout plus
// its 5 s force-close slack, the control plane 15 s for requests in flight.
func TestGracePeriods(t *testing.T) {
	for _, o := range workloads(manifests(t)) {
		ps := podSpec(o)
		grace, _ := ps["terminationGracePeriodSeconds"].(int)
		for _, c := range containers(o) {
			bn := binaryOf(str(c["image"]))
			if bn == "" {
				continue
			}
			pre := mapOf(dig(c, "lifecycle", "preStop"))
			if dig(pre, "exec") != nil {
				t.Errorf("%s: preStop exec cannot run in a distroless image (no shell, no sleep); use the sleep action", o)
			}
			sleep, _ := dig(pre, "sleep", "seconds").(int)
			if sleep < 5 {
				t.Errorf("%s: preStop sleep %ds: the load balancer needs time to stop sending before SIGTERM", o, sleep)
			}
			var shutdown time.Duration
			switch bn {
			case "httvps-gateway":
				shutdown = 30 * time.Second // -drain-timeout default
				for _, a := range list(c["args"]) {
					if n, v, _ := splitArg(str(a)); n == "drain-timeout" {
						shutdown, _ = time.ParseDuration(v)
					}
				}
				shutdown += sourceSeconds(t, "cmd/httvps-gateway/main.go", "shutdownSlack", 5)
			case "httvps-control":
				shutdown = sourceSeconds(t, "cmd/httvps-control/main.go", "shutdownTimeout", 15)
			}
			need := time.Duration(sleep)*time.Second + shutdown
			if time.Duration(grace)*time.Second <= need {
				t.Errorf("%s: terminationGracePeriodSeconds %d must exceed preStop %ds + shutdown %v", o, grace, sleep, shutdown)
			}
		}
	}
}
