package main

// The forging state machine of `forge-manager run`, and the pass that
// drives it. The node forges if and only if this replica leads, is
// eligible, and renewed within RENEW_DEADLINE (SPEC 3).
//
// One pass: observe the node (signal.go), elect (lease.go), compute the
// leadership facts once, then ask decide() for one action at a time and
// perform it until decide says there is nothing to do. decide is pure: the
// node's state, what is wanted, the leadership facts and the time go in,
// one action comes out, so every rule below has a table test
// (forge_test.go). The pass is level-triggered (invariant 6): a restarted
// node, a missed signal or a file removed by hand is another difference to
// repair.
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
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
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
		// a node that may forge (health.go).
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
	proc      nodeProc
	presence  presence
	fresh     bool // started after this sidecar: booted non-producing
	signalled bool // we sent this incarnation a SIGHUP
	state     forgeState
	sent      time.Time // the SIGHUP in flight
	unsure    time.Time // until then a signal of an earlier sidecar process may be in flight
	before    reading   // the gauge when it was sent: only a change confirms
	lastRead  reading   // what the gauge last said: a failed look says nothing
	readAt    time.Time // when it said so
	beforeAt  time.Time // when before was read
	sending   string    // the credentials digest an enable in flight carries
	loaded    string    // the digest the node runs with; "" unknown
	failures  int       // consecutive enables that did not take
	retryAt   time.Time

	seenAt, socketAt time.Time
	socketFails      int // consecutive failed connects since it answered
	gaugeErr         error
	gaugeErrSince    time.Time
	signalErr        error // the last signal failed (EPERM, ...): not eligible
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

// sidecar is the state of `forge-manager run`.
type sidecar struct {
	cfg    *config
	t      tenant
	log    *slog.Logger
	now    func() time.Time
	sleep  func(time.Duration)
	el     *elector
	node   *nodeTracker
	creds  []credential
	status *statusWriter
	health *healthChecker
	m      *metricSet
	hb     heartbeat

	producer bool
	sources  [][]byte
	digest   string
	stopping bool
	leading  bool   // as of the last pass, for transition logs
	released bool   // the last leadership ended by our release
	leaseUID string // as of the last pass: a new one while leading is a recreation
	why      string

	sourceTrouble, leaseTrouble, statusTrouble, heartbeatTrouble trouble
	inherit                                                      inheritance

	view atomic.Pointer[snapshot]
}

// runSidecar wires the sidecar and runs it until ctx ends (SIGTERM), then
// hands over.
func runSidecar(ctx context.Context, c *config, t tenant, log *slog.Logger) error {
	rc, err := restConfig(c)
	if err != nil {
		return err
	}
	client, err := newRESTClient(rc)
	if err != nil {
		return fmt.Errorf("API client: %w", err)
	}
	identity := c.PodName + "_" + c.PodUID
	if c.PodUID == "" {
		identity = c.PodName + "_" + randomID()
	}
	host, err := newHostNode(procFS{root: "/proc", self: os.Getpid()}, c.NodeProcessName, c.NodeSocket, c.NodeMetricsURL)
	if err != nil {
		return err
	}
	s := newSidecar(c, t, log, time.Now, host)
	s.el = newElector(&kubeLeases{rc: client, namespace: c.Namespace, name: t.Lease, labels: t.Labels}, identity, c.timing(), s.now)
	s.status = newStatusWriter(&kubeLeaders{rc: client, c: c, name: t.Leader, labels: t.Labels}, c.PodName, identity)
	log.Info("starting", "version", version, "identity", identity, "lease", c.Namespace+"/"+t.Lease,
		"leader_object", t.Leader, "application_type", c.AppType, "lease_duration", c.LeaseDuration.String(),
		"renew_deadline", c.RenewDeadline.String(), "retry_period", c.RetryPeriod.String(), "uid", os.Getuid())
	for _, n := range c.notices {
		log.Warn("configuration notice", "notice", n)
	}
	srv, err := serveHTTP(c.MetricsPort, s)
	if err != nil {
		return err
	}
	defer srv.Close()
	go s.health.run(ctx)
	return s.run(ctx)
}

func newSidecar(c *config, t tenant, log *slog.Logger, now func() time.Time, host nodeAccess) *sidecar {
	s := &sidecar{
		cfg: c, t: t, log: log, now: now, sleep: time.Sleep,
		creds:    credentials(c),
		producer: c.AppType == appBlockProducer,
	}
	s.hb = heartbeat{path: c.HeartbeatFile, pod: c.PodName, files: targets(s.creds), clock: boottime}
	s.health = newHealthChecker(c, log)
	s.m = newMetricSet(c, s)
	s.inherit = inheritFrom(c.HeartbeatFile)
	s.node = newNodeTracker(host, c.NodeProcessName, c.ConfirmTimeout, c.SocketWaitTimeout, c.NodeMetricsURL != "", log, s.m)
	if s.inherit.active {
		s.node.prev = &s.inherit
		s.node.unsure = now().Add(c.ConfirmTimeout) // the last process's last signal has been handled by then
	}
	s.sourceTrouble = trouble{what: "credentials unusable; not eligible to forge", ok: "credentials usable again"}
	s.leaseTrouble = trouble{what: "Lease API calls failing", ok: "Lease API calls working again"}
	s.statusTrouble = trouble{what: "CardanoLeader status writes failing", ok: "CardanoLeader status writes working again"}
	s.heartbeatTrouble = trouble{what: "cannot write the heartbeat; the dead-man probe will restart the node", ok: "heartbeat written again"}
	return s
}

// run is the loop. It returns nil after a clean handover on SIGTERM.
func (s *sidecar) run(ctx context.Context) error {
	for {
		wait := s.iterate(ctx)
		select {
		case <-ctx.Done():
			return s.shutdown()
		case <-s.health.changed:
		case <-time.After(wait):
		}
	}
}

// iterate is one pass: observe, elect, act, report. It returns how long to
// sleep before the next pass.
func (s *sidecar) iterate(ctx context.Context) time.Duration {
	s.readSources()
	octx, cancel := s.observeContext(ctx)
	s.node.observe(octx, s.now())
	cancel()
	now := s.now() // after observing, which can take a second or two
	why := s.ineligible(now)
	// Invariant 1: past its renew deadline a replica disables forging
	// before it makes any API call; so does one whose node may forge
	// without its lead (a successor that may renew first holds: decide).
	if f := s.facts(now); !f.leading {
		s.reconcile(ctx, now, f, why)
	}
	if s.el.due(now) {
		s.elect(ctx, now, why == "")
	}
	// The leadership facts, once, for every decision of the pass; the
	// report reads them again after the actions (a release changes them).
	now = s.now()
	s.reconcile(ctx, now, s.facts(now), why)
	now = s.now()
	f := s.facts(now)
	s.noteTransitions(now, f, why)
	s.report(ctx, now, f)
	return s.nextWake(s.now())
}

// elect runs one election step, cut at the node's stopBy while it may forge.
func (s *sidecar) elect(ctx context.Context, now time.Time, eligible bool) {
	cctx, cancel := s.apiContext(ctx, s.facts(now))
	defer cancel()
	err := s.el.step(cctx, eligible)
	if err != nil {
		s.m.apiError(apiOp(err))
	}
	if raceLost(err) {
		err = nil // another replica wrote first: the election working, not failing
	}
	s.leaseTrouble.set(s.log, err)
}

// apiContext bounds API calls (invariant 1): while this replica's node may
// still forge, no call runs past the moment it must have stopped.
// A successor holding its node back is cut at the end of the hold, when it
// must disable.
func (s *sidecar) apiContext(ctx context.Context, f leadership) (context.Context, context.CancelFunc) {
	if f.stopBy.IsZero() || !s.node.n.mayForge() {
		return context.WithCancel(ctx)
	}
	limit, now := f.stopBy, s.now()
	if now.Before(f.holdUntil) {
		limit = f.holdUntil
	}
	if w := s.waitInput(now, f); w.waiting() && !now.Before(f.holdUntil) {
		limit = minTime(limit, w.waitEnd()) // past the hold, the wait's end is the kill's time
	}
	return context.WithTimeout(ctx, limit.Sub(now))
}

// observeContext bounds the look at the node (the gauge read can take a
// second) by the next deadline on which the node may have to be killed, so
// the kill is not late; past it, the look gets pollPending.
func (s *sidecar) observeContext(ctx context.Context) (context.Context, context.CancelFunc) {
	now, n := s.now(), &s.node.n
	f := s.facts(now)
	d := f.stopBy
	earlier := func(t time.Time) {
		if d.IsZero() || t.Before(d) {
			d = t
		}
	}
	if n.state == stateDisabling {
		earlier(n.sent.Add(s.cfg.ConfirmTimeout))
	}
	if f.held && n.state != stateDisabling {
		earlier(f.fenceAt) // past the renew deadline, the disable comes first
	}
	if !f.holdUntil.IsZero() && n.state != stateDisabling {
		earlier(f.holdUntil) // past a successor's hold, the disable comes first
	}
	if d.IsZero() || !n.mayForge() {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, max(d.Sub(now), lastLook))
}

// facts is the elector's leadership, with what a previous sidecar process
// of this pod promised still standing until this one has renewed the Lease
// itself or seen its node off.
func (s *sidecar) facts(now time.Time) leadership {
	f := s.el.facts(now)
	if s.inherit.active && (f.held || !s.node.n.mayForge()) {
		s.inherit.active = false
	}
	if s.inherit.active {
		s.inheritInto(&f, now)
	}
	return f
}

// inheritInto bounds f by the predecessor's promise. Its own stopBy; one
// that named none never held the Lease, and its promise plus the probe's
// budget bounds the node; a missing record promised nothing: stopBy now.
// A predecessor that led lets this process renew before it disables: the
// hold lasts until its renew deadline less disableWindow, and leaves time
// to disable and confirm before stopBy. A Lease now naming another replica
// ends both: that one may forge already.
func (s *sidecar) inheritInto(f *leadership, now time.Time) {
	in, clock := &s.inherit, s.hb.clock()
	by := in.until + s.cfg.Probe.budget()
	if in.stopBy != 0 {
		by = in.stopBy
	}
	stopBy := now.Add(by - clock)
	if f.holder != "" && f.holder != s.el.identity {
		stopBy = now
	}
	if f.stopBy.IsZero() || stopBy.Before(f.stopBy) {
		f.stopBy = stopBy
	}
	f.inherited = true
	if in.leading && !stopBy.Equal(now) {
		f.holdUntil = minTime(now.Add(in.until-clock-disableWindow), f.stopBy.Add(-s.cfg.ConfirmTimeout-disableWindow))
	}
}

// waitInput is what forgeInput.waiting looks at.
func (s *sidecar) waitInput(now time.Time, f leadership) forgeInput {
	n := &s.node.n
	return forgeInput{now: now, state: n.state, lastRead: n.lastRead, unsure: n.unsure, stopBy: f.stopBy, lastFence: s.lastFence(f)}
}

// lastFence is the renew deadline f.stopBy follows from: stopBy is
// LEASE_DURATION - killMargin after the last renew, the deadline
// RENEW_DEADLINE after it (lease.go). For a successor, its predecessor's.
func (s *sidecar) lastFence(f leadership) time.Time {
	return f.stopBy.Add(-(s.cfg.LeaseDuration - s.cfg.RenewDeadline - killMargin))
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// reconcile performs decide's actions until there is nothing to do. A
// release is always the last.
func (s *sidecar) reconcile(ctx context.Context, now time.Time, f leadership, why string) {
	for i := range maxActions {
		if i > 0 {
			now = s.now() // an action may have taken a while
		}
		in := s.forgeInput(now, f, why)
		a := decide(in)
		if a == actNone || !s.perform(ctx, now, f, in, a, why) {
			return
		}
	}
}

// forgeInput gathers what decide looks at.
func (s *sidecar) forgeInput(now time.Time, f leadership, why string) forgeInput {
	n := &s.node.n
	leading := f.leading && now.Before(f.fenceAt) // an action may have taken the pass past the deadline
	in := forgeInput{
		now: now, producer: s.producer,
		want:     leading && f.trusted && why == "",
		stepDown: leading && why != "",
		node:     n.presence, state: n.state, sent: n.sent,
		sources: s.sources != nil, unlinkFailed: n.unlinkFailed,
		retryAt: n.retryAt, confirm: s.cfg.ConfirmTimeout, stopBy: f.stopBy, fenceAt: f.fenceAt,
		lastRead: n.lastRead, unsure: n.unsure, holdUntil: f.holdUntil, lastFence: s.lastFence(f),
	}
	if s.producer {
		in.files = inspect(s.creds, s.sources)
		n.adopt(in.files, s.digest)
		in.loaded = n.loaded == s.digest
	}
	return in
}

// perform carries out one action; false ends the pass's actions.
func (s *sidecar) perform(ctx context.Context, now time.Time, f leadership, in forgeInput, a action, why string) bool {
	switch a {
	case actPlace:
		return s.placeCreds()
	case actRemove:
		s.node.n.unlinkFailed = !s.removeCreds()
		return true
	case actEnable:
		// The dead-man probe is told this replica leads, and only then, if
		// the time still allows (placing the files may have taken a while),
		// does the signal go.
		if !s.writeHeartbeat(f, true) || !s.now().Before(in.enableBy()) {
			return false
		}
		return s.node.hup(s.now(), true, s.digest)
	case actDisable:
		return s.node.hup(s.now(), false, "")
	case actKill:
		reason := "the node did not confirm the disable before SIGHUP_CONFIRM_TIMEOUT or before another replica may take the Lease"
		switch {
		case in.unlinkFailed:
			reason = "the credential files could not be removed, so no SIGHUP can disable it"
		case in.overtakable():
			reason = "the previous sidecar process's last SIGHUP may still be handled after a disable, and must not make it forge past the deadline"
		}
		return s.node.kill(reason)
	case actRelease:
		s.releaseLease(ctx, now, f, why)
	}
	return false
}

// readSources re-reads the Secret's files each pass: a rotated key is picked
// up without a restart, and a broken Secret makes the replica ineligible.
func (s *sidecar) readSources() {
	if !s.producer {
		return
	}
	data, digest, err := readSources(s.creds)
	s.sourceTrouble.set(s.log, err)
	if err == nil {
		s.sources, s.digest = data, digest
	} else {
		s.sources, s.digest = nil, ""
	}
}

// ineligible says why this replica may not forge now ("" if it may).
func (s *sidecar) ineligible(now time.Time) string {
	n := &s.node.n
	switch {
	case !s.producer:
		return "application type " + s.cfg.AppType + " never forges"
	case s.stopping:
		return "shutting down"
	case s.sources == nil:
		return "credentials unusable: " + errString(s.sourceTrouble.err)
	case n.presence == nodeAbsent:
		return "node process not found"
	case n.presence == nodeHidden:
		return fmt.Sprintf("the node's socket answers but no process named %s is visible: the pod needs shareProcessNamespace: true", s.cfg.NodeProcessName)
	case n.presence == nodeAmbiguous:
		return errString(n.findErr)
	case n.signalErr != nil:
		return n.signalErr.Error()
	case n.presence == nodeBooting:
		return "node socket not answering yet"
	case n.socketFails >= s.cfg.HealthThreshold:
		return "node socket stopped answering"
	case s.heartbeatTrouble.err != nil:
		return "cannot write the heartbeat, so the dead-man probe could not stop this node: " + s.heartbeatTrouble.err.Error()
	case n.gaugeErr != nil && now.Sub(n.gaugeErrSince) >= s.cfg.ConfirmTimeout:
		return fmt.Sprintf("the node's forging gauge has been unreadable for %s, so no signal can be confirmed (%v): enable its Prometheus endpoint or fix NODE_METRICS_URL",
			now.Sub(n.gaugeErrSince).Round(time.Second), n.gaugeErr)
	case !s.health.healthy():
		return "health check failing: " + s.health.lastError()
	}
	return ""
}

// placeCreds writes every credential that is missing or differs; false if
// one could not be written.
func (s *sidecar) placeCreds() bool {
	ok := true
	for i, cr := range s.creds {
		wrote, err := ensureFile(cr.target, s.sources[i])
		if err != nil {
			s.log.Error("cannot write credential", "file", cr.targetVar, "err", err)
			ok = false
			continue
		}
		if wrote {
			s.m.credentialOp("write", cr.targetVar)
		}
	}
	return ok
}

// removeCreds unlinks every credential; false if one could not be removed.
func (s *sidecar) removeCreds() bool {
	ok := true
	for _, cr := range s.creds {
		removed, err := removeFile(cr.target)
		if err != nil {
			s.log.Error("cannot remove credential", "file", cr.targetVar, "err", err)
			ok = false
		}
		if removed {
			s.m.credentialOp("remove", cr.targetVar)
		}
	}
	return ok
}

// releaseLease gives the Lease up once the node is off, so a healthy
// replica takes over at once instead of waiting for expiry. The status says
// so first, while this replica still leads.
func (s *sidecar) releaseLease(ctx context.Context, now time.Time, f leadership, why string) {
	s.syncStatus(ctx, now, f, why)
	if err := s.el.release(ctx); err != nil {
		s.m.apiError(apiOp(err))
		s.log.Warn("could not release the Lease; it will expire", "err", err)
		return
	}
	s.released = true
	s.log.Info("released the Lease", "why", why)
}

// noteTransitions logs and counts real changes, once each.
func (s *sidecar) noteTransitions(now time.Time, f leadership, why string) {
	if f.leading && s.leading && f.epoch.UID != s.leaseUID {
		s.log.Warn("the Lease was deleted and this leader recreated it: keep it out of pruning and cleanup tools", "epoch", f.epoch.String())
	}
	s.leaseUID = f.epoch.UID
	if f.leading != s.leading {
		s.m.leadershipChange()
		switch {
		case f.leading:
			s.released = false
			s.log.Info("acquired the Lease", "epoch", f.epoch.String())
		case s.released:
		case f.holder == s.el.identity && !now.Before(f.fenceAt):
			s.m.fenced()
			s.log.Warn("fenced: no successful renew within RENEW_DEADLINE; forging disabled", "renew_deadline", s.cfg.RenewDeadline.String())
		default:
			s.log.Warn("lost the Lease", "holder", f.holder, "missing", s.el.observed.missing)
		}
	}
	if why != s.why && why != "" {
		s.log.Info("not eligible to forge", "why", why)
	} else if why != s.why {
		s.log.Info("eligible to forge")
	}
	s.leading, s.why = f.leading, why
}

// writeHeartbeat tells the dead-man probe how long it may leave the node
// alone, counted from the moment of writing.
func (s *sidecar) writeHeartbeat(f leadership, mayForge bool) bool {
	now := s.now()
	b := beat{valid: s.heartbeatValidity(now, f), mayForge: mayForge, node: s.node.n.proc,
		stop: !f.stopBy.IsZero(), stopIn: f.stopBy.Sub(now), leading: f.leading}
	err := s.hb.write(b)
	s.heartbeatTrouble.set(s.log, err)
	return err == nil
}

// forging is what this replica reports: the node confirmed it (or, without
// a gauge, the signal was delivered).
func (s *sidecar) forging() bool { return s.node.n.state == stateOn }

// report writes the heartbeat, the CardanoLeader status (leader only, on
// change) and the snapshot behind /status and /metrics.
func (s *sidecar) report(ctx context.Context, now time.Time, f leadership) {
	if s.producer {
		s.writeHeartbeat(f, s.node.n.mayForge())
	}
	if f.leading {
		s.syncStatus(ctx, now, f, s.why)
	} else {
		s.status.forget()
	}
	s.publish(now, f)
}

// syncStatus writes the CardanoLeader status, only while leading at this
// instant: a fenced ex-leader's view is stale and would overwrite its
// successor's, and past the deadline the disable comes before any call.
func (s *sidecar) syncStatus(ctx context.Context, now time.Time, f leadership, why string) {
	if f = s.facts(s.now()); !f.leading {
		return
	}
	actx, acancel := s.apiContext(ctx, f)
	defer acancel()
	cctx, cancel := s.el.callContext(actx)
	defer cancel()
	wrote, err := s.status.sync(cctx, now, leaderFacts{forging: s.forging(), why: why, epoch: f.epoch})
	if err != nil {
		s.m.apiError(apiOp(err))
	} else if wrote {
		s.log.Debug("CardanoLeader status written", "forging", s.forging())
	}
	s.statusTrouble.set(s.log, err)
}

// nextWake is how long the loop may sleep from now: until the next
// election round, the renew deadline, the node's stopBy, or the next look
// at a signal or at a node that may forge without the lead.
func (s *sidecar) nextWake(now time.Time) time.Duration {
	n, f := &s.node.n, s.facts(now)
	if n.state == stateDisabling { // and at the kill, not up to pollPending after it
		if kill := (forgeInput{sent: n.sent, confirm: s.cfg.ConfirmTimeout, stopBy: f.stopBy}).killAt(); kill.After(now) {
			return min(pollPending, kill.Sub(now))
		}
		return pollPending // past it: the kill is being retried
	}
	if n.state == stateEnabling || (n.mayForge() && f.held && !f.leading) {
		return pollPending
	}
	if w := s.waitInput(now, f); w.waiting() && !now.Before(f.holdUntil) { // and at the wait's end
		return min(pollPending, w.waitEnd().Sub(now))
	}
	wait := s.el.wakeAt(now).Sub(now)
	if n.presence != nodeUp {
		wait = min(wait, s.cfg.RetryPeriod) // look for the node and its socket
	}
	if n.mayForge() && !f.leading && f.stopBy.After(now) {
		wait = min(wait, f.stopBy.Sub(now))
	}
	if n.mayForge() && f.holdUntil.After(now) {
		wait = min(wait, f.holdUntil.Sub(now)) // the hold's end is the disable's time
	}
	return max(wait, time.Millisecond)
}

// shutdownBudget: the handover on SIGTERM, inside the 30s grace period of
// the shipped manifests: a disable gets SIGHUP_CONFIRM_TIMEOUT, then a
// kill, then the release one API_TIMEOUT.
func (s *sidecar) shutdownBudget() time.Duration {
	return s.cfg.ConfirmTimeout + s.cfg.APITimeout + shutdownSlack
}

// shutdown is the graceful handover (invariant 7): the same passes with
// "shutting down" as the reason not to forge, so the node is disabled,
// confirmed or killed, and only then the Lease released. No election step
// runs: nothing is renewed or taken.
func (s *sidecar) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.shutdownBudget())
	defer cancel()
	s.stopping = true
	s.log.Info("stopping: disabling forging before handing over")
	deadline := s.now().Add(s.shutdownBudget())
	for {
		s.node.observe(ctx, s.now())
		now := s.now()
		s.reconcile(ctx, now, s.facts(now), s.ineligible(now))
		f := s.facts(now)
		if !s.producer || (!s.node.n.mayForge() && !f.leading) || !now.Before(deadline) {
			break
		}
		s.sleep(pollPending)
	}
	now := s.now()
	s.report(ctx, now, s.facts(now))
	s.log.Info("stopped", "node_forging_state", s.node.n.state.String())
	return nil
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
