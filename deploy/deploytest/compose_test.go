package deploytest_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// composeBinary names the httvps binary a compose service's image runs
// (with its subcommand), or "".
func composeBinary(image string) string {
	name := regexp.MustCompile(`/([a-z-]+):`).FindStringSubmatch(image)
	if name == nil {
		return ""
	}
	switch name[1] {
	case "httvps", "httvps-gateway", "httvps-control":
		return name[1]
	}
	return ""
}

// imageDataDir is the HTTVPS_DATA_DIR that bin's image sets (the prebuilt
// Dockerfile, what make images builds), or "".
func imageDataDir(t *testing.T, bin string) string {
	t.Helper()
	for file, b := range dockerfiles {
		if b == bin {
			return parseDockerfile(t, filepath.Join(root(t), "deploy", "docker", "prebuilt", file)).env["HTTVPS_DATA_DIR"]
		}
	}
	return ""
}

// TestCompose checks deploy/compose.yaml: the two profiles and their
// services, the images (ghcr.io/httvps names, registry and tag
// overridable), hardening, and every HTTVPS_* variable and command word
// against the binaries; the static member's host is the Shadowsocks
// service's fixed address.
func TestCompose(t *testing.T) {
	path := filepath.Join(root(t), "deploy", "compose.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Name     string                    `yaml:"name"`
		Services map[string]map[string]any `yaml:"services"`
		Volumes  map[string]any            `yaml:"volumes"`
		Networks map[string]any            `yaml:"networks"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil { // merges the x-hardening anchor
		t.Fatal(err)
	}
	profiles := map[string][]string{}
	for name, s := range doc.Services {
		for _, p := range list(s["profiles"]) {
			profiles[str(p)] = append(profiles[str(p)], name)
		}
		if len(list(s["profiles"])) == 0 {
			t.Errorf("service %s has no profile: it would start in both setups", name)
		}
		for _, dep := range list(s["depends_on"]) {
			if doc.Services[str(dep)] == nil {
				t.Errorf("service %s depends on unknown %v", name, dep)
			}
		}
		for _, v := range list(s["volumes"]) {
			vol, _, _ := strings.Cut(str(v), ":")
			if _, ok := doc.Volumes[vol]; !ok {
				t.Errorf("service %s: volume %q is not declared", name, vol)
			}
		}
	}
	for p, want := range map[string][]string{"single": {"httvps", "shadowsocks"}, "fleet": {"control", "gateway", "redis", "shadowsocks"}} {
		got := profiles[p]
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("profile %s: services %v, want %v", p, got, want)
		}
	}

	ssIP := str(dig(doc.Services["shadowsocks"], "networks", "default", "ipv4_address"))
	bins := binaries(t)
	seen := map[string]bool{}
	for name, s := range doc.Services {
		image := str(s["image"])
		bn := composeBinary(image)
		if bn == "" {
			continue
		}
		seen[bn] = true
		if want := "${HTTVPS_REGISTRY:-ghcr.io/httvps}/" + bn + ":${HTTVPS_TAG:-latest}"; image != want {
			t.Errorf("service %s: image %q, want %q", name, image, want)
		}
		if s["read_only"] != true || !slices.Contains(list(s["cap_drop"]), any("ALL")) || str(s["restart"]) != "on-failure" ||
			!slices.Contains(list(s["security_opt"]), any("no-new-privileges:true")) {
			t.Errorf("service %s: want read_only, cap_drop ALL, no-new-privileges and restart on-failure", name)
		}
		var b *binary
		cmd := list(s["command"])
		if bn == "httvps" {
			if len(cmd) == 0 || cmd[0] != "up" {
				t.Errorf("service %s: command %v, want [up ...]", name, cmd)
			}
			cmd = cmd[min(1, len(cmd)):]
			b = httvpsUp(t)
		} else {
			b = bins[bn]
		}
		for _, a := range cmd {
			fname, _, _ := splitArg(str(a))
			if _, ok := b.flags[fname]; !ok {
				t.Errorf("service %s: %s -h has no flag -%s", name, b.name, fname)
			}
		}
		all := helpEnvs(t, b)
		env := mapOf(s["environment"])
		for k, v := range env {
			if !all[k] {
				t.Errorf("service %s: %s -h has no environment variable %s", name, b.name, k)
				continue
			}
			if f, ok := b.envs[k]; ok && !strings.Contains(str(v), "${") {
				if err := checkValue(b.flags[f].typ, str(v)); err != nil {
					t.Errorf("service %s: %s=%v: %v", name, k, v, err)
				}
			}
		}
		if m := str(env["HTTVPS_MEMBER"]); m != "" && !strings.HasPrefix(m, "static:"+ssIP+":8388:") {
			t.Errorf("service %s: HTTVPS_MEMBER %q does not name the shadowsocks service at %s:8388", name, m, ssIP)
		}
		if d := str(env["HTTVPS_DATA_DIR"]); d != "" && !slices.ContainsFunc(list(s["volumes"]), func(v any) bool { return strings.HasSuffix(str(v), ":"+d) }) {
			t.Errorf("service %s: HTTVPS_DATA_DIR %s is not a volume (read_only root)", name, d)
		}
		// A named volume takes the owner of the image's directory it is
		// mounted on, root for one the image lacks: the data volume must be
		// the image's own data directory, which its non-root user owns
		// (the httvps service once mounted /data).
		if dir := imageDataDir(t, bn); dir != "" && len(list(s["volumes"])) > 0 {
			if d := str(env["HTTVPS_DATA_DIR"]); d != "" && d != dir {
				t.Errorf("service %s: HTTVPS_DATA_DIR %s, the image's data directory is %s", name, d, dir)
			}
			if !slices.ContainsFunc(list(s["volumes"]), func(v any) bool { return strings.HasSuffix(str(v), ":"+dir) }) {
				t.Errorf("service %s: no volume on the image's data directory %s (volumes %v)", name, dir, s["volumes"])
			}
		}
		// The listen port is the one published for clients.
		if l := str(env["HTTVPS_LISTEN"]); bn != "httvps-control" {
			_, port, _ := strings.Cut(l, ":")
			if !slices.Contains(list(s["ports"]), any("443:"+port)) {
				t.Errorf("service %s: HTTVPS_LISTEN %s is not published on 443 (ports %v)", name, l, s["ports"])
			}
		}
	}
	for _, bn := range []string{"httvps", "httvps-gateway", "httvps-control"} {
		if !seen[bn] {
			t.Errorf("no compose service runs %s", bn)
		}
	}
	if ss := doc.Services["shadowsocks"]; !strings.HasPrefix(str(ss["image"]), "shadowsocks/shadowsocks-libev:") || ssIP == "" {
		t.Errorf("shadowsocks service: image %v, ipv4_address %q", ss["image"], ssIP)
	}
}
