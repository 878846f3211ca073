// Command demo is `make demo`: three simulated block-producer replicas
// against a real kube-apiserver, each running the real forge-manager next
// to a stand-in cardano-node. It shows the election, an unplanned failover
// (the leader's pod killed) and a planned handover (SIGTERM), with their
// measured times, at the default timing (15s/10s/2s), then checks from the
// nodes' own records that two never forged at once. Ctrl-C cleans up.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"forge-manager/internal/testenv"
)

var start = time.Now()

func say(format string, a ...any) {
	fmt.Printf("[%6.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, a...))
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if errors.Is(err, context.Canceled) {
		fmt.Println("interrupted; everything the demo started is stopped")
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	if os.Geteuid() != 0 {
		return errors.New("the demo needs root: each simulated pod gets its own PID, mount and network namespaces " +
			"(as a real pod does), which only root can create. Run it as root, e.g. `sudo make demo`")
	}
	fmt.Println("forge-manager demo: three block-producer replicas, one forging, against a real kube-apiserver.")
	fmt.Println("cardano-node is a stand-in here (see README): it reacts to SIGHUP and reports forging as the real node does.")
	fmt.Println()

	cp, tenant, err := testenv.Up(ctx, ".", "cardano")
	if err != nil {
		return err
	}
	defer cp.Stop()
	v, _ := cp.Version()
	say("control plane up: kube-apiserver %s, etcd %s; CRDs from deploy/crds installed", v, testenv.EtcdVersion)
	say("namespace cardano with deploy/rbac applied; the sidecars use the ServiceAccount's own token")

	bin, err := os.MkdirTemp("", "forge-demo-bin-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(bin)
	fm, node, err := testenv.BuildBinaries(".", bin)
	if err != nil {
		return err
	}
	c, err := testenv.NewCluster(cp, tenant, fm, node, testenv.FakeKeys("demo"))
	if err != nil {
		return err
	}
	defer func() {
		say("cleaning up: pods, namespaces, control plane")
		c.Close()
	}()
	for _, name := range []string{"bp-0", "bp-1", "bp-2"} {
		if _, err := c.Start(ctx, name, nil); err != nil {
			return err
		}
	}
	say("pods bp-0, bp-1, bp-2 started: init put the keys in place, each node boots non-producing")
	say("no Lease yet: a missing Lease counts as unreleased, so the first leader waits LEASE_DURATION (15s) before creating it")

	w := &watcher{c: c}
	leader, err := w.until(ctx, "a leader forges", time.Minute, oneForger)
	if err != nil {
		return err
	}
	say("%s leads and its node confirmed forging", leader)
	next, err := failover(ctx, c, w, leader)
	if err != nil {
		return err
	}
	third, err := handover(ctx, c, w, next)
	if err != nil {
		return err
	}
	fourth, err := stepDown(ctx, c, w, third)
	if err != nil {
		return err
	}
	return report(cp, c, fourth)
}

// failover kills the leader's pod outright and waits for a new forger,
// then brings the pod back as a standby.
func failover(ctx context.Context, c *testenv.Cluster, w *watcher, leader string) (string, error) {
	fmt.Println()
	say("1/3 unplanned failover: killing pod %s at once (every process, as a machine dying)", leader)
	from := testenv.Monotonic()
	c.Kill(leader)
	next, err := w.until(ctx, "a new forger", time.Minute, oneForger)
	if err != nil {
		return "", err
	}
	_, took, err := c.Settled(ctx, from, 0)
	if err != nil {
		return "", err
	}
	say("%s forges %.1fs after the kill (bound: LEASE_DURATION 15s + RETRY_PERIOD 2s + 1s = 18s)", next, took.Seconds())
	if _, err := c.Start(ctx, leader, nil); err != nil {
		return "", err
	}
	say("%s comes back as a new pod (new UID) and stands by", leader)
	_, err = w.until(ctx, leader+" standing by", time.Minute, func(rows map[string]row) (string, bool) {
		return "", rows[leader].role == "standby"
	})
	return next, err
}

// handover sends SIGTERM to the leader's pod and waits for another forger;
// the pod's deletion is joined before it returns.
func handover(ctx context.Context, c *testenv.Cluster, w *watcher, leader string) (string, error) {
	fmt.Println()
	say("2/3 planned handover: SIGTERM to %s (kubectl delete pod, a rolling update, a drain)", leader)
	from := testenv.Monotonic()
	var wg sync.WaitGroup
	wg.Go(func() { c.Delete(leader) })
	defer wg.Wait()
	next, took, err := moved(ctx, c, w, "the handover", leader, from)
	if err != nil {
		return "", err
	}
	say("%s forges %.1fs after the SIGTERM: %s disabled, confirmed, and released the Lease", next, took.Seconds(), leader)
	return next, nil
}

// moved waits for one forger other than leader, and says how long after
// from (a monotonic stamp) it began.
func moved(ctx context.Context, c *testenv.Cluster, w *watcher, what, leader string, from int64) (string, time.Duration, error) {
	next, err := w.until(ctx, what, time.Minute, func(rows map[string]row) (string, bool) {
		f, ok := oneForger(rows)
		return f, ok && f != leader
	})
	if err != nil {
		return "", 0, err
	}
	_, took, err := c.Settled(ctx, from, 0)
	return next, took, err
}

// stepDown runs `forge-manager step-down` in the leader's sidecar, as
// kubectl exec would: the lead moves and no node restarts.
func stepDown(ctx context.Context, c *testenv.Cluster, w *watcher, leader string) (string, error) {
	fmt.Println()
	say("3/3 step-down, no restart: kubectl exec %s -c forge-manager -- /forge-manager step-down 10m", leader)
	p := c.Pod(leader)
	restarts := p.Restarts("cardano-node")
	from := testenv.Monotonic()
	out, err := p.Exec(ctx, "step-down", "10m")
	fmt.Printf("%s", out)
	if err != nil {
		return "", fmt.Errorf("step-down: %w", err)
	}
	next, took, err := moved(ctx, c, w, "the step-down", leader, from)
	if err != nil {
		return "", err
	}
	say("%s forges %.1fs after the command; %s's node kept running (restarts: %d, was %d) and it stays out for 10m",
		next, took.Seconds(), leader, p.Restarts("cardano-node"), restarts)
	return next, nil
}

// report shows the objects and the leader's status, and checks the nodes'
// records for overlaps.
func report(cp *testenv.ControlPlane, c *testenv.Cluster, leader string) error {
	fmt.Println()
	out, _ := cp.Kubectl("get", "cardanoleaders,leases", "-n", "cardano")
	fmt.Printf("$ kubectl get cardanoleaders,leases -n cardano\n%s\n", out)
	out, _ = cp.Kubectl("get", "events", "-n", "cardano", "--field-selector", "involvedObject.kind=CardanoLeader",
		"--sort-by=.eventTime", "-o", "custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message")
	fmt.Printf("$ kubectl get events -n cardano --field-selector involvedObject.kind=CardanoLeader   # the lead, told\n%s\n", out)
	if b, err := c.Get(leader, "/status"); err == nil {
		fmt.Printf("$ curl http://%s:8000/status   # the leader's own view\n%s\n", leader, b)
	}
	all, err := c.Intervals()
	if err != nil {
		return err
	}
	if o := testenv.Overlaps(all); len(o) > 0 {
		return fmt.Errorf("two nodes forged at once: %v", o)
	}
	say("checked %d forging intervals from the nodes' own records: never two at once", len(all))
	return nil
}

// row is one pod as the demo shows it.
type row struct{ role, forging string }

func (r row) String() string {
	if r.forging == "on" {
		return strings.ToUpper(r.role) + " forging"
	}
	return r.role
}

// watcher prints the cluster as a table line whenever it changes.
type watcher struct {
	c    *testenv.Cluster
	last string
}

func (w *watcher) rows() (map[string]row, string, int32) {
	rows := map[string]row{}
	holder, epoch := "", int32(0)
	for _, name := range w.c.Order {
		if w.c.Pod(name) == nil {
			rows[name] = row{role: "gone"}
			continue
		}
		var st struct {
			Role, LeaseHolder, NodeForgingState string
			Epoch                               int32
			NodeUp                              bool
		}
		b, err := w.c.Get(name, "/status")
		if err != nil || json.Unmarshal(b, &st) != nil {
			rows[name] = row{role: "starting"}
			continue
		}
		r := row{role: st.Role, forging: st.NodeForgingState}
		if !st.NodeUp {
			r.role = "node booting"
		}
		rows[name] = r
		if st.LeaseHolder != "" {
			holder, epoch = st.LeaseHolder, st.Epoch
		}
	}
	return rows, holder, epoch
}

// until shows the table until cond holds, and returns what cond found.
func (w *watcher) until(ctx context.Context, what string, limit time.Duration, cond func(map[string]row) (string, bool)) (string, error) {
	deadline := time.Now().Add(limit)
	for {
		rows, holder, epoch := w.rows()
		line := fmt.Sprintf("lease %-28s epoch %-2d", orNone(holder), epoch)
		for _, name := range w.c.Order {
			line += fmt.Sprintf("  %s: %-16s", name, rows[name])
		}
		if line != w.last {
			say("%s", line)
			w.last = line
		}
		if got, ok := cond(rows); ok {
			return got, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("waiting for %s: not within %s", what, limit)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func oneForger(rows map[string]row) (string, bool) {
	var f []string
	for name, r := range rows {
		if r.forging == "on" && r.role == "leader" {
			f = append(f, name)
		}
	}
	if len(f) == 1 {
		return f[0], true
	}
	return "", false
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	if i := strings.LastIndexByte(s, '_'); i > 0 {
		return s[:i] + " (" + s[i+1:] + ")"
	}
	return s
}
