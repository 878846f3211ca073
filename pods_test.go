//go:build integration

package main

// Test helpers around testenv.Cluster: simulated block-producer pods, each
// running the real forge-manager binary next to the stand-in cardano-node
// (internal/cardano-node) in its own namespaces (internal/testenv/pod.go).
// Safety is judged only from the stand-in nodes' own records.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"forge-manager/internal/testenv"
)

var (
	binOnce        sync.Once
	binFM, binNode string
	binErr         error
)

// testBinaries builds forge-manager and the stand-in node once per test
// binary.
func testBinaries(t testing.TB) (string, string) {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "forge-bin-")
		if err != nil {
			binErr = err
			return
		}
		binFM, binNode, binErr = testenv.BuildBinaries(".", dir)
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binFM, binNode
}

// fastTiming keeps the fault tests short while keeping every margin of the
// defaults (15s/10s/2s): LEASE_DURATION - RENEW_DEADLINE = 5s holds the
// shipped dead-man probe's 4s budget (testenv.ShippedProbe) and killMargin.
const (
	lease   = 10 * time.Second
	renew   = 5 * time.Second
	retry   = time.Second
	confirm = 2 * time.Second
)

var fastTiming = map[string]string{
	"LEASE_DURATION": lease.String(), "RENEW_DEADLINE": renew.String(), "RETRY_PERIOD": retry.String(),
	"SIGHUP_CONFIRM_TIMEOUT": confirm.String(),
}

type cluster struct {
	*testenv.Cluster
	t testing.TB
	// why is the last fatal reason of the cluster's own helpers, repeated
	// after the log dump: CI shows only the tail of a failed run.
	why   string
	begun int64
}

func newCluster(t testing.TB, n int, env map[string]string) *cluster {
	t.Helper()
	return newClusterWith(t, n, env, nil)
}

// newClusterWith starts n pods bp-0.. with env for forge-manager; edit
// changes pod specs (a fault on some pods).
func newClusterWith(t testing.TB, n int, env map[string]string, edit func(string, *testenv.PodSpec)) *cluster {
	t.Helper()
	fm, node := testBinaries(t)
	tc, err := testenv.NewCluster(controlPlane(t), newTenant(t), fm, node, testSecrets())
	if err != nil {
		t.Fatal(err)
	}
	tc.Env, tc.Edit = env, edit
	c := &cluster{Cluster: tc, t: t, begun: testenv.Monotonic()}
	t.Cleanup(c.stop)
	for i := 0; i < n; i++ {
		c.start(fmt.Sprintf("bp-%d", i), nil)
	}
	return c
}

func (c *cluster) start(name string, edit func(*testenv.PodSpec)) *testenv.Pod {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := c.Start(ctx, name, edit)
	if err != nil {
		c.t.Fatal(err)
	}
	return p
}

func (c *cluster) stop() {
	if c.t.Failed() || os.Getenv("FORGE_TEST_LOGS") != "" {
		c.dumpLogs()
	}
	c.Close()
}

// dumpLogs prints the tail of every container log of a failed test.
func (c *cluster) dumpLogs() {
	for _, p := range c.All() {
		for _, name := range []string{"forge-manager", "cardano-node"} {
			b, _ := os.ReadFile(p.Log(name))
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			if len(lines) > 40 {
				lines = lines[len(lines)-40:]
			}
			c.t.Logf("--- %s %s %s:\n%s", p.Spec.Name, p.UID, name, strings.Join(lines, "\n"))
		}
		rec, _ := os.ReadFile(p.Record())
		c.t.Logf("--- %s %s record:\n%s", p.Spec.Name, p.UID, rec)
	}
	all, err := c.Intervals()
	var spans []string
	for _, iv := range all {
		end := "open"
		if iv.End != 0 {
			end = "+" + c.at(iv.End).String()
		}
		spans = append(spans, fmt.Sprintf("%s pid %d +%s..%s", iv.Pod, iv.PID, c.at(iv.Start), end))
	}
	c.t.Logf("--- forging since the test began: %s (%v); failed: %s", strings.Join(spans, ", "), err, c.why)
}

// at is a CLOCK_MONOTONIC stamp as the time since the cluster began.
func (c *cluster) at(mono int64) time.Duration {
	return time.Duration(mono - c.begun).Round(time.Millisecond)
}

// live lists the pods running now.
func (c *cluster) live() []string {
	var out []string
	for _, name := range c.Order {
		if c.Pod(name) != nil {
			out = append(out, name)
		}
	}
	return out
}

func (c *cluster) intervals() []testenv.Interval {
	c.t.Helper()
	all, err := c.Intervals()
	if err != nil {
		c.t.Fatal(err)
	}
	return all
}

// checkNoOverlap fails the test if two nodes ever forged at the same
// instant; it returns how many pairs did.
func (c *cluster) checkNoOverlap() int {
	c.t.Helper()
	return checkNoOverlap(c.t, c.intervals())
}

// checkNoOverlap fails t for every pair of intervals that forged at the
// same instant, and returns how many did.
func checkNoOverlap(t testing.TB, all []testenv.Interval) int {
	t.Helper()
	o := testenv.Overlaps(all)
	for _, s := range o {
		t.Errorf("two nodes forged at once: %s", s)
	}
	return len(o)
}

// forgers lists the pods whose node forges now, per the records.
func (c *cluster) forgers() []string {
	open, _ := c.Forging()
	var out []string
	for _, iv := range open {
		out = append(out, iv.Pod)
	}
	return out
}

func (c *cluster) waitNoForger(limit time.Duration) {
	c.t.Helper()
	eventually(c.t, limit, "no forger", func() bool { return len(c.forgers()) == 0 })
}

// settled waits until exactly one node forges stably and returns it with
// the time from since to the start of its forging.
func (c *cluster) settled(since int64, limit time.Duration) (string, time.Duration) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	pod, took, err := c.Settled(ctx, since, settle)
	if err != nil {
		c.why = fmt.Sprintf("settled (since +%s, limit %s): %v", c.at(since), limit, err)
		c.t.Fatal(err)
	}
	return pod, took
}

// status fetches a pod's /status.
func (c *cluster) status(name string) (snapshot, error) {
	var s snapshot
	b, err := c.Get(name, "/status")
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(b, &s)
}

func (c *cluster) metric(name, series string) (float64, error) { return c.Metric(name, series) }
