//go:build integration

package main

// What forge-manager reports, checked on the real binary through a failover
// and a handover: logs, metrics and the CardanoLeader status.

import (
	"bufio"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"forge-manager/internal/testenv"
)

func TestReportingThroughFailover(t *testing.T) {
	c := newCluster(t, 3, fastTiming)
	leader, _ := c.settled(testenv.Monotonic(), 40*time.Second)
	c.checkMetrics(leader)
	checkLeaderObject(t, c, leader)

	// Steady state: no INFO lines and no CardanoLeader writes.
	infoBefore := infoLines(t, c.Pod(leader).Log("forge-manager"))
	rv := leaderRV(t, c)
	time.Sleep(5 * time.Second) // an interval in which nothing may happen
	if after := infoLines(t, c.Pod(leader).Log("forge-manager")); after != infoBefore {
		t.Errorf("leader logged %d INFO lines in steady state; want none", after-infoBefore)
	}
	if now := leaderRV(t, c); now != rv {
		t.Errorf("CardanoLeader written in steady state: resourceVersion %s -> %s", rv, now)
	}

	// Unplanned failover, then a planned handover.
	from := testenv.Monotonic()
	c.Kill(leader)
	next, _ := c.settled(from, 20*time.Second)
	c.checkMetrics(next)
	checkLeaderObject(t, c, next)
	from = testenv.Monotonic()
	c.Delete(next)
	third, took := c.settled(from, 20*time.Second)
	t.Logf("handover %s -> %s in %s", next, third, took)
	c.checkMetrics(third)
	checkLeaderObject(t, c, third)
	if v, _ := c.metric(third, "cardano_leadership_changes_total"); v < 1 {
		t.Errorf("new leader counts %v leadership changes", v)
	}
	c.checkNoOverlap()

	// Every log line of every sidecar: JSON with the tenant fields, no key
	// bytes; no metric either.
	pods := c.All()
	for _, p := range pods {
		checkLog(t, p.Log("forge-manager"))
		checkLog(t, p.Log("init"))
	}
	for _, name := range c.live() {
		b, err := c.Get(name, "/metrics")
		if err != nil || leaksKey(string(b)) {
			t.Errorf("%s /metrics: %v, leaks key material: %v", name, err, leaksKey(string(b)))
		}
	}
	// The transitions were logged once each.
	counts := map[string]int{}
	for _, p := range pods {
		for _, msg := range logMessages(t, p.Log("forge-manager")) {
			counts[msg]++
		}
	}
	if counts["acquired the Lease"] != 3 || counts["released the Lease"] != 1 {
		t.Errorf("transition lines: %v; want 3 acquisitions and 1 release", counts)
	}
}

func checkLeaderObject(t *testing.T, c *cluster, leader string) {
	t.Helper()
	eventually(t, 5*time.Second, "CardanoLeader names "+leader, func() bool {
		out, err := c.CP.Kubectl("get", "cardanoleaders", "-n", c.Tenant.Namespace, "-o", "jsonpath={.items[0].status.leaderPod} {.items[0].status.forgingEnabled}")
		return err == nil && string(out) == leader+" true"
	})
}

func leaderRV(t *testing.T, c *cluster) string {
	out, err := c.CP.Kubectl("get", "cardanoleaders", "-n", c.Tenant.Namespace, "-o", "jsonpath={.items[0].metadata.resourceVersion}")
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func readLog(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Errorf("%s: not a JSON line: %q", path, sc.Text())
			continue
		}
		lines = append(lines, m)
	}
	return lines
}

func checkLog(t *testing.T, path string) {
	t.Helper()
	b, _ := os.ReadFile(path)
	if leaksKey(string(b)) {
		t.Errorf("%s holds key material", path)
	}
	for _, m := range readLog(t, path) {
		for _, k := range []string{"time", "level", "msg", "pod", "network", "pool_id", "region"} {
			if _, ok := m[k]; !ok {
				t.Errorf("%s: line without %s: %v", path, k, m)
			}
		}
	}
}

func infoLines(t *testing.T, path string) int {
	n := 0
	for _, m := range readLog(t, path) {
		if m["level"] == "INFO" {
			n++
		}
	}
	return n
}

func logMessages(t *testing.T, path string) []string {
	var out []string
	for _, m := range readLog(t, path) {
		if s, ok := m["msg"].(string); ok && strings.Contains(s, "Lease") {
			out = append(out, s)
		}
	}
	return out
}
