package testenv

// Simulated pods, faithful where forge-manager can tell the difference:
//
//   - a PID namespace shared by the pod's containers, whose PID 1 is a
//     pause process (`unshare --pid --fork --mount-proc`), so the sidecar
//     finds the node in /proc exactly as with shareProcessNamespace;
//   - a mount namespace with the ServiceAccount token and CA at
//     /var/run/secrets/kubernetes.io/serviceaccount, so the sidecar uses the
//     real in-cluster configuration;
//   - a network namespace joined to the host by a veth pair, so the pod can
//     be cut off from the API server (link down) and its ports are its own;
//   - containers run as a numeric UID, restarted when they exit (the
//     kubelet's restartPolicy: Always), and an exec livenessProbe on the node
//     container that kills it when `forge-manager deadman` fails.
//
// It needs root. Everything a pod starts dies with its PID 1.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// maxPods bounds the simulated pods of one process; pod n has the /30
// network 10.S.n.0, the host at .1 and the pod at .2, where S depends on
// the process so a demo and a test run can share the machine.
const maxPods = 63

var subnet = 100 + os.Getpid()%100

// HostIP is the host's address on pod n's veth (n=0: the advertise
// address, on no interface).
func HostIP(n int) string { return fmt.Sprintf("10.%d.%d.1", subnet, n) }

// PodIP is pod n's own address.
func PodIP(n int) string { return fmt.Sprintf("10.%d.%d.2", subnet, n) }

// ErrNotRoot is returned where a simulation needs root (namespaces).
var ErrNotRoot = errors.New("simulated pods need root (PID, mount and network namespaces): run as root")

// PodSpec describes one block-producer pod.
type PodSpec struct {
	Name         string
	Index        int // 1..maxPods, unique per process
	Tenant       *Tenant
	APIPort      int
	CA           []byte
	ForgeManager string            // the forge-manager binary
	Node         string            // the stand-in cardano-node binary
	Env          map[string]string // extra environment of forge-manager
	NodeArgs     []string          // extra flags of the stand-in
	UID          int               // both containers, as the shipped manifests do
	NodeUID      int               // -1: same as UID
	Secrets      map[string][]byte // kes.skey, vrf.skey, node.cert
	ProbePeriod  time.Duration     // dead-man livenessProbe period; 0: no probe
	ProbeFails   int               // its failureThreshold
	ProbeTimeout time.Duration     // its timeoutSeconds: a probe still running then has failed
	ProbeGrace   time.Duration     // SIGTERM to SIGKILL when the probe fails
	RestartDelay time.Duration     // kubelet restart delay
	Grace        time.Duration     // terminationGracePeriodSeconds
}

// Pod is a running simulated pod.
type Pod struct {
	Spec PodSpec
	UID  string // metadata.uid: new for every Create
	Dir  string

	netns, veth string
	pause       *exec.Cmd
	pausePID    int
	stop        chan struct{}
	wg          sync.WaitGroup

	mu         sync.Mutex
	containers map[string]*container
	stopping   bool
	probeFails int
}

type container struct {
	name     string
	delay    time.Duration // restart delay; 0: the pod's
	argv     []string
	env      []string
	uid      int
	cmd      *exec.Cmd
	hostPID  int
	restarts int
	exited   chan struct{}
}

// Paths inside the pod's shared volume, as the shipped manifests mount them.
func (p *Pod) IPC(name string) string { return filepath.Join(p.Dir, "ipc", name) }

// Record is the stand-in node's forging record.
func (p *Pod) Record() string { return filepath.Join(p.Dir, "records", "node.log") }

// UnhealthyFile makes the stand-in's /health answer 503 while it exists.
func (p *Pod) UnhealthyFile() string { return filepath.Join(p.Dir, "unhealthy") }

// BrokenGaugeFile makes the stand-in's /metrics answer 503 while it exists.
func (p *Pod) BrokenGaugeFile() string { return filepath.Join(p.Dir, "broken-gauge") }

// Log is the path of a container's log.
func (p *Pod) Log(container string) string { return filepath.Join(p.Dir, "logs", container+".log") }

// MetricsURL is the sidecar's HTTP endpoint as seen from the host.
func (p *Pod) MetricsURL(path string) string {
	return "http://" + PodIP(p.Spec.Index) + ":8000" + path
}

// StartPod creates the pod's directories and namespaces, runs the init
// container and starts the node and the sidecar.
func StartPod(ctx context.Context, base string, spec PodSpec) (*Pod, error) {
	if os.Geteuid() != 0 {
		return nil, ErrNotRoot
	}
	if spec.Index < 1 || spec.Index > maxPods {
		return nil, fmt.Errorf("pod index %d out of 1..%d", spec.Index, maxPods)
	}
	if spec.NodeUID < 0 {
		spec.NodeUID = spec.UID
	}
	staleOnce.Do(removeStaleNetworks)
	p := &Pod{Spec: spec, UID: "uid-" + randHex(8), containers: map[string]*container{}, stop: make(chan struct{})}
	p.Dir = filepath.Join(base, spec.Name+"-"+p.UID[4:10])
	p.netns = fmt.Sprintf("fm-%d-%d", os.Getpid(), spec.Index)
	p.veth = fmt.Sprintf("fh%d-%d", os.Getpid(), spec.Index)
	if err := p.prepareDirs(); err != nil {
		return nil, err
	}
	if err := p.network(); err != nil {
		p.teardown()
		return nil, err
	}
	if err := p.startPause(ctx); err != nil {
		p.teardown()
		return nil, err
	}
	if err := p.runInit(ctx); err != nil {
		p.teardown()
		return nil, err
	}
	p.startContainer(p.nodeContainer())
	p.startContainer(p.sidecarContainer())
	if spec.ProbePeriod > 0 {
		p.wg.Add(1)
		go p.probeLoop()
	}
	return p, nil
}

var staleOnce sync.Once

// removeStaleNetworks deletes the network namespaces and veths of simulated
// pods whose process died without cleaning up (a test binary killed by its
// timeout). Their names carry the owner's PID.
func removeStaleNetworks() {
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		var pid, n int
		if _, err := fmt.Sscanf(f[0], "fm-%d-%d", &pid, &n); err != nil || pid == os.Getpid() {
			continue
		}
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			exec.Command("ip", "link", "del", fmt.Sprintf("fh%d-%d", pid, n)).Run()
			exec.Command("ip", "netns", "del", f[0]).Run()
		}
	}
}

func (p *Pod) prepareDirs() error {
	uid, nuid := p.Spec.UID, p.Spec.NodeUID
	for _, d := range []struct {
		path      string
		uid, mode int
	}{
		{"", 0, 0o755}, {"ipc", uid, 0o770}, {"secrets", uid, 0o500}, {"sa", 0, 0o755},
		{"records", nuid, 0o755}, {"logs", 0, 0o755},
	} {
		path := filepath.Join(p.Dir, d.path)
		if err := os.MkdirAll(path, 0o755); err != nil {
			return err
		}
		if err := os.Chown(path, d.uid, nuid); err != nil {
			return err
		}
		if err := os.Chmod(path, os.FileMode(d.mode)); err != nil {
			return err
		}
	}
	for name, b := range p.Spec.Secrets {
		path := filepath.Join(p.Dir, "secrets", name)
		if err := os.WriteFile(path, b, 0o400); err != nil {
			return err
		}
		if err := os.Chown(path, uid, uid); err != nil {
			return err
		}
	}
	sa := map[string][]byte{"token": []byte(p.Spec.Tenant.SAToken), "ca.crt": p.Spec.CA, "namespace": []byte(p.Spec.Tenant.Namespace)}
	for name, b := range sa {
		if err := os.WriteFile(filepath.Join(p.Dir, "sa", name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (p *Pod) network() error {
	n := p.Spec.Index
	peer := fmt.Sprintf("fp%d-%d", os.Getpid(), n)
	steps := [][]string{
		{"netns", "add", p.netns},
		{"link", "add", p.veth, "type", "veth", "peer", "name", peer},
		{"link", "set", peer, "netns", p.netns},
		{"addr", "add", HostIP(n) + "/30", "dev", p.veth},
		{"link", "set", p.veth, "up"},
		{"-n", p.netns, "addr", "add", PodIP(n) + "/30", "dev", peer},
		{"-n", p.netns, "link", "set", peer, "up"},
		{"-n", p.netns, "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if out, err := exec.Command("ip", s...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %w: %s", strings.Join(s, " "), err, out)
		}
	}
	return nil
}

// startPause starts the pod's PID 1 inside new PID and mount namespaces in
// the pod's network namespace, after placing the ServiceAccount files at
// their in-cluster path (visible only inside the pod).
func (p *Pod) startPause(ctx context.Context) error {
	sa := "/var/run/secrets/kubernetes.io/serviceaccount"
	script := fmt.Sprintf("mkdir -p /var/run/secrets && mount -t tmpfs -o mode=0755 tmpfs /var/run/secrets && "+
		"mkdir -p %s && cp %s/* %s/ && chmod 0644 %s/* && exec sleep infinity", sa, filepath.Join(p.Dir, "sa"), sa, sa)
	p.pause = exec.Command("ip", "netns", "exec", p.netns, "unshare", "--pid", "--fork", "--kill-child",
		"--mount-proc", "--mount", "--propagation", "private", "/bin/sh", "-c", script)
	p.pause.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p.pause.Stderr = os.Stderr
	if err := p.pause.Start(); err != nil {
		return fmt.Errorf("pause: %w", err)
	}
	go p.pause.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if kids := children(p.pause.Process.Pid); len(kids) == 1 {
			if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", kids[0])); strings.TrimSpace(string(comm)) == "sleep" {
				p.pausePID = kids[0]
				return nil
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("pod %s: pause process did not start", p.Spec.Name)
}

// children lists the host PIDs of pid's children, by their parent PID in
// /proc/*/stat (the kernel's task/*/children file is only reliable for
// stopped tasks).
func children(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out
}

// SidecarEnv is forge-manager's environment in this pod, as the shipped
// StatefulSet sets it (downward API, shared volume paths).
func (p *Pod) SidecarEnv() []string {
	env := map[string]string{
		"POD_NAME": p.Spec.Name, "POD_UID": p.UID, "NAMESPACE": p.Spec.Tenant.Namespace,
		"KUBERNETES_SERVICE_HOST": HostIP(p.Spec.Index), "KUBERNETES_SERVICE_PORT": strconv.Itoa(p.Spec.APIPort),
		"NODE_SOCKET": p.IPC("node.socket"), "HEARTBEAT_FILE": p.IPC("forge-manager.heartbeat"),
		"DEADMAN_BINARY": p.IPC("forge-manager"),
		"SOURCE_KES_KEY": filepath.Join(p.Dir, "secrets", "kes.skey"), "TARGET_KES_KEY": p.IPC("kes.skey"),
		"SOURCE_VRF_KEY": filepath.Join(p.Dir, "secrets", "vrf.skey"), "TARGET_VRF_KEY": p.IPC("vrf.skey"),
		"SOURCE_OP_CERT": filepath.Join(p.Dir, "secrets", "node.cert"), "TARGET_OP_CERT": p.IPC("node.cert"),
	}
	for k, v := range p.Spec.Env {
		env[k] = v
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

func (p *Pod) nodeContainer() *container {
	argv := append([]string{p.Spec.Node,
		"--shelley-kes-key", p.IPC("kes.skey"), "--shelley-vrf-key", p.IPC("vrf.skey"),
		"--shelley-operational-certificate", p.IPC("node.cert"), "--socket-path", p.IPC("node.socket"),
		"--start-as-non-producing-node", "--record", p.Record(), "--unhealthy-file", p.UnhealthyFile(),
		"--metrics-broken-file", p.BrokenGaugeFile()},
		p.Spec.NodeArgs...)
	return &container{name: "cardano-node", argv: argv, uid: p.Spec.NodeUID}
}

func (p *Pod) sidecarContainer() *container {
	return &container{name: "forge-manager", argv: []string{p.Spec.ForgeManager, "run"}, env: p.SidecarEnv(), uid: p.Spec.UID}
}

// runInit runs `forge-manager init` to completion, as an initContainer.
func (p *Pod) runInit(ctx context.Context) error {
	c := &container{name: "init", argv: []string{p.Spec.ForgeManager, "init"}, env: p.SidecarEnv(), uid: p.Spec.UID}
	cmd, err := p.exec(c)
	if err != nil {
		return err
	}
	if err := cmd.Wait(); err != nil {
		b, _ := os.ReadFile(p.Log("init"))
		return fmt.Errorf("pod %s: init container: %w\n%s", p.Spec.Name, err, b)
	}
	return nil
}

// exec starts argv inside the pod's namespaces as c.uid.
func (p *Pod) exec(c *container) (*exec.Cmd, error) {
	logf, err := os.OpenFile(p.Log(c.name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	args := append([]string{"-t", strconv.Itoa(p.pausePID), "-p", "-m", "-n",
		"-S", strconv.Itoa(c.uid), "-G", strconv.Itoa(c.uid), "--"}, c.argv...)
	cmd := exec.Command("nsenter", args...)
	cmd.Env = append(c.env, "PATH=/usr/bin:/bin")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("pod %s: start %s: %w", p.Spec.Name, c.name, err)
	}
	logf.Close()
	return cmd, nil
}

// startContainer runs c and restarts it whenever it exits, until the pod
// stops.
func (p *Pod) startContainer(c *container) {
	p.mu.Lock()
	p.containers[c.name] = c
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			cmd, err := p.exec(c)
			if err != nil {
				return
			}
			pid := waitChild(cmd.Process.Pid)
			inner := nsPID(pid)
			p.mu.Lock()
			c.cmd, c.hostPID, c.exited = cmd, pid, make(chan struct{})
			exited := c.exited
			p.mu.Unlock()
			cmd.Wait()
			if c.name == "cardano-node" && inner != 0 {
				appendRecord(p.Record(), "exit", inner) // forging, if it was on, ended by now
			}
			close(exited)
			p.mu.Lock()
			c.hostPID = 0
			stopping := p.stopping
			c.restarts++
			p.mu.Unlock()
			if stopping {
				return
			}
			p.mu.Lock()
			delay := c.delay
			p.mu.Unlock()
			if delay == 0 {
				delay = p.Spec.RestartDelay
			}
			select {
			case <-p.stop:
				return
			case <-time.After(delay):
			}
		}
	}()
}

// waitChild returns the host PID of nsenter's child (the container's
// process). nsenter forks it at once; if it is gone before it is seen, the
// container exited and 0 is returned.
func waitChild(nsenter int) int {
	for i := 0; i < 2000; i++ {
		if kids := children(nsenter); len(kids) > 0 {
			return kids[0]
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", nsenter)); err != nil {
			return 0
		}
		time.Sleep(time.Millisecond)
	}
	return 0
}

// nsPID is a host process's PID inside its own PID namespace (the last
// field of NSpid in /proc/PID/status), the PID the stand-in records.
func nsPID(host int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", host))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "NSpid:" {
			n, _ := strconv.Atoi(f[len(f)-1])
			return n
		}
	}
	return 0
}

// appendRecord writes a line to a stand-in record with the monotonic clock,
// as the stand-in itself does.
func appendRecord(path, what string, pid int) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%d %s %d\n", Monotonic(), what, pid)
}

// Monotonic is CLOCK_MONOTONIC in nanoseconds: the clock of the records.
func Monotonic() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// probeLoop is the node container's livenessProbe: `forge-manager deadman`
// every ProbePeriod; a run that fails or outlasts ProbeTimeout is a
// failure, and after ProbeFails in a row the node gets SIGTERM and, after
// ProbeGrace, SIGKILL, and is restarted.
func (p *Pod) probeLoop() {
	defer p.wg.Done()
	fails := 0
	for {
		select {
		case <-p.stop:
			return
		case <-time.After(p.Spec.ProbePeriod):
		}
		bin := p.IPC("forge-manager")
		if _, err := os.Stat(bin); err != nil {
			continue
		}
		if p.probeOnce(bin) {
			fails = 0
			continue
		}
		p.mu.Lock()
		p.probeFails++
		p.mu.Unlock()
		if fails++; fails < max(p.Spec.ProbeFails, 1) {
			continue
		}
		fails = 0
		p.KillContainer("cardano-node", p.Spec.ProbeGrace)
	}
}

// probeOnce runs the probe once; false if it failed or timed out.
func (p *Pod) probeOnce(bin string) bool {
	c := &container{name: "probe", argv: []string{bin, "deadman"}, env: p.SidecarEnv(), uid: p.Spec.NodeUID}
	cmd, err := p.exec(c)
	if err != nil {
		return true // not run: the kubelet would not count it either
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	timeout := p.Spec.ProbeTimeout
	if timeout == 0 {
		timeout = time.Hour
	}
	select {
	case err := <-done:
		return err == nil
	case <-time.After(timeout):
		cmd.Process.Kill()
		<-done
		return false
	}
}

// Run starts argv in the pod's namespaces as uid, outside any container (a
// `kubectl exec`, a debug container): nothing restarts it.
func (p *Pod) Run(uid int, argv ...string) (*exec.Cmd, error) {
	return p.exec(&container{name: "exec", argv: argv, uid: uid})
}

// SetRestartDelay sets how long the kubelet waits before restarting one
// container (a crash-looping container waits longer and longer).
func (p *Pod) SetRestartDelay(name string, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.containers[name]; c != nil {
		c.delay = d
	}
}

// ProbeFailures counts failed dead-man probes.
func (p *Pod) ProbeFailures() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.probeFails
}

// Signal sends sig to a container's process.
func (p *Pod) Signal(name string, sig syscall.Signal) error {
	p.mu.Lock()
	pid := 0
	if c := p.containers[name]; c != nil {
		pid = c.hostPID
	}
	p.mu.Unlock()
	if pid == 0 {
		return fmt.Errorf("pod %s: no running container %s", p.Spec.Name, name)
	}
	return syscall.Kill(pid, sig)
}

// ContainerPID is the host PID of a container's current process.
func (p *Pod) ContainerPID(name string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.containers[name]; c != nil {
		return c.hostPID
	}
	return 0
}

// Restarts counts a container's restarts.
func (p *Pod) Restarts(name string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.containers[name]; c != nil {
		return c.restarts
	}
	return 0
}

// KillContainer stops a container's process like the kubelet: SIGTERM,
// then SIGKILL after grace; it waits for the exit. The restart loop starts
// it again.
func (p *Pod) KillContainer(name string, grace time.Duration) {
	p.mu.Lock()
	c := p.containers[name]
	if c == nil || c.exited == nil || c.hostPID == 0 {
		p.mu.Unlock()
		return
	}
	pid, exited := c.hostPID, c.exited
	p.mu.Unlock()
	syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-exited:
		return
	case <-time.After(grace):
	}
	syscall.Kill(pid, syscall.SIGKILL)
	p.mu.Lock()
	p.continueWrapper(c)
	p.mu.Unlock()
	<-exited
}

// Freeze stops every process of the pod (SIGSTOP); Thaw resumes them.
func (p *Pod) Freeze() { p.signalAll(syscall.SIGSTOP) }
func (p *Pod) Thaw()   { p.signalAll(syscall.SIGCONT) }

func (p *Pod) signalAll(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.containers {
		if c.hostPID != 0 {
			syscall.Kill(c.hostPID, sig)
		}
		if sig == syscall.SIGCONT {
			p.continueWrapper(c)
		}
	}
}

// continueWrapper resumes a container's nsenter. nsenter stops itself when
// its child stops, and then cannot reap the child until resumed, so a
// container killed while frozen would never be seen to exit.
func (p *Pod) continueWrapper(c *container) {
	if c.cmd != nil && c.cmd.Process != nil {
		syscall.Kill(c.cmd.Process.Pid, syscall.SIGCONT)
	}
}

// Partition cuts the pod off the network (its veth goes down); Heal undoes
// it. Packets are dropped, not refused: the pod's requests hang.
func (p *Pod) Partition() error { return exec.Command("ip", "link", "set", p.veth, "down").Run() }
func (p *Pod) Heal() error      { return exec.Command("ip", "link", "set", p.veth, "up").Run() }

// Delete stops the pod like the kubelet does for a pod deletion: SIGTERM to
// every container at once, SIGKILL after the grace period, then the pause
// process and the network namespace. It returns how long the containers
// took to stop.
func (p *Pod) Delete() time.Duration {
	start := time.Now()
	p.mu.Lock()
	p.stopping = true
	var all []*container
	for _, c := range p.containers {
		all = append(all, c)
	}
	p.mu.Unlock()
	close(p.stop)
	var wg sync.WaitGroup
	for _, c := range all {
		wg.Add(1)
		go func() { defer wg.Done(); p.KillContainer(c.name, p.Spec.Grace) }()
	}
	wg.Wait()
	took := time.Since(start)
	p.teardown()
	return took
}

// Kill ends the pod at once: its PID 1 dies and the kernel kills every
// process in the namespace, as when a machine dies.
func (p *Pod) Kill() {
	p.mu.Lock()
	p.stopping = true
	p.mu.Unlock()
	close(p.stop)
	p.teardown()
}

func (p *Pod) teardown() {
	if p.pausePID != 0 {
		syscall.Kill(p.pausePID, syscall.SIGKILL)
	}
	if p.pause != nil && p.pause.Process != nil {
		p.pause.Process.Kill()
	}
	p.mu.Lock()
	for _, c := range p.containers {
		if c.cmd != nil && c.cmd.Process != nil {
			c.cmd.Process.Kill() // nsenter, even stopped, so its Wait returns
			syscall.Kill(c.cmd.Process.Pid, syscall.SIGCONT)
		}
	}
	p.mu.Unlock()
	p.wg.Wait()
	exec.Command("ip", "link", "del", p.veth).Run()
	exec.Command("ip", "netns", "del", p.netns).Run()
}

// Interval is one span of forging by one node incarnation, in CLOCK_MONOTONIC
// nanoseconds; End is 0 while it lasts.
type Interval struct {
	Pod        string
	PID        int
	Start, End int64
}

// ForgingIntervals reads a pod's record: "on" opens an interval, "off" or
// the process's exit closes it. An exit is written by the pod after the
// process is gone, so intervals can only come out longer than they were.
func ForgingIntervals(pod, path string) ([]Interval, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Interval
	open := map[int]int{} // pid -> index in out
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ts int64
		var what string
		var pid int
		if _, err := fmt.Sscanf(sc.Text(), "%d %s %d", &ts, &what, &pid); err != nil {
			continue
		}
		switch what {
		case "on":
			if _, ok := open[pid]; !ok {
				open[pid] = len(out)
				out = append(out, Interval{Pod: pod, PID: pid, Start: ts})
			}
		case "off", "exit":
			if i, ok := open[pid]; ok {
				out[i].End = ts
				delete(open, pid)
			}
		}
	}
	return out, sc.Err()
}
