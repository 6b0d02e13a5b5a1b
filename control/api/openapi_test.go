package api

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// TestOpenAPIMatchesRouter: every route the router serves is in
// docs/openapi.yaml and every documented operation is served.
func TestOpenAPIMatchesRouter(t *testing.T) {
	data, err := os.ReadFile("../../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI string                    `yaml:"openapi"`
		Paths   map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1.") {
		t.Errorf("openapi %q, want 3.1.x", doc.OpenAPI)
	}
	var documented []string
	for path, ops := range doc.Paths {
		for method, op := range ops {
			if !slices.Contains(httpMethods, method) {
				continue // parameters, summary, ...
			}
			documented = append(documented, strings.ToUpper(method)+" "+path)
			if m, _ := op.(map[string]any); m["responses"] == nil {
				t.Errorf("%s %s has no responses", method, path)
			}
		}
	}
	srv := newHarness(t, embeddedStore(t)).srv
	served := srv.Routes()
	slices.Sort(documented)
	slices.Sort(served)
	for _, r := range served {
		if !slices.Contains(documented, r) {
			t.Errorf("route %s is not in docs/openapi.yaml", r)
		}
	}
	for _, r := range documented {
		if !slices.Contains(served, r) {
			t.Errorf("docs/openapi.yaml documents %s, which the router does not serve", r)
		}
	}
}

// TestAPIDocMentionsRoutes: docs/02-control-plane-api.md has a section for
// every route and lists every error code.
func TestAPIDocMentionsRoutes(t *testing.T) {
	data, err := os.ReadFile("../../docs/02-control-plane-api.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	srv := newHarness(t, embeddedStore(t)).srv
	for _, r := range srv.Routes() {
		if !strings.Contains(text, "`"+r+"`") {
			t.Errorf("docs/02-control-plane-api.md does not mention `%s`", r)
		}
	}
	src, err := os.ReadFile("errors.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`code\w+\s+=\s+"(\w+)"`).FindAllStringSubmatch(string(src), -1) {
		if !strings.Contains(text, "`"+m[1]+"`") {
			t.Errorf("error code %s is not in the doc's table", m[1])
		}
	}
}
