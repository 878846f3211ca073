package testenv

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// BuildBinaries builds forge-manager and the stand-in cardano-node from the
// repository at root into dir (readable by every pod UID).
func BuildBinaries(root, dir string) (fm, node string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	os.Chmod(dir, 0o755)
	fm, node = filepath.Join(dir, "forge-manager"), filepath.Join(dir, "cardano-node")
	for _, b := range [][2]string{{fm, "."}, {node, "./internal/cardano-node"}} {
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=test", "-o", b[0], b[1])
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("go build %s: %v\n%s", b[1], err, out)
		}
	}
	return fm, node, nil
}

// Cluster is a StatefulSet's worth of simulated pods sharing one tenant.
type Cluster struct {
	CP       *ControlPlane
	Tenant   *Tenant
	FM, Node string            // binaries
	Env      map[string]string // forge-manager environment on top of the pod's
	Edit     func(name string, s *PodSpec)
	Secrets  map[string][]byte
	Probe    Probe // the node container's dead-man livenessProbe

	Base  string
	Order []string // pod names in creation order

	mu      sync.Mutex
	pods    map[string]*Pod
	retired []*Pod // deleted or killed; their records still count
}

// Probe is a dead-man livenessProbe: period, failureThreshold, timeout and
// the probe-level termination grace.
type Probe struct {
	Period, Timeout, Grace time.Duration
	Fails                  int
}

// ShippedProbe is the probe of the shipped manifests.
var ShippedProbe = Probe{Period: time.Second, Fails: 2, Timeout: time.Second, Grace: time.Second}

// Env is forge-manager's DEADMAN_PROBE_* describing the probe, so its
// budget check sees what runs.
func (p Probe) Env() map[string]string {
	return map[string]string{"DEADMAN_PROBE_PERIOD": p.Period.String(), "DEADMAN_PROBE_FAILURE_THRESHOLD": fmt.Sprint(p.Fails),
		"DEADMAN_PROBE_TIMEOUT": p.Timeout.String(), "DEADMAN_PROBE_GRACE": p.Grace.String()}
}

// NewCluster prepares an empty cluster; Start adds pods.
func NewCluster(cp *ControlPlane, tenant *Tenant, fm, node string, secrets map[string][]byte) (*Cluster, error) {
	base, err := os.MkdirTemp("", "forge-pods-")
	if err != nil {
		return nil, err
	}
	os.Chmod(base, 0o755)
	return &Cluster{CP: cp, Tenant: tenant, FM: fm, Node: node, Secrets: secrets, Base: base,
		pods: map[string]*Pod{}, Probe: ShippedProbe}, nil
}

var (
	slotMu sync.Mutex
	slots  = map[int]bool{}
)

func allocSlot() (int, error) {
	slotMu.Lock()
	defer slotMu.Unlock()
	for i := 1; i <= maxPods; i++ {
		if !slots[i] {
			slots[i] = true
			return i, nil
		}
	}
	return 0, fmt.Errorf("all %d pod network slots in use", maxPods)
}

func freeSlot(i int) {
	slotMu.Lock()
	defer slotMu.Unlock()
	delete(slots, i)
}

// Start creates (or recreates, with a new UID) pod name.
func (c *Cluster) Start(ctx context.Context, name string, edit func(*PodSpec)) (*Pod, error) {
	idx, err := allocSlot()
	if err != nil {
		return nil, err
	}
	env := c.Probe.Env()
	for k, v := range c.Env {
		env[k] = v
	}
	spec := PodSpec{
		Name: name, Index: idx, Tenant: c.Tenant, APIPort: c.CP.Port, CA: c.CP.CA,
		ForgeManager: c.FM, Node: c.Node, Env: env, UID: 10001, NodeUID: -1, Secrets: c.Secrets,
		NodeArgs:    []string{"--early-window", "200ms", "--replay", "1s"},
		ProbePeriod: c.Probe.Period, ProbeFails: c.Probe.Fails, ProbeTimeout: c.Probe.Timeout, ProbeGrace: c.Probe.Grace,
		RestartDelay: time.Second, Grace: 30 * time.Second,
	}
	if c.Edit != nil {
		c.Edit(name, &spec)
	}
	if edit != nil {
		edit(&spec)
	}
	p, err := StartPod(ctx, c.Base, spec)
	if err != nil {
		freeSlot(idx)
		return nil, fmt.Errorf("start pod %s: %w", name, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !contains(c.Order, name) {
		c.Order = append(c.Order, name)
	}
	c.pods[name] = p
	return p, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Pod is the live pod called name, or nil.
func (c *Cluster) Pod(name string) *Pod {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pods[name]
}

// All is every pod ever started, live and retired.
func (c *Cluster) All() []*Pod {
	c.mu.Lock()
	defer c.mu.Unlock()
	all := append([]*Pod{}, c.retired...)
	for _, name := range c.Order {
		if p := c.pods[name]; p != nil {
			all = append(all, p)
		}
	}
	return all
}

// Delete stops pod name gracefully (SIGTERM, then the grace period). The
// pod counts as gone from the moment it is asked to stop, as in Kubernetes.
func (c *Cluster) Delete(name string) time.Duration {
	p := c.retire(name)
	took := p.Delete()
	freeSlot(p.Spec.Index) // its network is gone
	return took
}

// Kill ends pod name at once, as a machine dying.
func (c *Cluster) Kill(name string) {
	p := c.retire(name)
	p.Kill()
	freeSlot(p.Spec.Index)
}

func (c *Cluster) retire(name string) *Pod {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.pods[name]
	c.retired = append(c.retired, p)
	delete(c.pods, name)
	return p
}

// Close kills every pod and removes the cluster's files.
func (c *Cluster) Close() {
	for _, name := range c.Order {
		if c.Pod(name) != nil {
			c.Kill(name)
		}
	}
	os.RemoveAll(c.Base)
}

// Intervals reads every pod's forging record, live and retired.
func (c *Cluster) Intervals() ([]Interval, error) { return Group{c}.Intervals() }

// Forging returns the intervals still open: the nodes forging now.
func (c *Cluster) Forging() ([]Interval, error) { return Group{c}.Forging() }

// Overlaps returns every pair of intervals of different pods that share an
// instant: two nodes forging at once.
func Overlaps(all []Interval) []string {
	end := func(i Interval) int64 {
		if i.End == 0 {
			return 1<<63 - 1
		}
		return i.End
	}
	var out []string
	for i := range all {
		for j := i + 1; j < len(all); j++ {
			a, b := all[i], all[j]
			if a.Pod != b.Pod && a.Start < end(b) && b.Start < end(a) {
				out = append(out, fmt.Sprintf("%s pid %d [%d..%d] and %s pid %d [%d..%d]", a.Pod, a.PID, a.Start, a.End, b.Pod, b.PID, b.Start, b.End))
			}
		}
	}
	return out
}

// Settled waits until exactly one node forges and keeps forging for hold;
// it returns that pod and how long after since (CLOCK_MONOTONIC) its
// forging began (0 if it was forging already).
func (c *Cluster) Settled(ctx context.Context, since int64, hold time.Duration) (string, time.Duration, error) {
	return Group{c}.Settled(ctx, since, hold)
}

// Get fetches a path of a pod's forge-manager HTTP endpoint.
func (c *Cluster) Get(name, path string) ([]byte, error) {
	p := c.Pod(name)
	if p == nil {
		return nil, fmt.Errorf("no pod %s", name)
	}
	client := http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(p.MetricsURL(path))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return b, fmt.Errorf("GET %s on %s: HTTP %d: %s", path, name, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return b, err
}

// Metric reads a series from a pod's /metrics: series is a metric name,
// optionally with label pairs that must all be on the line (for example
// `cardano_sighup_signals_total reason="enable"`).
func (c *Cluster) Metric(name, series string) (float64, error) {
	b, err := c.Get(name, "/metrics")
	if err != nil {
		return 0, err
	}
	want := strings.Fields(series)
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, want[0]+"{") && !strings.HasPrefix(line, want[0]+" ") {
			continue
		}
		ok := true
		for _, l := range want[1:] {
			ok = ok && strings.Contains(line, l)
		}
		if ok {
			f := strings.Fields(line)
			return strconv.ParseFloat(f[len(f)-1], 64)
		}
	}
	return 0, fmt.Errorf("%s: no series %s", name, series)
}
