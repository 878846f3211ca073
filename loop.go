package main

// The pass that drives the forging state machine (forge.go). One pass:
// read the credentials' sources (keys.go), observe the node (signal.go),
// disable first if the node may forge without the lead (invariant 1),
// elect (lease.go), compute the leadership facts once, then ask decide for
// one action at a time and perform it until there is nothing to do; then
// write the heartbeat (deadman.go), the CardanoLeader status (crd.go) and
// the snapshot on the board (status.go), and sleep until the next
// deadline. The pass is level-triggered (invariant 6): a restarted node, a
// missed signal or a file removed by hand is another difference to repair.
// docs/design.md has the picture.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// sidecar is the state of `forge-manager run`. main.go wires it; each part
// gets the values it needs.
type sidecar struct {
	log   *slog.Logger
	now   func() time.Time
	sleep func(time.Duration)
	tm    loopTiming
	names replicaNames
	never string // why this replica never forges (a relay, a monitor): decided at wiring
	el    *elector
	cl    *coordinator // cluster-wide coordination (cluster.go); nil when off
	// other is this pool's Lease under the name the other setting of
	// ENABLE_CLUSTER_MANAGEMENT gives it: looked at once (SPEC 7, migration).
	other     leaseAPI
	otherName string
	node      *nodeTracker
	keys      keyFiles
	status    *statusWriter
	health    *healthChecker
	m         *metricSet
	hb        heartbeat
	board     *board

	sources  [][]byte
	digest   string
	keyset   keySet                     // what sources prove (opcert.go)
	rejected error                      // the mounted set, refused while sources stay the last good one
	chain    slotClock                  // the network's (chain.go)
	records  map[*elector]counterRecord // the counter record last read on each Lease (counter.go)
	events   *eventWriter               // Kubernetes Events (events.go); nil: none
	watch    *leaseWatch                // the Lease watch's sightings (watch.go); nil: LEASE_WATCH=false
	pool     string                     // the pool of the first set taken: a running sidecar takes no other
	evented  map[string]string          // what each Event reason last said
	// stepDownFile is STEP_DOWN_FILE (stepdown.go), read every pass into
	// stepUntil, or stepErr when it cannot be read.
	stepDownFile string
	stepUntil    time.Time
	stepErr      error
	forging      bool // the node confirmed forging, as of the last pass
	stopping     bool
	leading      bool   // as of the last pass, for transition logs
	released     bool   // the last leadership ended by our release
	leaseUID     string // as of the last pass: a new one while leading is a recreation
	why          string

	sourceTrouble, leaseTrouble, statusTrouble, heartbeatTrouble trouble
	rejectTrouble, nodeCertTrouble, counterTrouble               trouble
	clusterTrouble                                               trouble
	inherit                                                      inheritance
}

// loopTiming are the durations and limits the loop reads.
type loopTiming struct {
	timing                    // LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD, API_TIMEOUT, SIGHUP_CONFIRM_TIMEOUT
	probe       time.Duration // the dead-man probe's kill budget (deadmanProbe.budget)
	socketFails int           // HEALTH_CHECK_FAILURE_THRESHOLD: failed connects that make the node unhealthy
	maxTipLag   uint64        // MAX_TIP_LAG in slots; 0: no tip check
}

// replicaNames are what the status says this replica is.
type replicaNames struct {
	pod, lease, network, poolID, region string
	poolHex                             string // POOL_ID_HEX
	nodeProcess                         string // CARDANO_NODE_PROCESS_NAME, for messages
}

// run is the loop. It returns nil after a clean handover on SIGTERM.
func (s *sidecar) run(ctx context.Context) error {
	for first := true; ; first = false {
		wait := s.iterate(ctx)
		if first {
			s.warnOther(ctx)
		}
		if !s.pause(ctx, wait) {
			return s.shutdown()
		}
	}
}

// pause sleeps until the next pass: wait, a health change, or a sighting
// of the Lease that calls for one (watch.go); others are applied and the
// sleep goes on. False when ctx ends.
func (s *sidecar) pause(ctx context.Context, wait time.Duration) bool {
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-s.health.changed:
			return true
		case <-t.C:
			return true
		case <-s.watchReady():
			if s.takeSightings() {
				return true
			}
			t.Reset(s.nextWake(s.now())) // a sighting may move the takeover timer
		}
	}
}

// warnOther looks once for this pool's other election (main.go
// warnOtherElection): after the first pass, which disables first if it
// must, and cut like every call.
func (s *sidecar) warnOther(ctx context.Context) {
	if s.other == nil {
		return
	}
	cctx, cancel := s.apiContext(ctx, s.facts(s.now()))
	defer cancel()
	warnOtherElection(cctx, s.other, s.otherName, s.tm.api, s.log)
}

// iterate is one pass: observe, elect, act, report. It returns how long to
// sleep before the next pass.
func (s *sidecar) iterate(ctx context.Context) time.Duration {
	s.takeSightings()
	s.refreshSources(s.now())
	if s.stepDownFile != "" {
		s.readStepDown()
	}
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
	s.stampCounter()
	if s.el.due(now) {
		s.elect(ctx, now, why == "")
		why = s.ineligible(s.now()) // the Lease just read may carry a counter record (counter.go)
	}
	if s.cl != nil && s.cl.due(s.now()) {
		// The election step may have run into a deadline: disable first,
		// before the round's calls (invariant 1).
		if now := s.now(); !s.facts(now).leading {
			s.reconcile(ctx, now, s.facts(now), why)
		}
		s.coordinate(ctx, why)
		why = s.ineligible(s.now()) // and the token
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
	s.el.adopt = s.inherit.active && s.inherit.leading
	err := s.el.step(cctx, eligible)
	if err != nil {
		s.m.apiError(apiOp(err))
	}
	if raceLost(err) {
		err = nil // another replica wrote first: the election working, not failing
	}
	s.leaseTrouble.set(s.log, err)
}

// coordinate runs one cluster-wide round (cluster.go), cut like every
// call while the node may forge.
func (s *sidecar) coordinate(ctx context.Context, why string) {
	now := s.now()
	in := clusterInput{leader: s.el.leadingAt(now), why: why, health: s.health.view(), forging: s.forgingConfirmed(),
		pod: s.names.pod, cutAt: s.apiLimit(s.facts(now))}
	s.cl.token.adopt = s.inherit.active && s.inherit.leading
	err := s.cl.step(ctx, in)
	if err != nil {
		s.m.apiError(apiOp(err))
	}
	if raceLost(err) {
		err = nil
	}
	s.clusterTrouble.set(s.log, err)
}

// apiContext bounds API calls (invariant 1): while this replica's node may
// still forge, no call runs past the moment it must have stopped, nor, while
// it leads, past its renew deadline: with the forging token, the earlier of
// two, so a slow call to one API server never delays the fence of the
// other's. A successor holding its node back is cut at the end of the
// hold, when it must disable.
func (s *sidecar) apiContext(ctx context.Context, f leadership) (context.Context, context.CancelFunc) {
	limit := s.apiLimit(f)
	if limit.IsZero() {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, limit.Sub(s.now()))
}

// apiLimit is the instant apiContext cuts calls at; zero for none.
func (s *sidecar) apiLimit(f leadership) time.Time {
	if f.stopBy.IsZero() || !s.node.n.mayForge() {
		return time.Time{}
	}
	limit, now := f.stopBy, s.now()
	if f.leading {
		limit = minTime(limit, f.fenceAt)
	}
	if now.Before(f.holdUntil) {
		limit = f.holdUntil
	}
	if w := s.waitInput(now, f); w.waiting() && !now.Before(f.holdUntil) {
		limit = minTime(limit, w.waitEnd()) // past the hold, the wait's end is the kill's time
	}
	return limit
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
		earlier(n.sent.Add(s.tm.confirm))
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
	if s.cl != nil {
		f = f.and(s.cl.token.facts(now))
	}
	if s.inherit.active && (f.held || !s.node.n.mayForge()) {
		s.inherit.active = false
	}
	if s.inherit.active {
		s.inherit.bound(&f, now, s.hb.clock(), s.tm.probe, s.tm.confirm)
	}
	return f
}

// waitInput is what forgeInput.waiting looks at.
func (s *sidecar) waitInput(now time.Time, f leadership) forgeInput {
	n := &s.node.n
	return forgeInput{now: now, state: n.state, lastRead: n.lastRead, unsure: n.unsure, stopBy: f.stopBy, lastFence: s.lastFence(f)}
}

// lastFence is the renew deadline f.stopBy follows from: stopBy is
// LEASE_DURATION - killMargin after the last renew, the deadline
// RENEW_DEADLINE after it (lease.go). For a successor, its predecessor's.
// With the forging token stopBy may be the token's: the smaller of the two
// gaps gives the later fence, so the wait it bounds is never cut short.
func (s *sidecar) lastFence(f leadership) time.Time {
	gap := s.tm.lease - s.tm.renew
	if s.cl != nil {
		gap = min(gap, s.cl.tm.lease-s.cl.tm.renew)
	}
	return f.stopBy.Add(-(gap - killMargin))
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
		now: now, producer: s.never == "",
		want:     leading && f.trusted && why == "" && s.clusterWhy() == "",
		stepDown: s.releasing(now, why) != releaseNone,
		node:     n.presence, state: n.state, sent: n.sent,
		sources: s.sources != nil, unlinkFailed: n.unlinkFailed,
		retryAt: n.retryAt, confirm: s.tm.confirm, stopBy: f.stopBy, fenceAt: f.fenceAt,
		lastRead: n.lastRead, unsure: n.unsure, holdUntil: f.holdUntil, lastFence: s.lastFence(f),
	}
	in.files = inspect(s.keys.creds, s.sources)
	n.adopt(in.files, s.digest)
	in.loaded = n.loaded == s.digest
	return in
}

// perform carries out one action; false ends the pass's actions.
func (s *sidecar) perform(ctx context.Context, now time.Time, f leadership, in forgeInput, a action, why string) bool {
	switch a {
	case actPlace:
		return s.keys.place(s.sources)
	case actRemove:
		s.node.n.unlinkFailed = !s.keys.remove()
		return true
	case actEnable:
		// The dead-man probe is told this replica leads, and only then, if
		// the time still allows (placing the files may have taken a while),
		// does the signal go.
		if !s.writeHeartbeat(f, true) || !s.now().Before(in.enableBy()) {
			return false
		}
		s.node.n.sendingKES = int64(s.keyset.cert.kesPeriod)
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
		pid, kills := s.node.n.proc.PID, s.node.kills
		ok := s.node.kill(reason)
		if s.node.kills > kills {
			s.say(true, false, "NodeKilled", "Kill", fmt.Sprintf("SIGKILL to the node (pid %d): %s", pid, reason))
		}
		return ok
	case actRelease:
		s.release(ctx, now, f, why)
	}
	return false
}

// What a replica whose node is off gives up.
const (
	releaseNone  = 0
	releaseToken = 1 << iota // the forging token: no longer to be held
	releaseLocal             // the local Lease: this replica may not forge
)

// releasing says what to give up once the node is off: the local Lease
// while leading without being eligible; the forging token while holding
// it without being eligible, fit cluster-wide, or local leader.
func (s *sidecar) releasing(now time.Time, why string) int {
	r := releaseNone
	local := s.el.leadingAt(now)
	if local && why != "" {
		r |= releaseLocal
	}
	if s.cl != nil && s.cl.holding() && (!local || why != "" || s.clusterWhy() != "") {
		r |= releaseToken
	}
	return r
}

// clusterWhy says why the cluster-wide view keeps this replica from
// forging ("" if nothing does, or cluster management is off).
func (s *sidecar) clusterWhy() string {
	if s.cl == nil {
		return ""
	}
	return s.cl.why()
}

// release gives up what releasing says, the token first: the region's
// next local leader then finds it free.
func (s *sidecar) release(ctx context.Context, now time.Time, f leadership, why string) {
	r := s.releasing(now, why)
	if r&releaseToken != 0 {
		because := firstOf(why, s.clusterWhy(), "no longer this region's local leader")
		// A reason of this replica's own (or the local Lease lost) names no
		// successor: the region's next local leader may take it at once.
		heir, err := s.cl.release(ctx, why != "" || !s.el.leadingAt(now))
		if err != nil {
			s.m.apiError(apiOp(err))
			s.log.Warn("could not release the forging token; it will expire", "err", err)
		} else {
			s.log.Info("released the forging token", "why", because, "successor", heir)
		}
	}
	if r&releaseLocal != 0 {
		s.releaseLease(ctx, now, f, why)
	}
}

// refreshSources re-reads the Secret's files each pass: a rotated set is
// picked up without a restart. A file missing or unreadable makes the
// replica ineligible; a set that reads but fails validation (opcert.go),
// or cannot forge now while the running one can (its KES window), is
// refused, and the last good set, if any, stays (SPEC 12, rotation). A
// refused set is checked again every pass: one not valid yet is taken once
// its period begins.
func (s *sidecar) refreshSources(now time.Time) {
	data, digest, err := s.keys.read()
	s.sourceTrouble.set(s.log, err)
	if err != nil || data == nil {
		s.sources, s.digest, s.keyset, s.rejected = nil, "", keySet{}, nil
		s.rejectTrouble.set(s.log, nil)
		return
	}
	if digest != s.digest {
		ks, err := validateSources(data, s.names.poolID, s.names.poolHex)
		if err == nil && s.pool != "" && ks.pool != s.pool {
			err = fmt.Errorf("the new set is pool %s, the set taken before pool %s: another pool's keys are not taken by a running sidecar (restart the pods to change pools on purpose)",
				ks.poolBech32(), keySet{pool: s.pool}.poolBech32())
		}
		if err == nil && s.sources != nil && s.kesProblem(now) == "" && s.counterProblem() == "" {
			if p := s.chainProblemOf(ks, now) + s.counterProblemOf(ks); p != "" {
				err = fmt.Errorf("the new set cannot forge now, so the running one stays: %s", p)
			}
		}
		if err == nil {
			s.sources, s.digest, s.keyset, s.pool = data, digest, ks, ks.pool
		}
		s.rejected = err // when s.sources is set, the running set stays
	} else {
		s.rejected = nil // the set in place is mounted again
	}
	s.rejectTrouble.set(s.log, s.rejected)
}

// ineligible says why this replica may not forge now ("" if it may).
func (s *sidecar) ineligible(now time.Time) string {
	n := &s.node.n
	switch {
	case s.never != "":
		return s.never
	case s.stopping:
		return "shutting down"
	case stepDownWhy(s.stepUntil, s.stepErr, now) != "":
		return stepDownWhy(s.stepUntil, s.stepErr, now)
	case s.sources == nil && s.rejected != nil:
		return "credentials refused: " + s.rejected.Error()
	case s.sources == nil:
		return "credentials unusable: " + errString(s.sourceTrouble.err)
	case s.kesProblem(now) != "":
		return s.kesProblem(now)
	case s.counterProblem() != "":
		return s.counterProblem()
	case n.presence == nodeAbsent:
		return "node process not found"
	case n.presence == nodeHidden:
		return fmt.Sprintf("the node's socket answers but no process named %s is visible: the pod needs shareProcessNamespace: true", s.names.nodeProcess)
	case n.presence == nodeAmbiguous:
		return errString(n.findErr)
	case n.signalErr != nil:
		return n.signalErr.Error()
	case n.presence == nodeBooting:
		return "node socket not answering yet"
	case n.socketFails >= s.tm.socketFails:
		return "node socket stopped answering"
	case s.heartbeatTrouble.err != nil:
		return "cannot write the heartbeat, so the dead-man probe could not stop this node: " + s.heartbeatTrouble.err.Error()
	case n.gaugeErr != nil && now.Sub(n.gaugeErrSince) >= s.tm.confirm:
		return fmt.Sprintf("the node's forging gauge has been unreadable for %s, so no signal can be confirmed (%v): enable its Prometheus endpoint or fix NODE_METRICS_URL",
			now.Sub(n.gaugeErrSince).Round(time.Second), n.gaugeErr)
	case s.tipProblem(now) != "":
		return s.tipProblem(now)
	case !s.health.healthy():
		return "health check failing: " + s.health.lastError()
	}
	return ""
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

// noteTransitions logs and counts real changes, once each: of the local
// Lease here, of the forging token in cluster.go.
func (s *sidecar) noteTransitions(now time.Time, f leadership, why string) {
	if s.cl != nil {
		s.cl.noteTransitions(now, s.m)
		f = s.el.facts(now)
	}
	if f.leading && s.leading && f.epoch.UID != s.leaseUID {
		s.log.Warn("the Lease was deleted and this leader recreated it: keep it out of pruning and cleanup tools", "epoch", f.epoch.String())
	}
	s.leaseUID = f.epoch.UID
	// In the order of cause and effect: a pass that finds the replica
	// ineligible, disables and releases says so in that order.
	switch {
	case why != s.why && why != "":
		s.log.Info("not eligible to forge", "why", why)
	case why != s.why:
		s.log.Info("eligible to forge")
	}
	if (why == "") != (s.why == "") {
		s.sayEligibility(why)
	}
	s.noteForging()
	if f.leading != s.leading {
		s.m.leadershipChange()
		s.noteLeadership(now, f, why)
	}
	s.leading, s.why = f.leading, why
}

// sayEligibility says that this replica became eligible ("") or not.
func (s *sidecar) sayEligibility(why string) {
	if why == "" {
		s.say(false, false, "Eligible", "Check", "eligible to forge")
		return
	}
	s.say(true, false, "NotEligible", "Check", why)
}

// noteForging says when the node's forging was confirmed on, and when it
// was confirmed off again (or the node killed): unknown, enabling and
// disabling are neither (invariant 4).
func (s *sidecar) noteForging() {
	n := &s.node.n
	switch {
	case n.state == stateOn && !s.forging:
		s.say(false, false, "ForgingEnabled", "Enable", fmt.Sprintf("the node (pid %d) confirmed forging", n.proc.PID))
		s.forging = true
	case n.state == stateOff && s.forging:
		s.say(false, false, "ForgingDisabled", "Disable", fmt.Sprintf("the node (pid %d) is confirmed not forging, or gone", n.proc.PID))
		s.forging = false
	}
}

// noteLeadership logs, counts and says how the local lead began or ended.
func (s *sidecar) noteLeadership(now time.Time, f leadership, why string) {
	switch {
	case f.leading:
		s.released = false
		s.log.Info("acquired the Lease", "epoch", f.epoch.String())
		s.say(false, true, "LeaseAcquired", "Acquire", fmt.Sprintf("%s leads (Lease %s, epoch %d)", s.names.pod, s.names.lease, f.epoch.Transitions))
	case s.released:
		s.say(false, true, "LeaseReleased", "Release", fmt.Sprintf("%s released the Lease %s: %s", s.names.pod, s.names.lease, firstOf(why, "handing over")))
	case f.holder == s.el.identity && !now.Before(f.fenceAt):
		s.m.fenced()
		s.log.Warn("fenced: no successful renew within RENEW_DEADLINE; forging disabled", "renew_deadline", s.tm.renew.String())
		if why != "" { // handing over, it renews no more: its release did not get through
			s.say(true, true, "ReleaseFailed", "Release", fmt.Sprintf("%s could not release the Lease %s while handing over (%s); it lapses, and a standby takes it at expiry", s.names.pod, s.names.lease, why))
			break
		}
		s.say(true, true, "Fenced", "Fence", fmt.Sprintf("%s: no successful renew of the Lease %s within RENEW_DEADLINE (%s); forging disabled", s.names.pod, s.names.lease, s.tm.renew))
	default:
		s.log.Warn("lost the Lease", "holder", f.holder, "missing", s.el.observed.missing)
		s.say(true, true, "LeaseLost", "Observe", fmt.Sprintf("%s lost the Lease %s (holder now %q, missing %v)", s.names.pod, s.names.lease, f.holder, s.el.observed.missing))
	}
}

// writeHeartbeat tells the dead-man probe how long it may leave the node
// alone, counted from the moment of writing.
func (s *sidecar) writeHeartbeat(f leadership, mayForge bool) bool {
	now := s.now()
	b := beat{valid: heartbeatValidity(now, &s.node.n, f, s.tm.probe, s.tm.lease), mayForge: mayForge, node: s.node.n.proc,
		stop: !f.stopBy.IsZero(), stopIn: f.stopBy.Sub(now), leading: f.leading}
	err := s.hb.write(b)
	s.heartbeatTrouble.set(s.log, err)
	return err == nil
}

// forgingConfirmed is what this replica reports: the node confirmed it
// (or, without a gauge, the signal was delivered).
func (s *sidecar) forgingConfirmed() bool { return s.node.n.state == stateOn }

// report writes the heartbeat, the CardanoLeader status (leader only, on
// change) and the snapshot behind /status and /metrics.
func (s *sidecar) report(ctx context.Context, now time.Time, f leadership) {
	s.writeHeartbeat(f, s.node.n.mayForge())
	if f.leading {
		s.syncStatus(ctx, now, f, s.why)
	} else {
		s.status.forget()
	}
	s.publish(now, f)
	s.noteConditions(s.board.load().Chain)
	if s.events != nil {
		s.events.setLeader(s.status.uid)
		if !s.events.async { // no writer goroutine: the simulated world's tests
			ectx, cancel := s.apiContext(ctx, s.facts(s.now()))
			s.events.write(ectx)
			cancel()
		}
	}
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
	wrote, err := s.status.sync(cctx, now, leaderFacts{forging: s.forgingConfirmed(), why: why, epoch: f.epoch, keys: s.keyStatus(now), refused: errString(s.rejected)})
	if err != nil {
		s.m.apiError(apiOp(err))
	} else if wrote {
		s.log.Debug("CardanoLeader status written", "forging", s.forgingConfirmed())
	}
	s.statusTrouble.set(s.log, err)
}

// nextWake is how long the loop may sleep from now: until the next
// election round, the renew deadline, the node's stopBy, or the next look
// at a signal or at a node that may forge without the lead.
func (s *sidecar) nextWake(now time.Time) time.Duration {
	n, f := &s.node.n, s.facts(now)
	if n.state == stateDisabling { // and at the kill, not up to pollPending after it
		if kill := (forgeInput{sent: n.sent, confirm: s.tm.confirm, stopBy: f.stopBy}).killAt(); kill.After(now) {
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
	wake := s.el.wakeAt(now)
	if s.cl != nil {
		wake = minTime(wake, s.cl.wakeAt(now))
	}
	wait := wake.Sub(now)
	if n.presence != nodeUp {
		wait = min(wait, s.tm.retry) // look for the node and its socket
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
	return s.tm.confirm + s.tm.api + shutdownSlack
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
		if s.never != "" || (!s.node.n.mayForge() && !f.leading) || !now.Before(deadline) {
			break
		}
		s.sleep(pollPending)
	}
	now := s.now()
	s.noteTransitions(now, s.facts(now), s.ineligible(now))
	s.report(ctx, now, s.facts(now))
	if s.events != nil {
		s.events.drain(ctx) // the handover's Events, in what is left of the budget: the node is off
	}
	s.log.Info("stopped", "node_forging_state", s.node.n.state.String())
	return nil
}

// errorOf is msg as an error, nil when empty.
func errorOf(msg string) error {
	if msg == "" {
		return nil
	}
	return errors.New(msg)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// publish builds the snapshot at the end of a pass.
func (s *sidecar) publish(now time.Time, f leadership) {
	n := &s.node.n
	v := &snapshot{
		Pod: s.names.pod, Identity: s.el.identity, Eligible: s.why == "", Reason: s.why,
		Holder: f.holder, Lease: s.names.lease, Epoch: f.epoch.Transitions, LeaseUID: f.epoch.UID,
		Forging: s.forgingConfirmed(), ForgingState: n.state.String(), NodePID: n.proc.PID, NodeUp: n.presence == nodeUp,
		Network: s.names.network, PoolID: s.names.poolID, Region: s.names.region, Version: version,
		renewedAt: s.el.renewedAt, fenceAt: f.fenceAt, passAt: now,
	}
	if s.cl != nil {
		v.Cluster = s.cl.snapshot(now, s.el.leadingAt(now), s.health.healthy())
	}
	v.Chain = s.chainSnapshot(now)
	s.m.keysInfo(v.Chain.KeysPoolID)
	s.nodeCertTrouble.set(s.log, errorOf(v.Chain.NodeCertificateMismatch))
	s.counterTrouble.set(s.log, errorOf(v.Chain.CounterWarning))
	v.Role = "standby"
	switch {
	case f.leading:
		v.Role = "leader"
	case s.why != "":
		v.Role = "ineligible"
	}
	if f.held {
		age := int64(now.Sub(s.el.renewedAt) / time.Second)
		v.RenewAgeSeconds = &age
	}
	v.lastChange = now
	if old := s.board.load(); old != nil && old.Role == v.Role && old.Forging == v.Forging {
		v.lastChange = old.lastChange
	}
	v.LastTransition = v.lastChange.UTC().Format(time.RFC3339)
	// Ready: the node is up and this replica's state is settled: a leader
	// forging with confirmation, anyone else with its node certainly off.
	settled := n.state == stateOn || n.state == stateOff
	v.ready = s.never != "" || (v.NodeUp && settled && f.leading == v.Forging)
	s.board.store(v)
}
