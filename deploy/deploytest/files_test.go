package deploytest_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// root is the module root, found from the test's working directory.
func root(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/httvps/httvps\n")) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("module root not found")
		}
		dir = parent
	}
}

// obj is one Kubernetes object from a manifest file.
type obj struct {
	file string
	m    map[string]any
}

func (o obj) kind() string { return str(o.m["kind"]) }
func (o obj) name() string { return str(dig(o.m, "metadata", "name")) }
func (o obj) String() string {
	return fmt.Sprintf("%s: %s/%s", filepath.Base(o.file), o.kind(), o.name())
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func dig(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

func mapOf(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// decodeAll decodes every YAML document of a file.
func decodeAll(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	var docs []map[string]any
	for i := 0; ; i++ {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", path, i, err)
		}
		if m != nil {
			docs = append(docs, m)
		}
	}
}

// manifests returns every object of deploy/k8s/*.yaml (the kustomization and
// the secrets template included).
func manifests(t *testing.T) []obj {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root(t), "deploy", "k8s", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	var objs []obj
	for _, f := range files {
		for _, m := range decodeAll(t, f) {
			objs = append(objs, obj{file: f, m: m})
		}
	}
	return objs
}

// workloads are the objects with a pod template.
func workloads(objs []obj) []obj {
	var out []obj
	for _, o := range objs {
		switch o.kind() {
		case "Deployment", "StatefulSet", "DaemonSet":
			out = append(out, o)
		}
	}
	return out
}

func podSpec(o obj) map[string]any { return mapOf(dig(o.m, "spec", "template", "spec")) }

func containers(o obj) []map[string]any {
	var out []map[string]any
	for _, c := range list(podSpec(o)["containers"]) {
		out = append(out, mapOf(c))
	}
	return out
}

var apiVersions = map[string]string{
	"Namespace":           "v1",
	"Secret":              "v1",
	"Service":             "v1",
	"ConfigMap":           "v1",
	"Deployment":          "apps/v1",
	"StatefulSet":         "apps/v1",
	"DaemonSet":           "apps/v1",
	"PodDisruptionBudget": "policy/v1",
	"NetworkPolicy":       "networking.k8s.io/v1",
	"Kustomization":       "kustomize.config.k8s.io/v1beta1",
}

// Known keys at the levels where a typo would be silently dropped by a
// lenient reader (the API server rejects unknown fields, kubectl may not).
var knownKeys = map[string][]string{
	"podSpec": {"containers", "initContainers", "volumes", "securityContext", "terminationGracePeriodSeconds",
		"automountServiceAccountToken", "hostNetwork", "topologySpreadConstraints", "affinity", "nodeSelector",
		"tolerations", "serviceAccountName", "priorityClassName", "dnsPolicy"},
	"container": {"name", "image", "imagePullPolicy", "command", "args", "env", "envFrom", "ports",
		"readinessProbe", "livenessProbe", "startupProbe", "lifecycle", "resources", "securityContext", "volumeMounts"},
	"probe": {"httpGet", "exec", "tcpSocket", "grpc", "initialDelaySeconds", "periodSeconds", "timeoutSeconds",
		"failureThreshold", "successThreshold", "terminationGracePeriodSeconds"},
	"podSecurityContext": {"runAsNonRoot", "runAsUser", "runAsGroup", "fsGroup", "seccompProfile", "sysctls",
		"supplementalGroups", "fsGroupChangePolicy"},
	"securityContext": {"allowPrivilegeEscalation", "readOnlyRootFilesystem", "capabilities", "runAsNonRoot",
		"runAsUser", "runAsGroup", "privileged", "seccompProfile"},
}

func checkKeys(t *testing.T, where, level string, m map[string]any) {
	t.Helper()
	for k := range m {
		if !slices.Contains(knownKeys[level], k) {
			t.Errorf("%s: unknown %s field %q", where, level, k)
		}
	}
}

// TestManifests parses every document and checks the objects' shape and the
// references between them (selectors, ports, kustomization resources).
func TestManifests(t *testing.T) {
	objs := manifests(t)
	byKind := map[string][]obj{}
	for _, o := range objs {
		want, ok := apiVersions[o.kind()]
		if !ok {
			t.Errorf("%s: unexpected kind %q", o, o.kind())
			continue
		}
		if got := str(o.m["apiVersion"]); got != want {
			t.Errorf("%s: apiVersion %q, want %q", o, got, want)
		}
		byKind[o.kind()] = append(byKind[o.kind()], o)
		switch o.kind() {
		case "Kustomization":
		case "Namespace":
			if o.name() != "httvps" {
				t.Errorf("%s: namespace name", o)
			}
		default:
			if o.name() == "" {
				t.Errorf("%s: no metadata.name", o)
			}
			if ns := str(dig(o.m, "metadata", "namespace")); ns != "httvps" {
				t.Errorf("%s: namespace %q, want httvps", o, ns)
			}
		}
	}
	for _, k := range []string{"Namespace", "Deployment", "StatefulSet", "Service", "PodDisruptionBudget", "Secret", "Kustomization"} {
		if len(byKind[k]) == 0 {
			t.Errorf("no %s in deploy/k8s", k)
		}
	}

	wl := workloads(objs)
	templateLabels := func(o obj) map[string]any { return mapOf(dig(o.m, "spec", "template", "metadata", "labels")) }
	matches := func(sel, labels map[string]any) bool {
		if len(sel) == 0 {
			return false
		}
		for k, v := range sel {
			if labels[k] != v {
				return false
			}
		}
		return true
	}
	for _, o := range wl {
		where := o.String()
		sel := mapOf(dig(o.m, "spec", "selector", "matchLabels"))
		if !matches(sel, templateLabels(o)) {
			t.Errorf("%s: selector %v does not match the pod template's labels", where, sel)
		}
		ps := podSpec(o)
		checkKeys(t, where, "podSpec", ps)
		checkKeys(t, where, "podSecurityContext", mapOf(ps["securityContext"]))
		if ps["hostNetwork"] == true {
			t.Errorf("%s: hostNetwork", where)
		}
		// The namespace enforces the restricted Pod Security Standard.
		psc := mapOf(ps["securityContext"])
		if psc["runAsNonRoot"] != true || str(dig(psc, "seccompProfile", "type")) != "RuntimeDefault" {
			t.Errorf("%s: pod securityContext must set runAsNonRoot and seccompProfile RuntimeDefault", where)
		}
		volumes := map[string]map[string]any{}
		for _, v := range list(ps["volumes"]) {
			volumes[str(mapOf(v)["name"])] = mapOf(v)
			if mode, ok := dig(v, "secret", "defaultMode").(int); ok && mode&0o040 == 0 && mode&0o004 == 0 {
				t.Errorf("%s: secret volume %v mode %o is unreadable by the non-root user", where, mapOf(v)["name"], mode)
			}
			if dig(v, "secret") != nil && psc["fsGroup"] == nil {
				t.Errorf("%s: secret volume without pod fsGroup: files stay root-owned", where)
			}
		}
		for _, c := range containers(o) {
			cw := where + " container " + str(c["name"])
			checkKeys(t, cw, "container", c)
			for _, p := range []string{"readinessProbe", "livenessProbe", "startupProbe"} {
				if pr := mapOf(c[p]); pr != nil {
					checkKeys(t, cw+" "+p, "probe", pr)
				}
			}
			sc := mapOf(c["securityContext"])
			checkKeys(t, cw, "securityContext", sc)
			if sc["allowPrivilegeEscalation"] != false || !slices.Contains(list(dig(sc, "capabilities", "drop")), any("ALL")) {
				t.Errorf("%s: securityContext must set allowPrivilegeEscalation false and drop ALL capabilities", cw)
			}
			if c["readinessProbe"] == nil || c["livenessProbe"] == nil {
				t.Errorf("%s: readiness and liveness probes required", cw)
			}
			if dig(c, "resources", "requests") == nil || dig(c, "resources", "limits", "memory") == nil {
				t.Errorf("%s: resources.requests and limits.memory required", cw)
			}
			for _, vm := range list(c["volumeMounts"]) {
				n := str(mapOf(vm)["name"])
				if volumes[n] == nil && !isClaimTemplate(o, n) {
					t.Errorf("%s: volumeMount %q has no volume", cw, n)
				}
				if mapOf(vm)["subPath"] != nil {
					t.Errorf("%s: volumeMount %q uses subPath, which never sees secret updates", cw, n)
				}
			}
		}
	}

	portNames := func(o obj) map[string]int {
		out := map[string]int{}
		for _, c := range containers(o) {
			for _, p := range list(c["ports"]) {
				n, _ := mapOf(p)["containerPort"].(int)
				out[str(mapOf(p)["name"])] = n
				out[fmt.Sprint(n)] = n
			}
		}
		return out
	}
	for _, s := range byKind["Service"] {
		sel := mapOf(dig(s.m, "spec", "selector"))
		var target *obj
		for i := range wl {
			if matches(sel, templateLabels(wl[i])) {
				target = &wl[i]
			}
		}
		if target == nil {
			t.Errorf("%s: selector %v matches no workload", s, sel)
			continue
		}
		for _, p := range list(dig(s.m, "spec", "ports")) {
			tp := fmt.Sprint(mapOf(p)["targetPort"])
			if _, ok := portNames(*target)[tp]; !ok {
				t.Errorf("%s: targetPort %s is not a port of %s", s, tp, target)
			}
		}
	}
	for _, k := range []string{"PodDisruptionBudget", "NetworkPolicy"} {
		for _, o := range byKind[k] {
			var sel map[string]any
			if k == "PodDisruptionBudget" {
				sel = mapOf(dig(o.m, "spec", "selector", "matchLabels"))
			} else {
				sel = mapOf(dig(o.m, "spec", "podSelector", "matchLabels"))
			}
			if !slices.ContainsFunc(wl, func(w obj) bool { return matches(sel, templateLabels(w)) }) {
				t.Errorf("%s: selector %v matches no workload", o, sel)
			}
		}
	}
	for _, o := range wl {
		if o.kind() != "StatefulSet" {
			name := o.name()
			if !slices.ContainsFunc(byKind["PodDisruptionBudget"], func(p obj) bool {
				return matches(mapOf(dig(p.m, "spec", "selector", "matchLabels")), templateLabels(o))
			}) {
				t.Errorf("%s has no PodDisruptionBudget", name)
			}
		}
		if ann := mapOf(dig(o.m, "spec", "template", "metadata", "annotations")); strings.Contains(o.name(), "httvps-gateway") || strings.Contains(o.name(), "httvps-control") {
			port := str(ann["prometheus.io/port"])
			if ann["prometheus.io/scrape"] != "true" || str(ann["prometheus.io/path"]) != "/metrics" || portNames(o)["admin"] == 0 || fmt.Sprint(portNames(o)["admin"]) != port {
				t.Errorf("%s: prometheus.io scrape annotations must point at the admin port's /metrics (got %v)", o, ann)
			}
		}
	}

	// The kustomization lists every manifest but the secrets template, and
	// overrides exactly the images the workloads use.
	k := byKind["Kustomization"][0]
	var res []string
	for _, r := range list(k.m["resources"]) {
		res = append(res, str(r))
		if _, err := os.Stat(filepath.Join(filepath.Dir(k.file), str(r))); err != nil {
			t.Errorf("kustomization resource %v: %v", r, err)
		}
	}
	files, _ := filepath.Glob(filepath.Join(root(t), "deploy", "k8s", "*.yaml"))
	for _, f := range files {
		b := filepath.Base(f)
		switch {
		case b == "kustomization.yaml":
		case b == "secrets-example.yaml":
			if slices.Contains(res, b) {
				t.Error("secrets-example.yaml (placeholders) must not be a kustomization resource: apply -k would overwrite real secrets")
			}
		case b == "redis.yaml" || b == "redis-sentinel.yaml":
			// Alternatives: exactly one is applied (redis_sentinel_test.go).
			if slices.Contains(res, "redis.yaml") == slices.Contains(res, "redis-sentinel.yaml") {
				t.Error("kustomization.yaml must list exactly one of redis.yaml and redis-sentinel.yaml")
			}
		case !slices.Contains(res, b):
			t.Errorf("%s is not listed in kustomization.yaml", b)
		}
	}
	images := map[string]bool{}
	for _, o := range wl {
		for _, c := range containers(o) {
			images[strings.SplitN(str(c["image"]), ":", 2)[0]] = true
		}
	}
	for _, im := range list(k.m["images"]) {
		n := str(mapOf(im)["name"])
		if !images[n] {
			t.Errorf("kustomization image %q is used by no container", n)
		}
	}
}

func isClaimTemplate(o obj, name string) bool {
	for _, v := range list(dig(o.m, "spec", "volumeClaimTemplates")) {
		if str(dig(v, "metadata", "name")) == name {
			return true
		}
	}
	return false
}

// envFile parses KEY=VALUE lines, skipping comments.
func envFile(t *testing.T, path string) (map[string]string, string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	vals := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || !regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`).MatchString(k) {
			t.Errorf("%s:%d: not KEY=VALUE: %q", path, n, line)
			continue
		}
		vals[k] = v
	}
	return vals, string(b)
}

// secretRefs lists, per secret name, the keys the workloads read.
func secretRefs(objs []obj) map[string][]string {
	refs := map[string][]string{}
	for _, o := range workloads(objs) {
		for _, c := range containers(o) {
			for _, e := range list(c["env"]) {
				if r := mapOf(dig(e, "valueFrom", "secretKeyRef")); r != nil {
					refs[str(r["name"])] = append(refs[str(r["name"])], str(r["key"]))
				}
			}
		}
		for _, v := range list(podSpec(o)["volumes"]) {
			s := mapOf(dig(v, "secret"))
			if s == nil {
				continue
			}
			n := str(s["secretName"])
			refs[n] = append(refs[n], []string{}...)
			for _, it := range list(s["items"]) {
				refs[n] = append(refs[n], str(mapOf(it)["key"]))
			}
		}
	}
	return refs
}

// highEntropy matches values that look like generated secrets.
var highEntropy = regexp.MustCompile(`[A-Za-z0-9+/_-]{24,}`)

// TestSecrets checks that every secret the workloads read is a placeholder
// Secret in secrets-example.yaml (with that key; the TLS ones of type
// kubernetes.io/tls) that secrets.example.env and the README say how to
// create, and that no real value is committed.
func TestSecrets(t *testing.T) {
	r := root(t)
	objs := manifests(t)
	vals, text := envFile(t, filepath.Join(r, "deploy", "secrets.example.env"))

	defined := map[string]map[string]string{}
	for _, o := range objs {
		if o.kind() != "Secret" {
			continue
		}
		if filepath.Base(o.file) != "secrets-example.yaml" {
			t.Errorf("%s: Secrets belong in the secrets-example.yaml template only", o)
		}
		data := map[string]string{}
		for k, v := range mapOf(o.m["stringData"]) {
			data[k] = str(v)
			if !strings.Contains(str(v), "CHANGE-ME") {
				t.Errorf("%s: %s is not a CHANGE-ME placeholder", o, k)
			}
		}
		if o.m["data"] != nil {
			t.Errorf("%s: use stringData placeholders, not data", o)
		}
		if tls := str(o.m["type"]) == "kubernetes.io/tls"; tls != strings.HasSuffix(o.name(), "-tls") {
			t.Errorf("%s: type %q: the -tls secrets, and only they, are kubernetes.io/tls", o, o.m["type"])
		} else if tls && (data["tls.crt"] == "" || data["tls.key"] == "" || len(data) != 2) {
			t.Errorf("%s: a kubernetes.io/tls secret has exactly tls.crt and tls.key", o)
		}
		defined[o.name()] = data
	}
	readme, err := os.ReadFile(filepath.Join(r, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if k := defined["httvps-control"]["admin-key"]; len(k) >= 32 {
		t.Errorf("the admin-key placeholder must be shorter than 32 bytes so httvps-control refuses to start with it")
	}
	for name, keys := range secretRefs(objs) {
		d, ok := defined[name]
		if !ok {
			t.Errorf("secret %s, which a workload reads, is not in secrets-example.yaml", name)
			continue
		}
		for _, k := range keys {
			if _, ok := d[k]; !ok {
				t.Errorf("secret %s has no key %q that a workload reads", name, k)
			}
		}
	}
	for name, data := range defined {
		kind := "generic"
		if strings.HasSuffix(name, "-tls") {
			kind = "tls"
		}
		create := "kubectl -n httvps create secret " + kind + " " + name
		for what, doc := range map[string]string{"secrets.example.env": text, "README.md": string(readme)} {
			doc = strings.ReplaceAll(strings.ReplaceAll(doc, "\\\n", " "), "#", " ")
			if !strings.Contains(strings.Join(strings.Fields(doc), " "), create) {
				t.Errorf("%s does not show %q", what, create)
			}
			if kind == "generic" {
				for k := range data {
					if !strings.Contains(doc, "--from-literal="+k+"=") {
						t.Errorf("%s does not create key %s of secret %s", what, k, name)
					}
				}
			}
		}
	}
	if len(vals) == 0 {
		t.Fatal("secrets.example.env defines nothing")
	}
	for k, v := range vals {
		if strings.Contains(v, "CHANGE-ME") || strings.HasPrefix(v, "./") {
			continue
		}
		t.Errorf("secrets.example.env: %s=%q is not a placeholder (CHANGE-ME or a ./file)", k, v)
	}
	for _, f := range []string{"deploy/secrets.example.env", "deploy/k8s/secrets-example.yaml"} {
		b, _ := os.ReadFile(filepath.Join(r, f))
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "#") {
				continue
			}
			if m := highEntropy.FindString(line); m != "" && !strings.Contains(m, ".") && regexp.MustCompile(`\d`).MatchString(m) && regexp.MustCompile(`[a-z]`).MatchString(m) {
				t.Errorf("%s: %q looks like a real secret", f, m)
			}
		}
	}
	if !strings.Contains(text, "openssl rand") {
		t.Error("secrets.example.env should say how to generate values (openssl rand)")
	}
}

// dockerfile is the parsed form of one of deploy/docker/*.Dockerfile.
type dockerfile struct {
	path   string
	froms  []string
	runs   []string
	env    map[string]string
	expose []string
	user   string
	entry  string
	cmd    string
	copies []string
}

func parseDockerfile(t *testing.T, path string) dockerfile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d := dockerfile{path: path, env: map[string]string{}}
	// Join continuation lines.
	var lines []string
	var cur strings.Builder
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "#") || (l == "" && cur.Len() == 0) {
			continue
		}
		if s, ok := strings.CutSuffix(l, `\`); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(l)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	for _, l := range lines {
		instr, rest, _ := strings.Cut(l, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(instr) {
		case "FROM":
			d.froms = append(d.froms, rest)
		case "RUN":
			d.runs = append(d.runs, rest)
		case "ENV":
			for _, kv := range strings.Fields(rest) {
				k, v, _ := strings.Cut(kv, "=")
				d.env[k] = v
			}
		case "EXPOSE":
			d.expose = append(d.expose, strings.Fields(rest)...)
		case "USER":
			d.user = rest
		case "ENTRYPOINT":
			d.entry = rest
		case "CMD":
			d.cmd = rest
		case "COPY":
			d.copies = append(d.copies, rest)
		}
	}
	return d
}

var dockerfiles = map[string]string{"gateway.Dockerfile": "httvps-gateway", "control.Dockerfile": "httvps-control", "httvps.Dockerfile": "httvps"}

// dockerCmds is each image's CMD: httvps runs `up` unless given other
// arguments (admin, backup, version); the others have none.
var dockerCmds = map[string]string{"httvps": `["up"]`}

// TestDockerfiles checks the build stage (Go version, static trimmed build of
// an existing cmd/ package) and the runtime stage (distroless nonroot, the
// binary as entrypoint, exposed ports).
func TestDockerfiles(t *testing.T) {
	r := root(t)
	gomod, err := os.ReadFile(filepath.Join(r, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("no go directive in go.mod")
	}
	goMinor := string(m[1])
	if goMinor != "1.26" {
		t.Errorf("go.mod says go %s; the Dockerfiles are pinned to golang:1.26", goMinor)
	}
	readme, _ := os.ReadFile(filepath.Join(r, "deploy", "docker", "README.md"))
	for file, bin := range dockerfiles {
		d := parseDockerfile(t, filepath.Join(r, "deploy", "docker", file))
		if len(d.froms) != 2 {
			t.Errorf("%s: want a two-stage build, got FROM %v", file, d.froms)
			continue
		}
		if !regexp.MustCompile(`(^|\s)golang:`+regexp.QuoteMeta(goMinor)+`(\s|$|-)`).MatchString(d.froms[0]) || !strings.HasSuffix(d.froms[0], " AS build") {
			t.Errorf("%s: builder %q, want golang:%s AS build", file, d.froms[0], goMinor)
		}
		if !regexp.MustCompile(`^gcr\.io/distroless/static(-debian\d+)?:nonroot$`).MatchString(d.froms[1]) {
			t.Errorf("%s: runtime %q, want gcr.io/distroless/static:nonroot", file, d.froms[1])
		}
		if d.user != "nonroot:nonroot" && d.user != "nonroot" && d.user != "65532:65532" {
			t.Errorf("%s: USER %q", file, d.user)
		}
		var build string
		for _, run := range d.runs {
			if strings.Contains(run, "go build") {
				build = run
			}
		}
		for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags="-s -w `, versionPkg + ".Version=${VERSION}", "-o /out/" + bin, "./cmd/" + bin} {
			if !strings.Contains(build, want) {
				t.Errorf("%s: go build %q lacks %s", file, build, want)
			}
		}
		pkg := filepath.Join(r, "cmd", bin)
		mains, _ := filepath.Glob(filepath.Join(pkg, "*.go"))
		hasMain := false
		for _, f := range mains {
			b, _ := os.ReadFile(f)
			if !strings.HasSuffix(f, "_test.go") && regexp.MustCompile(`(?m)^package main$`).Match(b) {
				hasMain = true
			}
		}
		if !hasMain {
			t.Errorf("%s: ./cmd/%s is not a main package", file, bin)
		}
		dest := "/usr/local/bin/" + bin
		if !slices.ContainsFunc(d.copies, func(c string) bool { return strings.HasSuffix(c, "/out/"+bin+" "+dest) }) {
			t.Errorf("%s: no COPY of /out/%s to %s", file, bin, dest)
		}
		if d.entry != `["`+dest+`"]` {
			t.Errorf("%s: ENTRYPOINT %s, want [%q]", file, d.entry, dest)
		}
		if d.cmd != dockerCmds[bin] {
			t.Errorf("%s: CMD %q, want %q", file, d.cmd, dockerCmds[bin])
		}
		listens := []string{"HTTVPS_LISTEN", "HTTVPS_ADMIN_LISTEN"}
		if bin == "httvps" {
			// up's own default for the API is loopback, unreachable from
			// outside the container.
			listens = append(listens, "HTTVPS_CONTROL_LISTEN")
		}
		for _, k := range listens {
			_, port, _ := strings.Cut(d.env[k], ":")
			if port == "" || !slices.Contains(d.expose, port+"/tcp") {
				t.Errorf("%s: %s=%q is not an EXPOSEd port %v", file, k, d.env[k], d.expose)
			}
		}
		if !bytes.Contains(readme, []byte("docker build -f deploy/docker/"+file+" ")) {
			t.Errorf("deploy/docker/README.md has no build command for %s", file)
		}
	}
}

// TestNoStrayFiles keeps deploy/ to the files the tests know about, so a new
// manifest or dashboard cannot skip the checks.
func TestNoStrayFiles(t *testing.T) {
	r := filepath.Join(root(t), "deploy")
	var bad []string
	filepath.WalkDir(r, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(r, p)
		ok := rel == "secrets.example.env" ||
			regexp.MustCompile(`^k8s/[a-z-]+\.yaml$`).MatchString(rel) ||
			regexp.MustCompile(`^docker/([a-z]+\.Dockerfile|README\.md)$`).MatchString(rel) ||
			regexp.MustCompile(`^docker/prebuilt/[a-z]+\.Dockerfile$`).MatchString(rel) ||
			regexp.MustCompile(`^grafana/[a-z-]+\.json$`).MatchString(rel) ||
			regexp.MustCompile(`^deploytest/[a-z_]+\.go$`).MatchString(rel) ||
			regexp.MustCompile(`^systemd/[a-z-]+\.(service|env)$`).MatchString(rel) || rel == "compose.yaml"
		if !ok {
			bad = append(bad, rel)
		}
		return nil
	})
	sort.Strings(bad)
	if len(bad) > 0 {
		t.Errorf("files in deploy/ that no test checks: %v", bad)
	}
	dfs, _ := filepath.Glob(filepath.Join(r, "docker", "*.Dockerfile"))
	for _, f := range dfs {
		if _, ok := dockerfiles[filepath.Base(f)]; !ok {
			t.Errorf("%s is not checked by TestDockerfiles", f)
		}
	}
	dfs, _ = filepath.Glob(filepath.Join(r, "docker", "prebuilt", "*.Dockerfile"))
	for _, f := range dfs {
		if _, ok := prebuilt[filepath.Base(f)]; !ok {
			t.Errorf("%s is not checked by TestPrebuiltDockerfiles", f)
		}
	}
}
