package main

// The forging state machine of `forge-manager run`: the node forges if and
// only if this replica leads, is eligible, and renewed within
// RENEW_DEADLINE (docs/design.md, invariant 1). Pure: decide takes the
// node's state, what is wanted, the leadership facts and the time, and
// gives one action, so every rule below has a table test (forge_test.go).
// loop.go performs the actions; signal.go observes the node and moves its
// state by what the gauge says (nodeState.confirm, here).
//
// What the node is doing is never assumed (invariant 4, "unknown is not
// off"). A node is off only when it said 0 after our last signal, when it
// was started non-producing after this sidecar and never signalled, or
// when its process is gone. An enable that was delivered and not confirmed,
// a node found running when this sidecar started, a gauge of 1 before any
// signal, "cannot tell which process is the node": all unknown, disabled by
// signal and confirmed, or killed. A replica never releases the Lease while
// its node may forge.
//
// One SIGHUP at a time: cardano-node handles each on its own thread and the
// last to finish wins, so a disable sent while an enable is in flight could
// be undone by it. The files go at once; the disable SIGHUP waits for the
// enable's confirmation or window, unless the Lease may pass first, and
// then the node is killed instead.

import (
	"time"
)

// Loop timing. pollPending: how often the gauge is read while a SIGHUP
// awaits confirmation (cardano-node answers within milliseconds).
// maxActions: the longest chain one pass needs (place, SIGHUP; or remove,
// SIGHUP; or kill, release) with room to spare.
const (
	pollPending   = 100 * time.Millisecond
	maxBackoff    = 30 * time.Second
	socketRecheck = 30 * time.Second
	maxActions    = 4
	// lastLook: past a deadline on which the node may have to be killed,
	// the gauge gets this long to say it is off (a local read takes a few
	// milliseconds) before the kill.
	lastLook = 50 * time.Millisecond
)

// forgeState is what this replica knows of its node's forging.
type forgeState int8

const (
	stateUnknown   forgeState = iota // cannot tell: may be forging
	stateOff                         // certainly not forging
	stateEnabling                    // an enable SIGHUP awaits confirmation
	stateOn                          // forging, as the node said after our signal
	stateDisabling                   // a disable SIGHUP awaits confirmation
)

func (f forgeState) String() string {
	return [...]string{"unknown", "off", "enabling", "on", "disabling"}[f]
}

// presence is what /proc and the socket say of the node process.
type presence int8

const (
	nodeAbsent    presence = iota // no process of that name (and /proc was readable)
	nodeHidden                    // none visible, yet the socket answers: no shared process namespace
	nodeAmbiguous                 // cannot tell which process is the node
	nodeBooting                   // found; its socket has not answered yet
	nodeUp                        // found, and its socket answered
)

// action is one step decide asks for.
type action int8

const (
	actNone    action = iota
	actPlace          // write the credentials into place
	actRemove         // unlink the credentials
	actEnable         // SIGHUP with the credentials in place
	actDisable        // SIGHUP with the credentials gone
	actKill           // SIGKILL: the node's forging ends with it; it restarts non-producing
	actRelease        // give the Lease up
)

func (a action) String() string {
	return [...]string{"none", "place", "remove", "enable", "disable", "kill", "release"}[a]
}

// forgeInput is everything decide looks at.
type forgeInput struct {
	now          time.Time
	producer     bool // APPLICATION_TYPE block-producer: the only kind that writes, signals or kills
	want         bool // leading, trusted epoch, eligible
	stepDown     bool // leading but not eligible: release once the node is off
	node         presence
	state        forgeState
	sent         time.Time // when the SIGHUP in flight was sent
	files        fileState
	sources      bool // valid credentials to place
	unlinkFailed bool // the last removal failed: a SIGHUP now would enable
	loaded       bool // the node runs with the current credentials
	retryAt      time.Time
	confirm      time.Duration // SIGHUP_CONFIRM_TIMEOUT
	stopBy       time.Time     // leadership.stopBy: zero if this pod never held the Lease
	fenceAt      time.Time     // leadership.fenceAt
	lastRead     reading       // what the gauge last said
	unsure       time.Time     // nodeState.unsure
	holdUntil    time.Time     // leadership.holdUntil
	lastFence    time.Time     // the renew deadline stopBy follows from (sidecar.lastFence)
}

// decide is the forging state machine: one action for the node's state,
// what is wanted, the leadership and the time. Pure; every rule is a row in
// forge_test.go.
func decide(in forgeInput) action {
	switch {
	case !in.producer:
		return actNone // relays and monitors never touch their node
	case in.node == nodeAmbiguous:
		// Which process to signal cannot be told: the dead-man probe covers
		// a node that may forge (deadman.go).
		return in.release()
	case in.node == nodeHidden:
		if in.files != filesAbsent && !in.unlinkFailed {
			return actRemove // keys for a node we cannot signal: never
		}
		return actNone
	case in.node != nodeUp:
		// No node, or one booting: it reads the files at boot, and a SIGHUP
		// before its socket answers kills it.
		if in.files != filesCurrent && in.sources {
			return actPlace
		}
		return in.release()
	case in.state == stateDisabling:
		switch {
		case in.now.Before(in.killAt()):
			return actNone // confirming; nothing else while a signal is in flight
		case in.want:
			in.state = stateUnknown // leading again: what the disable did no longer matters
			return decideOn(in)
		}
		return actKill // invariant 5: not confirmed in time
	case in.want:
		return decideOn(in)
	}
	return decideOff(in)
}

func decideOn(in forgeInput) action {
	switch {
	case in.state == stateEnabling:
		return actNone // confirming
	case in.files != filesCurrent:
		return actPlace
	case in.state == stateOn && in.loaded:
		return actNone
	case in.now.Before(in.retryAt):
		return actNone // the last enable did not take: back off
	case !in.now.Before(in.enableBy()):
		return actNone // too close to the deadline
	}
	return actEnable // off, unknown, or on with other credentials
}

// enableBy is the last moment an enable may go: disableWindow before the
// renew deadline. One still unconfirmed at the deadline ends with a kill
// (decideOff), so an enable that would be handled after the deadline never
// makes the node forge past it.
func (in forgeInput) enableBy() time.Time {
	return in.fenceAt.Add(-disableWindow)
}

func decideOff(in forgeInput) action {
	switch {
	case in.state != stateOff && in.now.Before(in.holdUntil):
		// A successor whose predecessor led: it keeps trying to renew,
		// leaving the node as it is, until the predecessor's deadline less
		// the time to disable and confirm.
		return actNone
	case in.files != filesAbsent && !in.unlinkFailed:
		return actRemove // first the files: a SIGHUP with them present enables
	case in.state == stateOff:
		return in.release()
	case in.files != filesAbsent:
		return actKill // the unlink failed: no SIGHUP can disable this node
	case in.state == stateEnabling:
		// One SIGHUP at a time: the enable's window first, unless the renew
		// deadline has passed (it must not start forging now) or the Lease
		// may pass.
		if past(in.now, in.fenceAt) || past(in.now, in.stopBy) {
			return actKill
		}
		return actNone
	case in.waiting():
		// A successor whose node said 0: wait for its predecessor's last
		// signal to be handled rather than send one more.
		return actNone
	case in.overtakable():
		// The wait ended before that signal must have been handled: a
		// disable now could be undone by it, and then not be confirmed
		// before stopBy. The predecessor would have killed an enable still
		// unconfirmed at its deadline; so does its successor.
		return actKill
	}
	return actDisable // on or unknown: a disable from unknown always signals
}

// past tells whether a deadline (zero: none) has come.
func past(now, deadline time.Time) bool { return !deadline.IsZero() && !now.Before(deadline) }

// release gives the Lease up when stepping down with the node off.
func (in forgeInput) release() action {
	if in.stepDown && in.state == stateOff {
		return actRelease
	}
	return actNone
}

// killAt is when an unconfirmed disable ends with the node killed:
// SIGHUP_CONFIRM_TIMEOUT after the signal, and never later than stopBy. A
// replica that never held the Lease has no stopBy and gives its node the
// whole timeout (a node whose gauge reads 1 at boot, cardano-node #6113).
func (in forgeInput) killAt() time.Time {
	at := in.sent.Add(in.confirm)
	if !in.stopBy.IsZero() && in.stopBy.Before(at) {
		at = in.stopBy
	}
	return at
}

// waiting tells whether a successor whose node has not said 1 still waits
// for its predecessor's last signal (nodeState.unsure) before it sends a
// disable: at most until the predecessor's renew deadline, which bounds
// what that signal may do. A failed look does not end the wait: it tells
// nothing of the node. The loop looks at the node every pollPending
// meanwhile, so an enable of the predecessor that lands is seen and
// disabled at once, and no API call runs past the wait's end.
func (in forgeInput) waiting() bool {
	return in.state == stateUnknown && in.lastRead != readOn && in.now.Before(in.waitEnd())
}

// overtakable: the wait is over, yet the predecessor's last signal may
// still be handled after a disable sent now.
func (in forgeInput) overtakable() bool {
	return in.state == stateUnknown && in.lastRead != readOn && in.now.Before(in.unsure)
}

func (in forgeInput) waitEnd() time.Time {
	if !in.stopBy.IsZero() && in.lastFence.Before(in.unsure) {
		return in.lastFence
	}
	return in.unsure
}

// reading is what the node's gauge said in one look.
type reading int8

const (
	readNone reading = iota // could not be read, or not exactly 0 or 1
	readOff
	readOn
)

// nodeState is what the loop knows of the current node incarnation.
type nodeState struct {
	proc       nodeProc
	presence   presence
	fresh      bool // started after this sidecar: booted non-producing
	signalled  bool // we sent this incarnation a SIGHUP
	state      forgeState
	sent       time.Time // the SIGHUP in flight
	unsure     time.Time // until then a signal of an earlier sidecar process may be in flight
	before     reading   // the gauge when it was sent: only a change confirms
	lastRead   reading   // what the gauge last said: a failed look says nothing
	readAt     time.Time // when it said so
	beforeAt   time.Time // when before was read
	sending    string    // the credentials digest an enable in flight carries
	sendingKES int64     // ...and its certificate's start KES period
	loaded     string    // the digest the node runs with; "" unknown
	failures   int       // consecutive enables that did not take
	retryAt    time.Time

	seenAt, socketAt time.Time
	socketFails      int // consecutive failed connects since it answered
	gaugeErr         error
	gaugeErrSince    time.Time
	chain            nodeGauges // the last good reading of the node's metrics
	chainAt          time.Time  // when it was read; zero: none yet
	signalErr        error      // the last signal failed (EPERM, ...): not eligible
	findErr          error
	unlinkFailed     bool
}

// mayForge: anything but certainly off.
func (n *nodeState) mayForge() bool { return n.state != stateOff }

// confirm moves the state by what the gauge said at now (invariants 4, 5).
// A reading confirms a signal only as a change from what the gauge said
// when it was sent: a 1 after an enable sent to a node already at 1 (new
// keys loaded into a forging node, a gauge that read 1 at boot) proves
// nothing, nor does a 0 after a disable sent at 0. Those wait for the whole
// window, in which cardano-node has handled the signal, and are then
// judged by the reading.
func (n *nodeState) confirm(r reading, now time.Time, window time.Duration) {
	if r != readNone {
		n.lastRead, n.readAt = r, now // a failed look says nothing of the node
	}
	over := now.Sub(n.sent) >= window
	switch {
	case n.state == stateEnabling && r == readOn && (n.before == readOff && !n.beforeAt.Before(n.unsure) || over):
		// With the 0 before it read inside unsure, a change to 1 may be the
		// previous sidecar process's enable landing (before or after ours
		// was sent), with ours still to come: only the whole window
		// confirms it.
		n.state, n.loaded, n.failures = stateOn, n.sending, 0
	case n.state == stateEnabling && over:
		// Delivered and not confirmed: unknown, never off.
		n.state = stateUnknown
		n.failures++
		n.retryAt = now.Add(backoff(n.failures, window))
	case n.state == stateEnabling:
	case n.state == stateDisabling && r == readOff && (n.before == readOn && !now.Before(n.unsure) || over):
		// Inside unsure an enable of the previous sidecar process may still
		// finish after this disable: only the whole window confirms.
		n.state = stateOff
	case n.state == stateDisabling:
	case r == readOn && n.fresh && !n.signalled:
		// A 1 before our first signal: believed for a disable, never taken
		// as an enable we did not send (cardano-node #6113, #6576).
		n.state = stateUnknown
	case r == readOn:
		n.state = stateOn
	case r == readOff && now.Before(n.unsure):
		// The sidecar process before this one may have signalled the node
		// just before it died: a 0 now is not yet "off".
	case r == readOff && n.state == stateOn:
		n.state, n.loaded = stateOff, "" // it stopped on its own: retry, backing off
		n.failures++
		n.retryAt = now.Add(backoff(n.failures, window))
	case r == readOff:
		n.state = stateOff
	}
	// readNone otherwise: the node changes forging only on a SIGHUP, so what
	// it said last still holds.
}

// confirmBlind is confirm without a gauge (NODE_METRICS_URL=""): a
// delivered signal counts as done once its window has passed, so a disable
// never overtakes an enable, and the Lease is not released while the
// node may still be handling the disable.
func (n *nodeState) confirmBlind(now time.Time, window time.Duration) {
	switch {
	case now.Sub(n.sent) < window:
	case n.state == stateEnabling:
		n.state, n.loaded = stateOn, n.sending
	case n.state == stateDisabling:
		n.state = stateOff
	}
}

// adopt records what a node found forging runs with: the files on disk.
func (n *nodeState) adopt(files fileState, digest string) {
	if n.state == stateOn && n.loaded == "" {
		n.loaded = "unknown"
		if files == filesCurrent {
			n.loaded = digest
		}
	}
}

func backoff(failures int, base time.Duration) time.Duration {
	d := base
	for i := 1; i < failures && d < maxBackoff; i++ {
		d *= 2
	}
	return min(d, maxBackoff)
}
