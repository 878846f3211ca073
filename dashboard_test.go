//go:build integration

package main

// The shipped Grafana dashboard and alert rules against what the real
// binary exports: every metric a query or an alert names is on /metrics of
// forge-manager running in simulated pods, and every label it names (in a
// selector, in by/without/on/ignoring/group_left/group_right, in a legend
// {{label}} or an annotation's $labels.label) is on those metrics or is one
// the scrape adds. A misspelt name would otherwise show an empty panel or
// an alert that never fires, and nothing would say so.

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"forge-manager/internal/testenv"
)

// scrapeLabels are the target labels the Prometheus Operator adds to every
// series of a PodMonitor's targets (namespace and pod of the target, its
// container and port name, job and instance); up is the scrape's own series
// and carries only those.
var scrapeLabels = []string{"namespace", "pod", "container", "endpoint", "job", "instance"}

const dashboardFile = "deploy/monitoring/grafana/forge-manager.json"

// TestDashboard: the dashboard's queries and the alert rules name only
// metrics and labels the binary exports, scraped from two replicas of one
// region under cluster management (so the cluster series exist too), one
// leading and forging with loaded keys.
func TestDashboard(t *testing.T) {
	queries := dashboardQueries(t)
	alerts := alertQueries(t)
	if len(queries) < 30 || len(alerts) < 14 {
		t.Fatalf("found %d dashboard queries and %d alerts; want at least 30 and 14", len(queries), len(alerts))
	}
	checkGrafanaConfigMap(t)

	rs := newRegions(t, false, nil, &region{name: "eu", priority: 100, pods: 2})
	rs.settledIn("eu", testenv.Monotonic(), 2*regionLost+20*time.Second)
	rs.waitLeaders()
	eu := rs.by["eu"]
	exported := map[string]map[string]bool{"up": {}}
	for _, name := range eu.live() {
		// The leader's key-file counters and keys_info appear once it has
		// written and loaded the keys: poll rather than wait a fixed time.
		var body []byte
		eventually(t, 10*time.Second, name+" exports its key series", func() bool {
			b, err := eu.Get(name, "/metrics")
			body = b
			return err == nil && strings.Contains(string(b), "forge_manager_keys_info{")
		})
		if err := parseExposition(string(body), exported); err != nil {
			t.Fatalf("%s /metrics: %v", name, err)
		}
	}
	for _, q := range append(queries, alerts...) {
		for _, problem := range checkQuery(q, exported) {
			t.Errorf("%s: %s\n\t%s", q.where, problem, q.expr)
		}
	}
	t.Logf("%d dashboard queries and %d alert expressions checked against %d exported metrics of %v",
		len(queries), len(alerts), len(exported), eu.live())
}

// query is one PromQL expression with the labels its presentation uses
// (legend, annotations) and, for a Grafana label_values variable, the label
// whose values it lists.
type query struct {
	where, expr string
	shown       []string // labels a legend or annotation reads
}

var (
	legendLabel     = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)
	annotationLabel = regexp.MustCompile(`\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)`)
	labelValues     = regexp.MustCompile(`^label_values\((?:(.*),)?\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$`)
)

func submatches(re *regexp.Regexp, s string) []string {
	var out []string
	for _, m := range re.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

// dashboardQueries reads every target of every panel (rows included) and
// every query variable of the dashboard.
func dashboardQueries(t *testing.T) []query {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	type target struct {
		RefID, Expr, LegendFormat string
	}
	type panel struct {
		Title, Type string
		Targets     []target
		Panels      []panel
	}
	var d struct {
		UID        string
		Panels     []panel
		Templating struct {
			List []struct {
				Name, Type string
				Query      json.RawMessage
			}
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var out []query
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			walk(p.Panels)
			if p.Type == "row" || p.Type == "text" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				out = append(out, query{where: fmt.Sprintf("panel %q %s", p.Title, tg.RefID), expr: tg.Expr,
					shown: submatches(legendLabel, tg.LegendFormat)})
			}
		}
	}
	walk(d.Panels)
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		if v.Type != "query" {
			continue
		}
		// The variable's query is a string in older dashboards, an object
		// with a query field in newer ones.
		var s string
		var obj struct{ Query string }
		if json.Unmarshal(v.Query, &s) != nil {
			json.Unmarshal(v.Query, &obj)
			s = obj.Query
		}
		m := labelValues.FindStringSubmatch(strings.TrimSpace(s))
		if m == nil || m[1] == "" {
			t.Errorf("variable %s: %q is not label_values(<selector>, <label>)", v.Name, s)
			continue
		}
		out = append(out, query{where: "variable " + v.Name, expr: m[1], shown: []string{m[2]}})
	}
	for _, want := range []string{"datasource", "namespace", "network", "pool"} {
		if !vars[want] {
			t.Errorf("the dashboard has no variable %s", want)
		}
	}
	return out
}

// alertQueries reads the alerting rules of the PrometheusRule (TestAlertRules
// keeps its groups equal to rules.yaml), turned into JSON by kubectl without
// an API server.
func alertQueries(t *testing.T) []query {
	t.Helper()
	out, err := controlPlane(t).Kubectl("annotate", "--local", "-f", "deploy/monitoring/prometheusrule.yaml", "-o", "json", "forge-manager.test/read=yes")
	if err != nil {
		t.Fatal(err)
	}
	var pr struct {
		Spec struct {
			Groups []struct {
				Rules []struct {
					Alert, Record, Expr string
					Annotations         map[string]string
				}
			}
		}
	}
	if err := json.Unmarshal(out, &pr); err != nil {
		t.Fatalf("prometheusrule.yaml as JSON: %v\n%s", err, out)
	}
	var qs []query
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			q := query{where: "alert " + r.Alert + r.Record, expr: r.Expr}
			for _, a := range r.Annotations {
				q.shown = append(q.shown, submatches(annotationLabel, a)...)
			}
			qs = append(qs, q)
		}
	}
	return qs
}

// checkGrafanaConfigMap: the Kustomization renders the dashboard as one
// ConfigMap with a fixed name and the sidecar's label.
func checkGrafanaConfigMap(t *testing.T) {
	t.Helper()
	out, err := controlPlane(t).Kubectl("kustomize", "deploy/monitoring/grafana")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"kind: ConfigMap\n", "  name: forge-manager-dashboard\n", `    grafana_dashboard: "1"` + "\n", "  forge-manager.json: |\n", `"uid": "forge-manager"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("kubectl kustomize deploy/monitoring/grafana lacks %q:\n%.400s", want, out)
		}
	}
}

// checkQuery lists what q names that the exported series do not have.
// Selector labels are checked against their own metric; grouping, legend
// and annotation labels against any metric of the expression (a join's
// group_left label is on one side only).
func checkQuery(q query, exported map[string]map[string]bool) []string {
	refs, err := promIdentifiers(q.expr)
	if err != nil {
		return []string{err.Error()}
	}
	if len(refs.metrics) == 0 {
		return []string{"names no metric"}
	}
	var problems []string
	has := func(m, l string) bool { return exported[m][l] || slices.Contains(scrapeLabels, l) }
	for _, m := range refs.metrics {
		if exported[m] == nil {
			problems = append(problems, fmt.Sprintf("metric %s is not exported", m))
		}
	}
	for _, s := range refs.selectors {
		if exported[s.metric] != nil && !has(s.metric, s.label) {
			problems = append(problems, fmt.Sprintf("label %s is not on %s", s.label, s.metric))
		}
	}
	for _, l := range append(refs.grouping, q.shown...) {
		found := false
		for _, m := range refs.metrics {
			found = found || has(m, l)
		}
		if !found {
			problems = append(problems, fmt.Sprintf("label %s is on none of %v", l, refs.metrics))
		}
	}
	return problems
}

// parseExposition adds each series' metric name and label names of a
// Prometheus text exposition to into.
func parseExposition(body string, into map[string]map[string]bool) error {
	for _, line := range strings.Split(body, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		end := strings.IndexAny(line, "{ ")
		if end <= 0 {
			return fmt.Errorf("bad line %q", line)
		}
		name := line[:end]
		if into[name] == nil {
			into[name] = map[string]bool{}
		}
		rest := line[end:]
		if rest[0] != '{' {
			continue
		}
		rest = rest[1:]
		for len(rest) > 0 && rest[0] != '}' {
			eq := strings.Index(rest, `="`)
			if eq <= 0 {
				return fmt.Errorf("bad labels in %q", line)
			}
			into[name][strings.TrimPrefix(rest[:eq], ",")] = true
			rest = rest[eq+2:]
			i := 0
			for i < len(rest) && rest[i] != '"' {
				if rest[i] == '\\' {
					i++
				}
				i++
			}
			if i >= len(rest) {
				return fmt.Errorf("unterminated label value in %q", line)
			}
			rest = rest[i+1:]
		}
	}
	return nil
}

// promRefs is what a PromQL expression names.
type promRefs struct {
	metrics   []string
	selectors []selectorLabel
	grouping  []string // labels of by, without, on, ignoring, group_left, group_right
}

type selectorLabel struct{ metric, label string }

// promFunctions are PromQL's aggregations and functions (Prometheus 2.x and
// 3.x); an identifier before "(" that is not one of them is an error, so a
// misspelt function is caught too.
var promFunctions = strings.Fields(`sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk limit_ratio
	abs absent absent_over_time ceil changes clamp clamp_max clamp_min day_of_month day_of_week day_of_year days_in_month
	delta deriv exp floor histogram_avg histogram_count histogram_fraction histogram_quantile histogram_stddev histogram_stdvar
	histogram_sum holt_winters double_exponential_smoothing hour idelta increase irate label_join label_replace ln log2 log10
	minute month predict_linear rate resets round scalar sgn sort sort_desc sort_by_label sort_by_label_desc sqrt time timestamp
	vector year avg_over_time min_over_time max_over_time sum_over_time count_over_time quantile_over_time stddev_over_time
	stdvar_over_time last_over_time present_over_time mad_over_time acos acosh asin asinh atan atanh cos cosh sin sinh tan tanh
	deg rad pi info`)

// promKeywords are binary operators and modifiers written as words, and
// the number literals that look like words.
var promKeywords = strings.Fields(`and or unless bool offset atan2 inf nan start end`)

var groupingKeywords = strings.Fields(`by without on ignoring group_left group_right`)

// promIdentifiers extracts metric and label names from expr, a small
// tokenizer rather than a parser: strings, range and subquery brackets,
// numbers and durations, Grafana $variables and comments are skipped;
// function names and keywords dropped; a word followed by "{" or standing
// alone is a metric, the words before the matchers' operators in its braces
// are its labels, and the words in the parentheses after a grouping keyword
// are grouping labels.
func promIdentifiers(expr string) (promRefs, error) {
	var r promRefs
	s := expr
	i := 0
	skipSpace := func() {
		for i < len(s) && strings.ContainsRune(" \t\r\n", rune(s[i])) {
			i++
		}
	}
	word := func() string {
		j := i
		for i < len(s) && (isWordByte(s[i]) || (i > j && s[i] >= '0' && s[i] <= '9')) {
			i++
		}
		return s[j:i]
	}
	skipString := func() error {
		q := s[i]
		for i++; i < len(s) && s[i] != q; i++ {
			if s[i] == '\\' && q != '`' {
				i++
			}
		}
		if i >= len(s) {
			return fmt.Errorf("unterminated string in %q", expr)
		}
		i++
		return nil
	}
	for {
		skipSpace()
		if i >= len(s) {
			return r, nil
		}
		c := s[i]
		switch {
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			if err := skipString(); err != nil {
				return r, err
			}
		case c == '[':
			j := strings.IndexByte(s[i:], ']')
			if j < 0 {
				return r, fmt.Errorf("unterminated [ in %q", expr)
			}
			i += j + 1
		case c == '$':
			i++
			if i < len(s) && s[i] == '{' {
				for i < len(s) && s[i] != '}' {
					i++
				}
				i++
			} else {
				word()
			}
		case c >= '0' && c <= '9' || c == '.':
			for i < len(s) && (isWordByte(s[i]) || s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
				i++
			}
		case isWordByte(c):
			w := word()
			lw := strings.ToLower(w)
			skipSpace()
			next := byte(0)
			if i < len(s) {
				next = s[i]
			}
			switch {
			case slices.Contains(groupingKeywords, lw):
				if next != '(' {
					continue // group_left without a label list
				}
				end := strings.IndexByte(s[i:], ')')
				if end < 0 {
					return r, fmt.Errorf("unterminated %s( in %q", w, expr)
				}
				for _, l := range strings.Split(s[i+1:i+end], ",") {
					if l = strings.TrimSpace(l); l != "" {
						r.grouping = append(r.grouping, l)
					}
				}
				i += end + 1
			case slices.Contains(promKeywords, lw):
			case slices.Contains(promFunctions, lw):
				if next != '(' && !strings.HasPrefix(s[i:], "by") && !strings.HasPrefix(s[i:], "without") {
					return r, fmt.Errorf("%s is a function but has no arguments in %q", w, expr)
				}
			case next == '(':
				return r, fmt.Errorf("unknown function %s in %q", w, expr)
			default:
				r.metrics = append(r.metrics, w)
				if next == '{' {
					i++
					if err := selectorLabels(s, &i, w, &r, skipString); err != nil {
						return r, err
					}
				}
			}
		case c == '{':
			return r, fmt.Errorf("a selector without a metric name in %q: name the metric", expr)
		default:
			i++ // operators, parentheses, commas
		}
	}
}

// selectorLabels reads the matchers after a metric's "{" up to its "}".
func selectorLabels(s string, i *int, metric string, r *promRefs, skipString func() error) error {
	for {
		for *i < len(s) && strings.ContainsRune(" \t\r\n,", rune(s[*i])) {
			*i++
		}
		if *i >= len(s) {
			return fmt.Errorf("unterminated { after %s", metric)
		}
		if s[*i] == '}' {
			*i++
			return nil
		}
		j := *i
		for *i < len(s) && (isWordByte(s[*i]) || *i > j && s[*i] >= '0' && s[*i] <= '9') {
			*i++
		}
		if *i == j {
			return fmt.Errorf("expected a label name after %s{ at %q", metric, s[j:])
		}
		r.selectors = append(r.selectors, selectorLabel{metric, s[j:*i]})
		for *i < len(s) && strings.ContainsRune(" \t=!~", rune(s[*i])) {
			*i++
		}
		if *i >= len(s) || (s[*i] != '"' && s[*i] != '\'' && s[*i] != '`') {
			return fmt.Errorf("expected a quoted value for %s in %s{...}", s[j:*i], metric)
		}
		if err := skipString(); err != nil {
			return err
		}
	}
}

func isWordByte(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// TestPromIdentifiers: the extractor finds what the check relies on, and
// refuses what it cannot read.
func TestPromIdentifiers(t *testing.T) {
	tests := []struct {
		expr                string
		metrics, selectors  string
		grouping, errSubstr string
	}{
		{expr: `sum by (namespace, pool_id) (a{pod="x}", state=~'o"n'} unless on (namespace, pod) b)`,
			metrics: "a b", selectors: "a.pod a.state", grouping: "namespace pool_id namespace pod"},
		{expr: `increase(forge_manager_api_errors_total[2m]) > 5`, metrics: "forge_manager_api_errors_total"},
		{expr: `rate(x[$__rate_interval]) AND ON(namespace) y{a=~"$pool"} offset 5m`, metrics: "x y", selectors: "y.a", grouping: "namespace"},
		{expr: `m1 * on (a) group_left (b) m2 or m3 * on (c) group_right m4`, metrics: "m1 m2 m3 m4", grouping: "a b c"},
		{expr: "max(foo:bar_2) by (pod) > bool 1e3 # a comment naming nothing_else\n", metrics: "foo:bar_2", grouping: "pod"},
		{expr: `0 * group by (x) (last_over_time(c[1d:1m]))`, metrics: "c", grouping: "x"},
		{expr: `sumx(foo)`, errSubstr: "unknown function sumx"},
		{expr: `{__name__="foo"}`, errSubstr: "without a metric name"},
		{expr: `foo{pod}`, errSubstr: "quoted value"},
	}
	for _, tc := range tests {
		t.Run(tc.expr, func(t *testing.T) {
			r, err := promIdentifiers(tc.expr)
			if tc.errSubstr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errSubstr) {
					t.Fatalf("err %v; want one with %q", err, tc.errSubstr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var sel []string
			for _, s := range r.selectors {
				sel = append(sel, s.metric+"."+s.label)
			}
			got := [3]string{strings.Join(r.metrics, " "), strings.Join(sel, " "), strings.Join(r.grouping, " ")}
			if want := [3]string{tc.metrics, tc.selectors, tc.grouping}; got != want {
				t.Errorf("got metrics, selectors, grouping %q; want %q", got, want)
			}
		})
	}
}

// TestCheckQuery: a misspelt metric, a label on another metric, a legend
// label nobody has and a scrape-added label are told apart.
func TestCheckQuery(t *testing.T) {
	exported := map[string]map[string]bool{"up": {}, "a": {"pod": true, "pool_id": true}, "b": {"key_pool_id": true}}
	tests := []struct {
		q    query
		want []string
	}{
		{query{expr: `sum by (key_pool_id) (a{pool_id="p"} * on (namespace, pod) group_left (key_pool_id) b)`, shown: []string{"pod"}}, nil},
		{query{expr: `up{job="x"} == 0`, shown: []string{"instance"}}, nil},
		{query{expr: `ab{pod="x"}`}, []string{"metric ab is not exported"}},
		{query{expr: `a{key_pool_id="x"} and b`}, []string{"label key_pool_id is not on a"}},
		{query{expr: `a`, shown: []string{"pods"}}, []string{"label pods is on none of [a]"}},
		{query{expr: `vector(1)`}, []string{"names no metric"}},
	}
	for _, tc := range tests {
		if got := checkQuery(tc.q, exported); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %q; want %q", tc.q.expr, got, tc.want)
		}
	}
}
