//go:build integration

package main

// SPEC 12 against the real API server, the real binary and the stand-in
// node: the tip, a kubelet-style Secret rotation, a broken new set.

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"forge-manager/internal/testenv"
)

// TestPodsLaggingReplicaNeverLeads: bp-0's node is 5000 slots behind from
// the start: it never forges, though it is first. Then the leader's node
// falls 900 slots behind: it hands over to the third, without overlap, and
// bp-0 still never forges.
func TestPodsLaggingReplicaNeverLeads(t *testing.T) {
	// The node runs as another user: the files must be readable to it.
	dir, err := os.MkdirTemp("", "tip-lag-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	lagFiles := map[string]string{}
	c := newClusterWith(t, 3, fastTiming, func(name string, s *testenv.PodSpec) {
		lagFiles[name] = filepath.Join(dir, name)
		if name == "bp-0" {
			os.WriteFile(lagFiles[name], []byte("5000"), 0o644)
		}
		s.NodeArgs = append(s.NodeArgs, "--tip-lag-file", lagFiles[name])
	})
	leader, _ := c.settled(testenv.Monotonic(), 40*time.Second)
	if leader == "bp-0" {
		t.Fatal("the lagging replica leads")
	}
	st, err := c.status("bp-0")
	if err != nil || st.Eligible || !strings.Contains(st.Reason, "slots behind the wall clock") || st.Chain.TipLagSlots == nil || *st.Chain.TipLagSlots < 5000 {
		t.Errorf("bp-0 /status: %v eligible %v, reason %q, lag %v", err, st.Eligible, st.Reason, st.Chain.TipLagSlots)
	}
	from := testenv.Monotonic()
	os.WriteFile(lagFiles[leader], []byte("900"), 0o644)
	next, took := c.settled(from, 20*time.Second)
	t.Logf("leader %s fell behind; %s forges %s later", leader, next, took)
	if next == leader || next == "bp-0" {
		t.Errorf("%s forges after %s fell behind; want the third replica", next, leader)
	}
	c.checkNoOverlap()
	for _, iv := range c.intervals() {
		if iv.Pod == "bp-0" {
			t.Errorf("the lagging bp-0 forged: %+v", iv)
		}
	}
}

// TestPodsKESRotation: the leader's Secret is updated the way the kubelet
// does (a new generation, ..data swapped): first with a broken set (the
// KES key of another certificate), which is refused while forging goes on
// with the running set and no signal; then with a good one (a new KES key,
// a certificate for it with the next counter), which the node loads with
// exactly one SIGHUP and then reports as its certificate's start period.
func TestPodsKESRotation(t *testing.T) {
	c := newCluster(t, 2, fastTiming)
	leader, _ := c.settled(testenv.Monotonic(), 40*time.Second)
	hups := func() float64 { v, _ := c.metric(leader, `cardano_sighup_signals_total reason="enable"`); return v }
	before := hups()
	c0 := testenv.MainnetKESPeriod(time.Now())
	broken := testenv.Keys(testenv.KeySpec{Marker: "broken", Counter: 1, KESPeriod: c0, KES: 1, CertFor: 0})
	if err := c.Pod(leader).UpdateSecret(broken); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the broken set refused", func() bool {
		st, err := c.status(leader)
		return err == nil && strings.Contains(st.Chain.CredentialsRefused, "does not belong to SOURCE_OP_CERT")
	})
	if v, _ := c.metric(leader, "forge_manager_credentials_refused"); v != 1 {
		t.Errorf("forge_manager_credentials_refused = %v; want 1", v)
	}
	eventually(t, 10*time.Second, "a Warning Event on the leader's pod", func() bool {
		out, err := c.CP.Kubectl("get", "events", "-n", c.Tenant.Namespace, "--field-selector",
			"reason=CredentialsRefused,involvedObject.name="+leader, "-o", "jsonpath={.items[*].type}")
		return err == nil && string(out) == "Warning"
	})
	if hups() != before || len(c.forgers()) != 1 || c.forgers()[0] != leader {
		t.Fatalf("after a refused set: %v enable SIGHUPs (was %v), forgers %v; want none and %s forging", hups(), before, c.forgers(), leader)
	}
	good := testenv.Keys(testenv.KeySpec{Marker: "rotated", Counter: 1, KESPeriod: c0, KES: 1, CertFor: 1})
	if err := c.Pod(leader).UpdateSecret(good); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "the node reports the new certificate", func() bool {
		st, err := c.status(leader)
		return err == nil && st.Chain.NodeKESPeriodStart != nil && uint64(*st.Chain.NodeKESPeriodStart) == c0 &&
			st.Chain.OpCertCounter != nil && *st.Chain.OpCertCounter == 1 && st.Chain.CredentialsRefused == ""
	})
	if got := hups() - before; got != 1 {
		t.Errorf("%v enable SIGHUPs for the rotation; want exactly 1", got)
	}
	target, _ := os.ReadFile(c.Pod(leader).IPC("node.cert"))
	if string(target) != string(good["node.cert"]) {
		t.Error("the node's certificate is not the rotated one")
	}
	c.checkNoOverlap()
	if f := c.forgers(); len(f) != 1 || f[0] != leader {
		t.Errorf("forgers %v after the rotation; want %s", f, leader)
	}
}

// TestPodsAnotherPoolsKeysRefusedAtStart: POOL_ID names a pool the keys
// disprove: the init container fails with both ids, and nothing forges.
func TestPodsAnotherPoolsKeysRefusedAtStart(t *testing.T) {
	env := map[string]string{"POOL_ID": strings.Repeat("ab", 28)}
	for k, v := range fastTiming {
		env[k] = v
	}
	fm, node := testBinaries(t)
	tc, err := testenv.NewCluster(controlPlane(t), newTenant(t), fm, node, testSecrets())
	if err != nil {
		t.Fatal(err)
	}
	tc.Env = env
	t.Cleanup(tc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = tc.Start(ctx, "bp-0", nil)
	if err == nil || !strings.Contains(err.Error(), "POOL_ID=\"abab") || !strings.Contains(err.Error(), "but the keys are pool pool1") {
		t.Fatalf("start with another pool's POOL_ID: %v; want init to name both pools", err)
	}
}

// TestPodsLowerCounterRefused: the leader rotates to counter 1 and the
// Lease records it; killed, it leaves a standby whose Secret still holds
// counter 0: the standby never forges and says why, until its Secret is
// updated too.
func TestPodsLowerCounterRefused(t *testing.T) {
	c := newCluster(t, 2, fastTiming)
	leader, _ := c.settled(testenv.Monotonic(), 40*time.Second)
	standby := "bp-0"
	if leader == "bp-0" {
		standby = "bp-1"
	}
	c0 := testenv.MainnetKESPeriod(time.Now())
	next := testenv.Keys(testenv.KeySpec{Marker: "next", Counter: 1, KESPeriod: c0, KES: 1, CertFor: 1})
	if err := c.Pod(leader).UpdateSecret(next); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "the Lease records counter 1", func() bool {
		out, err := c.CP.Kubectl("get", "leases", "-n", c.Tenant.Namespace, "-o", `jsonpath={.items[0].metadata.annotations.cardano\.io/opcert-counter}`)
		return err == nil && strings.HasSuffix(string(out), ":1")
	})
	eventually(t, 10*time.Second, "the CardanoLeader shows the record", func() bool {
		out, err := c.CP.Kubectl("get", "cardanoleaders", "-n", c.Tenant.Namespace, "-o", "jsonpath={.items[0].status.highestOpCertCounter} {.items[0].status.opCertCounter}")
		return err == nil && string(out) == "1 1"
	})
	c.Kill(leader)
	eventually(t, 30*time.Second, "the standby refuses counter 0", func() bool {
		st, err := c.status(standby)
		return err == nil && strings.Contains(st.Reason, "issue counter 0 is below 1")
	})
	time.Sleep(lease + 2*retry) // the Lease has expired: a standby that would forge, would
	if f := c.forgers(); len(f) != 0 {
		t.Fatalf("forgers %v with a rolled-back certificate; want none", f)
	}
	if err := c.Pod(standby).UpdateSecret(next); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.settled(testenv.Monotonic(), 20*time.Second); got != standby {
		t.Errorf("%s forges after the update; want %s", got, standby)
	}
	c.checkNoOverlap()
}
