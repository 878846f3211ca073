package main

// The forging state machine (forge.go), specified by tables named after the
// invariants they defend (docs/design.md), then the whole pass in the simulated
// world of sim_test.go, one scenario per known path to two forgers.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"path/filepath"

	"golang.org/x/sys/unix"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

var t0 = time.Unix(1000, 0)

// row is a forgeInput for a node that is up, off, with no files and valid
// sources, changed by mods.
func row(mods ...func(*forgeInput)) forgeInput {
	in := forgeInput{now: t0, producer: true, node: nodeUp, state: stateOff, files: filesAbsent, sources: true, confirm: 5 * time.Second,
		fenceAt: t0.Add(10 * time.Second)}
	for _, m := range mods {
		m(&in)
	}
	return in
}

func want(in *forgeInput)     { in.want = true }
func stepDown(in *forgeInput) { in.stepDown = true }
func loaded(in *forgeInput)   { in.loaded = true }
func state(s forgeState) func(*forgeInput) {
	return func(in *forgeInput) { in.state = s }
}
func files(f fileState) func(*forgeInput) { return func(in *forgeInput) { in.files = f } }
func node(p presence) func(*forgeInput)   { return func(in *forgeInput) { in.node = p } }
func sentAgo(d time.Duration) func(*forgeInput) {
	return func(in *forgeInput) { in.sent = in.now.Add(-d) }
}
func stopIn(d time.Duration) func(*forgeInput) {
	return func(in *forgeInput) { in.stopBy = in.now.Add(d) }
}

func TestDecide(t *testing.T) {
	tests := []struct {
		name string
		in   forgeInput
		want action
	}{
		// Invariant 4: unknown is not off.
		{"inv4: a disable from unknown always signals", row(state(stateUnknown)), actDisable},
		{"inv4: an unconfirmed enable left unknown is disabled by signal", row(state(stateUnknown), stopIn(3*time.Second)), actDisable},
		{"inv4: never release while the node may forge", row(stepDown, state(stateUnknown)), actDisable},
		{"inv4: never release while a disable is unconfirmed", row(stepDown, state(stateDisabling), sentAgo(time.Second)), actNone},
		{"inv4: which process is the node cannot be told: touch nothing", row(node(nodeAmbiguous), state(stateUnknown), files(filesCurrent)), actNone},
		{"inv4: ambiguous but certainly off may release", row(node(nodeAmbiguous), stepDown), actRelease},
		{"inv4: a node we cannot see gets no keys", row(node(nodeHidden), state(stateUnknown), files(filesCurrent)), actRemove},
		{"inv4: a node we cannot see is never released", row(node(nodeHidden), state(stateUnknown), stepDown), actNone},
		{"inv4: an ambiguous node that may forge is never released", row(node(nodeAmbiguous), state(stateUnknown), stepDown), actNone},
		{"inv4: a booting node of unknown state is never released", row(node(nodeBooting), state(stateUnknown), files(filesCurrent), stepDown), actNone},
		// Invariant 5: confirm, then escalate.
		{"inv5: files first, SIGHUP after", row(state(stateOn), files(filesCurrent)), actRemove},
		{"inv5: a SIGHUP only once every file is gone: an unlink failed, kill", row(state(stateOn), files(filesOther), func(in *forgeInput) { in.unlinkFailed = true }), actKill},
		{"inv5: an unlink failed but the node is off: nothing to escalate", row(files(filesOther), func(in *forgeInput) { in.unlinkFailed = true }), actNone},
		{"inv5: never held: the whole confirmation timeout", row(state(stateDisabling), sentAgo(4900*time.Millisecond)), actNone},
		{"inv5: never held: killed after the timeout", row(state(stateDisabling), sentAgo(5*time.Second)), actKill},
		{"inv5: held: killed at stopBy, before the timeout", row(state(stateDisabling), sentAgo(100*time.Millisecond), stopIn(0)), actKill},
		{"inv5: held: confirming before stopBy", row(state(stateDisabling), sentAgo(100*time.Millisecond), stopIn(time.Second)), actNone},
		{"inv5: one SIGHUP at a time: a disable waits for the enable in flight", row(state(stateEnabling), sentAgo(100*time.Millisecond), stopIn(3*time.Second)), actNone},
		{"inv5: one SIGHUP at a time, unless the Lease may pass first: kill", row(state(stateEnabling), sentAgo(100*time.Millisecond), stopIn(0)), actKill},
		{"inv5: nothing placed while a disable is in flight", row(want, state(stateDisabling), sentAgo(time.Second)), actNone},
		{"inv5: leading again after an unconfirmed disable: place, then enable", row(want, state(stateDisabling), sentAgo(5*time.Second)), actPlace},
		{"inv5: leading again after an unconfirmed disable, files in place: enable", row(want, state(stateDisabling), sentAgo(5*time.Second), files(filesCurrent)), actEnable},
		// Invariant 6: level-triggered.
		{"inv6: the leader places the files", row(want), actPlace},
		{"inv6: then signals", row(want, files(filesCurrent)), actEnable},
		{"inv1: no enable in the last second before the deadline", row(want, files(filesCurrent), func(in *forgeInput) { in.fenceAt = in.now.Add(time.Second) }), actNone},
		{"inv1: an enable just over a second before the deadline", row(want, files(filesCurrent), func(in *forgeInput) { in.fenceAt = in.now.Add(time.Second + time.Millisecond) }), actEnable},
		{"inv1: an enable still in flight at the deadline: kill, it must not start forging now", row(state(stateEnabling), sentAgo(time.Second), stopIn(3*time.Second), func(in *forgeInput) { in.fenceAt = in.now }), actKill},
		{"inv4: a successor whose node said 0 waits out its predecessor's signal", row(state(stateUnknown), func(in *forgeInput) { in.lastRead, in.unsure = readOff, in.now.Add(time.Second) }), actNone},
		{"inv4: ...unless the Lease may pass first: kill, a disable could be undone by that signal", row(state(stateUnknown), stopIn(3*time.Second), func(in *forgeInput) { in.lastRead, in.unsure = readOff, in.now.Add(time.Second) }), actKill},
		{"inv4: a failed look does not end that wait", row(state(stateUnknown), func(in *forgeInput) { in.lastRead, in.unsure = readNone, in.now.Add(time.Second) }), actNone},
		{"inv4: that signal handled by now: disable", row(state(stateUnknown), stopIn(3*time.Second), func(in *forgeInput) { in.lastRead, in.unsure = readOff, in.now }), actDisable},
		{"inv6: then waits for the confirmation", row(want, files(filesCurrent), state(stateEnabling), sentAgo(time.Second)), actNone},
		{"inv6: forging with these keys: nothing to do", row(want, files(filesCurrent), state(stateOn), loaded), actNone},
		{"inv6: a file removed by hand is put back", row(want, files(filesOther), state(stateOn), loaded), actPlace},
		{"inv6: new keys are loaded by one SIGHUP", row(want, files(filesCurrent), state(stateOn)), actEnable},
		{"inv6: an enable that did not take backs off", row(want, files(filesCurrent), state(stateUnknown), func(in *forgeInput) { in.retryAt = in.now.Add(time.Second) }), actNone},
		{"inv6: a standby's node off, no files: nothing to do", row(), actNone},
		{"inv6: keys for the node's boot", row(node(nodeBooting), files(filesOther)), actPlace},
		{"inv6: no SIGHUP before the socket answers", row(node(nodeBooting), want, files(filesCurrent)), actNone},
		{"inv6: keys for the next node's boot", row(node(nodeAbsent)), actPlace},
		{"inv6: nothing valid to place", row(node(nodeAbsent), func(in *forgeInput) { in.sources = false }), actNone},
		// Invariant 7: graceful handover.
		{"inv7: stepping down with the node off releases", row(stepDown), actRelease},
		{"inv7: stepping down: files first", row(stepDown, files(filesCurrent)), actRemove},
		{"inv7: stepping down with no node releases", row(stepDown, node(nodeAbsent), files(filesCurrent)), actRelease},
		{"inv7: a relay never touches its node", row(state(stateUnknown), files(filesCurrent), func(in *forgeInput) { in.producer = false }), actNone},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := decide(tc.in); got != tc.want {
				t.Errorf("decide = %s; want %s", got, tc.want)
			}
		})
	}
}

// TestConfirm: what a gauge reading does to the state (invariants 4, 5).
func TestConfirm(t *testing.T) {
	window := 5 * time.Second
	tests := []struct {
		name  string
		n     nodeState
		r     reading
		after time.Duration // since the signal
		want  forgeState
	}{
		{"inv5: an enable confirmed by the gauge going to 1", nodeState{state: stateEnabling, before: readOff}, readOn, 100 * time.Millisecond, stateOn},
		{"inv5: an enable not yet confirmed", nodeState{state: stateEnabling, before: readOff}, readNone, time.Second, stateEnabling},
		{"inv5: a 1 after an enable sent at 1 (new keys, #6113) proves nothing yet", nodeState{state: stateEnabling, before: readOn}, readOn, time.Second, stateEnabling},
		{"inv5: a 1 after an enable sent at 1, once the window passed", nodeState{state: stateEnabling, before: readOn}, readOn, window, stateOn},
		{"inv4: an enable delivered, never confirmed, is unknown, not off", nodeState{state: stateEnabling, before: readOff, fresh: true}, readNone, window, stateUnknown},
		{"inv4: a 0 inside the window after an enable is not trusted", nodeState{state: stateEnabling, before: readOff}, readOff, time.Second, stateEnabling},
		{"inv4: a 0 when the window ends leaves the enable unknown", nodeState{state: stateEnabling, before: readOff}, readOff, window, stateUnknown},
		{"inv5: a disable confirmed by the gauge going to 0", nodeState{state: stateDisabling, before: readOn}, readOff, 100 * time.Millisecond, stateOff},
		{"inv5: a 0 after a disable sent at 0 proves nothing yet", nodeState{state: stateDisabling, before: readOff}, readOff, time.Second, stateDisabling},
		{"inv5: a 0 after a disable sent at 0, once the window passed", nodeState{state: stateDisabling, before: readOff}, readOff, window, stateOff},
		{"inv4: a successor's disable 1 -> 0 inside unsure confirms nothing yet", nodeState{state: stateDisabling, before: readOn, unsure: t0.Add(time.Second)}, readOff, 100 * time.Millisecond, stateDisabling},
		{"inv4: a successor's enable 0 -> 1 inside unsure confirms nothing yet", nodeState{state: stateEnabling, before: readOff, unsure: t0.Add(time.Second)}, readOn, 100 * time.Millisecond, stateEnabling},
		{"inv4: a successor's enable sent after unsure against a 0 read inside it confirms nothing yet", nodeState{state: stateEnabling, before: readOff, beforeAt: t0.Add(-time.Second), unsure: t0.Add(-time.Second / 2)}, readOn, 100 * time.Millisecond, stateEnabling},
		{"inv4: a successor's enable against a 0 read after unsure: confirmed by the change", nodeState{state: stateEnabling, before: readOff, beforeAt: t0, unsure: t0.Add(-time.Second / 2)}, readOn, 100 * time.Millisecond, stateOn},
		{"inv4: a successor's enable sent inside unsure, once the window passed", nodeState{state: stateEnabling, before: readOff, unsure: t0.Add(time.Second)}, readOn, window, stateOn},
		{"inv4: a successor's 0 inside unsure is not off", nodeState{state: stateUnknown, unsure: t0.Add(time.Second)}, readOff, 100 * time.Millisecond, stateUnknown},
		{"inv5: a disable not confirmed stays disabling (decide escalates)", nodeState{state: stateDisabling, before: readOn}, readOn, window, stateDisabling},
		{"inv4: a 1 before our first signal is not an enable: unknown", nodeState{state: stateOff, fresh: true}, readOn, 0, stateUnknown},
		{"inv4: a node found running says 1: on", nodeState{state: stateUnknown}, readOn, 0, stateOn},
		{"inv4: a node found running says 0: off", nodeState{state: stateUnknown}, readOff, 0, stateOff},
		{"inv4: an unreadable gauge resolves nothing", nodeState{state: stateUnknown}, readNone, 0, stateUnknown},
		{"inv4: an off node stays off without a signal", nodeState{state: stateOff, signalled: true}, readNone, 0, stateOff},
		{"inv6: a node that stopped forging on its own is off", nodeState{state: stateOn, signalled: true}, readOff, 0, stateOff},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := tc.n
			n.sent = t0
			n.confirm(tc.r, t0.Add(tc.after), window)
			if n.state != tc.want {
				t.Errorf("state %s; want %s", n.state, tc.want)
			}
		})
	}
}

// pair is two replicas, bp-0 leading and forging.
func pair(t *testing.T, kv ...string) (*world, *replica) {
	t.Helper()
	w := newWorld(t)
	a := w.add("bp-0", kv...)
	w.add("bp-1", kv...)
	if w.settle(40*time.Second) != "bp-0" {
		t.Fatal("bp-0 did not lead")
	}
	return w, a
}

// TestSimOneForger: three replicas settle on exactly one forger and stay.
func TestSimOneForger(t *testing.T) {
	w := newWorld(t)
	for _, name := range []string{"bp-0", "bp-1", "bp-2"} {
		w.add(name)
	}
	leader := w.settle(40 * time.Second)
	w.run(time.Minute)
	if f := w.forgers(); len(f) != 1 || f[0] != leader {
		t.Errorf("forgers %v; want only %s", f, leader)
	}
	w.noOverlap()
}

// TestInvariant2LeaseDeletedByHand: `kubectl delete lease` while a leader
// forges (the 1.55s overlap of the issue): the leader recreates it and keeps
// forging; nobody else starts. Partitioned, it cannot: the standby waits a
// full LEASE_DURATION of "missing", by which time the leader has stopped.
func TestInvariant2LeaseDeletedByHand(t *testing.T) {
	for _, cut := range []bool{false, true} {
		name := map[bool]string{false: "leader renewing", true: "leader cut off"}[cut]
		t.Run(name, func(t *testing.T) {
			w := newWorld(t)
			w.add("bp-0")
			w.add("bp-1")
			leader := w.settle(40 * time.Second)
			w.rep(leader).api.down = cut
			w.leases.delete()
			w.run(40 * time.Second)
			w.noOverlap()
			if f := w.forgers(); !cut && (len(f) != 1 || f[0] != leader) {
				t.Errorf("forgers %v after the deletion; want %s, still", f, leader)
			}
			if f := w.forgers(); cut && (len(f) != 1 || f[0] == leader) {
				t.Errorf("forgers %v; want the other replica, once the cut-off leader stopped", f)
			}
		})
	}
}

// TestInvariant4UnconfirmedEnableThroughAFailover: the node's gauge stops
// answering just as the leader's enable is delivered (the node forges), and
// then the leader is cut off. The enable is unknown, not off: the fenced
// leader signals the disable and, unable to confirm it, kills its node
// before the standby may take over.
func TestInvariant4UnconfirmedEnableThroughAFailover(t *testing.T) {
	w := newWorld(t)
	a := w.add("bp-0")
	a.node.onSignal = func(sig unix.Signal) {
		if sig == unix.SIGHUP && a.node.gaugeErr == nil {
			a.node.gaugeErr = os.ErrDeadlineExceeded // the metrics endpoint hangs from now on
			a.api.down = true
		}
	}
	w.add("bp-1")
	w.run(90 * time.Second)
	w.noOverlap()
	if !a.node.forgedOnce() {
		t.Fatal("the scenario did not happen: bp-0 never forged")
	}
	w.onlyForger("bp-1")
	if got := a.node.delivered(0); got != "hup hup kill" {
		t.Errorf("bp-0's signals %q: want the enable, the disable SIGHUP, then a kill", got)
	}
}

// TestInvariant4SecondNodeProcess: another process named cardano-node in
// the leader's pod (kubectl exec cardano-node --version, a debug container)
// does not make the node "gone": the tracked incarnation stays the node, the
// leader keeps forging and keeps the Lease.
func TestInvariant4SecondNodeProcess(t *testing.T) {
	w := newWorld(t)
	w.add("bp-0")
	w.add("bp-1")
	leader := w.settle(40 * time.Second)
	l := w.rep(leader)
	l.node.extras = []nodeProc{{PID: 999, Start: 1}}
	w.run(30 * time.Second)
	l.node.extras = nil
	w.run(10 * time.Second)
	w.noOverlap()
	if f := w.forgers(); len(f) != 1 || f[0] != leader || w.leases.holder() != leader+"_uid" {
		t.Errorf("forgers %v, holder %s; want %s, undisturbed", f, w.leases.holder(), leader)
	}
	if l.node.kills+l.node.probeKill != 0 {
		t.Errorf("the leader's node was killed (%d by the sidecar, %d by the probe)", l.node.kills, l.node.probeKill)
	}
}

// TestInvariant4AmbiguityAfterSidecarRestart: the leader's sidecar restarts
// while a second cardano-node runs: it cannot tell which is its node, so it
// neither signals nor releases; its heartbeat lets the probe restart the
// node container, and nobody forges twice.
func TestInvariant4AmbiguityAfterSidecarRestart(t *testing.T) {
	w := newWorld(t)
	w.add("bp-0")
	w.add("bp-1")
	leader := w.settle(40 * time.Second)
	l := w.rep(leader)
	l.node.extras = []nodeProc{{PID: 999, Start: 1}}
	w.startSidecar(l)
	before := len(l.node.sent)
	w.run(20 * time.Second)
	if got := l.node.delivered(before); strings.Contains(got, "hup") {
		t.Errorf("signals %q: a SIGHUP was sent without knowing which process is the node", got)
	}
	l.node.extras = nil
	w.run(40 * time.Second)
	w.noOverlap()
	if f := w.forgers(); len(f) != 1 {
		t.Errorf("forgers %v; want one", f)
	}
}

// TestInvariant1FenceBeforeAnyAPICall: a leader cut off from the API
// server disables forging at its deadline before any further call, and no
// call runs past the moment its node must have stopped; also when looking
// at the node takes a second and a half of each pass (a slow gauge).
func TestInvariant1FenceBeforeAnyAPICall(t *testing.T) {
	for _, lag := range []time.Duration{0, 1500 * time.Millisecond} {
		t.Run(fmt.Sprint("gauge read ", lag), func(t *testing.T) { fenceBeforeAnyAPICall(t, lag) })
	}
}

func fenceBeforeAnyAPICall(t *testing.T, lag time.Duration) {
	w, a := pair(t)
	f := a.s.el.facts(w.clock.now())
	var violations []string
	a.api.check = func(ctx context.Context, op string) {
		now := w.clock.now()
		n := &a.s.node.n
		if !now.Before(f.fenceAt) && inspect(a.s.keys.creds, a.s.sources) != filesAbsent && n.presence == nodeUp && n.mayForge() {
			violations = append(violations, op+" with the keys in place "+now.Sub(f.fenceAt).String()+" past the deadline")
		}
		if dl, ok := ctx.Deadline(); ok && a.s.node.n.mayForge() && now.Add(time.Until(dl)).After(f.stopBy.Add(10*time.Millisecond)) {
			violations = append(violations, op+" may run past stopBy")
		}
	}
	a.node.gaugeLag = lag
	a.api.down = true
	w.run(30 * time.Second)
	if len(violations) > 0 {
		t.Errorf("%d violations, first: %s", len(violations), violations[0])
	}
	w.noOverlap()
}

// TestInvariant5OvertakingDisable: an enable takes a second to handle, and
// the leader steps down 100 ms after sending it. cardano-node runs each
// SIGHUP on its own thread and the last to finish wins: a disable sent at
// once would finish first and the enable would win. One SIGHUP at a time.
func TestInvariant5OvertakingDisable(t *testing.T) {
	w := newWorld(t)
	a := w.add("bp-0")
	a.node.hupDelay = func(n int) time.Duration {
		if n == 1 {
			return time.Second
		}
		return 20 * time.Millisecond
	}
	a.node.onSignal = func(sig unix.Signal) {
		if sig == unix.SIGHUP && a.node.hups == 1 {
			os.Remove(a.cfg.SourceKES) // the Secret breaks: not eligible from the next pass
		}
	}
	w.add("bp-1")
	w.run(60 * time.Second)
	w.noOverlap()
	if !a.node.forgedOnce() {
		t.Fatal("the scenario did not happen: bp-0's enable never took")
	}
	if a.node.on {
		t.Error("bp-0's node forges at the end")
	}
}

// TestInvariant5UnlinkFailedKills: a leader stepping down cannot remove a
// key file: a SIGHUP then would enable, so the node is killed instead.
func TestInvariant5UnlinkFailedKills(t *testing.T) {
	w, a := pair(t)
	os.Remove(a.cfg.TargetKES)
	os.Mkdir(a.cfg.TargetKES, 0o700) // cannot be unlinked, nor written over
	os.WriteFile(a.cfg.TargetKES+"/x", nil, 0o600)
	before := len(a.node.sent)
	os.Remove(a.cfg.SourceVRF) // not eligible: step down
	w.run(5 * time.Second)
	if after := a.node.delivered(before); strings.Contains(after, "hup") || !strings.Contains(after, "kill") {
		t.Errorf("signals after the failed unlink: %q; want a kill and no SIGHUP", after)
	}
	w.noOverlap()
}

// TestInvariant5NeverHeldWaitsTheTimeout: a standby whose node's gauge reads
// 1 at boot (cardano-node #6113) disables it by SIGHUP and gives it the
// whole SIGHUP_CONFIRM_TIMEOUT: each kill costs a ledger replay.
func TestInvariant5NeverHeldWaitsTheTimeout(t *testing.T) {
	w := newWorld(t)
	w.add("bp-0")
	leader := w.settle(40 * time.Second)
	b := w.add("bp-1")
	b.node.boot1 = true
	b.node.hupDelay = func(int) time.Duration { return 2 * time.Second }
	w.run(20 * time.Second)
	if b.node.kills != 0 || b.node.hups == 0 {
		t.Errorf("standby's node: %d SIGHUPs, %d kills; want disabled by SIGHUP, not killed", b.node.hups, b.node.kills)
	}
	if f := w.forgers(); len(f) != 1 || f[0] != leader {
		t.Errorf("forgers %v; want %s", f, leader)
	}
}

// TestSignalFailureHandsOver: a replica whose signals fail (not EPERM:
// pidfd_open and kill both refused) cannot disable its node, so it is not
// eligible: one that fails from the start never leads; a leader whose
// signals start failing stops renewing, the probe has its node restarted,
// and the standby takes over.
func TestSignalFailureHandsOver(t *testing.T) {
	t.Run("from the start", func(t *testing.T) {
		w := newWorld(t)
		a := w.add("bp-0")
		a.node.signalErr = unix.EINVAL
		w.add("bp-1")
		if got := w.settle(40 * time.Second); got != "bp-1" {
			t.Errorf("forger %s; want bp-1", got)
		}
	})
	t.Run("while leading", func(t *testing.T) {
		w, a := pair(t)
		a.node.signalErr = unix.EINVAL
		w.run(60 * time.Second)
		w.noOverlap()
		w.onlyForger("bp-1")
	})
}

// TestInvariant1DeadSidecar: the leader's sidecar dies; its heartbeat runs
// out at the renew deadline and the dead-man probe has the node killed
// before the standby may take over.
func TestInvariant1DeadSidecar(t *testing.T) {
	w, a := pair(t)
	a.stopped = true
	w.run(40 * time.Second)
	w.noOverlap()
	if a.node.probeKill == 0 {
		t.Error("the dead-man probe did not kill the orphaned node")
	}
	w.onlyForger("bp-1")
}

// TestInvariant7Handover: on SIGTERM the leader disables, confirms and
// releases; the standby takes over at its next look.
func TestInvariant7Handover(t *testing.T) {
	w, a := pair(t)
	a.stopped = true
	a.s.shutdown()
	if a.node.on || w.leases.holder() != "" {
		t.Fatalf("after shutdown: node forging %v, holder %q; want off and released", a.node.on, w.leases.holder())
	}
	from := w.clock.now()
	w.run(3 * time.Second)
	if f := w.forgers(); len(f) != 1 || f[0] != "bp-1" {
		t.Errorf("forgers %v %s after the handover; want bp-1", f, w.clock.now().Sub(from))
	}
	w.noOverlap()
}

// TestInvariant7NoReleaseAfterFailedKill: a node that ignores the disable
// and cannot be killed keeps the Lease with it: it expires, never released.
func TestInvariant7NoReleaseAfterFailedKill(t *testing.T) {
	w := newWorld(t)
	a := w.add("bp-0")
	if w.settle(40*time.Second) != "bp-0" {
		t.Fatal("bp-0 did not lead")
	}
	a.node.wedged, a.node.killErr = true, unix.EPERM
	a.stopped = true
	a.s.shutdown()
	if w.leases.holder() != "bp-0_uid" {
		t.Errorf("holder %q after a shutdown whose kill failed; want the Lease kept (it expires)", w.leases.holder())
	}
}

// TestInvariant7RelayNeverSignals: a relay's sidecar never signals or kills
// its node, not even on shutdown with the node's state unknown.
func TestInvariant7RelayNeverSignals(t *testing.T) {
	w := newWorld(t)
	r := w.add("relay-0", "APPLICATION_TYPE", "relay")
	w.run(10 * time.Second)
	r.stopped = true
	r.s.shutdown()
	if got := r.node.delivered(0); got != "" {
		t.Errorf("a relay's sidecar sent %q", got)
	}
}

// TestInvariant7FencedLeaderLeavesTheStatus: a leader cut off, fenced and
// replaced, stopped after the partition healed, does not write the
// CardanoLeader status: it would overwrite the new leader's.
func TestInvariant7FencedLeaderLeavesTheStatus(t *testing.T) {
	w, a := pair(t)
	a.api.down = true
	w.run(40 * time.Second)
	if st := w.leaders.obj.Status; st.LeaderPod != "bp-1" {
		t.Fatalf("status names %q; want bp-1 after the failover", st.LeaderPod)
	}
	a.api.down, a.stopped = false, true
	patches := len(w.leaders.patches)
	a.s.shutdown()
	for _, p := range w.leaders.patches[patches:] {
		if p.LeaderPod == "bp-0" {
			t.Errorf("the fenced ex-leader wrote the status: %+v", p)
		}
	}
}

// TestTroubleIsWarnedOnce: a replica whose every Lease call is refused (a
// broken RoleBinding) says so at WARN once when it starts and once when it
// ends, not on every pass and not only at DEBUG.
func TestTroubleIsWarnedOnce(t *testing.T) {
	w := newWorld(t)
	a := w.add("bp-0")
	w.leases.before = func(string) error {
		return apierrors.NewForbidden(leaseResource, "lease", os.ErrPermission)
	}
	w.run(20 * time.Second)
	w.leases.before = nil
	w.run(5 * time.Second)
	var starts, ends int
	for _, line := range strings.Split(a.log.String(), "\n") {
		if !strings.Contains(line, `"level":"WARN"`) {
			continue
		}
		if strings.Contains(line, "Lease API calls failing") {
			starts++
		}
		if strings.Contains(line, "Lease API calls working again") {
			ends++
		}
	}
	if starts != 1 || ends != 1 {
		t.Errorf("WARN lines: %d at the start, %d at the end; want 1 and 1", starts, ends)
	}
}

// TestMissingLeaseAtFirstStart: a new pool waits one LEASE_DURATION before
// its first Lease (a missing Lease is an unreleased one).
func TestMissingLeaseAtFirstStart(t *testing.T) {
	w := newWorld(t)
	w.add("bp-0")
	w.run(14 * time.Second)
	if len(w.forgers()) != 0 || w.leases.l != nil {
		t.Fatal("a Lease was created before it was seen missing for LEASE_DURATION")
	}
	w.settle(10 * time.Second)
}

// TestInvariant7LostReleaseReply: a release whose reply is lost may have
// landed: the replica does not count itself leader after sending it, even
// when it is eligible again at once, and leads again only by a write of its
// own. Without the watch: with it, bp-0 sees its own release at once
// (TestWatchSeesOwnRelease), and the simulated world cannot tell which of
// the two sees it first.
func TestInvariant7LostReleaseReply(t *testing.T) {
	w, a := pair(t, "LEASE_WATCH", "false")
	vrf, _ := os.ReadFile(a.cfg.SourceVRF)
	a.api.after = func(string) {
		if w.leases.holder() == "" { // the release landed: bp-0 is healthy again at once
			putSecret(t, a.cfg.SourceVRF, vrf)
			a.api.after = nil
		}
	}
	a.node.onSignal = func(sig unix.Signal) {
		if sig == unix.SIGHUP {
			a.api.lose = "update" // the release after this disable loses its reply
		}
	}
	os.Remove(a.cfg.SourceVRF) // not eligible: step down and release
	w.run(30 * time.Second)
	w.noOverlap()
	if w.leases.holder() != "bp-1_uid" {
		t.Errorf("holder %q; want bp-1, which took the released Lease", w.leases.holder())
	}
}

// TestInvariant5NewKeysThenStepDown: new keys loaded into a forging node
// (one SIGHUP; the gauge already reads 1, so a 1 proves nothing) and the
// leader steps down 100 ms later: the disable waits for the reload's
// window, or the reload, finishing last, would enable the node again.
func TestInvariant5NewKeysThenStepDown(t *testing.T) {
	w, a := pair(t)
	reload := a.node.hups + 1
	a.node.hupDelay = func(n int) time.Duration {
		if n == reload {
			return 3 * time.Second // longer than the standby takes to step in
		}
		return 20 * time.Millisecond
	}
	a.node.onSignal = func(sig unix.Signal) {
		if sig == unix.SIGHUP && a.node.hups == reload {
			os.Remove(a.cfg.SourceVRF) // and the Secret breaks right after
		}
	}
	rotate(t, a.cfg, "rotated")
	w.run(30 * time.Second)
	w.noOverlap()
	if a.node.on {
		t.Error("bp-0's node forges at the end")
	}
}

// TestInvariant1RestartedSidecarKeepsThePromise: the leader's sidecar
// dies right after a renew and its replacement starts 10.8 s later, cut off
// from the API server, with the node's gauge unreadable: it cannot renew
// nor confirm, and does not know when its pod last renewed. It keeps the old
// process's promise to the dead-man probe (renew + 10 s) and kills the
// wedged node by it, not 5 s after its own disable, which would be after the
// standby took over at renew + 15 s.
func TestInvariant1RestartedSidecarKeepsThePromise(t *testing.T) {
	w, a := pair(t)
	nextRenew(w, a)
	a.stopped = true
	w.run(10800 * time.Millisecond)
	a.api.down = true
	a.node.gaugeErr, a.node.wedged = os.ErrDeadlineExceeded, true // nothing confirms, and only a kill disables
	w.startSidecar(a)
	w.run(40 * time.Second)
	w.noOverlap()
	w.onlyForger("bp-1")
}

// TestInvariant1HeartbeatFailureIsIneligible: a sidecar that cannot write
// its heartbeat leaves the dead-man probe blind: it hands over, and a new
// one never enables before its first heartbeat is on disk.
func TestInvariant1HeartbeatFailureIsIneligible(t *testing.T) {
	w, a := pair(t)
	tmp := filepath.Join(filepath.Dir(a.cfg.HeartbeatFile), "."+filepath.Base(a.cfg.HeartbeatFile)+".tmp")
	os.Mkdir(tmp, 0o700) // the heartbeat's temporary file cannot be created
	from := w.clock.now()
	w.runUntil(20*time.Second, "bp-1 forging", func() bool { f := w.forgers(); return len(f) == 1 && f[0] == "bp-1" })
	if took := w.clock.now().Sub(from); took > 5*time.Second {
		t.Errorf("bp-1 forged %s after bp-0 lost its heartbeat; want a handover (bp-0 not eligible), not an expiry", took)
	}
	w.noOverlap()
}

// TestInvariant4UnreadableProcIsNotGone: /proc unreadable while the leader
// tracks its node: "cannot tell" is not "node gone"; the Lease is not
// released while the node may forge.
func TestInvariant4UnreadableProcIsNotGone(t *testing.T) {
	w, a := pair(t)
	a.node.procErr, a.node.noSocket = os.ErrPermission, true // and its socket is busy: nothing says "node up"
	w.run(40 * time.Second)
	w.noOverlap()
	if strings.Contains(a.log.String(), "released the Lease") && a.node.on {
		t.Error("bp-0 released the Lease with its node forging")
	}
}

// TestInvariant5NoGaugeOneSignalAtATime: without a gauge
// (NODE_METRICS_URL="") a delivered signal counts, but a disable still waits
// for the window of an enable in flight: SIGTERM right after the enable.
func TestInvariant5NoGaugeOneSignalAtATime(t *testing.T) {
	w := newWorld(t)
	for _, name := range []string{"bp-0", "bp-1"} {
		w.add(name, "NODE_METRICS_URL", "", "MAX_TIP_LAG", "0").node.slowOn = time.Second
	}
	var l *replica
	w.runUntil(40*time.Second, "an enable", func() bool {
		for _, r := range w.reps {
			if r.s.node.n.state == stateEnabling {
				l = r
			}
		}
		return l != nil
	})
	l.stopped = true
	l.s.shutdown()
	w.run(20 * time.Second)
	w.noOverlap()
}

// TestInvariant7NoGaugeReleaseWaitsForTheDisable: without a gauge a
// delivered disable counts only once its window has passed; released at
// once, a standby could enable while the old node still handles it.
func TestInvariant7NoGaugeReleaseWaitsForTheDisable(t *testing.T) {
	w := newWorld(t)
	w.add("bp-0", "NODE_METRICS_URL", "", "MAX_TIP_LAG", "0")
	w.add("bp-1", "NODE_METRICS_URL", "", "MAX_TIP_LAG", "0")
	l := w.rep(w.settle(40 * time.Second))
	w.run(3 * time.Second)
	settled := l.node.hups
	l.node.hupDelay = func(n int) time.Duration {
		if n > settled {
			return time.Second // the disable takes a second to handle
		}
		return 20 * time.Millisecond
	}
	l.stopped = true
	l.s.shutdown()
	w.run(20 * time.Second)
	w.noOverlap()
}

// TestInvariant1EnableWritesTheHeartbeatFirst: a standby takes over,
// enables, and its sidecar dies before the pass's heartbeat: the record on
// disk must already be the leader's (until its renew deadline), not the
// standby's last one (a lease duration), or the probe would leave the node
// forging after a third replica took over.
func TestInvariant1EnableWritesTheHeartbeatFirst(t *testing.T) {
	w := newWorld(t)
	for _, name := range []string{"bp-0", "bp-1", "bp-2"} {
		w.add(name)
	}
	leader := w.settle(40 * time.Second)
	w.run(3 * time.Second)
	var died *replica
	for _, r := range w.reps {
		if r.name == leader {
			continue
		}
		r.node.onSignal = func(sig unix.Signal) {
			if sig == unix.SIGHUP && died == nil && inspect(r.s.keys.creds, r.s.sources) == filesCurrent {
				died, r.stopped = r, true // the enable is out; the process dies now...
				tmp := filepath.Join(filepath.Dir(r.cfg.HeartbeatFile), "."+filepath.Base(r.cfg.HeartbeatFile)+".tmp")
				os.Mkdir(tmp, 0o700) // ...so nothing it would write after lands
			}
		}
	}
	l := w.rep(leader)
	l.stopped, l.node.delay = true, time.Hour
	l.node.die(w.clock.now()) // the leader's pod is lost for good
	w.run(60 * time.Second)
	if died == nil {
		t.Fatal("the scenario did not happen: no standby enabled")
	}
	w.noOverlap()
}

// TestInvariant4RestartedSidecarDoesNotTrustAnEarlyZero: the first
// leader's sidecar sends its enable, which takes two seconds to handle, and
// dies; its successor, cut off from the API, reads 0 while the enable is in
// flight. That 0 is not "off" (the successor would drop its predecessor's
// promise with it): not before the confirmation window of the
// predecessor's last signal has passed.
func TestInvariant4RestartedSidecarDoesNotTrustAnEarlyZero(t *testing.T) {
	for _, disable := range []time.Duration{20 * time.Millisecond, 3 * time.Second} {
		t.Run(fmt.Sprint("disable takes ", disable), func(t *testing.T) {
			w := newWorld(t)
			var died *replica
			for _, name := range []string{"bp-0", "bp-1"} {
				r := w.add(name)
				r.node.hupDelay = func(n int) time.Duration {
					return map[int]time.Duration{1: 2 * time.Second, 2: disable}[n] + 20*time.Millisecond
				}
				r.node.onSignal = func(sig unix.Signal) {
					if sig == unix.SIGHUP && died == nil {
						died, r.stopped, r.api.down = r, true, true // the enable is out; the sidecar dies, the API out of reach
					}
				}
			}
			w.runUntil(40*time.Second, "the first enable", func() bool { return died != nil })
			w.run(300 * time.Millisecond)
			w.startSidecar(died)
			w.run(40 * time.Second)
			w.noOverlap()
		})
	}
}

// TestInvariant1NoEnableAfterTheFence: the files took long to place
// (fsync stalls); by the time the enable would go, the renew deadline has
// passed: it does not go.
func TestInvariant1NoEnableAfterTheFence(t *testing.T) {
	w := newWorld(t)
	a := w.add("bp-0")
	if w.settle(40*time.Second) != "bp-0" {
		t.Fatal("bp-0 did not lead")
	}
	f := a.s.facts(w.clock.now())
	in := a.s.forgeInput(w.clock.now(), f, "")
	w.clock.setTo(f.fenceAt) // placing the files took until the deadline
	hups := a.node.hups
	if a.s.perform(context.Background(), w.clock.now(), f, in, actEnable, "") || a.node.hups != hups {
		t.Error("an enable went out after the renew deadline")
	}
}

// TestInvariant2PrunerIsNotLedThrough: something deletes the Lease right
// after every write, so no replica ever sees another's record; no
// Lease-based election survives that (two creates both succeed). What the
// limit buys: a leader recreates its Lease at once only once per
// LEASE_DURATION, so replicas do not go on "recreating" their own and
// leading side by side: overlaps stay brief (a renew interval and a
// disable) instead of lasting. The README lists the pruner as a limit.
func TestInvariant2PrunerIsNotLedThrough(t *testing.T) {
	w := newWorld(t)
	w.add("bp-0")
	w.add("bp-1")
	w.settle(40 * time.Second)
	from := w.clock.now()
	w.leases.afterWrite = w.leases.delete
	w.run(90 * time.Second)
	var total time.Duration
	for _, o := range w.overlapSpans(from) {
		total += o
	}
	if total > 2*time.Second {
		t.Errorf("two nodes forged at once for %s in 90 s under the pruner; want brief overlaps only", total)
	}
}

// TestInvariant4SuccessorDisableInsideUnsure: the leader's sidecar loads new
// keys into its forging node (a reload that takes 3 s to handle) and dies;
// its successor cannot renew and disables. The disable's 1 -> 0 comes while
// the predecessor's reload is in flight: it confirms nothing until the
// window has passed, or the successor would take the node for off, drop
// the inherited promise, and the reload, finishing last, would forge on.
func TestInvariant4SuccessorDisableInsideUnsure(t *testing.T) {
	w, a := pair(t)
	a.node.slowOn = 3 * time.Second
	a.node.onSignal = func(sig unix.Signal) {
		switch {
		case sig != unix.SIGHUP:
		case !a.stopped:
			a.stopped = true // the reload is out; the sidecar dies
			a.api.refuse = apierrors.NewServiceUnavailable("busy")
		case a.api.refuse != nil:
			a.api.refuse, a.api.down = nil, true // the successor's disable is out; from now on calls hang
		}
	}
	rotate(t, a.cfg, "rotated")
	w.runUntil(10*time.Second, "the reload", func() bool { return a.stopped })
	w.run(300 * time.Millisecond)
	w.startSidecar(a)
	w.run(40 * time.Second)
	w.noOverlap()
}

// TestInvariant1NoEnableCloseToTheDeadline: renews are refused and new keys
// arrive 8 s after the last renew: a reload then (its window 5 s) would
// still be in flight at the deadline, when the disable must wait for it.
// It is not sent; at the deadline the node is disabled at once.
func TestInvariant1NoEnableCloseToTheDeadline(t *testing.T) {
	w, a := pair(t)
	fence := nextRenew(w, a)
	a.api.refuse = apierrors.NewServiceUnavailable("busy")
	a.node.slowOn = 3 * time.Second
	w.runUntil(10*time.Second, "8 s after the renew", func() bool { return !w.clock.now().Before(fence.Add(-2 * time.Second)) })
	rotate(t, a.cfg, "rotated")
	w.run(20 * time.Second)
	for _, sp := range a.node.spans {
		if end := w.end(sp); end.After(fence.Add(200 * time.Millisecond)) {
			t.Errorf("bp-0's node forged until %s after its renew deadline", end.Sub(fence))
		}
	}
	w.noOverlap()
}

// TestInvariant1NeverHeldDisablesBeforeAnyCall: a replica that never held
// the Lease finds its node forging (here a node that was not started
// non-producing): it disables before its election step, which may hang for
// API_TIMEOUT.
func TestInvariant1NeverHeldDisablesBeforeAnyCall(t *testing.T) {
	w := newWorld(t)
	w.add("bp-0")
	w.settle(40 * time.Second)
	b := w.add("bp-1")
	b.node.boot1 = true // not fresh, so a 1 is believed: on
	var late []string
	b.api.check = func(ctx context.Context, op string) {
		if b.s.node.n.state == stateOn {
			late = append(late, op)
		}
	}
	b.api.down = true
	w.run(20 * time.Second)
	if len(late) > 0 {
		t.Errorf("%d API calls (%v) made while the node was known forging and not yet disabled", len(late), late[0])
	}
	w.noOverlap()
}

// TestSlowRenewsStillForge: every Lease write takes 4.2 s (an API server
// under load, still inside API_TIMEOUT), and the leader's node dies for
// good: the standby's takeover and renews are all that slow, and it still
// enables: the pool forges.
func TestSlowRenewsStillForge(t *testing.T) {
	w, a := pair(t)
	for _, r := range w.reps {
		r.api.lag = 4200 * time.Millisecond
	}
	a.node.delay = time.Hour
	a.node.die(w.clock.now())
	w.run(60 * time.Second)
	w.onlyForger("bp-1")
	w.noOverlap()
}

// TestSuccessorRidesOutOneFailedRenew: the leader's sidecar restarts, soon
// or 4.5 s after its last renew, and its successor's first renew is
// refused: the node forges on under the promise it inherited, the next
// renew keeps the lead. No pause, no kill, no failover.
func TestSuccessorRidesOutOneFailedRenew(t *testing.T) {
	for _, after := range []time.Duration{500 * time.Millisecond, 4500 * time.Millisecond} {
		t.Run(fmt.Sprint("restarted after ", after), func(t *testing.T) {
			w, a := pair(t)
			nextRenew(w, a)
			a.stopped = true
			w.run(after)
			refused := false
			a.api.check = func(ctx context.Context, op string) {
				if op == "update" && !refused {
					refused = true
					a.api.refuse = apierrors.NewServiceUnavailable("busy")
				} else {
					a.api.refuse = nil
				}
			}
			w.startSidecar(a)
			w.run(20 * time.Second)
			if !refused || len(a.node.spans) != 1 || a.node.kills+a.node.probeKill != 0 {
				t.Errorf("renew refused %v; forging spans %d, kills %d, probe kills %d: want one span, no kill",
					refused, len(a.node.spans), a.node.kills, a.node.probeKill)
			}
			w.onlyForger("bp-0")
			w.noOverlap()
		})
	}
}

// TestInvariant1FenceNotLateBySlowGauge: a leader cut off from the API,
// its node's gauge a second slow to read: the look at the node is cut at
// the renew deadline, so the disable is not a second late.
func TestInvariant1FenceNotLateBySlowGauge(t *testing.T) {
	w, a := pair(t)
	fence := a.s.facts(w.clock.now()).fenceAt
	a.api.refuse = apierrors.NewServiceUnavailable("busy")
	a.node.gaugeLag = 999 * time.Millisecond
	w.run(20 * time.Second)
	if end := w.end(a.node.spans[0]); end.After(fence.Add(250 * time.Millisecond)) {
		t.Errorf("bp-0's node forged until %s after its renew deadline", end.Sub(fence))
	}
}

// TestInvariant1FenceNotLateAfterASlowStatusCall: renews are refused and
// the CardanoLeader read is slow: the pass that crosses the deadline in it
// does not sleep a retry period before disabling.
func TestInvariant1FenceNotLateAfterASlowStatusCall(t *testing.T) {
	w, a := pair(t)
	fence := a.s.facts(w.clock.now()).fenceAt
	a.api.refuse = apierrors.NewServiceUnavailable("busy")
	a.api.check = func(context.Context, string) { a.s.status.forget() } // each pass reads the status...
	w.leaders.before = func(ctx context.Context, op string) error {
		return slowCall(ctx, w.clock, 3*time.Second) // ...slowly
	}
	w.run(20 * time.Second)
	w.leaders.before = nil
	for _, sp := range a.node.spans {
		if end := w.end(sp); end.After(fence.Add(300 * time.Millisecond)) {
			t.Errorf("bp-0's node forged until %s after its renew deadline", end.Sub(fence))
		}
	}
	w.noOverlap()
}

// TestInvariant5KillNotLateBySlowGauge: a wedged node, a gauge that takes a
// second to read: the kill at stopBy is not a second late.
func TestInvariant5KillNotLateBySlowGauge(t *testing.T) {
	w, a := pair(t)
	stopBy := a.s.facts(w.clock.now()).stopBy
	a.api.down, a.node.wedged, a.node.gaugeLag = true, true, 999*time.Millisecond
	w.run(20 * time.Second)
	if len(a.node.spans) == 0 || w.end(a.node.spans[0]).After(stopBy.Add(250*time.Millisecond)) {
		t.Errorf("wedged node killed %s after stopBy; want at it", w.end(a.node.spans[0]).Sub(stopBy))
	}
	w.noOverlap()
}

// TestInvariant1NoEnableAfterASlowHeartbeat: the heartbeat written before
// an enable took past enableBy: the enable does not go.
func TestInvariant1NoEnableAfterASlowHeartbeat(t *testing.T) {
	w, a := pair(t)
	f := a.s.facts(w.clock.now())
	in := a.s.forgeInput(w.clock.now(), f, "")
	slow := a.s.hb.clock
	a.s.hb.clock = func() time.Duration {
		w.clock.setTo(in.enableBy()) // the write stalls until then
		return slow()
	}
	hups := a.node.hups
	if a.s.perform(context.Background(), w.clock.now(), f, in, actEnable, "") || a.node.hups != hups {
		t.Error("an enable went out after a heartbeat write that ran past enableBy")
	}
}

// TestSuccessorOfAStandbySendsNothing: a standby's sidecar restarts: its
// predecessor's last heartbeat said the node was off, so the successor
// takes it for off at once: no SIGHUP, no kill.
func TestSuccessorOfAStandbySendsNothing(t *testing.T) {
	w, _ := pair(t)
	b := w.rep("bp-1")
	w.run(3 * time.Second)
	b.stopped = true
	w.run(time.Second)
	before := len(b.node.sent)
	w.startSidecar(b)
	w.run(200 * time.Millisecond)
	if b.s.node.n.state != stateOff {
		t.Errorf("its node's state %s at the successor's first look; want off", b.s.node.n.state)
	}
	w.run(20 * time.Second)
	if got := b.node.delivered(before); got != "" {
		t.Errorf("the restarted standby's sidecar sent %q to its node", got)
	}
}

// TestSuccessorLeavesANewNodeAlone: the leader's sidecar hung, the
// dead-man probe restarted the node, then the successor started: the node
// is an incarnation its predecessor never enabled (its last heartbeat names
// another), so it is off: not disabled, not killed again.
func TestSuccessorLeavesANewNodeAlone(t *testing.T) {
	w, a := pair(t)
	a.stopped = true
	first := a.node.pid
	w.runUntil(30*time.Second, "the node restarted", func() bool { return a.node.pid != first && a.node.running })
	before, kills := len(a.node.sent), a.node.kills
	w.startSidecar(a)
	w.run(20 * time.Second)
	if got := a.node.delivered(before); got != "" || a.node.kills != kills {
		t.Errorf("the successor signalled the restarted node: %q", got)
	}
	w.noOverlap()
}

// TestInvariant1NoStatusCallPastTheFence: the pass's facts said "leading",
// then something stalled past the renew deadline before the status write:
// the write does not go (the disable comes first, in the next pass).
func TestInvariant1NoStatusCallPastTheFence(t *testing.T) {
	w, a := pair(t)
	f := a.s.facts(w.clock.now())
	w.clock.setTo(f.fenceAt)
	calls := 0
	w.leaders.before = func(context.Context, string) error { calls++; return nil }
	a.s.status.forget()
	a.s.syncStatus(context.Background(), w.clock.now(), f, "")
	if calls != 0 {
		t.Errorf("%d status calls past the renew deadline", calls)
	}
}

func readHeartbeat(t *testing.T, path string) heartbeatRecord {
	t.Helper()
	b, err := os.ReadFile(path)
	var rec heartbeatRecord
	if err == nil {
		err = json.Unmarshal(b, &rec)
	}
	if err != nil {
		t.Fatalf("heartbeat %s: %v", path, err)
	}
	return rec
}

// TestInheritedPromise: a sidecar process that follows another in its pod,
// not having renewed itself, promises the dead-man probe no more than its
// predecessor did, and stops its node by that promise.
func TestInheritedPromise(t *testing.T) {
	w, a := pair(t)
	a.stopped = true
	w.run(time.Second)
	promised := time.Duration(readHeartbeat(t, a.cfg.HeartbeatFile).UntilBoottimeNS)
	a.api.down = true
	w.startSidecar(a)
	s, now := a.s, w.clock.now()
	s.node.n = nodeState{presence: nodeUp, state: stateOn, proc: a.node.proc()}
	if v := heartbeatValidity(now, &s.node.n, s.facts(now), s.tm.probe, s.tm.lease); w.boottime()+v > promised {
		t.Errorf("the successor promises %s beyond its predecessor", w.boottime()+v-promised)
	}
	if f := s.facts(now); f.stopBy.IsZero() || now.Add(promised-w.boottime()+a.cfg.Probe.budget()).Before(f.stopBy) {
		t.Errorf("the successor's stopBy %v; want by the inherited promise plus the probe's budget", f.stopBy)
	}
}

// TestInheritedStopBy: a successor takes its predecessor's stopBy as it
// was written, also one already passed (the predecessor had seen its Lease
// taken: another replica may forge now), not its heartbeat plus a margin.
func TestInheritedStopBy(t *testing.T) {
	w, a := pair(t)
	now := w.clock.now()
	hb := heartbeat{path: a.cfg.HeartbeatFile, files: targets(credentials(a.cfg)), clock: w.boottime}
	if err := hb.write(beat{valid: 0, stop: true, stopIn: -time.Second, mayForge: true, node: a.node.proc()}); err != nil {
		t.Fatal(err)
	}
	a.stopped = true
	w.startSidecar(a)
	a.s.node.n = nodeState{presence: nodeUp, state: stateOn, proc: a.node.proc()}
	if f := a.s.facts(now); !f.stopBy.Equal(now.Add(-time.Second)) {
		t.Errorf("the successor's stopBy is %s from now; want the predecessor's, a second ago", f.stopBy.Sub(now))
	}
}

// TestInheritanceNamesTheNode: what the previous process said of its node
// stands even once its promise no longer bounds this one; a record of an
// older version, which says nothing, counts as "may have enabled".
func TestInheritanceNamesTheNode(t *testing.T) {
	p := nodeProc{PID: 7, Start: 500}
	said := inheritance{known: true, forging: true, node: p}
	if !said.mayHaveEnabled(p) || said.mayHaveEnabled(nodeProc{PID: 8, Start: 600}) {
		t.Error("the previous record's node is not the one it may have enabled")
	}
	dir := t.TempDir()
	old := filepath.Join(dir, "hb")
	os.WriteFile(old, []byte(`{"until_boottime_ns": 1, "pod": "bp-0", "pid": 9}`), 0o644)
	if in := inheritFrom(old); !in.mayHaveEnabled(p) {
		t.Errorf("a record without files or forging (an older version) %+v; want: may have enabled", in)
	}
}

// TestSuccessorOfAStandbyDoesNotHold: a standby's node forges on its own
// (started without the non-producing flag, and deaf to the disable); its
// sidecar restarts right after sending the disable. Its predecessor never
// led, so the successor does not hold back to renew a Lease its pod never
// held: it escalates within the confirmation timeout.
func TestSuccessorOfAStandbyDoesNotHold(t *testing.T) {
	w, _ := pair(t)
	c := w.add("bp-2")
	c.node.boot1, c.node.wedged = true, true // reads 1 from boot: not fresh, so believed: on
	c.node.onSignal = func(sig unix.Signal) {
		if sig == unix.SIGHUP && !c.stopped {
			c.stopped = true // the disable is out; the sidecar dies
		}
	}
	w.runUntil(20*time.Second, "bp-2's disable", func() bool { return c.stopped })
	from := w.clock.now()
	c.node.setForging(true, from) // it forges all the same
	c.api.down = true             // and the successor cannot read the Lease naming the leader
	c.node.onSignal = nil
	w.startSidecar(c)
	w.run(20 * time.Second)
	if end := w.end(c.node.spans[len(c.node.spans)-1]); end.Sub(from) > 7*time.Second {
		t.Errorf("bp-2's node forged for %s beside the leader after its sidecar restarted", end.Sub(from))
	}
}

// TestSuccessorHoldEndsBeforeTheDeadline: the leader's sidecar restarts
// after its last renew with every API call hanging or refused at once (and
// the gauge slow), and,
// also with a short SIGHUP_CONFIRM_TIMEOUT, the hold is measured from the
// predecessor's renew deadline and its end wakes the loop: the node is
// disabled when the hold ends, by that deadline, not seconds after.
func TestSuccessorHoldEndsBeforeTheDeadline(t *testing.T) {
	apis := map[string]func(*replica){
		"hanging": func(r *replica) { r.api.down = true },
		"refused": func(r *replica) { r.api.refuse = apierrors.NewServiceUnavailable("busy") },
		"refused, gauge 1s": func(r *replica) {
			r.api.refuse = apierrors.NewServiceUnavailable("busy")
			r.node.gaugeLag = time.Second
		},
	}
	for _, confirm := range []string{"5s", "1s"} {
		for api, fault := range apis {
			for _, after := range []time.Duration{100 * time.Millisecond, 500 * time.Millisecond, 2900 * time.Millisecond} {
				t.Run(fmt.Sprintf("SIGHUP_CONFIRM_TIMEOUT=%s/%s/%s", confirm, api, after), func(t *testing.T) {
					w := newWorld(t)
					a := w.add("bp-0", "SIGHUP_CONFIRM_TIMEOUT", confirm)
					w.add("bp-1", "SIGHUP_CONFIRM_TIMEOUT", confirm)
					if w.settle(40*time.Second) != "bp-0" {
						t.Fatal("bp-0 did not lead")
					}
					fence := nextRenew(w, a)
					a.stopped = true
					w.run(after)
					fault(a)
					w.startSidecar(a)
					hold := a.s.facts(w.clock.now()).holdUntil
					w.run(30 * time.Second)
					end := w.end(a.node.spans[0])
					if end.After(fence.Add(300 * time.Millisecond)) {
						t.Errorf("bp-0's node forged until %s after its renew deadline", end.Sub(fence))
					}
					if end.After(hold.Add(300 * time.Millisecond)) {
						t.Errorf("bp-0's node forged until %s after its successor's hold ended", end.Sub(hold))
					}
					w.noOverlap()
				})
			}
		}
	}
}

// TestSuccessorFailedLookKeepsTheDeadline: the leader's sidecar sends an
// enable to its off node 1.7 s before its renew deadline and dies; the
// successor reads 0 once, then the gauge fails and the enable takes. The
// failed looks say nothing: the node is off by the deadline.
func TestSuccessorFailedLookKeepsTheDeadline(t *testing.T) {
	w := newWorld(t)
	a := w.add("bp-0", "SIGHUP_CONFIRM_TIMEOUT", "2s")
	w.add("bp-1", "SIGHUP_CONFIRM_TIMEOUT", "2s")
	if w.settle(40*time.Second) != "bp-0" {
		t.Fatal("bp-0 did not lead")
	}
	fence := nextRenew(w, a)
	a.stopped = true
	w.clock.setTo(fence.Add(-1700 * time.Millisecond))
	a.node.setForging(false, w.clock.now()) // what the dead process did last: an enable to an off node
	a.node.hupDelay = func(int) time.Duration { return 300 * time.Millisecond }
	a.node.signal(a.node.proc(), unix.SIGHUP)
	a.api.down = true
	w.startSidecar(a)
	w.runUntil(time.Second, "the successor's first look", func() bool { return a.s.node.n.lastRead == readOff })
	a.node.gaugeErr = errors.New("metrics endpoint timeout")
	w.run(20 * time.Second)
	if end := w.end(a.node.spans[len(a.node.spans)-1]); end.After(fence) {
		t.Errorf("bp-0's node forged until %s after its renew deadline", end.Sub(fence))
	}
	w.noOverlap()
}

// TestExLeaderConfirmsWithASlowishGauge: past its renew deadline an
// ex-leader's look at the node is cut only until its disable is out; a
// gauge that takes 100 ms then still confirms it: no kill.
func TestExLeaderConfirmsWithASlowishGauge(t *testing.T) {
	w, a := pair(t)
	a.api.refuse = apierrors.NewServiceUnavailable("busy")
	a.node.gaugeLag = 100 * time.Millisecond
	w.run(20 * time.Second)
	if a.node.kills+a.node.probeKill != 0 {
		t.Errorf("the ex-leader's node was killed (%d, %d by the probe): its disable could have been confirmed", a.node.kills, a.node.probeKill)
	}
}

// TestSuccessorSeesAnotherHolder: a successor whose Lease names another
// replica holds nothing back and has stopBy now: that one may forge.
func TestSuccessorSeesAnotherHolder(t *testing.T) {
	w, a := pair(t)
	a.stopped = true
	w.run(time.Second)
	w.startSidecar(a)
	a.s.el.lease = w.leases.l.DeepCopy()
	a.s.el.lease.Spec.HolderIdentity = ptr("bp-1_uid")
	a.s.node.n = nodeState{presence: nodeUp, state: stateOn, proc: a.node.proc()}
	now := w.clock.now()
	if f := a.s.facts(now); f.stopBy.After(now) || f.holdUntil.After(now) {
		t.Errorf("stopBy in %s, hold until %s; want both now", f.stopBy.Sub(now), f.holdUntil.Sub(now))
	}
}

// TestSuccessorWaitEndsBeforeTheDeadline: the leader's sidecar sends an
// enable to its off node 1.1-6.5 s before its renew deadline and dies; the
// node takes 4.8 s (under SIGHUP_CONFIRM_TIMEOUT) to handle it. The
// successor, with the API hanging or refusing, reads 0 and waits for that
// signal: it looks at the node meanwhile and no API call runs past the
// wait's end. A wait that must end before the signal has surely been
// handled ends with a kill, as a disable could be undone by it: the node
// is off by the deadline.
func TestSuccessorWaitEndsBeforeTheDeadline(t *testing.T) {
	apis := map[string]func(*replica){
		"hanging": func(r *replica) { r.api.down = true },
		"refused": func(r *replica) { r.api.refuse = apierrors.NewServiceUnavailable("busy") },
	}
	for api, fault := range apis {
		for _, lead := range []time.Duration{6500 * time.Millisecond, 6100 * time.Millisecond, 5500 * time.Millisecond, 4 * time.Second, 3 * time.Second, 1100 * time.Millisecond} {
			t.Run(fmt.Sprintf("%s/%s", api, lead), func(t *testing.T) {
				w := newWorld(t)
				a := w.add("bp-0")
				w.add("bp-1")
				fence := lateEnable(t, w, a, lead, 4800*time.Millisecond, fault)
				w.run(20 * time.Second)
				if end := w.end(a.node.spans[len(a.node.spans)-1]); end.After(fence) {
					t.Errorf("bp-0's node forged until %s after its renew deadline (signals %v)", end.Sub(fence), a.node.sent)
				}
				w.noOverlap()
			})
		}
	}
}

// TestSuccessorRenewsAreCutAtTheHold: a successor whose node said 0 inside
// its unsure window keeps trying to renew through its hold; those calls
// are cut at the hold's end (or API_TIMEOUT), not at the end of its wait
// for the predecessor's signal, which only matters once the hold is over.
func TestSuccessorRenewsAreCutAtTheHold(t *testing.T) {
	w, a := pair(t)
	nextRenew(w, a)
	a.stopped = true
	w.run(100 * time.Millisecond)
	a.node.setForging(false, w.clock.now()) // the node said 0; its predecessor's heartbeat says it may forge
	a.api.refuse = apierrors.NewServiceUnavailable("busy")
	w.startSidecar(a)
	hold := a.s.facts(w.clock.now()).holdUntil
	if a.s.node.n.unsure.After(hold) {
		t.Fatalf("unsure %s after the hold's end %s: the scenario needs it before", a.s.node.n.unsure, hold)
	}
	calls := 0
	a.api.check = func(ctx context.Context, op string) {
		now := w.clock.now()
		if !now.Before(hold) {
			return
		}
		calls++
		want := min(a.cfg.APITimeout, hold.Sub(now))
		if dl, _ := ctx.Deadline(); time.Until(dl) < want-10*time.Millisecond {
			t.Errorf("%s at hold-%s cut in %s; want %s", op, hold.Sub(now), time.Until(dl).Round(time.Millisecond), want)
		}
	}
	w.runUntil(10*time.Second, "the hold's end", func() bool { return !w.clock.now().Before(hold) })
	if calls == 0 {
		t.Fatal("no API call during the hold")
	}
}

// nextRenew waits for a's next renew and returns its renew deadline.
func nextRenew(w *world, a *replica) time.Time {
	w.t.Helper()
	last := a.s.el.renewedAt
	w.runUntil(5*time.Second, "a renew", func() bool { return a.s.el.renewedAt != last })
	return a.s.facts(w.clock.now()).fenceAt
}

// lateEnable is the start of the successor scenarios: bp-0 leads; lead
// before its renew deadline its sidecar sends an enable to its off node,
// which takes delay to handle, and dies; its successor starts 100 ms later
// with the API fault given. It returns the deadline.
func lateEnable(t *testing.T, w *world, a *replica, lead, delay time.Duration, fault func(*replica)) time.Time {
	t.Helper()
	if w.settle(40*time.Second) != "bp-0" {
		t.Fatal("bp-0 did not lead")
	}
	fence := nextRenew(w, a)
	a.stopped = true
	w.clock.setTo(fence.Add(-lead))
	a.node.setForging(false, w.clock.now())
	a.node.hupDelay = func(int) time.Duration { return delay }
	a.node.signal(a.node.proc(), unix.SIGHUP)
	a.node.hupDelay = func(int) time.Duration { return 20 * time.Millisecond }
	w.clock.setTo(w.clock.now().Add(100 * time.Millisecond))
	fault(a)
	w.startSidecar(a)
	return fence
}

// TestSuccessorWaitsThroughGaugeFaults: as TestSuccessorWaitEndsBeforeTheDeadline,
// with the successor's looks failing: a gauge slower than the last look
// allows, or one read failing during the wait. A failed look says nothing,
// so the wait goes on; the node is off by the deadline.
func TestSuccessorWaitsThroughGaugeFaults(t *testing.T) {
	apis := map[string]func(*replica){
		"hanging": func(r *replica) { r.api.down = true },
		"refused": func(r *replica) { r.api.refuse = apierrors.NewServiceUnavailable("busy") },
	}
	for api, fault := range apis {
		for _, lead := range []time.Duration{4 * time.Second, 3 * time.Second, 1100 * time.Millisecond} {
			t.Run(fmt.Sprintf("%s/slow gauge/%s", api, lead), func(t *testing.T) {
				w := newWorld(t)
				a := w.add("bp-0")
				w.add("bp-1")
				fence := lateEnable(t, w, a, lead, 4800*time.Millisecond, fault)
				a.node.gaugeLag = 100 * time.Millisecond
				w.run(20 * time.Second)
				if end := w.end(a.node.spans[len(a.node.spans)-1]); end.After(fence) {
					t.Errorf("bp-0's node forged until %s after its renew deadline (signals %v)", end.Sub(fence), a.node.sent)
				}
				w.noOverlap()
			})
		}
		for _, lead := range []time.Duration{4 * time.Second, 3 * time.Second} {
			t.Run(fmt.Sprintf("%s/one failed read/%s", api, lead), func(t *testing.T) {
				w := newWorld(t)
				a := w.add("bp-0")
				w.add("bp-1")
				fence := lateEnable(t, w, a, lead, 4800*time.Millisecond, fault)
				at := a.s.facts(w.clock.now()).holdUntil.Add(500 * time.Millisecond)
				w.runUntil(10*time.Second, "the wait", func() bool { return !w.clock.now().Before(at) })
				a.node.gaugeErr = errors.New("connection reset")
				w.runUntil(time.Second, "a failed read", func() bool { return a.s.node.n.gaugeErr != nil })
				a.node.gaugeErr = nil
				w.run(20 * time.Second)
				if end := w.end(a.node.spans[len(a.node.spans)-1]); end.After(fence) {
					t.Errorf("bp-0's node forged until %s after its renew deadline (signals %v)", end.Sub(fence), a.node.sent)
				}
				w.noOverlap()
			})
		}
	}
}

// TestSuccessorWaitEndsAtThePredecessorsDeadline: with a short
// SIGHUP_CONFIRM_TIMEOUT the wait is bounded by the predecessor's renew
// deadline, not by stopBy less the timeout, which can lie after it: an
// enable sent just before the deadline and handled after it never makes
// the node forge past it.
func TestSuccessorWaitEndsAtThePredecessorsDeadline(t *testing.T) {
	for _, confirm := range []time.Duration{2 * time.Second, 3 * time.Second, 5 * time.Second} {
		t.Run(fmt.Sprint("SIGHUP_CONFIRM_TIMEOUT=", confirm), func(t *testing.T) {
			w := newWorld(t)
			a := w.add("bp-0", "SIGHUP_CONFIRM_TIMEOUT", confirm.String())
			w.add("bp-1", "SIGHUP_CONFIRM_TIMEOUT", confirm.String())
			fence := lateEnable(t, w, a, 1100*time.Millisecond, confirm-100*time.Millisecond, func(r *replica) { r.api.down = true })
			w.run(20 * time.Second)
			if end := w.end(a.node.spans[len(a.node.spans)-1]); end.After(fence) {
				t.Errorf("bp-0's node forged until %s after its renew deadline (signals %v)", end.Sub(fence), a.node.delivered(0))
			}
			w.noOverlap()
		})
	}
}

// TestSuccessorOfAnOffNodeRenews: the leader's last enable did not take (its
// heartbeat says the node may forge, the gauge says 0) and its sidecar
// dies; a successor started before the renew deadline, with an API that
// answers (at once or in 500 ms a call), renews and forges: no kill, by the
// sidecar or the probe. Two cases kill, and are left out: one started
// after the deadline (a late enable could make the node forge before its
// first renew), and one whose renew straddles the end of its hold (it is
// cut there, and the next comes a RETRY_PERIOD later, past the deadline:
// with 500 ms calls, a start between 7 and 8 s after the last renew).
func TestSuccessorOfAnOffNodeRenews(t *testing.T) {
	for _, slow := range []time.Duration{0, 500 * time.Millisecond} {
		for _, start := range []time.Duration{2 * time.Second, 4200 * time.Millisecond, 4800 * time.Millisecond, 5500 * time.Millisecond, 7500 * time.Millisecond, 8500 * time.Millisecond, 9200 * time.Millisecond} {
			if slow > 0 && start == 7500*time.Millisecond {
				continue
			}
			t.Run(fmt.Sprintf("API %s/started s+%s", slow, start), func(t *testing.T) {
				w, a := pair(t)
				nextRenew(w, a)
				s := a.s.el.renewedAt
				a.stopped = true
				w.clock.setTo(s.Add(start - 100*time.Millisecond))
				a.node.setForging(false, w.clock.now()) // the last enable did not take
				w.clock.setTo(s.Add(start))
				a.api.slow = slow
				w.startSidecar(a)
				w.run(20 * time.Second)
				if a.node.kills+a.node.probeKill != 0 || !a.s.el.leadingAt(w.clock.now()) || !a.node.on {
					t.Errorf("kills %d, probe kills %d, leading %v, forging %v: want the successor leading and forging, no kill",
						a.node.kills, a.node.probeKill, a.s.el.leadingAt(w.clock.now()), a.node.on)
				}
				w.noOverlap()
			})
		}
	}
}

// twoLateEnables: bp-0 leads; 1 s after a renew its sidecar sends an
// enable to its off node (handled 4.8 s later) and dies; the next SIGHUP
// the node gets, its successor's, takes 4.9 s. It returns the moment of
// the predecessor's enable; the caller sets the faults and starts the
// successor.
func twoLateEnables(t *testing.T) (*world, *replica, time.Time) {
	t.Helper()
	w, a := pair(t)
	nextRenew(w, a)
	a.stopped = true
	w.clock.setTo(a.s.el.renewedAt.Add(time.Second))
	a.node.setForging(false, w.clock.now()) // what the dead process did last: an enable to an off node
	k := a.node.hups + 1
	a.node.hupDelay = func(n int) time.Duration {
		switch n {
		case k:
			return 4800 * time.Millisecond
		case k + 1:
			return 4900 * time.Millisecond
		}
		return 20 * time.Millisecond
	}
	sent := w.clock.now()
	a.node.signal(a.node.proc(), unix.SIGHUP)
	w.clock.setTo(w.clock.now().Add(100 * time.Millisecond))
	return w, a, sent
}

// failHealth makes a's health check fail now: it must hand over.
func failHealth(w *world, a *replica) {
	for range a.cfg.HealthThreshold {
		a.s.health.record(errors.New("node health endpoint failing"))
	}
	a.next = w.clock.now()
}

// TestInvariant4SuccessorEnableNotConfirmedByItsPredecessors: after
// twoLateEnables, the successor renews over a slow API and sends its own
// enable. The predecessor's enable lands first: that 1 does not confirm
// the successor's, which is still to come. When the successor must step
// down just after its unsure window, its disable waits for its own enable
// or kills: it never releases while that enable can still make the node
// forge beside the new leader.
func TestInvariant4SuccessorEnableNotConfirmedByItsPredecessors(t *testing.T) {
	for _, slow := range []time.Duration{500 * time.Millisecond, time.Second} {
		for _, after := range []time.Duration{10 * time.Millisecond, 510 * time.Millisecond} {
			t.Run(fmt.Sprintf("API %s/step down at unsure+%s", slow, after), func(t *testing.T) {
				w, a, _ := twoLateEnables(t)
				a.api.slow = slow
				w.startSidecar(a)
				at := a.s.node.unsure.Add(after)
				w.runUntil(10*time.Second, "the step-down", func() bool { return !w.clock.now().Before(at) })
				failHealth(w, a)
				w.run(15 * time.Second)
				w.noOverlap()
			})
		}
	}
}

// TestInvariant4SuccessorEnableNotConfirmedByAStaleZero: as above, but the
// successor's enable goes after its unsure window, against a 0 it read
// inside it, with the predecessor's enable landing in between: because the
// API answered only later, or because the gauge could not be read while it
// landed. That 0 is no "before": the 1 that follows confirms nothing.
func TestInvariant4SuccessorEnableNotConfirmedByAStaleZero(t *testing.T) {
	for _, from := range []time.Duration{3500 * time.Millisecond, 4 * time.Second} {
		t.Run(fmt.Sprintf("API refusing, then 1 s a call from T+%s", from), func(t *testing.T) {
			w, a, T := twoLateEnables(t)
			a.api.refuse = apierrors.NewServiceUnavailable("busy")
			a.api.check = func(ctx context.Context, op string) {
				if !w.clock.now().Before(T.Add(from)) {
					a.api.refuse, a.api.slow = nil, time.Second
				}
			}
			w.startSidecar(a)
			w.runUntil(15*time.Second, "the successor's enable", func() bool { return a.s.node.n.state == stateEnabling })
			w.run(1200 * time.Millisecond)
			failHealth(w, a)
			w.run(15 * time.Second)
			w.noOverlap()
		})
	}
	t.Run("gauge unreadable while the predecessor's enable lands", func(t *testing.T) {
		w, a, T := twoLateEnables(t)
		a.api.refuse = apierrors.NewServiceUnavailable("busy")
		w.startSidecar(a)
		w.runUntil(10*time.Second, "T+4.4s", func() bool { return !w.clock.now().Before(T.Add(4400 * time.Millisecond)) })
		a.node.gaugeErr = errors.New("metrics endpoint timeout")
		w.runUntil(10*time.Second, "T+6s", func() bool { return !w.clock.now().Before(T.Add(6 * time.Second)) })
		a.api.refuse = nil
		w.runUntil(3*time.Second, "the successor's enable", func() bool { return a.s.node.n.state == stateEnabling })
		w.run(300 * time.Millisecond)
		a.node.gaugeErr = nil
		w.run(500 * time.Millisecond)
		failHealth(w, a)
		w.run(15 * time.Second)
		w.noOverlap()
	})
}
