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
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

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

	// From a rendered manifest (manifest.go): Mounts maps each mountPath
	// to a pod volume ("ipc", "secrets") and rewrites the paths below and
	// in Env under it; OwnNodeArgs makes NodeArgs the node's whole command
	// line (the pod adds only the stand-in's test hooks: its record and
	// fault files); ProbeCommand is the livenessProbe's exec command.
	Mounts       map[string]string
	OwnNodeArgs  bool
	ProbeCommand []string
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

// TipLagFile holds how many slots the stand-in's tip lags the wall clock.
func (p *Pod) TipLagFile() string { return filepath.Join(p.Dir, "tip-lag") }

// SetTipLag makes the stand-in's tip lag the wall clock by slots.
func (p *Pod) SetTipLag(slots int) error {
	return os.WriteFile(p.TipLagFile(), []byte(strconv.Itoa(slots)), 0o644)
}

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
		p.wg.Go(p.probeLoop)
	}
	return p, nil
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
	if err := p.UpdateSecret(p.Spec.Secrets); err != nil {
		return err
	}
	sa := map[string][]byte{"token": []byte(p.Spec.Tenant.SAToken), "ca.crt": p.Spec.CA, "namespace": []byte(p.Spec.Tenant.Namespace)}
	for name, b := range sa {
		if err := os.WriteFile(filepath.Join(p.Dir, "sa", name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// UpdateSecret writes the pod's Secret volume as the kubelet does (its
// AtomicWriter): the files in a new timestamped directory, a ..data link
// swapped to it by a rename, each name a link to ..data/<name>, and the
// previous generation removed.
func (p *Pod) UpdateSecret(files map[string][]byte) error {
	dir := filepath.Join(p.Dir, "secrets")
	gen := fmt.Sprintf("..%s.%d", time.Now().UTC().Format("2006_01_02_15_04_05"), time.Now().UnixNano())
	if err := os.Mkdir(filepath.Join(dir, gen), 0o755); err != nil {
		return err
	}
	for name, b := range files {
		path := filepath.Join(dir, gen, name)
		if err := os.WriteFile(path, b, 0o400); err != nil {
			return err
		}
		if err := os.Chown(path, p.Spec.UID, p.Spec.UID); err != nil {
			return err
		}
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	if err := os.Symlink(gen, filepath.Join(dir, "..data_tmp")); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		return err
	}
	for name := range files {
		if _, err := os.Lstat(filepath.Join(dir, name)); err != nil {
			if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
				return err
			}
		}
	}
	if old != "" {
		return os.RemoveAll(filepath.Join(dir, old))
	}
	return nil
}

// SidecarEnv is forge-manager's environment in this pod, as the shipped
// StatefulSet sets it (downward API, shared volume paths).
func (p *Pod) SidecarEnv() []string {
	env := map[string]string{
		"POD_NAME": p.Spec.Name, "POD_UID": p.UID, "NAMESPACE": p.Spec.Tenant.Namespace,
		"KUBERNETES_SERVICE_HOST": HostIP(p.Spec.Index), "KUBERNETES_SERVICE_PORT": strconv.Itoa(p.Spec.APIPort),
		"NODE_SOCKET": p.IPC("node.socket"), "HEARTBEAT_FILE": p.IPC("forge-manager.heartbeat"),
		"DEADMAN_BINARY": p.IPC("forge-manager"), "STEP_DOWN_FILE": p.IPC("forge-manager.step-down"),
		"SOURCE_KES_KEY": filepath.Join(p.Dir, "secrets", "kes.skey"), "TARGET_KES_KEY": p.IPC("kes.skey"),
		"SOURCE_VRF_KEY": filepath.Join(p.Dir, "secrets", "vrf.skey"), "TARGET_VRF_KEY": p.IPC("vrf.skey"),
		"SOURCE_OP_CERT": filepath.Join(p.Dir, "secrets", "node.cert"), "TARGET_OP_CERT": p.IPC("node.cert"),
	}
	for k, v := range p.Spec.Env {
		env[k] = p.mapPath(v)
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// Run starts argv in the pod's namespaces as uid, outside any container (a
// `kubectl exec`, a debug container): nothing restarts it.
func (p *Pod) Run(uid int, argv ...string) (*exec.Cmd, error) {
	return p.exec(&container{name: "exec", argv: argv, uid: uid})
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
		wg.Go(func() { p.KillContainer(c.name, p.Spec.Grace) })
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
