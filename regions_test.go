//go:build integration

package main

// Cluster-wide coordination against real API servers (docs/regions.md):
// two regions, each its own kube-apiserver and etcd with two simulated
// pods, and a third API server holding the forging token, the candidacies
// and the CardanoForgeClusters; also the one-API-server layout. Verdicts
// come from the stand-in nodes' own records, across regions (one host, one
// CLOCK_MONOTONIC). Each scenario prints a REGIONS line for the README.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"forge-manager/internal/testenv"
)

// The cluster-wide timing of these tests: the defaults' margins (20s/12s/2s
// keep CLUSTER_LEASE_DURATION - CLUSTER_RENEW_DEADLINE above the probe's
// budget, and a local failover inside the candidacy's duration), shorter,
// and a short hysteresis.
const (
	cLease   = 14 * time.Second // > LEASE_DURATION + 1.1 RETRY_PERIOD + CLUSTER_RETRY_PERIOD (rule 2)
	cRenew   = 8 * time.Second
	cRetry   = time.Second
	cPreempt = 15 * time.Second
	cMinHold = 15 * time.Second
	// regionLost is section 7's bound: CLUSTER_LEASE_DURATION +
	// CLUSTER_RETRY_PERIOD + the node's enable.
	regionLost = cLease + cRetry + time.Second
)

var clusterTimingEnv = map[string]string{
	"ENABLE_CLUSTER_MANAGEMENT": "true",
	"CLUSTER_LEASE_DURATION":    cLease.String(), "CLUSTER_RENEW_DEADLINE": cRenew.String(), "CLUSTER_RETRY_PERIOD": cRetry.String(),
	"CLUSTER_PREEMPT_DELAY": cPreempt.String(), "CLUSTER_MIN_HOLD": cMinHold.String(),
}

var (
	planesMu sync.Mutex
	planes   = map[string]*testenv.ControlPlane{}
)

// extraPlane is another control plane with the CRDs, started once per test
// binary on first use and stopped by TestMain.
func extraPlane(t testing.TB, name string) *testenv.ControlPlane {
	t.Helper()
	planesMu.Lock()
	defer planesMu.Unlock()
	if p := planes[name]; p != nil {
		return p
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := testenv.Start(ctx)
	if err == nil {
		err = p.InstallCRDs(ctx, ".")
	}
	if err != nil {
		t.Fatalf("control plane %s: %v", name, err)
	}
	planes[name] = p
	return p
}

func stopExtraPlanes() {
	for _, p := range planes {
		p.Stop()
	}
}

// region is one StatefulSet: its pods in its own API server (or a shared
// one), its priority.
type region struct {
	*cluster
	name     string
	priority int
	pods     int
}

// regionSet is the coordination API server's namespace and the regions.
type regionSet struct {
	t     *testing.T
	coord *testenv.ControlPlane
	ns    string                // CLUSTER_NAMESPACE
	co    *testenv.Coordination // on another API server; nil: the regions' own
	by    map[string]*region
	order []string
	env   map[string]string
}

// newRegions starts each region's pods. separate: each region has its own
// API server and a third holds the cluster-wide objects; else one API
// server and one namespace hold everything.
func newRegions(t *testing.T, separate bool, env map[string]string, regions ...*region) *regionSet {
	t.Helper()
	rs := &regionSet{t: t, by: map[string]*region{}, env: map[string]string{}}
	for _, m := range []map[string]string{fastTiming, clusterTimingEnv, env} {
		for k, v := range m {
			rs.env[k] = v
		}
	}
	shared := newTenant(t)
	rs.coord, rs.ns = controlPlane(t), shared.Namespace
	if separate {
		var err error
		rs.co, err = testenv.NewCoordinationOn(context.Background(), extraPlane(t, "coordination"), ".", nsName("c", t))
		if err != nil {
			t.Fatal(err)
		}
		rs.coord, rs.ns = rs.co.CP, rs.co.Namespace
	} else if err := controlPlane(t).Apply(".", shared.Namespace, filepath.Join("deploy", "coordination")); err != nil {
		t.Fatal(err)
	}
	for i, r := range regions {
		cp, tn := controlPlane(t), shared
		if separate && i > 0 {
			cp = extraPlane(t, "region-"+r.name)
			var err error
			if tn, err = cp.NewTenant(context.Background(), ".", nsName("r", t)); err != nil {
				t.Fatal(err)
			}
		}
		rs.add(r, cp, tn)
	}
	return rs
}

// add starts region r's pods on cp in tenant tn.
func (rs *regionSet) add(r *region, cp *testenv.ControlPlane, tn *testenv.Tenant) {
	t := rs.t
	fm, node := testBinaries(t)
	network := rs.env["CARDANO_NETWORK"]
	if network == "" {
		network = "mainnet"
	}
	tc, err := testenv.NewCluster(cp, tn, fm, node, testenv.FakeKeysFor("secret", network))
	if err != nil {
		t.Fatal(err)
	}
	tc.Env = map[string]string{"CLUSTER_REGION": r.name, "CLUSTER_PRIORITY": fmt.Sprint(r.priority), "CLUSTER_NAMESPACE": rs.ns}
	for k, v := range rs.env {
		tc.Env[k] = v
	}
	if rs.co != nil {
		rs.co.Configure(tc)
	}
	r.cluster = &cluster{Cluster: tc, t: t, begun: testenv.Monotonic()}
	t.Cleanup(r.cluster.stop)
	for i := 0; i < r.pods; i++ {
		r.start(fmt.Sprintf("%s-%d", r.name, i), nil)
	}
	rs.by[r.name] = r
	rs.order = append(rs.order, r.name)
}

func (rs *regionSet) group() testenv.Group {
	var g testenv.Group
	for _, name := range rs.order {
		g = append(g, rs.by[name].Cluster)
	}
	return g
}

// intervals is every pod's forging record, in every region.
func (rs *regionSet) intervals() []testenv.Interval {
	all, err := rs.group().Intervals()
	if err != nil {
		rs.t.Fatal(err)
	}
	return all
}

// forgers lists the forging pods now, in every region.
func (rs *regionSet) forgers() []string {
	open, _ := rs.group().Forging()
	var out []string
	for _, iv := range open {
		out = append(out, iv.Pod)
	}
	return out
}

// checkNoOverlap fails the test if two nodes of the pool ever forged at the
// same instant, in any regions.
func (rs *regionSet) checkNoOverlap() int {
	rs.t.Helper()
	return checkNoOverlap(rs.t, rs.intervals())
}

// settledIn waits until exactly one node of the pool forges, stably for
// settle, in region, and returns how long after since it started.
func (rs *regionSet) settledIn(region string, since int64, limit time.Duration) (string, time.Duration) {
	rs.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		f := rs.forgers()
		if len(f) == 1 && strings.HasPrefix(f[0], region+"-") {
			start := rs.startOf(f[0])
			if held := time.Duration(testenv.Monotonic() - start); held >= settle {
				return f[0], time.Duration(start - since)
			}
		}
		if time.Now().After(deadline) {
			rs.dump()
			rs.t.Fatalf("no single forger in %s within %s: forgers %v", region, limit, f)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startOf is when pod's open forging interval began (CLOCK_MONOTONIC).
func (rs *regionSet) startOf(pod string) int64 {
	for _, iv := range rs.intervals() {
		if iv.Pod == pod && iv.End == 0 {
			return iv.Start
		}
	}
	return testenv.Monotonic()
}

func (rs *regionSet) dump() {
	for _, name := range rs.order {
		rs.by[name].dumpLogs()
	}
}

// patch merges a patch into region's CardanoForgeCluster, as the operator
// would with kubectl patch.
func (rs *regionSet) patch(region, patch string) {
	rs.t.Helper()
	if out, err := rs.coord.Kubectl("patch", "cardanoforgecluster", rs.clusterName(region), "-n", rs.ns, "--type=merge", "-p", patch); err != nil {
		rs.t.Fatalf("kubectl patch: %v: %s", err, out)
	}
}

func (rs *regionSet) clusterName(region string) string {
	return resolveTenant(&config{Network: "mainnet", PoolID: rs.env["POOL_ID"], Region: region, ClusterManagement: true}).Cluster
}

// forgeClusterOf reads region's CardanoForgeCluster.
func (rs *regionSet) forgeClusterOf(region string) forgeClusterObject {
	rs.t.Helper()
	out, err := rs.coord.Kubectl("get", "cardanoforgecluster", rs.clusterName(region), "-n", rs.ns, "-o", "json")
	var o forgeClusterObject
	if err != nil || json.Unmarshal(out, &o) != nil {
		rs.t.Fatalf("get cardanoforgecluster %s: %v: %s", rs.clusterName(region), err, out)
	}
	return o
}

// nsName is a namespace name for test t on another control plane.
func nsName(prefix string, t *testing.T) string {
	return strings.Trim(truncate(fmt.Sprintf("%s%d-%s", prefix, nsSeq.Add(1), foldDNS(t.Name())), 50), "-")
}

// regionsReport prints one row of the README's table: the scenario, the
// time measured, and the bound it is held to.
func regionsReport(scenario string, took time.Duration, bound string) {
	fmt.Printf("REGIONS | %s | %s | %s |\n", scenario, took.Round(10*time.Millisecond), bound)
}

// twoRegions is eu (priority 100, its own API server) and us (200, its
// own), two pods each, with eu forging.
func twoRegions(t *testing.T, env map[string]string) *regionSet {
	t.Helper()
	rs := newRegions(t, true, env, &region{name: "eu", priority: 100, pods: 2}, &region{name: "us", priority: 200, pods: 2})
	rs.settledIn("eu", testenv.Monotonic(), 2*regionLost+20*time.Second)
	rs.waitLeaders()
	return rs
}

// waitLeaders waits until every region has a local leader that has
// written its CardanoForgeCluster status: every region is in the race.
func (rs *regionSet) waitLeaders() {
	rs.t.Helper()
	for _, name := range rs.order {
		eventually(rs.t, lease+cLease+10*time.Second, name+"'s local leader reporting", func() bool {
			return rs.forgeClusterOf(name).Status.ActiveLeader != ""
		})
	}
}

// TestRegionsFailoverAndReturn: the better region forges; losing it whole
// moves forging to the other within the bound; when it returns healthy the
// lead comes back only after the hysteresis, as a planned handover.
func TestRegionsFailoverAndReturn(t *testing.T) {
	rs := twoRegions(t, nil)
	eu := rs.by["eu"]
	for _, name := range eu.live() {
		eu.Kill(name)
	}
	from := testenv.Monotonic() // the region is lost once its last pod is dead
	_, took := rs.settledIn("us", from, regionLost+settle+10*time.Second)
	regionsReport("region lost (both pods killed): the other region forges", took, "≤ "+regionLost.String()+" (CLUSTER_LEASE_DURATION + CLUSTER_RETRY_PERIOD + 1s)")
	if took > regionLost {
		t.Errorf("the other region forged %s after the region was lost; bound %s", took, regionLost)
	}
	held := testenv.Monotonic()
	for i := 0; i < 2; i++ {
		eu.start(fmt.Sprintf("eu-%d", i), nil)
	}
	back := testenv.Monotonic()
	_, took = rs.settledIn("eu", back, cMinHold+cPreempt+regionLost+settle+20*time.Second)
	regionsReport("the better region back: the lead returns", took, "≥ "+cPreempt.String()+" (CLUSTER_PREEMPT_DELAY, after the returning pods' own election)")
	if returned := time.Duration(back-held) + took; took < cPreempt || returned < cMinHold {
		t.Errorf("the lead returned %s after eu came back (%s after us took it); want at least CLUSTER_PREEMPT_DELAY %s and CLUSTER_MIN_HOLD %s",
			took, returned, cPreempt, cMinHold)
	}
	rs.checkNoOverlap()
}

// TestRegionsLocalFailoverStaysInTheRegion: the forging pod dies; its
// region's other pod takes over and the other region never forges.
func TestRegionsLocalFailoverStaysInTheRegion(t *testing.T) {
	rs := twoRegions(t, nil)
	eu := rs.by["eu"]
	forger := rs.forgers()[0]
	from := testenv.Monotonic()
	eu.Kill(forger)
	_, took := rs.settledIn("eu", from, max(lease, cLease)+retry+settle+10*time.Second)
	regionsReport("forging pod killed: its region keeps the lead", took, "≤ "+(max(lease, cLease)+retry+time.Second).String()+" (the longer lease duration + RETRY_PERIOD + 1s); the other region never forges")
	for _, iv := range rs.intervals() {
		if strings.HasPrefix(iv.Pod, "us-") {
			t.Errorf("%s forged during a local failover in eu", iv.Pod)
		}
	}
	rs.checkNoOverlap()
}

// TestRegionsPlannedMoves: a priority patch, an override without and with
// expiresAt, and forgeState Disabled each move the lead, measured.
func TestRegionsPlannedMoves(t *testing.T) {
	rs := twoRegions(t, nil)
	time.Sleep(cMinHold)
	move := func(what, region, patch string, lo, hi time.Duration) {
		t.Helper()
		from := testenv.Monotonic()
		rs.patch(region, patch)
		to := "eu"
		if rs.forgers()[0][:2] == "eu" {
			to = "us"
		}
		_, took := rs.settledIn(to, from, hi+settle+10*time.Second)
		regionsReport(what, took, lo.String()+" to "+hi.String())
		if took < lo || took > hi {
			t.Errorf("%s: forging moved after %s; want within %s..%s", what, took, lo, hi)
		}
		time.Sleep(cMinHold)
	}
	move("priority patch (us to 50)", "us", `{"spec":{"priority":50}}`, cPreempt, cPreempt+3*cRetry+time.Second)
	if p := rs.forgeClusterOf("us").Spec.Priority; p == nil || *p != 50 {
		t.Errorf("us spec.priority %v after the program ran; the operator's patch must stand", p)
	}
	move("override forcePriority 1 on eu, no expiresAt", "eu", `{"spec":{"override":{"enabled":true,"reason":"test","forcePriority":1}}}`, cPreempt, cPreempt+3*cRetry+time.Second)
	expired := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	move("override expired (expiresAt in the past)", "eu", `{"spec":{"override":{"expiresAt":"`+expired+`"}}}`, cPreempt, cPreempt+3*cRetry+time.Second)
	if c := conditionOf(rs.forgeClusterOf("eu").Status, "Override"); c.Reason != "Expired" {
		t.Errorf("eu Override condition %+v; want Expired", c)
	}
	move("forgeState Disabled on us", "us", `{"spec":{"forgeState":"Disabled"}}`, 0, 3*cRetry+confirm)
	rs.checkNoOverlap()
}

// TestRegionsCoordinationServerStopped: nobody forges once
// CLUSTER_RENEW_DEADLINE has passed; forging resumes within a retry and the
// node's enable after the server returns.
func TestRegionsCoordinationServerStopped(t *testing.T) {
	rs := twoRegions(t, nil)
	from := testenv.Monotonic()
	rs.coord.StopAPIServer()
	eventually(t, cRenew+5*time.Second, "nobody forging", func() bool { return len(rs.forgers()) == 0 })
	stopped := time.Duration(testenv.Monotonic() - from)
	regionsReport("coordination server stopped: nobody forges", stopped, "≤ "+(cRenew+time.Second).String()+" (CLUSTER_RENEW_DEADLINE + 1s)")
	if stopped > cRenew+time.Second {
		t.Errorf("forging stopped %s after the coordination server; want within CLUSTER_RENEW_DEADLINE + 1s", stopped)
	}
	time.Sleep(cLease)
	if f := rs.forgers(); len(f) > 0 {
		t.Errorf("forgers %v with the coordination server down", f)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	restart := testenv.Monotonic()
	if err := rs.coord.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	ready := time.Duration(testenv.Monotonic() - restart)
	_, took := rs.settledIn("eu", restart, regionLost+settle+20*time.Second)
	// The last holder renews its own token at its first round: within a
	// CLUSTER_RETRY_PERIOD and an enable of the server answering.
	regionsReport("coordination server restarted: the same region forges again", took,
		fmt.Sprintf("≤ %s (the server ready after %s, + CLUSTER_RETRY_PERIOD + 1s)", (ready+cRetry+time.Second).Round(100*time.Millisecond), ready.Round(100*time.Millisecond)))
	if took > ready+cRetry+time.Second {
		t.Errorf("forging resumed %s after the restart began, the server ready after %s; want within CLUSTER_RETRY_PERIOD + 1s of that", took, ready)
	}
	rs.checkNoOverlap()
}

// TestRegionsRegionCutOff: the forging region's pods lose their network
// (link down: their own API server and the coordination server): they stop
// forging before the other region starts.
func TestRegionsRegionCutOff(t *testing.T) {
	rs := twoRegions(t, nil)
	eu := rs.by["eu"]
	from := testenv.Monotonic()
	for _, name := range eu.live() {
		if err := eu.Pod(name).Partition(); err != nil {
			t.Fatal(err)
		}
	}
	_, took := rs.settledIn("us", from, regionLost+settle+10*time.Second)
	regionsReport("forging region cut off (link down): the other region forges", took, "≤ "+regionLost.String()+"; the cut region stopped first")
	var euEnd, usStart int64
	for _, iv := range rs.intervals() {
		switch {
		case strings.HasPrefix(iv.Pod, "eu-") && iv.End > euEnd:
			euEnd = iv.End
		case strings.HasPrefix(iv.Pod, "us-") && (usStart == 0 || iv.Start < usStart):
			usStart = iv.Start
		}
	}
	if euEnd == 0 || euEnd >= usStart {
		t.Errorf("eu stopped at %d, us started at %d (CLOCK_MONOTONIC ns): eu must stop first", euEnd, usStart)
	}
	for _, name := range eu.live() {
		eu.Pod(name).Heal()
	}
	rs.checkNoOverlap()
}

// TestRegionsFlappingHealthNeverBounces: the better region's health check
// fails every other second while the other region holds: its priority
// never stays better for CLUSTER_PREEMPT_DELAY, so the lead stays.
func TestRegionsFlappingHealthNeverBounces(t *testing.T) {
	env := map[string]string{"HEALTH_CHECK_ENDPOINT": "http://127.0.0.1:12798/health", "HEALTH_CHECK_INTERVAL": "1s",
		"HEALTH_CHECK_TIMEOUT": "500ms", "HEALTH_CHECK_FAILURE_THRESHOLD": "5"}
	rs := twoRegions(t, env)
	rs.patch("eu", `{"spec":{"forgeState":"Disabled"}}`)
	rs.settledIn("us", testenv.Monotonic(), 3*cRetry+confirm+settle+10*time.Second)
	eu := rs.by["eu"]
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for on := true; ; on = !on {
			for _, name := range eu.live() {
				if on {
					os.WriteFile(eu.Pod(name).UnhealthyFile(), nil, 0o644)
				} else {
					os.Remove(eu.Pod(name).UnhealthyFile())
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(1500 * time.Millisecond):
			}
		}
	})
	rs.patch("eu", `{"spec":{"forgeState":"Priority-based"}}`)
	deadline := time.Now().Add(3 * cPreempt)
	for time.Now().Before(deadline) {
		if f := rs.forgers(); len(f) != 1 || !strings.HasPrefix(f[0], "us-") {
			t.Errorf("forgers %v while eu's health flaps; want us throughout", f)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	regionsReport("health flapping in the better region: the lead stays", 3*cPreempt, "kept throughout (3 × CLUSTER_PREEMPT_DELAY)")
	rs.checkNoOverlap()
}

// TestRegionsOneAPIServer: two StatefulSets of one pool in one namespace of
// one API server: their local Leases and CardanoLeaders do not collide,
// and the pool forges once.
func TestRegionsOneAPIServer(t *testing.T) {
	rs := newRegions(t, false, nil, &region{name: "eu", priority: 100, pods: 2}, &region{name: "us", priority: 200, pods: 2})
	rs.settledIn("eu", testenv.Monotonic(), 2*regionLost+20*time.Second)
	rs.waitLeaders()
	out, err := rs.coord.Kubectl("get", "leases", "-n", rs.ns, "-o", "name")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"cardano-node-leader-mainnet-eu", "cardano-node-leader-mainnet-us", "cardano-forge-mainnet",
		"cardano-candidate-mainnet-eu", "cardano-candidate-mainnet-us"} {
		if !strings.Contains(string(out), "lease.coordination.k8s.io/"+want+"\n") {
			t.Errorf("no Lease %s in %s", want, out)
		}
	}
	from := testenv.Monotonic()
	for _, name := range rs.by["eu"].live() {
		rs.by["eu"].Kill(name)
	}
	_, took := rs.settledIn("us", from, regionLost+settle+10*time.Second)
	regionsReport("one API server, two StatefulSets: region lost", took, "≤ "+regionLost.String())
	rs.checkNoOverlap()
}

// TestRegionsMultiTenant: two pools on two networks, each in two regions,
// all in one namespace of one API server: each forges once, and neither
// touches the other's objects or metrics.
func TestRegionsMultiTenant(t *testing.T) {
	shared := newTenant(t)
	if err := controlPlane(t).Apply(".", shared.Namespace, filepath.Join("deploy", "coordination")); err != nil {
		t.Fatal(err)
	}
	pools := map[string]*regionSet{}
	for _, p := range []struct{ pool, network, magic string }{{"poola", "mainnet", "764824073"}, {"poolb", "preprod", "1"}} {
		rs := &regionSet{t: t, coord: controlPlane(t), ns: shared.Namespace, by: map[string]*region{}, env: map[string]string{}}
		for _, m := range []map[string]string{fastTiming, clusterTimingEnv, {"POOL_ID": p.pool, "CARDANO_NETWORK": p.network, "NETWORK_MAGIC": p.magic}} {
			for k, v := range m {
				rs.env[k] = v
			}
		}
		for _, r := range []*region{{name: p.pool + "-eu", priority: 100, pods: 1}, {name: p.pool + "-us", priority: 200, pods: 1}} {
			rs.add(r, controlPlane(t), shared)
		}
		pools[p.pool] = rs
	}
	for pool, rs := range pools {
		rs.settledIn(pool+"-eu", testenv.Monotonic(), 2*regionLost+20*time.Second)
		rs.checkNoOverlap()
	}
	out, err := controlPlane(t).Kubectl("get", "leases,cardanoforgeclusters", "-n", shared.Namespace, "-L", "cardano.io/pool-id", "--no-headers")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("objects:\n%s", out)
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		name, label := f[0], f[len(f)-1]
		for _, pool := range []string{"poola", "poolb"} {
			if strings.Contains(name, pool) && label != pool {
				t.Errorf("%s is labelled pool %q", name, label)
			}
		}
	}
	for pool, rs := range pools {
		for _, name := range rs.order {
			for _, pod := range rs.by[name].live() {
				b, err := rs.by[name].Get(pod, "/metrics")
				if err != nil {
					t.Fatal(err)
				}
				other := map[string]string{"poola": "poolb", "poolb": "poola"}[pool]
				if strings.Contains(string(b), `pool_id="`+other+`"`) {
					t.Errorf("%s's metrics name pool %s", pod, other)
				}
			}
		}
	}
}
