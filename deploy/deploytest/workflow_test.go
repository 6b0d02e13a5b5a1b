package deploytest_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// makeTargets lists the targets the Makefile defines (rules at the start
// of a line; pattern and special targets excluded).
func makeTargets(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root(t), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range regexp.MustCompile(`(?m)^([a-z][a-z0-9-]*(?: [a-z][a-z0-9-]*)*):(?:[^=]|$)`).FindAllStringSubmatch(string(b), -1) {
		out = append(out, strings.Fields(m[1])...)
	}
	return out
}

// readmeTestCommand is the command the README's quick start gives for the
// tests ("make test    # ...").
func readmeTestCommand(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^(make [a-z-]+)\s+#.*\btests?\b`).FindSubmatch(b)
	if m == nil {
		t.Fatal("README.md: no \"make …  # … test\" line in the quick start")
	}
	return string(m[1])
}

// TestWorkflow checks .github/workflows/ci-cd.yaml: its triggers, that the
// test job runs the README's test command, that the image job pushes the
// images (make images) for two architectures on main with the commit SHA and latest, that
// the release job builds static binaries with sums on tags, that actions
// are pinned to versions, and that every make target it calls exists.
func TestWorkflow(t *testing.T) {
	r := root(t)
	docs := decodeAll(t, filepath.Join(r, ".github", "workflows", "ci-cd.yaml"))
	if len(docs) != 1 {
		t.Fatalf("ci-cd.yaml: %d documents", len(docs))
	}
	w := docs[0]
	// yaml.v3 reads the key "on" as the string "on" (YAML 1.2).
	on := mapOf(w["on"])
	if on == nil {
		t.Fatal("ci-cd.yaml: no on: triggers")
	}
	if _, ok := on["pull_request"]; !ok {
		t.Error("ci-cd.yaml: not triggered by pull_request")
	}
	push := mapOf(on["push"])
	if !slices.Contains(list(push["branches"]), any("main")) {
		t.Error("ci-cd.yaml: push trigger does not cover main")
	}
	if !slices.ContainsFunc(list(push["tags"]), func(v any) bool { return strings.HasPrefix(str(v), "v") }) {
		t.Error("ci-cd.yaml: push trigger has no v* tags (release)")
	}
	if !strings.Contains(str(dig(w, "env", "REGISTRY")), "ghcr.io/httvps") || !strings.Contains(str(dig(w, "env", "REGISTRY")), "vars.REGISTRY") {
		t.Errorf("ci-cd.yaml: env REGISTRY %q: want the REGISTRY variable, ghcr.io/httvps by default", dig(w, "env", "REGISTRY"))
	}

	jobs := mapOf(w["jobs"])
	for _, j := range []string{"test", "images", "release"} {
		if jobs[j] == nil {
			t.Errorf("ci-cd.yaml: no %s job", j)
		}
	}
	runs := func(job string) string {
		var b strings.Builder
		for _, s := range list(dig(jobs, job, "steps")) {
			b.WriteString(str(mapOf(s)["run"]) + "\n")
		}
		return b.String()
	}
	targets := makeTargets(t)
	for _, want := range []string{"test", "images", "gateway-image", "control-image", "httvps-image", "release", "k8s-apply", "k8s-delete"} {
		if !slices.Contains(targets, want) {
			t.Errorf("Makefile has no %s target", want)
		}
	}
	makeCall := regexp.MustCompile(`(?m)(?:^|&&|;|\|\|)[ \t]*make((?:[ \t]+[^\s|&;]+)*)`)
	for name := range jobs {
		for _, m := range makeCall.FindAllStringSubmatch(runs(name), -1) {
			for _, a := range strings.Fields(m[1]) {
				if strings.HasPrefix(a, "-") || strings.Contains(a, "=") {
					continue
				}
				if !slices.Contains(targets, a) {
					t.Errorf("ci-cd.yaml job %s: make %s: no such Makefile target", name, a)
				}
			}
		}
		for _, s := range list(dig(jobs, name, "steps")) {
			if u := str(mapOf(s)["uses"]); u != "" && !regexp.MustCompile(`^[\w.-]+/[\w.-]+@v\d+\.\d+\.\d+$`).MatchString(u) {
				t.Errorf("ci-cd.yaml job %s: %s is not pinned to a full version", name, u)
			}
		}
		if dig(jobs, name, "timeout-minutes") == nil {
			t.Errorf("ci-cd.yaml job %s: no timeout-minutes", name)
		}
	}

	cmd := readmeTestCommand(t)
	if !regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(cmd) + `\s*$`).MatchString(runs("test")) {
		t.Errorf("ci-cd.yaml test job does not run the README's test command %q:\n%s", cmd, runs("test"))
	}
	if on := str(dig(jobs, "test", "if")); on != "" {
		t.Errorf("ci-cd.yaml test job is conditional (%s): it must run on every push and pull request", on)
	}

	img := runs("images")
	if cond := str(dig(jobs, "images", "if")); !strings.Contains(cond, "refs/heads/main") || !strings.Contains(cond, "push") {
		t.Errorf("ci-cd.yaml images job runs on %q, want pushes to main", cond)
	}
	if !slices.Contains(list(dig(jobs, "images", "needs")), any("test")) && str(dig(jobs, "images", "needs")) != "test" {
		t.Error("ci-cd.yaml images job does not need test")
	}
	for _, want := range []string{"make images", "CONTAINER=docker", "PUSH=1", "linux/amd64", "linux/arm64", "$REGISTRY", "$GITHUB_SHA", "EXTRA_TAGS=latest"} {
		if !strings.Contains(img, want) {
			t.Errorf("ci-cd.yaml images job lacks %s:\n%s", want, img)
		}
	}
	if str(dig(jobs, "images", "permissions", "packages")) != "write" {
		t.Error("ci-cd.yaml images job needs packages: write to push to GHCR")
	}
	var uses []string
	for _, s := range list(dig(jobs, "images", "steps")) {
		uses = append(uses, strings.Split(str(mapOf(s)["uses"]), "@")[0])
	}
	for _, want := range []string{"docker/setup-qemu-action", "docker/setup-buildx-action", "docker/login-action"} {
		if !slices.Contains(uses, want) {
			t.Errorf("ci-cd.yaml images job does not use %s", want)
		}
	}

	rel := runs("release")
	if cond := str(dig(jobs, "release", "if")); !strings.Contains(cond, "refs/tags/v") {
		t.Errorf("ci-cd.yaml release job runs on %q, want v* tags", cond)
	}
	for _, want := range []string{"make release", "dist/"} {
		if !strings.Contains(rel, want) {
			t.Errorf("ci-cd.yaml release job lacks %s:\n%s", want, rel)
		}
	}
}

// TestMakeImageNames checks, with make -n, the names the image targets
// give (make images builds all three, so CI/CD pushes all three) and that
// k8s-apply and k8s-delete act on namespace httvps through an overlay that
// sets the images the manifests use; kubectl kustomize renders it where
// kubectl is installed.
func TestMakeImageNames(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make not installed")
	}
	r := root(t)
	mk := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("make", append([]string{"--no-print-directory", "-n", "-C", r}, args...)...)
		cmd.Env = append(os.Environ(), "MAKEFLAGS=", "MAKELEVEL=")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("make -n %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	out := mk("gateway-image", "control-image", "httvps-image", "REGISTRY=example.org/x", "TAG=t")
	for _, want := range []string{"-t example.org/x/httvps-gateway:t ", "-t example.org/x/httvps-control:t ", "-t example.org/x/httvps:t ",
		"-f deploy/docker/prebuilt/httvps.Dockerfile ", "./cmd/httvps ", "CGO_ENABLED=0", versionPkg + ".Version="} {
		if !strings.Contains(out, want) {
			t.Errorf("make -n gateway-image control-image httvps-image: no %q in\n%s", want, out)
		}
	}
	out = mk("images", "CONTAINER=docker", "PUSH=1", "PLATFORMS=linux/amd64,linux/arm64", "TAG=abc", "EXTRA_TAGS=latest")
	for _, want := range []string{"docker buildx build --platform linux/amd64,linux/arm64 --push", "-t ghcr.io/httvps/httvps-control:latest",
		"-t ghcr.io/httvps/httvps-gateway:latest", "-t ghcr.io/httvps/httvps:latest", "GOARCH=arm64"} {
		if !strings.Contains(out, want) {
			t.Errorf("make -n images (docker, two platforms): no %q in\n%s", want, out)
		}
	}
	out = mk("release")
	for _, want := range []string{"GOOS=linux GOARCH=amd64", "GOOS=linux GOARCH=arm64", "CGO_ENABLED=0", "sha256sum", "SHA256SUMS", "./cmd/httvps-gateway", "./cmd/httvps-control"} {
		if !strings.Contains(out, want) {
			t.Errorf("make -n release: no %q in\n%s", want, out)
		}
	}
	for _, target := range []string{"k8s-apply", "k8s-delete"} {
		out = mk(target)
		if !regexp.MustCompile(`(?m)^kubectl (apply|delete) --namespace httvps .*-k `).MatchString(out) || !strings.Contains(out, "'namespace: httvps'") {
			t.Errorf("make -n %s does not act on namespace httvps:\n%s", target, out)
		}
	}

	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Log("kubectl not installed: the overlay is not rendered")
		return
	}
	// make k8s-render writes bin/k8s (it names ../../deploy/k8s).
	cmd := exec.Command("make", "--no-print-directory", "-C", r, "k8s-render", "REGISTRY=example.org/x", "TAG=t")
	cmd.Env = append(os.Environ(), "MAKEFLAGS=", "MAKELEVEL=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make k8s-render: %v\n%s", err, out)
	}
	rendered, err := exec.Command(kubectl, "kustomize", filepath.Join(r, "bin", "k8s")).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize of make k8s-render's overlay: %v\n%s", err, rendered)
	}
	// The overlay sets only images the manifests run (not the single
	// node's httvps).
	overlay := decodeAll(t, filepath.Join(r, "bin", "k8s", "kustomization.yaml"))
	used := map[string]bool{}
	for _, o := range workloads(manifests(t)) {
		for _, c := range containers(o) {
			used[strings.SplitN(str(c["image"]), ":", 2)[0]] = true
		}
	}
	for _, im := range list(overlay[0]["images"]) {
		if n := str(mapOf(im)["name"]); !used[n] {
			t.Errorf("make k8s-render sets image %s, which no manifest runs", n)
		}
	}
	for _, want := range []string{"image: example.org/x/httvps-gateway:t", "image: example.org/x/httvps-control:t"} {
		if !strings.Contains(string(rendered), want) {
			t.Errorf("rendered overlay lacks %q", want)
		}
	}
	if strings.Contains(string(rendered), "kind: Secret") {
		t.Error("the overlay applies Secrets: it would overwrite real ones with placeholders")
	}
}
