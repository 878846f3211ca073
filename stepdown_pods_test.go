//go:build integration

package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"forge-manager/internal/testenv"
)

// TestStepDownInPods (issue 12): `forge-manager step-down`, run in the
// leader's sidecar as kubectl exec would, moves the lead without
// restarting any node and without two forging; the replica stays out until
// `step-down 0`. The move is told by Events on the CardanoLeader, seen in
// kubectl describe.
func TestStepDownInPods(t *testing.T) {
	c := newCluster(t, 3, nil)
	leader, _ := c.settled(testenv.Monotonic(), 40*time.Second)
	restarts := map[string]int{}
	for _, p := range c.All() {
		restarts[p.Spec.Name] = p.Restarts("cardano-node")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	since := testenv.Monotonic()
	out, err := c.Pod(leader).Exec(ctx, "step-down", "10m")
	if err != nil || !strings.Contains(string(out), "done in") {
		c.why = "step-down: " + string(out)
		t.Fatalf("step-down: %v\n%s", err, out)
	}
	next, took := c.settled(since, 30*time.Second)
	t.Logf("step-down: %s; %s forging %s after the command started", strings.TrimSpace(string(out)), next, took)
	if next == leader {
		t.Fatalf("%s still forges after stepping down", leader)
	}
	for _, p := range c.All() {
		if got := p.Restarts("cardano-node"); got != restarts[p.Spec.Name] {
			t.Errorf("%s's node restarted %d times; want none", p.Spec.Name, got-restarts[p.Spec.Name])
		}
	}
	st, err := c.status(leader)
	if err != nil || st.Role != "ineligible" || !strings.HasPrefix(st.Reason, "stepped down by an operator until") {
		t.Errorf("%s: role %q, reason %q (%v); want out, stepped down", leader, st.Role, st.Reason, err)
	}
	eventually(t, 10*time.Second, "the handover in kubectl describe cardanoleader", func() bool {
		out, err := c.CP.Kubectl("describe", "cardanoleader", "-n", c.Tenant.Namespace, "cardano-leader")
		return err == nil && strings.Contains(string(out), "LeaseReleased") && strings.Contains(string(out), next+" leads")
	})
	eventually(t, 10*time.Second, "ForgingDisabled about the old leader's pod", func() bool {
		out, err := c.CP.Kubectl("get", "events", "-n", c.Tenant.Namespace, "--field-selector",
			"reason=ForgingDisabled,involvedObject.name="+leader, "-o", "jsonpath={.items[*].type}")
		return err == nil && strings.Contains(string(out), "Normal")
	})
	if out, err := c.Pod(leader).Exec(ctx, "step-down", "0"); err != nil || !strings.Contains(string(out), "step-down ended") {
		t.Fatalf("step-down 0: %v\n%s", err, out)
	}
	eventually(t, 10*time.Second, leader+" standing by again", func() bool {
		st, err := c.status(leader)
		return err == nil && st.Role == "standby"
	})
	if f := c.forgers(); len(f) != 1 || f[0] != next {
		t.Errorf("forgers %v; want %s alone: an ended step-down takes nothing back", f, next)
	}
	c.checkNoOverlap()
}
