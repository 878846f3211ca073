package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The pod's network: a namespace per pod joined to the host by a veth
// pair (10.x.n.1 on the host, 10.x.n.2 in the pod), and the pause process
// that is PID 1 of its PID namespace.

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
	// Its own log, not the test's stderr: unshare says something as it is
	// killed at teardown, which is no news.
	logPath := p.Log("pause")
	logf, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("pause: %w", err)
	}
	defer logf.Close() // the child has its own copy
	p.pause.Stderr = logf
	if err := p.pause.Start(); err != nil {
		return fmt.Errorf("pause: %w", err)
	}
	p.wg.Go(func() { p.pause.Wait() })
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
	return fmt.Errorf("pod %s: pause process did not start (see %s)", p.Spec.Name, logPath)
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

// Partition cuts the pod off the network (its veth goes down); Heal undoes
// it. Packets are dropped, not refused: the pod's requests hang.
func (p *Pod) Partition() error { return exec.Command("ip", "link", "set", p.veth, "down").Run() }

func (p *Pod) Heal() error { return exec.Command("ip", "link", "set", p.veth, "up").Run() }
