package main

// A cluster of simulated block-producer pods for the integration and fault
// tests: each pod runs the real forge-manager binary next to the stand-in
// cardano-node (internal/cardano-node) in its own namespaces (see
// internal/testenv/pod.go). Safety is judged only from the stand-in nodes'
// own records of when they forged.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
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
	slotMu         sync.Mutex
	slotsInUse     = map[int]bool{}
)

// testBinaries builds forge-manager and the stand-in node once per test
// binary, into a directory every pod's UID can read.
func testBinaries(t testing.TB) (string, string) {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "forge-bin-")
		if err != nil {
			binErr = err
			return
		}
		os.Chmod(dir, 0o755)
		binFM, binNode = filepath.Join(dir, "forge-manager"), filepath.Join(dir, "cardano-node")
		for _, b := range [][2]string{{binFM, "."}, {binNode, "./internal/cardano-node"}} {
			cmd := exec.Command("go", "build", "-o", b[0], b[1])
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				binErr = fmt.Errorf("go build %s: %v\n%s", b[1], err, out)
				return
			}
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binFM, binNode
}

// envelope is a cardano text envelope like the real key files; the bytes
// are fake and the tests look for them in logs and metrics.
func envelope(typ, secret string) []byte {
	return []byte(fmt.Sprintf(`{"type": %q, "description": "test key", "cborHex": "5820%x"}`, typ, secret))
}

// testSecrets are three credential files whose hex holds a marker the
// no-leak test searches for.
func testSecrets() map[string][]byte {
	return map[string][]byte{
		"kes.skey":  envelope("KesSigningKey_ed25519_kes_2^6", "kes-secret-0123456789abcdef"),
		"vrf.skey":  envelope("VrfSigningKey_PraosVRF", "vrf-secret-0123456789abcdef"),
		"node.cert": envelope("NodeOperationalCertificate", "opcert-0123456789abcdef"),
	}
}

// fastTiming keeps fault tests short while keeping every ratio that
// matters: LEASE_DURATION - RENEW_DEADLINE = 3s covers the dead-man probe
// (1s period + 0.5s grace) with 1.5s to spare.
var fastTiming = map[string]string{
	"LEASE_DURATION": "8s", "RENEW_DEADLINE": "5s", "RETRY_PERIOD": "1s", "SIGHUP_CONFIRM_TIMEOUT": "2s",
}

type cluster struct {
	t       testing.TB
	cp      *testenv.ControlPlane
	tenant  *testenv.Tenant
	base    string
	env     map[string]string
	probe   time.Duration
	grace   time.Duration
	pods    map[string]*testenv.Pod
	order   []string
	retired []*testenv.Pod // deleted pods whose records still count
}

// newCluster starts n pods named bp-0.. with the given forge-manager
// environment on top of the pod's own.
func newCluster(t testing.TB, n int, env map[string]string) *cluster {
	t.Helper()
	c := &cluster{t: t, cp: controlPlane(t), tenant: newTenant(t), env: env, pods: map[string]*testenv.Pod{},
		probe: time.Second, grace: 500 * time.Millisecond}
	base, err := os.MkdirTemp("", "forge-pods-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(base, 0o755)
	c.base = base
	t.Cleanup(c.stop)
	for i := 0; i < n; i++ {
		c.start(fmt.Sprintf("bp-%d", i), nil)
	}
	return c
}

// start creates (or recreates, with a new UID) pod name.
func (c *cluster) start(name string, edit func(*testenv.PodSpec)) *testenv.Pod {
	c.t.Helper()
	fm, node := testBinaries(c.t)
	spec := testenv.PodSpec{
		Name: name, Index: allocSlot(c.t), Tenant: c.tenant, APIPort: c.cp.Port, CA: c.cp.CA,
		ForgeManager: fm, Node: node, Env: c.env, UID: 10001, NodeUID: -1, Secrets: testSecrets(),
		NodeArgs:    []string{"--early-window", "200ms", "--replay", "1s"},
		ProbePeriod: c.probe, ProbeGrace: c.grace, RestartDelay: time.Second, Grace: 30 * time.Second,
	}
	if edit != nil {
		edit(&spec)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := testenv.StartPod(ctx, c.base, spec)
	if err != nil {
		freeSlot(spec.Index)
		c.t.Fatalf("start pod %s: %v", name, err)
	}
	if _, ok := c.pods[name]; !ok {
		c.order = append(c.order, name)
	}
	c.pods[name] = p
	return p
}

// delete stops pod name gracefully (SIGTERM, grace period).
func (c *cluster) delete(name string) time.Duration {
	p := c.pods[name]
	took := p.Delete()
	freeSlot(p.Spec.Index)
	c.retired = append(c.retired, p)
	delete(c.pods, name)
	return took
}

// kill ends pod name at once, as a dead machine.
func (c *cluster) kill(name string) {
	p := c.pods[name]
	p.Kill()
	freeSlot(p.Spec.Index)
	c.retired = append(c.retired, p)
	delete(c.pods, name)
}

func (c *cluster) stop() {
	for name, p := range c.pods {
		p.Kill()
		freeSlot(p.Spec.Index)
		c.retired = append(c.retired, p)
		delete(c.pods, name)
	}
	if c.t.Failed() {
		c.dumpLogs()
	}
	os.RemoveAll(c.base)
}

// dumpLogs prints the tail of every container log of a failed test.
func (c *cluster) dumpLogs() {
	for _, p := range c.retired {
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
}

func allocSlot(t testing.TB) int {
	slotMu.Lock()
	defer slotMu.Unlock()
	for i := 1; i <= 63; i++ {
		if !slotsInUse[i] {
			slotsInUse[i] = true
			return i
		}
	}
	t.Fatal("no free pod network slot")
	return 0
}

func freeSlot(i int) {
	slotMu.Lock()
	defer slotMu.Unlock()
	delete(slotsInUse, i)
}

// intervals reads every pod's record, live and deleted.
func (c *cluster) intervals() []testenv.Interval {
	var all []testenv.Interval
	seen := map[string]bool{}
	pods := append([]*testenv.Pod{}, c.retired...)
	for _, p := range c.pods {
		pods = append(pods, p)
	}
	for _, p := range pods {
		if seen[p.Record()] {
			continue
		}
		seen[p.Record()] = true
		iv, err := testenv.ForgingIntervals(p.Spec.Name, p.Record())
		if err != nil {
			c.t.Fatal(err)
		}
		all = append(all, iv...)
	}
	return all
}

// overlaps returns every pair of intervals of different pods that share an
// instant: two nodes forging at once.
func overlaps(all []testenv.Interval) []string {
	end := func(i testenv.Interval) int64 {
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

// checkNoOverlap fails the test if two nodes ever forged at the same
// instant.
func (c *cluster) checkNoOverlap() int {
	c.t.Helper()
	o := overlaps(c.intervals())
	for _, s := range o {
		c.t.Errorf("two nodes forged at once: %s", s)
	}
	return len(o)
}

// forgers lists the pods whose node is forging now, per the records.
func (c *cluster) forgers() []string {
	var out []string
	for _, iv := range c.intervals() {
		if iv.End == 0 {
			out = append(out, iv.Pod)
		}
	}
	sort.Strings(out)
	return out
}

// waitOneForger waits until exactly one node forges and returns it, with
// the time from `since` (CLOCK_MONOTONIC ns) to the start of its interval.
func (c *cluster) waitOneForger(since int64, limit time.Duration) (string, time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		var open []testenv.Interval
		for _, iv := range c.intervals() {
			if iv.End == 0 {
				open = append(open, iv)
			}
		}
		if len(open) == 1 {
			took := time.Duration(open[0].Start - since)
			return open[0].Pod, max(took, 0)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("not exactly one forger within %s: forging now %v", limit, c.forgers())
	return "", 0
}

// waitNoForger waits until no node forges.
func (c *cluster) waitNoForger(limit time.Duration) {
	c.t.Helper()
	eventually(c.t, limit, "no forger", func() bool { return len(c.forgers()) == 0 })
}

// status fetches a pod's /status.
func (c *cluster) status(name string) (snapshot, error) {
	var s snapshot
	b, err := c.get(name, "/status")
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(b, &s)
}

func (c *cluster) get(name, path string) ([]byte, error) {
	p := c.pods[name]
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
		return b, fmt.Errorf("GET %s on %s: HTTP %d: %s", path, name, resp.StatusCode, b)
	}
	return b, err
}

// metric reads one series of a pod's /metrics by name (any labels).
func (c *cluster) metric(name, series string) (float64, error) {
	b, err := c.get(name, "/metrics")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, series+"{") || strings.HasPrefix(line, series+" ") {
			f := strings.Fields(line)
			return strconv.ParseFloat(f[len(f)-1], 64)
		}
	}
	return 0, fmt.Errorf("%s: no series %s", name, series)
}
