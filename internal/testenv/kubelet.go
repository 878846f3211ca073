package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// The kubelet's part: containers run as a numeric UID inside the pod's
// namespaces, restarted when they exit (restartPolicy: Always), and the
// exec livenessProbe on the node container that kills it when
// `forge-manager deadman` fails.

func (p *Pod) nodeContainer() *container {
	hooks := []string{"--record", p.Record(), "--unhealthy-file", p.UnhealthyFile(),
		"--metrics-broken-file", p.BrokenGaugeFile(), "--tip-lag-file", p.TipLagFile(), "--slot-zero", strconv.FormatInt(p.slotZero(), 10)}
	if p.Spec.OwnNodeArgs {
		argv := append(append([]string{p.Spec.Node}, hooks...), p.mapPaths(p.Spec.NodeArgs)...)
		return &container{name: "cardano-node", argv: argv, uid: p.Spec.NodeUID}
	}
	argv := append(append([]string{p.Spec.Node,
		"--shelley-kes-key", p.IPC("kes.skey"), "--shelley-vrf-key", p.IPC("vrf.skey"),
		"--shelley-operational-certificate", p.IPC("node.cert"), "--socket-path", p.IPC("node.socket"),
		"--start-as-non-producing-node"}, hooks...),
		p.Spec.NodeArgs...)
	return &container{name: "cardano-node", argv: argv, uid: p.Spec.NodeUID}
}

// slotZero is the slot origin of the pod's network (CARDANO_NETWORK,
// mainnet by default), so the stand-in's tip is that network's.
func (p *Pod) slotZero() int64 {
	if z, ok := SlotZero[p.Spec.Env["CARDANO_NETWORK"]]; ok {
		return z
	}
	return SlotZero["mainnet"]
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
	p.wg.Go(func() {
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
			if c.name == "cardano-node" {
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
	})
}

// waitChild returns the host PID of nsenter's child (the container's
// process). nsenter forks it at once; if it is gone before it is seen, the
// container exited and 0 is returned.
func waitChild(nsenter int) int {
	for i := 0; i < 10000; i++ { // 10 s: a loaded CI machine forks slowly
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

// continueWrapper resumes a container's nsenter. nsenter stops itself when
// its child stops, and then cannot reap the child until resumed, so a
// container killed while frozen would never be seen to exit.
func (p *Pod) continueWrapper(c *container) {
	if c.cmd != nil && c.cmd.Process != nil {
		syscall.Kill(c.cmd.Process.Pid, syscall.SIGCONT)
	}
}

// probeLoop is the node container's livenessProbe: `forge-manager deadman`
// every ProbePeriod; a run that fails or outlasts ProbeTimeout is a
// failure, and after ProbeFails in a row the node gets SIGTERM and, after
// ProbeGrace, SIGKILL, and is restarted.
func (p *Pod) probeLoop() {
	fails := 0
	for {
		select {
		case <-p.stop:
			return
		case <-time.After(p.Spec.ProbePeriod):
		}
		argv := p.probeCommand()
		if _, err := os.Stat(argv[0]); err != nil {
			continue
		}
		if p.probeOnce(argv) {
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
func (p *Pod) probeOnce(argv []string) bool {
	c := &container{name: "probe", argv: argv, env: p.SidecarEnv(), uid: p.Spec.NodeUID}
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
