// Command bench is `make bench`: forge-manager's figures, measured on this
// machine against a real kube-apiserver with three simulated replicas at the
// default timing (LEASE_DURATION 15s, RENEW_DEADLINE 10s, RETRY_PERIOD 2s):
//
//   - API load in steady state, from the API server's own
//     apiserver_request_total, against an equal baseline without replicas;
//   - CPU seconds and resident memory of the sidecar, leader and standby;
//   - unplanned failover (leader pod killed until the new node forges) and
//     planned handover (SIGTERM until the new node forges), each -runs times,
//     with the overlap check over every run;
//   - init's wall time and peak memory;
//   - across regions (regions.go): the coordination server's load,
//     cross-region failover and planned region handover.
//
// It prints Markdown tables. Medians and worst cases, never single runs: the
// machine is shared and noisy.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"forge-manager/internal/testenv"
)

var (
	runs = flag.Int("runs", 20, "failovers and handovers to time")
	idle = flag.Duration("idle", 3*time.Minute, "steady-state window for API load, CPU and memory")
)

func main() {
	flag.Parse()
	if err := run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	if os.Geteuid() != 0 {
		return errors.New("bench needs root (simulated pods use PID, mount and network namespaces)")
	}
	fmt.Printf("## forge-manager benchmarks\n\n`make bench` (runs=%d, idle=%s) on %s\n\n", *runs, *idle, machine())
	cp, tenant, err := testenv.Up(ctx, ".", "bench")
	if err != nil {
		return err
	}
	defer cp.Stop()
	bin, _ := os.MkdirTemp("", "forge-bench-bin-")
	defer os.RemoveAll(bin)
	fm, node, err := testenv.BuildBinaries(".", bin)
	if err != nil {
		return err
	}
	if err := initTimes(fm); err != nil {
		return err
	}

	baseline, err := apiCounts(cp)
	if err != nil {
		return err
	}
	time.Sleep(*idle / 3) // the control plane alone: its own leases and controllers
	base2, _ := apiCounts(cp)
	baseRate := rates(baseline, base2, *idle/3)

	c, err := testenv.NewCluster(cp, tenant, fm, node, testenv.FakeKeys("bench"))
	if err != nil {
		return err
	}
	defer c.Close()
	for _, name := range []string{"bp-0", "bp-1", "bp-2"} {
		if _, err := c.Start(ctx, name, nil); err != nil {
			return err
		}
	}
	if _, _, err := settled(ctx, c, testenv.Monotonic()); err != nil {
		return err
	}
	if err := steadyState(c, cp, baseRate); err != nil {
		return err
	}
	unplanned, peak1, err := repeat(ctx, c, func(name string) { c.Kill(name) })
	if err != nil {
		return err
	}
	planned, peak2, err := repeat(ctx, c, func(name string) { go c.Delete(name) })
	if err != nil {
		return err
	}
	all, _ := c.Intervals()
	overlaps := len(testenv.Overlaps(all))
	fmt.Printf("### Failover (default timing; bounds from the issue)\n\n| | runs | median | worst | target | overlaps |\n|---|---|---|---|---|---|\n")
	fmt.Printf("| unplanned: leader pod killed -> new node forging | %d | %s | %s | 18s (LEASE_DURATION + RETRY_PERIOD + 1s) | %d |\n", len(unplanned), sec(median(unplanned)), sec(worst(unplanned)), overlaps)
	fmt.Printf("| planned: SIGTERM -> new node forging | %d | %s | %s | 3s | %d |\n\n", len(planned), sec(median(planned)), sec(worst(planned)), overlaps)
	fmt.Printf("Peak resident memory of a sidecar through all failovers and handovers: %.1f MiB\n\n", float64(max(peak1, peak2))/(1<<20))
	fmt.Printf("Forging intervals checked for overlap: %d, overlaps: %d\n\n", len(all), overlaps)
	c.Close()
	cp.Stop()
	return benchRegions(ctx, fm, node)
}

// settled waits for exactly one stable forger.
func settled(ctx context.Context, c *testenv.Cluster, since int64) (string, time.Duration, error) {
	cctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	return c.Settled(cctx, since, 4*time.Second)
}

// repeat applies fault to the forger -runs times, timing each to the next
// forger; the pod comes back as a standby before the next run. It also
// returns the highest VmHWM of any sidecar seen before a fault.
func repeat(ctx context.Context, c *testenv.Cluster, fault func(name string)) ([]time.Duration, int64, error) {
	var out []time.Duration
	var peak int64
	forger, _, err := settled(ctx, c, testenv.Monotonic())
	for i := 0; i < *runs && err == nil; i++ {
		peak = max(peak, sidecarHWM(c))
		// A random phase against the replicas' 2s polls: a fault right
		// after a pod came up would meet its next poll early (a bias).
		time.Sleep(rand.N(4 * time.Second))
		from := testenv.Monotonic()
		fault(forger)
		var took time.Duration
		next := forger
		for next == forger && err == nil {
			next, took, err = settled(ctx, c, from)
		}
		out = append(out, took)
		fmt.Fprintf(os.Stderr, "run %d: %s -> %s in %s\n", i+1, forger, next, took.Round(time.Millisecond))
		waitGone(c, forger)
		if _, err2 := c.Start(ctx, forger, nil); err2 != nil {
			return out, peak, err2
		}
		waitUp(c, forger)
		forger = next
	}
	return out, peak, err
}

func waitGone(c *testenv.Cluster, name string) {
	for i := 0; i < 600; i++ {
		if c.Pod(name) == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitUp(c *testenv.Cluster, name string) {
	for i := 0; i < 600; i++ {
		if b, err := c.Get(name, "/status"); err == nil && strings.Contains(string(b), `"nodeUp": true`) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// steadyState measures API load, CPU and memory over -idle with one leader
// and two standbys and nothing happening.
func steadyState(c *testenv.Cluster, cp *testenv.ControlPlane, base map[string]float64) error {
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
	r := rates(before, after, *idle)
	for k, v := range base {
		r[k] -= v
	}
	get, put := r["GET leases"], r["PUT leases"]
	status := r["PATCH cardanoleaders/status"] + r["GET cardanoleaders"] + r["POST cardanoleaders"]
	fmt.Printf("### API load in steady state (%s, 3 replicas; apiserver_request_total minus a control-plane-only baseline)\n\n", *idle)
	fmt.Printf("| | forge-manager | predecessor (Python, per its code: every 5s) |\n|---|---|---|\n")
	fmt.Printf("| leader: requests/s | %.2f (Lease PUT %.2f/s) | 0.60 (Lease GET + PATCH, status PATCH) |\n", put+status, put)
	fmt.Printf("| leader: writes/min | %.1f (renew only) | 24 (Lease PATCH + status PATCH) |\n", put*60)
	fmt.Printf("| CardanoLeader requests/min in steady state | %.2f (one GET per minute, no writes) | 12 writes |\n", status*60)
	fmt.Printf("| each standby: requests/s | %.2f (Lease GET) | 0.20 |\n", get/2)
	fmt.Printf("| each standby: writes/min | 0 | 0 |\n\n")

	fmt.Printf("### Sidecar footprint in steady state\n\n| replica | resident memory | of which heap and stacks (RssAnon) | of which the binary's pages (RssFile) | CPU seconds per hour |\n|---|---|---|---|---|\n")
	for _, name := range c.Order {
		rss, _ := c.Metric(name, "process_resident_memory_bytes")
		cpu1, _ := c.Metric(name, "process_cpu_seconds_total")
		st := procStatus(c.Pod(name).ContainerPID("forge-manager"))
		fmt.Printf("| %s (%s) | %.1f MiB | %.1f MiB | %.1f MiB | %.1f |\n", name, roles[name], rss/(1<<20),
			float64(st["RssAnon:"])/(1<<20), float64(st["RssFile:"])/(1<<20), (cpu1-cpu0[name])/idle.Hours())
	}
	fmt.Println()
	return nil
}

// apiCounts reads apiserver_request_total summed by verb and resource.
func apiCounts(cp *testenv.ControlPlane) (map[string]float64, error) {
	out, err := cp.Kubectl("get", "--raw", "/metrics")
	if err != nil {
		return nil, err
	}
	counts := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "apiserver_request_total{") {
			continue
		}
		labels := map[string]string{}
		for _, kv := range strings.Split(line[strings.IndexByte(line, '{')+1:strings.LastIndexByte(line, '}')], ",") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				labels[k] = strings.Trim(v, `"`)
			}
		}
		res := labels["resource"]
		if labels["subresource"] != "" {
			res += "/" + labels["subresource"]
		}
		f := strings.Fields(line)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		counts[labels["verb"]+" "+res] += v
	}
	return counts, sc.Err()
}

func rates(a, b map[string]float64, d time.Duration) map[string]float64 {
	r := map[string]float64{}
	for k, v := range b {
		r[k] = (v - a[k]) / d.Seconds()
	}
	return r
}

// sidecarHWM is the highest peak resident set (VmHWM) of the live sidecars.
func sidecarHWM(c *testenv.Cluster) int64 {
	var peak int64
	for _, p := range c.All() {
		peak = max(peak, procStatus(p.ContainerPID("forge-manager"))["VmHWM:"])
	}
	return peak
}

// procStatus reads the kB fields of /proc/PID/status, in bytes.
func procStatus(pid int) map[string]int64 {
	out := map[string]int64{}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[2] == "kB" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			out[f[0]] = kb << 10
		}
	}
	return out
}

// initTimes runs `forge-manager init` -runs times on fresh directories,
// with and without the copy of the binary for the dead-man probe.
func initTimes(fm string) error {
	fmt.Printf("### init (initContainer)\n\n| what | runs | median wall time | worst | peak resident memory |\n|---|---|---|---|---|\n")
	for _, copyBinary := range []bool{false, true} {
		times, maxRSS, err := runInits(fm, copyBinary)
		if err != nil {
			return err
		}
		what := "three keys: validate, write 0600, fsync, rename"
		if copyBinary {
			what = fmt.Sprintf("the same, plus copying the %d MB binary for the dead-man probe", fileMB(fm))
		}
		fmt.Printf("| %s | %d | %s | %s | %.1f MiB |\n", what, len(times), ms(median(times)), ms(worst(times)), float64(maxRSS)/1024)
	}
	fmt.Printf("\n(wall time of the whole process, exec included)\n\n")
	return nil
}

func runInits(fm string, copyBinary bool) ([]time.Duration, int64, error) {
	dir, _ := os.MkdirTemp("", "forge-bench-init-")
	defer os.RemoveAll(dir)
	var times []time.Duration
	var maxRSS int64
	for i := 0; i < *runs; i++ {
		d := filepath.Join(dir, strconv.Itoa(i))
		os.MkdirAll(filepath.Join(d, "s"), 0o700)
		os.MkdirAll(filepath.Join(d, "t"), 0o700)
		for name, b := range testenv.FakeKeys("bench") {
			os.WriteFile(filepath.Join(d, "s", name), b, 0o400)
		}
		deadman := ""
		if copyBinary {
			deadman = filepath.Join(d, "t", "forge-manager")
		}
		cmd := exec.Command(fm, "init")
		cmd.Env = []string{
			"SOURCE_KES_KEY=" + filepath.Join(d, "s", "kes.skey"), "SOURCE_VRF_KEY=" + filepath.Join(d, "s", "vrf.skey"),
			"SOURCE_OP_CERT=" + filepath.Join(d, "s", "node.cert"), "TARGET_KES_KEY=" + filepath.Join(d, "t", "kes.skey"),
			"TARGET_VRF_KEY=" + filepath.Join(d, "t", "vrf.skey"), "TARGET_OP_CERT=" + filepath.Join(d, "t", "node.cert"),
			"HEARTBEAT_FILE=" + filepath.Join(d, "t", "hb"), "DEADMAN_BINARY=" + deadman,
		}
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, 0, fmt.Errorf("init: %v: %s", err, out)
		}
		times = append(times, time.Since(start))
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			maxRSS = max(maxRSS, ru.Maxrss)
		}
	}
	return times, maxRSS, nil
}

func fileMB(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size() >> 20
}

func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "model name") {
				model = strings.TrimSpace(line[strings.IndexByte(line, ':')+1:])
				break
			}
		}
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return fmt.Sprintf("%d cores (%s), Linux %s, %s", runtime.NumCPU(), model, strings.TrimSpace(string(kernel)), runtime.Version())
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration{}, d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func worst(d []time.Duration) time.Duration {
	var w time.Duration
	for _, x := range d {
		w = max(w, x)
	}
	return w
}

func sec(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }
func ms(d time.Duration) string  { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
