//go:build integration

package main

// Fault injection (docs/design.md, the safety invariants): three simulated pods running the real binary
// against the real API server; each scenario repeats its fault on a live
// cluster. The verdicts come from the stand-in nodes' own records: never two
// forging at the same instant, and exactly one forging, stably, within the
// scenario's bound. Each scenario prints one MATRIX line for the README.
//
// Timing is fastTiming (10s/5s/1s): the same margins as the defaults
// (15s/10s/2s), shorter. `make bench` measures at the defaults.

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"forge-manager/internal/testenv"
)

// settle: one forger must hold this long to count.
const settle = 3 * time.Second

// unplanned is the bound for losing the leader without a handover:
// LEASE_DURATION + RETRY_PERIOD + 1s, the target.
const unplanned = lease + retry + time.Second

type faultScenario struct {
	name  string
	runs  int
	env   map[string]string
	edit  func(name string, s *testenv.PodSpec)
	bound time.Duration
	keep  bool // the forger must not change: the fault is one it rides out
	// fault injects the fault on the current forger and returns the instant
	// (CLOCK_MONOTONIC) the bound is measured from.
	fault func(t *testing.T, c *cluster, forger string) int64
}

func TestFaults(t *testing.T) {
	for _, sc := range faultScenarios() {
		t.Run(strings.ReplaceAll(sc.name, " ", "_"), func(t *testing.T) { runScenario(t, sc) })
	}
}

func runScenario(t *testing.T, sc faultScenario) {
	env := map[string]string{}
	for k, v := range fastTiming {
		env[k] = v
	}
	for k, v := range sc.env {
		env[k] = v
	}
	c := newClusterWith(t, 3, env, sc.edit)
	forger, _ := c.settled(testenv.Monotonic(), 40*time.Second)
	var worst time.Duration
	for run := 1; run <= sc.runs; run++ {
		c.checkMetrics(forger)
		before := forger
		from := sc.fault(t, c, forger)
		var took time.Duration
		forger, took = c.settled(from, sc.bound+settle+10*time.Second)
		worst = max(worst, took)
		t.Logf("run %d: one forger (%s) %s after the fault (bound %s)", run, forger, took.Round(time.Millisecond), sc.bound)
		if took > sc.bound {
			t.Errorf("run %d: one forger after %s; bound %s", run, took, sc.bound)
		}
		if sc.keep && forger != before {
			t.Errorf("run %d: forging moved from %s to %s; want it kept", run, before, forger)
		}
		c.restore()
		forger, _ = c.settled(testenv.Monotonic(), 40*time.Second)
	}
	overlaps := c.checkNoOverlap()
	fmt.Printf("MATRIX | %s | %d | %d | %s | %s |\n", sc.name, sc.runs, overlaps, worst.Round(10*time.Millisecond), sc.bound)
}

func faultScenarios() []faultScenario {
	return []faultScenario{
		{name: "leader pod killed", runs: 3, bound: unplanned, fault: func(t *testing.T, c *cluster, f string) int64 {
			from := testenv.Monotonic()
			c.Kill(f)
			return from
		}},
		{name: "leader sidecar SIGKILL, restarted at once", runs: 3, bound: unplanned, fault: func(t *testing.T, c *cluster, f string) int64 {
			from := testenv.Monotonic()
			c.Pod(f).Signal("forge-manager", syscall.SIGKILL)
			return from
		}},
		{name: "leader sidecar SIGKILL, down for 20s (dead-man)", runs: 3, bound: unplanned, fault: func(t *testing.T, c *cluster, f string) int64 {
			p := c.Pod(f)
			p.SetRestartDelay("forge-manager", 20*time.Second)
			fails := p.ProbeFailures()
			from := testenv.Monotonic()
			p.Signal("forge-manager", syscall.SIGKILL)
			eventually(t, renew+5*time.Second, "dead-man probe fails on the orphaned node", func() bool { return p.ProbeFailures() > fails })
			p.SetRestartDelay("forge-manager", 0)
			return from
		}},
		{name: "leader pod frozen 12s", runs: 3, bound: unplanned, fault: func(t *testing.T, c *cluster, f string) int64 {
			p := c.Pod(f)
			from := testenv.Monotonic()
			p.Freeze()
			time.Sleep(12 * time.Second) // the fault's length, not a wait for a condition
			p.Thaw()
			return from
		}},
		{name: "leader cut off the API server 30s", runs: 3, bound: unplanned, fault: func(t *testing.T, c *cluster, f string) int64 {
			p := c.Pod(f)
			from := testenv.Monotonic()
			if err := p.Partition(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(30 * time.Second) // the fault's length
			if err := p.Heal(); err != nil {
				t.Fatal(err)
			}
			return from
		}},
		{name: "a standby's watch silently dropped 20s, leader pod killed", runs: 3, bound: unplanned, fault: func(t *testing.T, c *cluster, f string) int64 {
			var cut *testenv.Pod
			for _, name := range c.Order {
				if name != f {
					cut = c.Pod(name)
					break
				}
			}
			if err := cut.Partition(); err != nil { // established connections stall: no FIN, no RST
				t.Fatal(err)
			}
			from := testenv.Monotonic()
			c.Kill(f)
			time.Sleep(20 * time.Second) // the fault's length
			if err := cut.Heal(); err != nil {
				t.Fatal(err)
			}
			return from
		}},
		{name: "API server stopped 30s", runs: 3, bound: 2*retry + 5*time.Second, fault: func(t *testing.T, c *cluster, f string) int64 {
			stopped := time.Now()
			c.CP.StopAPIServer()
			// Fail closed: with no API, nobody may forge past its deadline.
			c.waitNoForger(renew + 3*time.Second)
			time.Sleep(30*time.Second - time.Since(stopped)) // the rest of the fault's length
			from := testenv.Monotonic()                      // the bound runs from the server's restart
			if err := c.CP.StartAPIServer(t.Context()); err != nil {
				t.Fatal(err)
			}
			return from
		}},
		{name: "rolling restart (SIGTERM each pod in turn)", runs: 3, bound: retry + time.Second, fault: func(t *testing.T, c *cluster, f string) int64 {
			var from int64
			for _, name := range append([]string{}, c.Order...) {
				handover := name == f
				start := testenv.Monotonic()
				took := c.Delete(name)
				if handover {
					from = start
					var after time.Duration
					f, after = c.settled(from, 15*time.Second) // each handover is measured
					if after > retry+time.Second {
						t.Errorf("handover from %s to %s took %s", name, f, after)
					}
				}
				c.start(name, nil)
				c.waitEligible(name, 30*time.Second)
				t.Logf("%s stopped in %s", name, took.Round(time.Millisecond))
			}
			return from
		}},
		{name: "leader node killed and restarted", runs: 3, bound: 2*retry + time.Second, fault: func(t *testing.T, c *cluster, f string) int64 {
			from := testenv.Monotonic()
			c.Pod(f).Signal("cardano-node", syscall.SIGKILL)
			return from
		}},
		{name: "credential deleted by hand on the leader", runs: 3, bound: 0, keep: true, fault: func(t *testing.T, c *cluster, f string) int64 {
			p := c.Pod(f)
			hups, err := c.metric(f, `cardano_sighup_signals_total reason="enable"`)
			if err != nil {
				t.Fatal(err)
			}
			from := testenv.Monotonic()
			os.Remove(p.IPC("kes.skey"))
			eventually(t, 3*retry, "the file is put back", func() bool {
				st, err := os.Stat(p.IPC("kes.skey"))
				return err == nil && st.Mode().Perm() == 0o600
			})
			if now, _ := c.metric(f, `cardano_sighup_signals_total reason="enable"`); now != hups {
				t.Errorf("a SIGHUP was sent for a file whose content did not change (%v -> %v)", hups, now)
			}
			return from
		}},
		{name: "node not signalable on one pod", runs: 3, bound: unplanned,
			edit: func(name string, s *testenv.PodSpec) {
				if name == "bp-2" {
					s.NodeUID = 0 // root: forge-manager (UID 10001) gets EPERM
				}
			},
			fault: func(t *testing.T, c *cluster, f string) int64 {
				if f == "bp-2" {
					t.Fatal("the pod whose node cannot be signalled forges")
				}
				st, err := c.status("bp-2")
				if err != nil || st.Eligible || !strings.Contains(st.Reason, "same UID") {
					t.Errorf("bp-2 status %+v %v; want not eligible with the UID hint", st, err)
				}
				from := testenv.Monotonic()
				c.Kill(f)
				return from
			}},
		{name: "wedged node ignores the disable", runs: 3, bound: unplanned,
			edit: func(name string, s *testenv.PodSpec) { s.NodeArgs = append(s.NodeArgs, "--ignore-disable") },
			fault: func(t *testing.T, c *cluster, f string) int64 {
				p := c.Pod(f)
				fails := p.ProbeFailures()
				from := testenv.Monotonic()
				p.Partition()
				time.Sleep(lease + 2*time.Second) // the fault's length
				p.Heal()
				// Killed by its sidecar at the confirmation timeout, or by the
				// dead-man probe, whose heartbeat ran out at the fence: whichever
				// comes first (the records show it was before the takeover).
				eventually(t, 5*time.Second, "the old leader's node killed", func() bool {
					v, err := c.metric(f, "forge_manager_node_terminations_total")
					return err == nil && v >= 1 || p.ProbeFailures() > fails
				})
				return from
			}},
		{name: "first SIGHUP lost", runs: 3, bound: unplanned + 2*time.Second + 2*time.Second,
			edit: func(name string, s *testenv.PodSpec) { s.NodeArgs = append(s.NodeArgs, "--drop-hups", "1") },
			fault: func(t *testing.T, c *cluster, f string) int64 {
				from := testenv.Monotonic()
				c.Kill(f)
				return from
			}},
		{name: "Lease deleted by hand while the leader forges", runs: 3, bound: 0, keep: true, fault: func(t *testing.T, c *cluster, f string) int64 {
			from := testenv.Monotonic()
			if _, err := c.CP.Kubectl("delete", "leases", "--all", "-n", c.Tenant.Namespace); err != nil {
				t.Fatal(err)
			}
			time.Sleep(lease + 2*retry) // the fault's aftermath: a standby would have recreated it by now
			return from
		}},
		{name: "second cardano-node process in the leader's pod", runs: 3, bound: 0, keep: true, fault: func(t *testing.T, c *cluster, f string) int64 {
			_, node := testBinaries(t)
			from := testenv.Monotonic()
			cmd, err := c.Pod(f).Run(10001, node, "--idle", (lease + 2*retry).String())
			if err != nil {
				t.Fatal(err)
			}
			cmd.Wait()
			return from
		}},
		{name: "leader's node gauge unreadable", runs: 3, bound: 2*confirm + 3*retry + time.Second, fault: func(t *testing.T, c *cluster, f string) int64 {
			from := testenv.Monotonic()
			os.WriteFile(c.Pod(f).BrokenGaugeFile(), nil, 0o644)
			c.waitNotForging(f, 15*time.Second)
			return from
		}},
		{name: "leader health check fails", runs: 3, bound: 2*time.Second + 2*retry + time.Second,
			env: map[string]string{"HEALTH_CHECK_ENDPOINT": "http://127.0.0.1:12798/health", "HEALTH_CHECK_INTERVAL": "1s",
				"HEALTH_CHECK_TIMEOUT": "500ms", "HEALTH_CHECK_FAILURE_THRESHOLD": "2"},
			fault: func(t *testing.T, c *cluster, f string) int64 {
				p := c.Pod(f)
				from := testenv.Monotonic()
				os.WriteFile(p.UnhealthyFile(), nil, 0o644)
				c.waitNotForging(f, 10*time.Second)
				os.Remove(p.UnhealthyFile())
				c.waitEligible(f, 10*time.Second)
				return from
			}},
	}
}

// restore brings the cluster back to its pods bp-0..bp-2, recreating any
// that a fault removed.
func (c *cluster) restore() {
	for _, p := range c.All() {
		os.Remove(p.BrokenGaugeFile())
	}
	for _, name := range c.Order {
		if c.Pod(name) == nil {
			c.start(name, nil)
		}
	}
	for _, name := range c.Order {
		c.waitUp(name, 30*time.Second)
	}
}

// waitUp waits until a pod's sidecar answers /status with its node up (or
// known to be unusable: a node it may not signal never counts as up).
func (c *cluster) waitUp(name string, limit time.Duration) {
	c.t.Helper()
	eventually(c.t, limit, name+" node up", func() bool {
		st, err := c.status(name)
		return err == nil && (st.NodeUp || strings.Contains(st.Reason, "not permitted"))
	})
}

func (c *cluster) waitEligible(name string, limit time.Duration) {
	c.t.Helper()
	eventually(c.t, limit, name+" eligible", func() bool {
		st, err := c.status(name)
		return err == nil && st.Eligible
	})
}

func (c *cluster) waitNotForging(name string, limit time.Duration) {
	c.t.Helper()
	eventually(c.t, limit, name+" stops forging", func() bool {
		for _, f := range c.forgers() {
			if f == name {
				return false
			}
		}
		return true
	})
}

// checkMetrics: once settled, exactly the forger reports
// cardano_forging_enabled 1 (what its node confirmed).
func (c *cluster) checkMetrics(forger string) {
	c.t.Helper()
	var last string
	ok := func() bool {
		last = ""
		for _, name := range c.live() {
			v, err := c.metric(name, "cardano_forging_enabled")
			if err != nil || (v == 1) != (name == forger) {
				last += fmt.Sprintf(" %s=%v(%v)", name, v, err)
			}
		}
		return last == ""
	}
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			c.why = fmt.Sprintf("cardano_forging_enabled disagrees with the nodes (forger %s):%s", forger, last)
			c.t.Error(c.why)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestNoSignalBeforeSocket: a killed node leaves its socket file behind, and
// its successor dies on a SIGHUP during its first moments. The only
// replica's node is killed: its successor must boot undisturbed (one restart:
// the kill's) and then forge.
func TestNoSignalBeforeSocket(t *testing.T) {
	c := newClusterWith(t, 1, fastTiming, func(_ string, s *testenv.PodSpec) {
		s.NodeArgs = []string{"--early-window", "2s", "--replay", "1s"}
	})
	c.settled(testenv.Monotonic(), 40*time.Second)
	p := c.Pod("bp-0")
	restarts := p.Restarts("cardano-node")
	from := testenv.Monotonic()
	p.Signal("cardano-node", syscall.SIGKILL)
	eventually(t, 5*time.Second, "the node restarts", func() bool { return p.Restarts("cardano-node") > restarts })
	if _, err := os.Stat(p.IPC("node.socket")); err != nil {
		t.Fatalf("the killed node's socket file should be left behind: %v", err)
	}
	_, took := c.settled(from, 30*time.Second)
	if got := p.Restarts("cardano-node"); got != restarts+1 {
		t.Errorf("node restarted %d times; want 1: a SIGHUP reached it before its socket answered", got-restarts)
	}
	t.Logf("forging again %s after the kill", took)
}
