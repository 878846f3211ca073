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
	clock := newClock()
	s := newSidecar(c, resolveTenant(c), slog.New(slog.NewJSONHandler(io.Discard, nil)), clock.now, newSimNode("bp-0", clock, nil))
	s.el = newElector(nil, "bp-0_uid", c.timing(), clock.now)
	return s, clock
}

// lead makes s the leader as of now, renewed now.
func lead(s *sidecar, now time.Time) {
	s.el.holding, s.el.renewedAt = true, now
}

func get(t *testing.T, h http.Handler, method, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec.Code, rec.Body.String()
}

func TestHTTPEndpoints(t *testing.T) {
	s, clock := testSidecar(t)
	h := handlerOf(s)
	// Before the first pass: alive is unknown, nothing is ready.
	for _, p := range []string{"/healthz", "/health", "/readyz", "/startup-status", "/status"} {
		if code, _ := get(t, h, "GET", p); code != http.StatusServiceUnavailable {
			t.Errorf("%s before the first pass: %d; want 503", p, code)
		}
	}
	// A leader, forging, confirmed.
	lead(s, clock.now())
	s.node.n = nodeState{presence: nodeUp, state: stateOn, proc: nodeProc{PID: 42}}
	s.publish(clock.now(), s.el.facts(clock.now()))
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

// TestHealthzFails: a stuck loop, or a leader past its renew deadline,
// judged on the loop's own monotonic clock, not the wall clock (the clock
// here is 1970 plus a little: a wall-clock age would be 56 years).
func TestHealthzFails(t *testing.T) {
	s, clock := testSidecar(t)
	h := handlerOf(s)
	lead(s, clock.now())
	s.publish(clock.now(), s.el.facts(clock.now()))
	if code, body := get(t, h, "GET", "/healthz"); code != 200 {
		t.Fatalf("a leader that just passed: %d %q; want 200", code, body)
	}
	clock.advance(9 * time.Second)
	s.publish(clock.now(), leadership{leading: true, fenceAt: clock.now().Add(-time.Millisecond)})
	if code, body := get(t, h, "GET", "/healthz"); code != 503 || !strings.Contains(body, "renew deadline") {
		t.Errorf("leader past its deadline: %d %q; want 503", code, body)
	}
	s.publish(clock.now(), leadership{})
	clock.advance(16 * time.Second)
	if code, body := get(t, h, "GET", "/healthz"); code != 503 || !strings.Contains(body, "stuck") {
		t.Errorf("stuck loop: %d %q; want 503", code, body)
	}
}

// TestReadyz: ready means the node is up and this replica's state settled.
func TestReadyz(t *testing.T) {
	tests := []struct {
		name    string
		node    nodeState
		leading bool
		ready   bool
	}{
		{"standby, node off", nodeState{presence: nodeUp, state: stateOff}, false, true},
		{"node booting", nodeState{presence: nodeBooting, state: stateOff}, false, false},
		{"leader not yet forging", nodeState{presence: nodeUp, state: stateEnabling}, true, false},
		{"leader forging", nodeState{presence: nodeUp, state: stateOn}, true, true},
		{"standby still disabling", nodeState{presence: nodeUp, state: stateDisabling}, false, false},
		{"standby, node state unknown", nodeState{presence: nodeUp, state: stateUnknown}, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, clock := testSidecar(t)
			s.node.n = tc.node
			if tc.leading {
				lead(s, clock.now())
			}
			s.publish(clock.now(), s.el.facts(clock.now()))
			code, body := get(t, handlerOf(s), "GET", "/readyz")
			if (code == 200) != tc.ready {
				t.Errorf("readyz %d %q; want ready %v", code, body, tc.ready)
			}
		})
	}
}

// TestMetricsSeries: every series the README lists exists from the first scrape, with
// the tenant labels.
func TestMetricsSeries(t *testing.T) {
	s, clock := testSidecar(t)
	s.publish(clock.now(), leadership{})
	s.m.apiError(apiOp(wrapAPI("update", "lease", "ns", "x", errors.New("boom"))))
	_, body := get(t, handlerOf(s), "GET", "/metrics")
	for _, series := range []string{
		"cardano_forging_enabled{", "cardano_leader_status{", "cardano_leadership_changes_total{",
		`cardano_sighup_signals_total{pod="bp-0"`, `reason="enable"}`, `reason="disable"}`,
		"forge_manager_lease_renew_age_seconds{", "forge_manager_leadership_epoch{", "forge_manager_self_fencing_total{",
		`forge_manager_api_errors_total{pod="bp-0",cardano_network="mainnet",pool_id="mypool",pool_ticker="MYPL",application_type="block-producer",cluster_region="unknown",operation="update"} 1`,
		"forge_manager_node_process_found{", "forge_manager_build_info{", "forge_manager_eligible{",
		"forge_manager_node_terminations_total{", "process_resident_memory_bytes", "# TYPE cardano_forging_enabled gauge",
		`forge_manager_node_forging_state{pod="bp-0",cardano_network="mainnet",pool_id="mypool",pool_ticker="MYPL",application_type="block-producer",cluster_region="unknown",state="unknown"} 1`,
		`state="off"} 0`, `state="enabling"} 0`, `state="on"} 0`, `state="disabling"} 0`,
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

// handlerOf is the HTTP surface main.go wires for s.
func handlerOf(s *sidecar) http.Handler {
	return newStatusServer(s.board, s.m.write, s.now, s.tm.lease).handler()
}
