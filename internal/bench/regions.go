package main

// Cluster-wide coordination figures (docs/regions.md): two regions, each
// its own kube-apiserver and etcd with two simulated pods, and a third API
// server holding the forging token, at the default timing (local 15s/10s/2s,
// token 20s/12s/2s) with a short hysteresis (CLUSTER_PREEMPT_DELAY and
// CLUSTER_MIN_HOLD 20s) so that a planned move is timed in seconds:
//
//   - API requests per second per replica to the coordination server in
//     steady state, from its own apiserver_request_total;
//   - cross-region failover: the forging region's pods killed until the
//     other region's node forges;
//   - planned region handover: a priority patch until the other region's
//     node forges, which includes CLUSTER_PREEMPT_DELAY.

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"forge-manager/internal/testenv"
)

var regionRuns = flag.Int("region-runs", 5, "cross-region failovers and planned handovers to time")

const hysteresis = 20 * time.Second

// regionBench is the coordination server and the two regions.
type regionBench struct {
	co      *testenv.Coordination
	regions map[string]*testenv.Cluster
	stops   []func()
}

func benchRegions(ctx context.Context, fm, node string) error {
	rb, err := startRegions(ctx, fm, node)
	defer func() {
		for _, stop := range rb.stops {
			stop()
		}
	}()
	if err != nil {
		return err
	}
	g := testenv.Group{rb.regions["eu"], rb.regions["us"]}
	if _, _, err := settledGroup(ctx, g, testenv.Monotonic()); err != nil {
		return err
	}
	if err := rb.apiLoad(); err != nil {
		return err
	}
	lost, err := rb.failovers(ctx, g)
	if err != nil {
		return err
	}
	moves, err := rb.moves(ctx, g)
	if err != nil {
		return err
	}
	all, _ := g.Intervals()
	overlaps := len(testenv.Overlaps(all))
	fmt.Printf("### Across regions (local 15s/10s/2s, token 20s/12s/2s, CLUSTER_PREEMPT_DELAY = CLUSTER_MIN_HOLD = %s)\n\n", hysteresis)
	fmt.Printf("| | runs | median | worst | bound (SPEC 7) | overlaps |\n|---|---|---|---|---|---|\n")
	fmt.Printf("| region lost: both pods killed -> the other region's node forging | %d | %s | %s | 23s (CLUSTER_LEASE_DURATION + CLUSTER_RETRY_PERIOD + 1s) | %d |\n",
		len(lost), sec(median(lost)), sec(worst(lost)), overlaps)
	fmt.Printf("| planned move: priority patch -> the other region's node forging | %d | %s | %s | %s + a few seconds (CLUSTER_PREEMPT_DELAY) | %d |\n\n",
		len(moves), sec(median(moves)), sec(worst(moves)), hysteresis, overlaps)
	fmt.Printf("Forging intervals checked for overlap across both regions: %d, overlaps: %d\n\n", len(all), overlaps)
	return nil
}

// startRegions starts the three control planes and two pods per region.
func startRegions(ctx context.Context, fm, node string) (*regionBench, error) {
	rb := &regionBench{regions: map[string]*testenv.Cluster{}}
	coordCP, err := upPlane(ctx, rb)
	if err != nil {
		return rb, err
	}
	if rb.co, err = testenv.NewCoordinationOn(ctx, coordCP, ".", "coordination"); err != nil {
		return rb, err
	}
	for _, r := range []struct {
		name     string
		priority int
	}{{"eu", 100}, {"us", 200}} {
		cp, err := upPlane(ctx, rb)
		if err != nil {
			return rb, err
		}
		tenant, err := cp.NewTenant(ctx, ".", "bench-"+r.name)
		if err != nil {
			return rb, err
		}
		c, err := testenv.NewCluster(cp, tenant, fm, node, testenv.FakeKeys("bench"))
		if err != nil {
			return rb, err
		}
		rb.stops = append(rb.stops, c.Close)
		c.Env = map[string]string{"ENABLE_CLUSTER_MANAGEMENT": "true", "CLUSTER_REGION": r.name, "CLUSTER_PRIORITY": fmt.Sprint(r.priority),
			"CLUSTER_PREEMPT_DELAY": hysteresis.String(), "CLUSTER_MIN_HOLD": hysteresis.String()}
		rb.co.Configure(c)
		for i := 0; i < 2; i++ {
			if _, err := c.Start(ctx, fmt.Sprintf("%s-%d", r.name, i), nil); err != nil {
				return rb, err
			}
		}
		rb.regions[r.name] = c
	}
	return rb, nil
}

func upPlane(ctx context.Context, rb *regionBench) (*testenv.ControlPlane, error) {
	cp, err := testenv.Start(ctx)
	if err != nil {
		return nil, err
	}
	rb.stops = append(rb.stops, cp.Stop)
	return cp, cp.InstallCRDs(ctx, ".")
}

// apiLoad is the coordination server's request rate per replica in steady
// state, by verb and resource.
func (rb *regionBench) apiLoad() error {
	window := *idle / 3
	before, err := apiCounts(rb.co.CP)
	if err != nil {
		return err
	}
	time.Sleep(window)
	after, err := apiCounts(rb.co.CP)
	if err != nil {
		return err
	}
	r := rates(before, after, window)
	fmt.Printf("### Coordination API server load in steady state (%s, 2 regions x 2 replicas)\n\n| request | per second, all replicas | per replica |\n|---|---|---|\n", window)
	total := 0.0
	for _, k := range []string{"GET leases", "PUT leases", "LIST leases", "GET cardanoforgeclusters", "PATCH cardanoforgeclusters/status"} {
		fmt.Printf("| %s | %.2f | %.2f |\n", k, r[k], r[k]/4)
		total += r[k]
	}
	fmt.Printf("| all | %.2f | %.2f (a region's local leader about %.2f, a standby %.2f: the token GET) |\n\n", total, total/4, total/2-r["GET leases"]/4, r["GET leases"]/4)
	return nil
}

// failovers kills the forging region's pods -region-runs times and times
// the other region's takeover; the pods come back and the lead returns
// after the hysteresis before the next run.
func (rb *regionBench) failovers(ctx context.Context, g testenv.Group) ([]time.Duration, error) {
	var out []time.Duration
	for i := 0; i < *regionRuns; i++ {
		forger, _, err := settledGroup(ctx, g, testenv.Monotonic())
		if err != nil {
			return out, err
		}
		time.Sleep(rand.N(4 * time.Second))
		lost := rb.regions[regionOf(forger)]
		names := lost.Order
		for _, name := range names {
			if lost.Pod(name) != nil {
				lost.Kill(name)
			}
		}
		from := testenv.Monotonic()
		next, took, err := settledGroup(ctx, g, from)
		if err != nil {
			return out, err
		}
		out = append(out, took)
		fmt.Fprintf(os.Stderr, "region failover %d: %s -> %s in %s\n", i+1, forger, next, took.Round(time.Millisecond))
		for _, name := range names {
			if _, err := lost.Start(ctx, name, nil); err != nil {
				return out, err
			}
		}
		// The lead goes back to eu after the hysteresis; wait for it so the
		// next run starts from eu forging.
		if err := waitRegion(ctx, g, "eu", 3*time.Minute); err != nil {
			return out, err
		}
	}
	return out, nil
}

// moves patches the other region to a better priority and times the move,
// -region-runs times, patching the priorities back and forth.
func (rb *regionBench) moves(ctx context.Context, g testenv.Group) ([]time.Duration, error) {
	var out []time.Duration
	for i := 0; i < *regionRuns; i++ {
		forger, _, err := settledGroup(ctx, g, testenv.Monotonic())
		if err != nil {
			return out, err
		}
		time.Sleep(hysteresis) // CLUSTER_MIN_HOLD of the holder
		to := map[string]string{"eu": "us", "us": "eu"}[regionOf(forger)]
		from := testenv.Monotonic()
		patch := fmt.Sprintf(`{"spec":{"priority":%d}}`, 50-i)
		if out, err := rb.co.CP.Kubectl("patch", "cardanoforgecluster", "mainnet-"+to, "-n", rb.co.Namespace, "--type=merge", "-p", patch); err != nil {
			return nil, fmt.Errorf("kubectl patch: %v: %s", err, out)
		}
		if err := waitRegion(ctx, g, to, 2*time.Minute); err != nil {
			return out, err
		}
		took := time.Duration(testenv.Monotonic() - from)
		if _, t, err := settledGroup(ctx, g, from); err == nil {
			took = t
		}
		out = append(out, took)
		fmt.Fprintf(os.Stderr, "planned move %d: %s -> %s in %s\n", i+1, forger, to, took.Round(time.Millisecond))
	}
	return out, nil
}

func regionOf(pod string) string { return pod[:strings.IndexByte(pod, '-')] }

// waitRegion waits until one node forges, stably, in region.
func waitRegion(ctx context.Context, g testenv.Group, region string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if pod, _, err := settledGroup(ctx, g, testenv.Monotonic()); err == nil && regionOf(pod) == region {
			return nil
		}
		time.Sleep(500 * time.Millisecond)
	}
	return fmt.Errorf("forging did not return to %s within %s", region, limit)
}

func settledGroup(ctx context.Context, g testenv.Group, since int64) (string, time.Duration, error) {
	cctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	return g.Settled(cctx, since, 4*time.Second)
}
