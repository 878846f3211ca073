package main

// The local figures (one StatefulSet of three replicas) in each -modes
// mode, side by side: LEASE_WATCH=false, every replica reading the Lease
// every RETRY_PERIOD (today's behaviour), and LEASE_WATCH=true, the
// standbys following it through a watch. Each mode gets its own namespace
// and its own three pods on the one control plane, one mode after the
// other, so they never share replicas or a Lease.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"forge-manager/internal/testenv"
)

// mode is one LEASE_WATCH setting.
type mode struct{ key, label, leaseWatch string }

var knownModes = []mode{{"poll", "poll (today)", "false"}, {"watch", "watch", "true"}}

// leaseName is the single-tenant Lease the bench's pods share (no
// CARDANO_NETWORK pool id, no cluster management).
const leaseName = "cardano-node-leader"

// parseModes turns -modes into modes, in the order given.
func parseModes(s string) ([]mode, error) {
	var out []mode
	for _, k := range strings.Split(s, ",") {
		found := false
		for _, m := range knownModes {
			if m.key == strings.TrimSpace(k) {
				out, found = append(out, m), true
			}
		}
		if !found {
			return nil, fmt.Errorf("-modes: unknown mode %q (poll, watch)", k)
		}
	}
	return out, nil
}

// footprint is one sidecar's idle resources.
type footprint struct {
	role           string
	rss, hwm, anon int64
	cpuPerHour     float64
}

// localResult is every local figure of one mode.
type localResult struct {
	mode
	api         map[string]float64 // requests/s by "VERB resource", less the baseline
	openWatches float64            // Lease watches open at the window's end, less the baseline
	leader      footprint
	standbys    []footprint
	unplanned   []time.Duration // kill -> new node forging
	sinceRenew  []time.Duration // killed leader's last renew -> new node forging
	planned     []time.Duration // SIGTERM -> new node forging
	peak        int64           // highest VmHWM of a sidecar before any fault
	intervals   int
	overlaps    int
}

// baseline is the control plane's own load, without replicas.
type baseline struct {
	rates       map[string]float64
	openWatches float64
}

// measureLocal runs one mode: three pods, the idle window, then -runs
// unplanned failovers and -runs planned handovers.
func measureLocal(ctx context.Context, cp *testenv.ControlPlane, fm, node string, m mode, base baseline) (*localResult, error) {
	fmt.Fprintf(os.Stderr, "mode %s: LEASE_WATCH=%s\n", m.key, m.leaseWatch)
	tenant, err := cp.NewTenant(ctx, ".", "bench-"+m.key)
	if err != nil {
		return nil, err
	}
	c, err := testenv.NewCluster(cp, tenant, fm, node, testenv.FakeKeys("bench"))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.Env = map[string]string{"LEASE_WATCH": m.leaseWatch}
	for _, name := range []string{"bp-0", "bp-1", "bp-2"} {
		if _, err := c.Start(ctx, name, nil); err != nil {
			return nil, err
		}
	}
	if _, _, err := settled(ctx, c, testenv.Monotonic()); err != nil {
		return nil, err
	}
	r := &localResult{mode: m}
	if err := steadyState(c, cp, base, r); err != nil {
		return nil, err
	}
	kill := func(name string) (int64, error) { c.Kill(name); return lastRenew(cp, tenant.Namespace, c, name) }
	var peak1, peak2 int64
	if r.unplanned, r.sinceRenew, peak1, err = repeat(ctx, c, kill); err != nil {
		return nil, err
	}
	del := func(name string) (int64, error) { go c.Delete(name); return 0, nil }
	if r.planned, _, peak2, err = repeat(ctx, c, del); err != nil {
		return nil, err
	}
	all, err := c.Intervals()
	r.peak, r.intervals, r.overlaps = max(peak1, peak2), len(all), len(testenv.Overlaps(all))
	return r, err
}

// steadyState measures API load, CPU and memory over -idle with one leader
// and two standbys and nothing happening.
func steadyState(c *testenv.Cluster, cp *testenv.ControlPlane, base baseline, r *localResult) error {
	roles := map[string]string{}
	cpu0 := map[string]float64{}
	for _, name := range c.Order {
		b, _ := c.Get(name, "/status")
		roles[name] = "standby"
		if strings.Contains(string(b), `"role": "leader"`) {
			roles[name] = "leader"
		}
		cpu0[name], _ = c.Metric(name, "process_cpu_seconds_total")
	}
	before, err := apiCounts(cp)
	if err != nil {
		return err
	}
	time.Sleep(*idle)
	after, err := apiCounts(cp)
	if err != nil {
		return err
	}
	r.api = rates(before, after, *idle)
	for k, v := range base.rates {
		r.api[k] -= v
	}
	r.openWatches = openLeaseWatches(cp) - base.openWatches
	for _, name := range c.Order {
		cpu1, _ := c.Metric(name, "process_cpu_seconds_total")
		st := procStatus(c.Pod(name).ContainerPID("forge-manager"))
		f := footprint{role: roles[name], rss: st["VmRSS:"], hwm: st["VmHWM:"], anon: st["RssAnon:"],
			cpuPerHour: (cpu1 - cpu0[name]) / idle.Hours()}
		if f.role == "leader" {
			r.leader = f
		} else {
			r.standbys = append(r.standbys, f)
		}
	}
	return nil
}

// repeat applies fault to the forger -runs times, timing each to the next
// forger from the fault and, where fault names one, from an earlier
// reference instant (CLOCK_MONOTONIC; the killed leader's last renew). The
// pod comes back as a standby before the next run. It also returns the
// highest VmHWM of any sidecar seen before a fault.
func repeat(ctx context.Context, c *testenv.Cluster, fault func(name string) (int64, error)) (fromFault, fromRef []time.Duration, peak int64, err error) {
	forger, _, err := settled(ctx, c, testenv.Monotonic())
	for i := 0; i < *runs && err == nil; i++ {
		peak = max(peak, sidecarHWM(c))
		// A random phase against the replicas' 2s renews and polls: a fault
		// right after a pod came up would meet its next poll early (a bias).
		time.Sleep(rand.N(4 * time.Second))
		from := testenv.Monotonic()
		ref, ferr := fault(forger)
		if ferr != nil {
			fmt.Fprintf(os.Stderr, "run %d: no reference instant: %v\n", i+1, ferr)
		}
		var took time.Duration
		next := forger
		for next == forger && err == nil {
			next, took, err = settled(ctx, c, from)
		}
		fromFault = append(fromFault, took)
		note := ""
		if ref != 0 {
			fromRef = append(fromRef, took+time.Duration(from-ref))
			note = fmt.Sprintf(" (%s after the last renew)", fromRef[len(fromRef)-1].Round(time.Millisecond))
		}
		fmt.Fprintf(os.Stderr, "run %d: %s -> %s in %s%s\n", i+1, forger, next, took.Round(time.Millisecond), note)
		waitGone(c, forger)
		if _, err2 := c.Start(ctx, forger, nil); err2 != nil {
			return fromFault, fromRef, peak, err2
		}
		waitUp(c, forger)
		forger = next
	}
	return fromFault, fromRef, peak, err
}

// lastRenew reads the Lease after killed's pod died and returns its
// spec.renewTime on the records' CLOCK_MONOTONIC timeline: the instant the
// leader started its last write that landed. It waits a moment first, so a
// write already on its way when the pod died has landed or never will; the
// Lease must still name killed (no standby takes it before LEASE_DURATION).
func lastRenew(cp *testenv.ControlPlane, ns string, c *testenv.Cluster, killed string) (int64, error) {
	time.Sleep(500 * time.Millisecond)
	out, err := cp.Kubectl("get", "lease", leaseName, "-n", ns, "-o", `jsonpath={.spec.holderIdentity} {.spec.renewTime}`)
	if err != nil {
		return 0, err
	}
	holder, renew, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	if !strings.HasPrefix(holder, killed+"_") {
		return 0, fmt.Errorf("lease %s held by %q, not by the killed %s", leaseName, holder, killed)
	}
	t, err := time.Parse(time.RFC3339Nano, renew)
	if err != nil {
		return 0, fmt.Errorf("lease %s renewTime %q: %w", leaseName, renew, err)
	}
	return wallToMono(t), nil
}

// wallToMono places a wall-clock instant on CLOCK_MONOTONIC. Every pod
// shares this machine's clocks, so one offset, read here between two
// monotonic samples (its error is under a microsecond), converts the Lease's
// renewTime (microseconds) to the stand-in nodes' records. It is read at
// each call so that a step of the wall clock during the bench costs at most
// the run it falls in.
func wallToMono(t time.Time) int64 {
	m0 := testenv.Monotonic()
	wall := time.Now().UnixNano()
	m1 := testenv.Monotonic()
	return t.UnixNano() - wall + m0 + (m1-m0)/2
}

// openLeaseWatches is how many Lease watches the API server holds open now
// (apiserver_longrunning_requests): apiserver_request_total counts a watch
// only when it ends, which forge-manager's do after 5 minutes.
func openLeaseWatches(cp *testenv.ControlPlane) float64 {
	open, _ := apiSeries(cp, "apiserver_longrunning_requests")
	return open["WATCH leases"]
}
