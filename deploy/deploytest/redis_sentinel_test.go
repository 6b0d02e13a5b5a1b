package deploytest_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/httvps/httvps/internal/testpeer"
	"github.com/httvps/httvps/store"
	"github.com/httvps/httvps/store/redisstore"
)

// sentinelManifest is what redis_sentinel_test.go reads of
// deploy/k8s/redis-sentinel.yaml.
type sentinelManifest struct {
	url      string            // the -redis URL its header gives, PASSWORD as placeholder
	scripts  map[string]string // the ConfigMap's files
	replicas int
	services map[string]map[string]int // Service name → port name → port
}

func readSentinelManifest(t *testing.T) sentinelManifest {
	t.Helper()
	path := filepath.Join(root(t), "deploy", "k8s", "redis-sentinel.yaml")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := sentinelManifest{scripts: map[string]string{}, services: map[string]map[string]int{}}
	m.url = regexp.MustCompile(`redis\+sentinel://\S+`).FindString(string(raw))
	for _, d := range decodeAll(t, path) {
		o := obj{m: d, file: path}
		switch o.kind() {
		case "ConfigMap":
			for k, v := range mapOf(d["data"]) {
				m.scripts[k] = str(v)
			}
		case "StatefulSet":
			m.replicas, _ = dig(d, "spec", "replicas").(int)
		case "Service":
			ports := map[string]int{}
			for _, p := range list(dig(d, "spec", "ports")) {
				ports[str(mapOf(p)["name"])], _ = mapOf(p)["port"].(int)
			}
			m.services[o.name()] = ports
		}
	}
	return m
}

// The Sentinel manifest agrees with itself: the URL its header gives is
// one redisstore accepts, names the Service and port the manifest has and
// the master name the scripts monitor, and the quorum is a majority.
func TestRedisSentinelManifest(t *testing.T) {
	m := readSentinelManifest(t)
	if m.url == "" {
		t.Fatal("redis-sentinel.yaml gives no redis+sentinel:// URL")
	}
	url := strings.ReplaceAll(m.url, "PASSWORD", "pw")
	if err := redisstore.CheckURL(url); err != nil {
		t.Errorf("URL %s: %v", m.url, err)
	}
	hp := regexp.MustCompile(`@([a-z0-9-]+)\.httvps\.svc\.cluster\.local:(\d+)/([^/?]+)/`).FindStringSubmatch(m.url)
	if hp == nil {
		t.Fatalf("URL %s: want @SERVICE.httvps.svc.cluster.local:PORT/MASTER/DB", m.url)
	}
	if port, _ := strconv.Atoi(hp[2]); m.services[hp[1]]["sentinel"] != port {
		t.Errorf("URL names %s:%s, the manifest's Services are %v", hp[1], hp[2], m.services)
	}
	if want := `: "${HA_MASTER:=` + hp[3] + `}"`; !strings.Contains(m.scripts["common.sh"], want) {
		t.Errorf("URL master %q is not the scripts' HA_MASTER default", hp[3])
	}
	quorum := regexp.MustCompile(`sentinel monitor \$HA_MASTER \$primary (\d+)`).FindStringSubmatch(m.scripts["sentinel.sh"])
	if quorum == nil {
		t.Fatal("sentinel.sh: no sentinel monitor line")
	}
	if q, _ := strconv.Atoi(quorum[1]); m.replicas < 3 || m.replicas%2 == 0 || q != m.replicas/2+1 {
		t.Errorf("%d pods with a quorum of %s: want an odd number ≥ 3 and a majority", m.replicas, quorum[1])
	}
	for _, k := range []string{"common.sh", "redis.sh", "sentinel.sh"} {
		if m.scripts[k] == "" {
			t.Errorf("ConfigMap has no %s", k)
		}
	}
}

// haPod is one pod of the set, run on loopback: its two scripts as
// processes, with the environment that common.sh lets a test override.
type haPod struct {
	t                   *testing.T
	dir, data           string
	redisPort, sentPort int
	env                 []string
	mu                  sync.Mutex
	procs               []*exec.Cmd
	out                 *testpeer.LockedBuffer
}

func (p *haPod) start() {
	p.t.Helper()
	for _, script := range []string{"redis.sh", "sentinel.sh"} {
		cmd := exec.Command("sh", filepath.Join(p.dir, script))
		cmd.Env = append(os.Environ(), p.env...)
		cmd.Stdout, cmd.Stderr = p.out, p.out
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			p.t.Fatal(err)
		}
		p.mu.Lock()
		p.procs = append(p.procs, cmd)
		p.mu.Unlock()
	}
}

func (p *haPod) output() string { return p.out.String() }

// kill ends the pod as a node loss would.
func (p *haPod) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.procs {
		syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
		c.Wait()
	}
	p.procs = nil
}

func haClient(port int, password string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Password: password, DialTimeout: 500 * time.Millisecond, MaxRetries: -1})
}

func haInfo(port int, password string) string {
	c := haClient(port, password)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s, _ := c.Info(ctx, "replication").Result()
	return s
}

// haPrimary is the primary's port as the Sentinel on port names it.
func haPrimary(port int, password, master string) int {
	c := redis.NewSentinelClient(&redis.Options{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Password: password, DialTimeout: 500 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	a, err := c.GetMasterAddrByName(ctx, master).Result()
	if err != nil || len(a) != 2 {
		return 0
	}
	p, _ := strconv.Atoi(a[1])
	return p
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

// The manifest's own pod scripts, run on loopback with Debian's
// redis-server and redis-sentinel: the first start makes pod 0 the primary
// and the others its replicas, the URL from the manifest reaches it
// through the Sentinels, a lost pod 0 is replaced by a promoted replica
// with the data intact, and pod 0 started again (same data directory)
// rejoins as a replica of the new primary.
func TestRedisSentinelPodScripts(t *testing.T) {
	for _, bin := range []string{"redis-server", "redis-sentinel", "redis-cli", "sh", "timeout", "sed"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed", bin)
		}
	}
	m := readSentinelManifest(t)
	dir := t.TempDir()
	for name, body := range m.scripts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const password, master = "deploytest-pw", "httvps"
	pods := make([]*haPod, 3)
	var sentinels []string
	for i := range pods {
		pods[i] = &haPod{t: t, dir: dir, data: t.TempDir(), redisPort: testpeer.FreePort(t), sentPort: testpeer.FreePort(t), out: &testpeer.LockedBuffer{}}
		sentinels = append(sentinels, fmt.Sprintf("127.0.0.1:%d", pods[i].sentPort))
	}
	for _, p := range pods {
		p.env = []string{
			"HA_SELF=127.0.0.1",
			"HA_SEED=127.0.0.1:" + strconv.Itoa(pods[0].redisPort),
			"HA_SENTINELS=" + strings.Join(sentinels, " "),
			"REDIS_PORT=" + strconv.Itoa(p.redisPort),
			"SENTINEL_PORT=" + strconv.Itoa(p.sentPort),
			"DATA_DIR=" + p.data,
			"REDIS_PASSWORD=" + password,
			// Short, so the failover takes seconds (the manifest: 5 s, 60 s).
			"DOWN_AFTER_MS=1000",
			"FAILOVER_TIMEOUT_MS=3000",
		}
		p.start()
		t.Cleanup(p.kill)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i, p := range pods {
				t.Logf("pod %d output:\n%s", i, p.output())
			}
		}
	})

	took := eventually(t, 30*time.Second, "pod 0 primary with two replicas, every Sentinel seeing the set", func() bool {
		// Both replicas online (the first full sync done): a failover
		// before that loses what only the primary had.
		if strings.Count(haInfo(pods[0].redisPort, password), ",state=online,") != 2 {
			return false
		}
		for _, p := range pods {
			c := redis.NewSentinelClient(&redis.Options{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(p.sentPort)), Password: password, MaxRetries: -1})
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			mm, _ := c.Master(ctx, master).Result()
			cancel()
			c.Close()
			if mm["num-slaves"] != "2" || mm["num-other-sentinels"] != "2" {
				return false
			}
		}
		return true
	})
	t.Logf("the set was up %v after its pods started", took.Round(time.Millisecond))

	url := strings.NewReplacer("PASSWORD", password, "httvps-redis-sentinel.httvps.svc.cluster.local:26379",
		strings.Join(sentinels, ",")).Replace(m.url)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := redisstore.New(ctx, url)
	if err != nil {
		t.Fatalf("the manifest's URL: %v", err)
	}
	defer st.Close()
	tok := store.Token{ID: store.NewID(), Hash: [32]byte{9}, Cipher: "chacha20-ietf-poly1305", SSPassword: "x"}
	if err := st.CreateToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if err := st.AddUsage(ctx, time.Now(), map[string]store.Usage{tok.ID: {Up: 100, Down: 200}}); err != nil {
		t.Fatal(err)
	}

	pods[0].kill()
	var newPrimary int
	took = eventually(t, 30*time.Second, "the Sentinels of pods 1 and 2 to promote a replica", func() bool {
		a, b := haPrimary(pods[1].sentPort, password, master), haPrimary(pods[2].sentPort, password, master)
		newPrimary = a
		return a == b && (a == pods[1].redisPort || a == pods[2].redisPort)
	})
	t.Logf("a replica was promoted %v after pod 0 was lost", took.Round(time.Millisecond))
	eventually(t, 10*time.Second, "the store to answer on the new primary with the usage intact", func() bool {
		c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		u, err := st.GetUsage(c, tok.ID)
		return err == nil && u == store.Usage{Up: 100, Down: 200}
	})

	pods[0].start()
	took = eventually(t, 40*time.Second, "pod 0 to rejoin as a replica of the new primary", func() bool {
		info := haInfo(pods[0].redisPort, password)
		return strings.Contains(info, "role:slave") && strings.Contains(info, "master_port:"+strconv.Itoa(newPrimary)) &&
			strings.Contains(info, "master_link_status:up")
	})
	t.Logf("pod 0 was a replica of the new primary %v after it started again", took.Round(time.Millisecond))
	for i, p := range pods {
		if strings.Contains(p.output(), "+convert-to-slave") {
			t.Errorf("pod 0 started as a primary again and pod %d's Sentinel demoted it", i)
		}
	}
	eventually(t, 20*time.Second, "pod 0's Sentinel to agree", func() bool {
		return haPrimary(pods[0].sentPort, password, master) == newPrimary
	})
}
