package main

// The dead-man switch: a heartbeat the sidecar writes every pass, and
// `forge-manager deadman`, the node container's livenessProbe, which fails
// while credentials are in place (or the node may be forging) and the
// heartbeat has run out. A sidecar process that starts in a pod where
// another ran inherits that one's last heartbeat as a promise.
//
// Timing, at the defaults (README has the table): the leader's last renew
// starts at s and its heartbeat says "credentials may stay until s+10s"
// (RENEW_DEADLINE). If the sidecar then freezes or dies, the probe
// (periodSeconds 1, failureThreshold 2, timeoutSeconds 1) fails by s+13s and
// the kubelet kills the node (probe terminationGracePeriodSeconds 1) by
// s+14s, a second (killMargin) before another replica may take the Lease at
// s+15s. The loader checks this budget from DEADMAN_PROBE_* (lease.go).

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// heartbeat is the file the dead-man probe reads. It is the sidecar's
// promise: "until this instant I can stop my node in time myself; after it,
// if the node holds credentials or may be forging, restart it". The instant
// is on CLOCK_BOOTTIME, one clock for every container on the machine and
// one that runs through a suspend, as other machines' clocks do. The record
// names the files it speaks for: the probe runs with the node container's
// environment, which need not name them.
type heartbeat struct {
	path  string
	pod   string
	files []string
	clock func() time.Duration // boottime; tests run a simulated one
}

type heartbeatRecord struct {
	UntilBoottimeNS int64  `json:"until_boottime_ns"`
	Boot            bool   `json:"boot,omitempty"`    // written by init: no sidecar pass yet
	Forging         bool   `json:"forging,omitempty"` // the node may be forging
	NodePID         int    `json:"node_pid,omitempty"`
	NodeStart       uint64 `json:"node_start,omitempty"` // the incarnation it speaks for
	// StopByBoottimeNS is the writer's stopBy: the latest its node may
	// forge, for a successor (0: none, the pod never held the Lease).
	StopByBoottimeNS int64    `json:"stop_by_boottime_ns,omitempty"`
	Leading          bool     `json:"leading,omitempty"` // the writer led: until is its renew deadline
	Files            []string `json:"files"`
	Pod              string   `json:"pod"`
	PID              int      `json:"pid"`
}

func boottime() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	return time.Duration(ts.Nano())
}

// beat is one heartbeat: for how long from now credentials may stay and the
// node forge, whether it may, which incarnation, and, when there is one, how
// long until stopBy (negative: passed).
type beat struct {
	valid, stopIn time.Duration
	stop          bool
	mayForge      bool
	leading       bool
	node          nodeProc
}

// write records a beat. Not fsynced: it matters only while the machine runs.
func (h heartbeat) write(b beat) error {
	if h.path == "" {
		return nil // a replica that never forges promises nothing
	}
	now := h.clock()
	rec := heartbeatRecord{UntilBoottimeNS: int64(now + b.valid), Forging: b.mayForge, Leading: b.leading,
		NodePID: b.node.PID, NodeStart: b.node.Start, Files: h.files, Pod: h.pod, PID: os.Getpid()}
	if b.stop {
		rec.StopByBoottimeNS = int64(now + b.stopIn)
	}
	data, _ := json.Marshal(rec)
	tmp := filepath.Join(filepath.Dir(h.path), "."+filepath.Base(h.path)+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, h.path)
}

// bootHeartbeat is init's record: the keys are in place for the node's
// boot, and no sidecar has run. A node started non-producing cannot forge
// until a sidecar signals it, and a sidecar writes its own record first.
func bootHeartbeat(c *config) []byte {
	b, _ := json.Marshal(heartbeatRecord{Boot: true, Files: targets(credentials(c)), Pod: c.PodName, PID: os.Getpid()})
	return b
}

// heartbeatValidity is how long the probe may leave the node alone:
//   - a node that may forge and that the sidecar cannot stop (it cannot tell
//     which process is the node, or signals fail): not at all; the kubelet
//     restarts the node container, which knows its own process;
//   - a leader: until its renew deadline (dead-man timing above);
//   - a node that may forge after this replica held the Lease: until
//     stopBy less the probe's budget, so a dead sidecar's node is killed
//     before another replica may take over;
//   - anyone else: a lease duration (their keys are there only while the
//     node boots).
//
// A successor process not yet renewed has its predecessor's stopBy (loop.go
// facts), so it promises what its predecessor did.
func heartbeatValidity(now time.Time, n *nodeState, f leadership, probe, lease time.Duration) time.Duration {
	switch {
	case n.mayForge() && n.presence != nodeBooting && (n.presence == nodeAmbiguous || n.signalErr != nil):
		return 0 // a node replaying its ledger (socket not yet open) is not forging
	case f.leading:
		return f.fenceAt.Sub(now)
	case n.mayForge() && !f.stopBy.IsZero():
		return max(f.stopBy.Sub(now)-probe, 0)
	}
	return lease
}

// inheritance is the last heartbeat of a previous sidecar process in this
// pod (a container restart): when that process last renewed is unknown, so
// its promise stands until this one has renewed or seen the node off. It
// also says which node incarnation that process may have enabled: every
// enable is preceded by a heartbeat naming its node as forging.
type inheritance struct {
	active  bool          // the promise still bounds this process
	until   time.Duration // CLOCK_BOOTTIME
	stopBy  time.Duration // CLOCK_BOOTTIME; 0: the record named none
	leading bool          // the writer led: until is its renew deadline
	known   bool          // a previous sidecar process left a record
	node    nodeProc      // zero: unknown (a missing or unreadable record)
	forging bool
}

// inheritFrom reads the heartbeat left at path. init's boot record leaves
// nothing: no sidecar ran, so no node was told to forge. One missing or
// unreadable promised nothing that still holds, and any node may be forging.
func inheritFrom(path string) inheritance {
	b, err := os.ReadFile(path)
	var rec heartbeatRecord
	if err == nil && json.Unmarshal(b, &rec) == nil {
		return inheritance{active: !rec.Boot, known: !rec.Boot, until: time.Duration(rec.UntilBoottimeNS),
			stopBy: time.Duration(rec.StopByBoottimeNS), leading: rec.Leading,
			node:    nodeProc{rec.NodePID, rec.NodeStart},
			forging: rec.Forging || len(rec.Files) == 0} // a record of an older version says nothing: forging
	}
	return inheritance{active: true, known: true, forging: true}
}

// mayHaveEnabled tells whether the previous sidecar process may have
// enabled incarnation p: it did not say so in its last heartbeat otherwise.
// It holds whether or not the promise still bounds this process.
func (in inheritance) mayHaveEnabled(p nodeProc) bool {
	return in.known && in.forging && (in.node == nodeProc{} || in.node == p)
}

// bound limits f by the predecessor's promise. Its own stopBy; one
// that named none never held the Lease, and its promise plus the probe's
// budget bounds the node; a missing record promised nothing: stopBy now.
// A predecessor that led lets this process renew before it disables: the
// hold lasts until its renew deadline less disableWindow, and leaves time
// to disable and confirm before stopBy. A Lease now naming another replica
// ends both: that one may forge already.
func (in *inheritance) bound(f *leadership, now time.Time, clock time.Duration, probe, confirm time.Duration) {
	by := in.until + probe
	if in.stopBy != 0 {
		by = in.stopBy
	}
	stopBy := now.Add(by - clock)
	if f.elsewhere {
		stopBy = now
	}
	if f.stopBy.IsZero() || stopBy.Before(f.stopBy) {
		f.stopBy = stopBy
	}
	f.inherited = true
	if in.leading && !stopBy.Equal(now) {
		f.holdUntil = minTime(now.Add(in.until-clock-disableWindow), f.stopBy.Add(-confirm-disableWindow))
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// runDeadman is the livenessProbe of the node container.
func runDeadman(c *config, w io.Writer) error {
	msg, err := deadman(c.HeartbeatFile, targets(credentials(c)), boottime())
	if err != nil {
		return err
	}
	fmt.Fprintln(w, msg)
	return nil
}

// deadman fails (restart the node) while credentials the heartbeat speaks
// for are present, or the node may be forging, and the heartbeat ran out,
// is missing or is unreadable. fallback are the files to look at without a
// readable heartbeat; now is CLOCK_BOOTTIME.
func deadman(path string, fallback []string, now time.Duration) (string, error) {
	b, err := os.ReadFile(path)
	var rec heartbeatRecord
	if err == nil {
		err = json.Unmarshal(b, &rec)
	}
	files := fallback
	if err == nil && len(rec.Files) > 0 {
		files = rec.Files
	}
	if !anyPresent(files...) && !rec.Forging {
		return "ok: no credentials in place", nil
	}
	switch left := time.Duration(rec.UntilBoottimeNS) - now; {
	case os.IsNotExist(err):
		return "", fmt.Errorf("dead-man: credentials present and no heartbeat at %s (init writes one, the sidecar renews it): restart the node so it comes back non-producing", path)
	case err != nil:
		return "", fmt.Errorf("dead-man: credentials present and heartbeat %s unreadable", path)
	case rec.Boot:
		return "ok: credentials in place for the node's boot; no sidecar pass yet", nil
	case left <= 0: // a validity of 0 has run out at once
		return "", fmt.Errorf("dead-man: the sidecar's heartbeat ran out %s ago with credentials present or the node forging: restart the node so it comes back non-producing", (-left).Round(time.Millisecond))
	}
	return "ok: heartbeat current", nil
}

// deadmanProbe is the node container's livenessProbe as deployed: the
// heartbeat runs out at the leader's fence, and the probe must have the node
// killed within LEASE_DURATION - RENEW_DEADLINE of that.
type deadmanProbe struct {
	period    time.Duration
	threshold int
	timeout   time.Duration
	grace     time.Duration
}

// budget is the latest the kubelet kills the node after the heartbeat ran
// out: the next probe within a period, threshold failures a period apart,
// the last one's timeout, then the probe's termination grace.
func (p deadmanProbe) budget() time.Duration {
	return p.period*time.Duration(p.threshold) + p.timeout + p.grace
}
