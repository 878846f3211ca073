package main

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// testSidecar is a sidecar with its state set by hand, for the HTTP side.
func testSidecar(t *testing.T, kv ...string) (*sidecar, *fakeClock) {
	t.Helper()
	c, err := loadConfig(runEnv(append([]string{"POOL_ID", "mypool", "POOL_TICKER", "MYPL"}, kv...)...).lookup, "run")
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: time.Now()}
	s := newSidecar(c, resolveTenant(c), slog.New(slog.NewJSONHandler(io.Discard, nil)), clock.now)
	s.el = newElector(nil, "bp-0_uid", c, clock.now)
	return s, clock
}

func get(t *testing.T, h http.Handler, method, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec.Code, rec.Body.String()
}

func TestHTTPEndpoints(t *testing.T) {
	s, clock := testSidecar(t)
	h := s.handler()
	// Before the first pass: alive is unknown, nothing is ready.
	for _, p := range []string{"/healthz", "/health", "/readyz", "/startup-status", "/status"} {
		if code, _ := get(t, h, "GET", p); code != http.StatusServiceUnavailable {
			t.Errorf("%s before the first pass: %d; want 503", p, code)
		}
	}
	// A leader, forging, confirmed.
	s.el.renewedAt = clock.now()
	s.node = nodeState{found: true, up: true, forging: on, confirmed: true, proc: nodeProc{PID: 42}}
	s.forging = true
	s.publish(clock.now(), true)
	s.lastLoop.Store(time.Now().UnixNano())
	tests := []struct {
		method, path string
		code         int
		body         string
	}{
		{"GET", "/healthz", 200, "ok"},
		{"HEAD", "/healthz", 200, ""},
		{"GET", "/health", 200, "ok"},
		{"GET", "/readyz", 200, "ok"},
		{"GET", "/startup-status", 200, "ok"},
		{"GET", "/status", 200, `"role": "leader"`},
		{"GET", "/metrics", 200, `cardano_forging_enabled{pod="bp-0",cardano_network="mainnet",pool_id="mypool",pool_ticker="MYPL",application_type="block-producer",cluster_region="unknown"} 1`},
		{"GET", "/nope", 404, ""},
		{"POST", "/metrics", 405, ""},
		{"DELETE", "/status", 405, ""},
	}
	for _, tc := range tests {
		code, body := get(t, h, tc.method, tc.path)
		if code != tc.code || !strings.Contains(body, tc.body) {
			t.Errorf("%s %s: %d %q; want %d containing %q", tc.method, tc.path, code, body, tc.code, tc.body)
		}
	}
	_, body := get(t, h, "GET", "/status")
	var st map[string]any
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"pod", "identity", "role", "epoch", "forging", "lastTransition", "nodePID", "leaseHolder"} {
		if _, ok := st[k]; !ok {
			t.Errorf("/status lacks %s: %s", k, body)
		}
	}
}

// TestHealthzFails: a stuck loop, or a leader past its renew deadline.
func TestHealthzFails(t *testing.T) {
	s, clock := testSidecar(t)
	h := s.handler()
	s.el.renewedAt = clock.now()
	s.publish(clock.now(), true)
	s.lastLoop.Store(time.Now().Add(-16 * time.Second).UnixNano())
	if code, body := get(t, h, "GET", "/healthz"); code != 503 || !strings.Contains(body, "stuck") {
		t.Errorf("stuck loop: %d %q; want 503", code, body)
	}
	s.lastLoop.Store(time.Now().UnixNano())
	s.el.renewedAt = time.Now().Add(-11 * time.Second) // past RENEW_DEADLINE
	s.publish(clock.now(), true)
	if code, body := get(t, h, "GET", "/healthz"); code != 503 || !strings.Contains(body, "renew deadline") {
		t.Errorf("leader past its deadline: %d %q; want 503", code, body)
	}
}

// TestReadyz: ready means the node is up and this replica's state settled.
func TestReadyz(t *testing.T) {
	tests := []struct {
		name    string
		node    nodeState
		leading bool
		forging bool
		ready   bool
	}{
		{"standby, node off", nodeState{found: true, up: true, forging: off}, false, false, true},
		{"node booting", nodeState{found: true, up: false}, false, false, false},
		{"leader not yet forging", nodeState{found: true, up: true, forging: off, pending: &hup{want: true}}, true, false, false},
		{"leader forging", nodeState{found: true, up: true, forging: on, confirmed: true}, true, true, true},
		{"standby still disabling", nodeState{found: true, up: true, forging: on, pending: &hup{}}, false, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, clock := testSidecar(t)
			s.node, s.forging = tc.node, tc.forging
			if tc.leading {
				s.el.renewedAt = clock.now()
			}
			s.publish(clock.now(), tc.leading)
			code, body := get(t, s.handler(), "GET", "/readyz")
			if (code == 200) != tc.ready {
				t.Errorf("readyz %d %q; want ready %v", code, body, tc.ready)
			}
		})
	}
}

// TestMetricsSeries: every SPEC 8 series exists from the first scrape, with
// the tenant labels.
func TestMetricsSeries(t *testing.T) {
	s, clock := testSidecar(t)
	s.publish(clock.now(), false)
	s.m.apiError(apiOp(wrapAPI("update", "lease", "ns", "x", errors.New("boom"))))
	_, body := get(t, s.handler(), "GET", "/metrics")
	for _, series := range []string{
		"cardano_forging_enabled{", "cardano_leader_status{", "cardano_leadership_changes_total{",
		`cardano_sighup_signals_total{pod="bp-0"`, `reason="enable"}`, `reason="disable"}`,
		"forge_manager_lease_renew_age_seconds{", "forge_manager_leadership_epoch{", "forge_manager_self_fencing_total{",
		`forge_manager_api_errors_total{pod="bp-0",cardano_network="mainnet",pool_id="mypool",pool_ticker="MYPL",application_type="block-producer",cluster_region="unknown",operation="update"} 1`,
		"forge_manager_node_process_found{", "forge_manager_build_info{", "forge_manager_eligible{",
		"forge_manager_node_terminations_total{", "process_resident_memory_bytes", "# TYPE cardano_forging_enabled gauge",
	} {
		if !strings.Contains(body, series) {
			t.Errorf("/metrics lacks %s", series)
		}
	}
}

// TestLabelEscaping: a pool id with quotes cannot break the exposition.
func TestLabelEscaping(t *testing.T) {
	got := renderLabels("pool_id", `a"b\c`)
	if got != `pool_id="a\"b\\c"` {
		t.Errorf("got %s", got)
	}
}
