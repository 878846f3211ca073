// Command bench is `make bench`: forge-manager's figures, measured on this
// machine against a real kube-apiserver with three simulated replicas at the
// default timing (LEASE_DURATION 15s, RENEW_DEADLINE 10s, RETRY_PERIOD 2s).
// The local figures are measured once per -modes mode (local.go) and
// printed side by side: LEASE_WATCH=false, every replica reading the Lease
// every RETRY_PERIOD (today), and LEASE_WATCH=true, the standbys following
// it through a watch:
//
//   - planned handover (SIGTERM until the new node forges) and unplanned
//     failover (leader pod killed until the new node forges, also timed from
//     the killed leader's last renew), each -runs times, with the overlap
//     check over every run;
//   - API load in steady state, from the API server's own
//     apiserver_request_total, against an equal baseline without replicas;
//   - CPU seconds and resident memory of the sidecar, leader and standby.
//
// Once: init's wall time and peak memory, and across regions (regions.go):
// the coordination server's load, cross-region failover and planned region
// handover.
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
	runs       = flag.Int("runs", 20, "failovers and handovers to time, per mode")
	idle       = flag.Duration("idle", 3*time.Minute, "steady-state window for API load, CPU and memory, per mode")
	modesFlag  = flag.String("modes", "poll,watch", "LEASE_WATCH modes to measure side by side, in order: poll (LEASE_WATCH=false), watch (true)")
	regionsRun = flag.Bool("regions", true, "also measure across regions (regions.go, once, with the default LEASE_WATCH)")
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
	modes, err := parseModes(*modesFlag)
	if err != nil {
		return err
	}
	fmt.Printf("## forge-manager benchmarks\n\n`go run ./internal/bench%s` (runs=%d, idle=%s, modes=%s, regions=%t) on %s\n\n",
		args(), *runs, *idle, *modesFlag, *regionsRun, machine())
	cp, err := testenv.Start(ctx)
	if err != nil {
		return err
	}
	defer cp.Stop()
	if err := cp.InstallCRDs(ctx, "."); err != nil {
		return err
	}
	bin, _ := os.MkdirTemp("", "forge-bench-bin-")
	defer os.RemoveAll(bin)
	fm, node, err := testenv.BuildBinaries(".", bin)
	if err != nil {
		return err
	}
	if err := initTimes(fm); err != nil {
		return err
	}
	base, err := measureBaseline(cp)
	if err != nil {
		return err
	}
	var results []*localResult
	for _, m := range modes {
		r, err := measureLocal(ctx, cp, fm, node, m, base)
		if err != nil {
			return fmt.Errorf("mode %s: %w", m.key, err)
		}
		results = append(results, r)
	}
	printLocal(results)
	cp.Stop()
	if !*regionsRun {
		return nil
	}
	return benchRegions(ctx, fm, node)
}

// args is the command line's flags as given, for the header.
func args() string {
	if len(os.Args) < 2 {
		return ""
	}
	return " " + strings.Join(os.Args[1:], " ")
}

// measureBaseline is the control plane alone over -idle/3: its own leases
// and controllers, subtracted from each mode's steady state.
func measureBaseline(cp *testenv.ControlPlane) (baseline, error) {
	before, err := apiCounts(cp)
	if err != nil {
		return baseline{}, err
	}
	time.Sleep(*idle / 3)
	after, err := apiCounts(cp)
	if err != nil {
		return baseline{}, err
	}
	return baseline{rates: rates(before, after, *idle/3), openWatches: openLeaseWatches(cp)}, nil
}

// settled waits for exactly one stable forger.
func settled(ctx context.Context, c *testenv.Cluster, since int64) (string, time.Duration, error) {
	cctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	return c.Settled(cctx, since, 4*time.Second)
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

// apiCounts reads apiserver_request_total summed by verb and resource.
func apiCounts(cp *testenv.ControlPlane) (map[string]float64, error) {
	return apiSeries(cp, "apiserver_request_total")
}

// apiSeries reads one of the API server's metrics summed by verb and
// resource ("VERB resource[/subresource]").
func apiSeries(cp *testenv.ControlPlane, metric string) (map[string]float64, error) {
	out, err := cp.Kubectl("get", "--raw", "/metrics")
	if err != nil {
		return nil, err
	}
	counts := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, metric+"{") {
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
