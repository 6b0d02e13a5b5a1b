package deploytest_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"

	"github.com/httvps/httvps/gateway/vmmetrics"
)

// series is one line of a Prometheus text scrape.
type series struct {
	name   string
	labels map[string]string
}

var (
	lineRE  = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s`)
	labelRE = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)
)

func parseScrape(text string) []series {
	var out []series
	for _, line := range strings.Split(text, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := lineRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		s := series{name: m[1], labels: map[string]string{}}
		for _, l := range labelRE.FindAllStringSubmatch(m[2], -1) {
			s.labels[l[1]] = l[2]
		}
		out = append(out, s)
	}
	return out
}

// storeMetricsFromSource reads the httvps_gateway_store_* series that
// gateway/storemetrics writes (httvps-gateway in fleet mode, httvps up),
// for runs without redis-server.
func storeMetricsFromSource(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root(t), "gateway", "storemetrics", "storemetrics.go"))
	if err != nil {
		t.Fatal(err)
	}
	src := string(b)
	m := regexp.MustCompile(`const p = "(httvps_gateway_store_)"`).FindStringSubmatch(src)
	if m == nil {
		t.Fatal("gateway/storemetrics/storemetrics.go: no store metric prefix")
	}
	var out strings.Builder
	for _, s := range regexp.MustCompile("\\{`([a-z_]+(?:\\{[^}`]*\\})?)`,").FindAllStringSubmatch(src, -1) {
		out.WriteString(m[1] + s[1] + " 0\n")
	}
	for _, s := range regexp.MustCompile(`p\+"([a-z_]+)"`).FindAllStringSubmatch(src, -1) {
		out.WriteString(m[1] + s[1] + " 0\n")
	}
	return out.String()
}

// allSeries is what the gateways and control planes expose: the running
// binaries' scrapes (TestManifestsRun) and a fresh vmmetrics set.
func allSeries(t *testing.T) []series {
	t.Helper()
	scrapeMu.Lock()
	n := len(scrapes)
	scrapeMu.Unlock()
	if n < 2 {
		TestManifestsRun(t)
	}
	scrapeMu.Lock()
	defer scrapeMu.Unlock()
	if scrapes["httvps-gateway"] == "" || scrapes["httvps-control"] == "" {
		t.Fatal("no scrape of the running binaries")
	}
	var text strings.Builder
	for _, s := range scrapes {
		text.WriteString(s)
	}
	if strings.Contains(scrapes["httvps-gateway"], "httvps_gateway_store_up") {
		t.Log("store metrics: from the gateway running with -redis")
	} else {
		t.Log("store metrics: from cmd/httvps-gateway/store.go (no redis-server)")
		text.WriteString(storeMetricsFromSource(t))
	}
	set := metrics.NewSet()
	vmmetrics.New(set)
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	text.Write(buf.Bytes())
	return parseScrape(text.String())
}

var (
	selectorRE = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}`)
	matcherRE  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"`)
	groupingRE = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	identRE    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	legendRE   = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)
	literalRE  = regexp.MustCompile(`^[a-zA-Z0-9_]+(\|[a-zA-Z0-9_]+)*$`)
)

var promKeywords = []string{"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"}

// Labels Prometheus attaches at scrape time.
var targetLabels = []string{"job", "instance"}

// promql is what one expression uses.
type promql struct {
	metrics  []string
	grouping []string
}

// checkExpr checks an expression's metric names, matchers and grouping
// labels against the scraped series.
func checkExpr(t *testing.T, where, expr string, all []series) promql {
	t.Helper()
	byName := map[string][]series{}
	for _, s := range all {
		byName[s.name] = append(byName[s.name], s)
	}
	hasLabel := func(name, label string) bool {
		return slices.ContainsFunc(byName[name], func(s series) bool { _, ok := s.labels[label]; return ok })
	}
	hasValue := func(name, label, value string) bool {
		return slices.ContainsFunc(byName[name], func(s series) bool { return s.labels[label] == value })
	}
	var q promql
	for _, m := range selectorRE.FindAllStringSubmatch(expr, -1) {
		name := m[1]
		for _, mm := range matcherRE.FindAllStringSubmatch(m[2], -1) {
			label, op, val := mm[1], mm[2], mm[3]
			if slices.Contains(targetLabels, label) {
				continue
			}
			if !hasLabel(name, label) {
				t.Errorf("%s: %s has no label %q", where, name, label)
				continue
			}
			if strings.Contains(val, "$") {
				continue
			}
			switch {
			case op == "=" && !hasValue(name, label, val):
				t.Errorf("%s: no series %s{%s=%q}", where, name, label, val)
			case op == "=~" && literalRE.MatchString(val):
				for _, v := range strings.Split(val, "|") {
					if !hasValue(name, label, v) {
						t.Errorf("%s: no series %s{%s=%q} (from %s=~%q)", where, name, label, v, label, val)
					}
				}
			}
		}
	}
	rest := selectorRE.ReplaceAllString(expr, "$1")
	rest = regexp.MustCompile(`\[[^\]]*\]`).ReplaceAllString(rest, "")
	rest = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`).ReplaceAllString(rest, "")
	for _, g := range groupingRE.FindAllStringSubmatch(rest, -1) {
		for _, l := range strings.Split(g[2], ",") {
			if l = strings.TrimSpace(l); l != "" {
				q.grouping = append(q.grouping, l)
			}
		}
	}
	rest = groupingRE.ReplaceAllString(rest, " ")
	for _, loc := range identRE.FindAllStringIndex(rest, -1) {
		id := rest[loc[0]:loc[1]]
		after := strings.TrimLeft(rest[loc[1]:], " ")
		if strings.HasPrefix(after, "(") || slices.Contains(promKeywords, id) {
			continue
		}
		if loc[0] > 0 && (rest[loc[0]-1] == '$' || rest[loc[0]-1] == '.' || rest[loc[0]-1] >= '0' && rest[loc[0]-1] <= '9') {
			continue
		}
		q.metrics = append(q.metrics, id)
		if len(byName[id]) == 0 {
			t.Errorf("%s: metric %s is in no gateway or control scrape", where, id)
		}
	}
	if len(q.metrics) == 0 {
		t.Errorf("%s: no metric in %q", where, expr)
	}
	for _, l := range q.grouping {
		if slices.Contains(targetLabels, l) || l == "le" && slices.ContainsFunc(q.metrics, func(m string) bool { return strings.HasSuffix(m, "_bucket") }) {
			continue
		}
		if !slices.ContainsFunc(q.metrics, func(m string) bool { return hasLabel(m, l) }) {
			t.Errorf("%s: grouping label %q is on none of %v", where, l, q.metrics)
		}
	}
	return q
}

// TestDashboard checks the Grafana dashboard: an importable document with
// the ${DS_PROMETHEUS} input, sane layout, and every PromQL metric, label and
// label value present in the real binaries' /metrics.
func TestDashboard(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root(t), "deploy", "grafana", "httvps-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Inputs []struct {
			Name, Type, PluginID string
		} `json:"__inputs"`
		Title      string
		UID        string
		Templating struct {
			List []struct {
				Name       string
				Datasource struct{ UID string }
				Query      struct{ Query string }
				Definition string
			}
		}
		Panels []panel
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&d); err != nil {
		t.Fatal(err)
	}
	if len(d.Inputs) != 1 || d.Inputs[0].Name != "DS_PROMETHEUS" || d.Inputs[0].PluginID != "prometheus" {
		t.Errorf("__inputs %+v: want one prometheus datasource input DS_PROMETHEUS", d.Inputs)
	}
	if d.Title == "" || d.UID == "" {
		t.Error("dashboard needs a title and a uid")
	}
	all := allSeries(t)

	used := map[string]bool{}
	ids := map[int]bool{}
	vars := map[string]bool{"__rate_interval": true, "__interval": true, "__range": true}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		if v.Datasource.UID != "${DS_PROMETHEUS}" {
			t.Errorf("variable %s: datasource %q", v.Name, v.Datasource.UID)
		}
		m := regexp.MustCompile(`^label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?),\s*([a-zA-Z_]+)\)$`).FindStringSubmatch(v.Query.Query)
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(metric, label)", v.Name, v.Query.Query)
			continue
		}
		q := checkExpr(t, "variable "+v.Name, m[1], all)
		for _, mn := range q.metrics {
			used[mn] = true
		}
	}
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			where := "panel " + p.Title
			if ids[p.ID] || p.ID == 0 {
				t.Errorf("%s: id %d missing or repeated", where, p.ID)
			}
			ids[p.ID] = true
			if p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 || p.GridPos.H <= 0 {
				t.Errorf("%s: gridPos %+v", where, p.GridPos)
			}
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			if p.Datasource.UID != "${DS_PROMETHEUS}" {
				t.Errorf("%s: datasource %q, want ${DS_PROMETHEUS}", where, p.Datasource.UID)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: no targets", where)
			}
			for _, tg := range p.Targets {
				tw := where + " " + tg.RefID
				if tg.Datasource.UID != "${DS_PROMETHEUS}" {
					t.Errorf("%s: datasource %q", tw, tg.Datasource.UID)
				}
				for _, v := range regexp.MustCompile(`\$\{?([a-zA-Z_]+)`).FindAllStringSubmatch(tg.Expr, -1) {
					if !vars[v[1]] {
						t.Errorf("%s: unknown variable $%s", tw, v[1])
					}
				}
				if strings.Count(tg.Expr, "(") != strings.Count(tg.Expr, ")") || strings.Count(tg.Expr, "{") != strings.Count(tg.Expr, "}") {
					t.Errorf("%s: unbalanced %q", tw, tg.Expr)
				}
				q := checkExpr(t, tw, tg.Expr, all)
				for _, m := range q.metrics {
					used[m] = true
				}
				for _, l := range legendRE.FindAllStringSubmatch(tg.LegendFormat, -1) {
					if !slices.Contains(q.grouping, l[1]) && !slices.Contains(targetLabels, l[1]) {
						t.Errorf("%s: legend {{%s}} is not a label the query keeps (%v)", tw, l[1], q.grouping)
					}
				}
			}
		}
	}
	walk(d.Panels)

	// The panels the deployment needs.
	for _, m := range []string{
		"httvps_gateway_sessions", "httvps_gateway_handshakes_total", "httvps_gateway_handshakes_rejected_total",
		"httvps_gateway_tls_handshakes_total", "httvps_gateway_bytes_total", "httvps_gateway_buffered_bytes",
		"httvps_gateway_upstream_dial_errors_total", "httvps_gateway_drops_total", "httvps_gateway_sessions_ended_total",
		"httvps_gateway_store_token_cache_total", "httvps_gateway_store_denied_total", "httvps_gateway_store_up",
		"httvps_gateway_store_errors_total", "httvps_gateway_store_pending_usage_bytes", "httvps_gateway_store_token_bytes_total",
		"httvps_control_requests_total", "httvps_control_request_duration_seconds_bucket",
		"httvps_control_pool_members", "httvps_control_pool_keys", "httvps_control_pool_health_checks_total",
		"httvps_control_pool_key_repairs_total", "httvps_control_pool_stray_keys_deleted_total",
		"httvps_control_pool_pending_deletions", "httvps_control_pool_key_errors_total",
		"process_resident_memory_bytes", "process_cpu_seconds_total", "go_goroutines",
	} {
		if !used[m] {
			t.Errorf("the dashboard does not chart %s", m)
		}
	}
}

type panel struct {
	ID         int
	Type       string
	Title      string
	Datasource struct{ UID string }
	GridPos    struct{ H, W, X, Y int }
	Targets    []struct {
		RefID        string `json:"refId"`
		Expr         string
		LegendFormat string `json:"legendFormat"`
		Datasource   struct{ UID string }
	}
	Panels []panel
}
