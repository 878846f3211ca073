#!/usr/bin/env python3
"""Mutants: each safety fix of the forging core, reverted one at a time.

For every entry below, the repository is copied to a temporary directory,
the fix is undone there (the first string replaced by the second, in the
named file, plus an optional second replacement, in the same file or
another), and the tests named after
it are run (`go test -run`, unit tests only: Go, no root). Each must fail:
a test that passes with its fix reverted proves nothing.

    python3 hack/mutants.py [name-substring ...]

prints one line per mutant and exits 1 if any survives or no longer
applies (the code moved on: update the entry). `make mutants` runs them all
(about two minutes).
"""
import os, shutil, subprocess, sys, tempfile

muts = [
 ("missing Lease created at once", "lease.go",
  "		if eligible && (e.mayRecreate(leading) || (e.expired(e.now()) && e.taking())) {", "		if eligible {",
  "TestInvariant2MissingLeaseIsWaitedOut|TestInvariant2DeletedLeaseOfAPartitionedLeader|TestInvariant2LeaseDeletedByHand"),
 ("holding survives a missing Lease", "lease.go",
  "	e.lease, e.holding = nil, false\n	e.note(leaseRecord{missing: true}, t)", "	e.lease = nil\n	e.note(leaseRecord{missing: true}, t)",
  "TestInvariant2DeletedLeaseEndsLeadership|TestInvariant2LeaseDeletedByHand"),
 ("an unconfirmed enable counts as off", "forge.go",
  "		// Delivered and not confirmed: unknown, never off.\n		n.state = stateUnknown", "		n.state = stateOff",
  "TestInvariant4UnconfirmedEnableThroughAFailover|TestConfirm"),
 ("two processes named cardano-node count as node gone", "signal.go",
  "		case err != nil || ok:\n			nt.find.set(nt.log, err) // cannot tell: it stays the node", "		case false && (err != nil || ok):\n			nt.find.set(nt.log, err) // cannot tell: it stays the node",
  "TestInvariant4SecondNodeProcess"),
 ("observation stamped when the read is sent", "lease.go",
  "	e.lease = l\n	e.observe(l, e.now())\n	return l, nil", "	e.lease = l\n	e.observe(l, sent)\n	return l, nil",
  "TestInvariant2ObservationStampedWhenReadReturns", ("	l, err := e.api.get(cctx)", "	sent := e.now()\n	l, err := e.api.get(cctx)")),
 ("the record's duration wins over our own", "lease.go",
  "	return max(e.timing.lease, time.Duration(e.observed.duration)*time.Second, e.longest)", "	if e.observed.duration > 0 {\n		return time.Duration(e.observed.duration) * time.Second\n	}\n	return e.timing.lease",
  "TestInvariant2NeverShorterThanOwnLeaseDuration"),
 ("the fence waits for the election step", "loop.go",
  "	if f := s.facts(now); !f.leading {\n		s.reconcile(ctx, now, f, why)\n	}", "",
  "TestInvariant1FenceBeforeAnyAPICall"),
 ("calls not cut at stopBy", "loop.go",
  "	if f.stopBy.IsZero() || !s.node.n.mayForge() {\n		return time.Time{}", "	if true || f.stopBy.IsZero() || !s.node.n.mayForge() {\n		return time.Time{}",
  "TestInvariant1FenceBeforeAnyAPICall"),
 ("a disable overtakes an enable in flight", "forge.go",
  "	case in.state == stateEnabling:\n		// One SIGHUP at a time", "	case in.state == stateEnabling && false:\n		// One SIGHUP at a time",
  "TestInvariant5OvertakingDisable|TestDecide"),
 ("a disable SIGHUP although the unlink failed", "forge.go",
  "	case in.files != filesAbsent:\n		return actKill // the unlink failed", "	case in.files != filesAbsent && false:\n		return actKill // the unlink failed",
  "TestInvariant5UnlinkFailedKills|TestDecide"),
 ("a never-held replica kills at once", "forge.go",
  "	at := in.sent.Add(in.confirm)\n	if !in.stopBy.IsZero() && in.stopBy.Before(at) {", "	at := in.sent.Add(in.confirm)\n	if in.stopBy.Before(at) {",
  "TestInvariant5NeverHeldWaitsTheTimeout|TestDecide"),
 ("a signal failure does not make the replica ineligible", "loop.go",
  "	case n.signalErr != nil:\n		return n.signalErr.Error()", "",
  "TestSignalFailureHandsOver"),
 ("pidfd_open failure is fatal", "signal.go",
  "	case err != nil:\n		pidfd = -1", "	case err != nil:\n		return err",
  "TestSignalIncarnation"),
 ("a relay signals its node", "forge.go",
  "	case !in.producer:\n		return actNone // relays and monitors never touch their node", "",
  "TestInvariant7RelayNeverSignals|TestDecide"),
 ("a missing heartbeat passes the dead-man probe", "deadman.go",
  "	case os.IsNotExist(err):\n		return \"\", fmt.Errorf(", "	case os.IsNotExist(err):\n		return \"ok\", nil\n		return \"\", fmt.Errorf(",
  "TestDeadmanFailsClosed"),
 ("the probe checks its own environment's files", "deadman.go",
  "	if err == nil && len(rec.Files) > 0 {\n		files = rec.Files\n	}", "",
  "TestDeadmanFailsClosed"),
 ("release whatever the node's state", "forge.go",
  "	if in.stepDown && in.state == stateOff {", "	if in.stepDown {",
  "TestInvariant7NoReleaseAfterFailedKill|TestDecide"),
 ("shutdown writes the status when the cached holder is us (the old rule)", "loop.go",
  "	s.stopping = true\n", "	s.stopping = true\n	if s.el.holder() == s.el.identity {\n		s.status.forget()\n		s.status.sync(ctx, s.now(), leaderFacts{why: \"shutting down\", epoch: s.el.epoch()})\n	}\n",
  "TestInvariant7FencedLeaderLeavesTheStatus"),
 ("targets read through links and FIFOs", "keys.go",
  "	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)", "	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)",
  "TestInvariant8TargetsAreNeverReadThrough"),
 ("a gauge of 0.5 counts as off", "signal.go",
  "			if err != nil || (v != 0 && v != 1) {", "			if err != nil {",
  "TestParseForging"),
 ("/healthz on the wall clock", "status.go",
  "	now := st.now()\n	if age := now.Sub(v.passAt)", "	now := time.Now()\n	if age := now.Sub(v.passAt)",
  "TestHealthzFails"),
 ("init writes file by file", "keys.go",
  "	if err := commit(all); err != nil {\n		return err\n	}", "",
  "TestInitAllOrNothing", ("		st, err := stage(path, mode, fill)\n		if err != nil {\n			return fmt.Errorf(\"%s: %w\", what, err)\n		}\n		all = append(all, st)", "		st, err := stage(path, mode, fill)\n		if err != nil {\n			return fmt.Errorf(\"%s: %w\", what, err)\n		}\n		commit([]*staged{st})")),
 ("API errors only at DEBUG", "main.go",
  "	case err != nil && tr.err == nil:\n		log.Warn(tr.what, \"err\", err.Error())", "	case err != nil && tr.err == nil:\n		log.Debug(tr.what, \"err\", err.Error())",
  "TestTroubleIsWarnedOnce"),
 ("an empty holder is a release", "lease.go",
  "	if !r.missing && r.holder == \"\" && r.releasedBy != \"\" && r.releasedBy == e.lastHolder &&\n		(r.successor == \"\" || r.successor == e.successor) {", "	if !r.missing && r.holder == \"\" {",
  "TestInvariant7ReleaseIsTakenAtOnce"),
 ("no dead-man budget rule", "lease.go",
  "	if b := p.budget(); b+killMargin > t.lease-t.renew {", "	if b := p.budget(); false && b+killMargin > t.lease-t.renew {",
  "TestConfigErrors"),
 ("a release keeps the lead until its reply", "lease.go",
  "	e.holding = false\n	cctx, cancel := context.WithTimeout(ctx, e.timing.api)", "	cctx, cancel := context.WithTimeout(ctx, e.timing.api)",
  "TestInvariant7LostReleaseReply|TestInvariant7LostReleaseReplyEndsLeadership", ("	e.lease = got\n	e.observe(got, e.now())\n	return nil\n}", "	e.holding = false\n	e.lease = got\n	e.observe(got, e.now())\n	return nil\n}")),
 ("a reading equal to the one before the signal confirms it", "forge.go",
  "	case n.state == stateEnabling && r == readOn && (n.before == readOff && !n.beforeAt.Before(n.unsure) || over):", "	case n.state == stateEnabling && r == readOn:",
  "TestInvariant5NewKeysThenStepDown|TestConfirm"),
 ("a restarted sidecar forgets the old promise", "deadman.go",
  "		return inheritance{active: !rec.Boot, known:", "		return inheritance{active: false, known:",
  "TestInvariant1RestartedSidecarKeepsThePromise|TestInheritedPromise"),
 ("a heartbeat that cannot be written is not a reason to stop", "loop.go",
  "	case s.heartbeatTrouble.err != nil:\n", "	case s.heartbeatTrouble.err != nil && false:\n",
  "TestInvariant1HeartbeatFailureIsIneligible"),
 ("an unreadable /proc entry is no process", "signal.go",
  "	case err != nil:\n		return false, err\n	}\n	return start == p.Start", "	case err != nil:\n		return false, nil\n	}\n	return start == p.Start",
  "TestProcCannotTellIsNotGone", ("			unreadable = err // it may be the node", "			_ = unreadable // it may be the node")),
 ("the tracker takes cannot-tell for gone", "signal.go",
  "		case err != nil || ok:\n			nt.find.set(nt.log, err) // cannot tell: it stays the node", "		case ok:\n			nt.find.set(nt.log, err) // cannot tell: it stays the node",
  "TestInvariant4UnreadableProcIsNotGone", ("	case err == nil && len(cands) == 0:", "	case len(cands) == 0:")),
 ("without a gauge an enable counts at once", "forge.go",
  "	switch {\n	case now.Sub(n.sent) < window:\n	case n.state == stateEnabling:", "	switch {\n	case n.state == stateEnabling:\n		n.state, n.loaded = stateOn, n.sending\n	case now.Sub(n.sent) < window:\n	case n.state == stateEnabling:",
  "TestInvariant5NoGaugeOneSignalAtATime"),
 ("the pass acts on a clock read before a slow look at the node", "loop.go",
  "	s.refreshSources()\n	octx, cancel := s.observeContext(ctx)", "	now0 := s.now()\n	s.refreshSources()\n	octx, cancel := context.WithCancel(ctx)",
  "TestInvariant1FenceBeforeAnyAPICall", ("	now := s.now() // after observing", "	now := now0 // after observing")),
 ("the recreate of a deleted Lease not cut at the fence", "lease.go",
  "	if !e.renewedAt.IsZero() && t.Before(e.fence()) {", "	if e.leadingAt(t) {",
  "TestInvariant1RecreateCutAtTheFence"),
 ("without a gauge a disable counts at once", "signal.go",
  "	default:\n		n.state = stateDisabling\n	}", "	case !nt.confirmable:\n		n.state = stateOff\n	default:\n		n.state = stateDisabling\n	}",
  "TestInvariant7NoGaugeReleaseWaitsForTheDisable"),
 ("a restarted sidecar trusts an early 0", "forge.go",
  "	case r == readOff && now.Before(n.unsure):", "	case r == readOff && now.Before(n.unsure) && false:",
  "TestInvariant4RestartedSidecarDoesNotTrustAnEarlyZero|TestConfirm"),
 ("an enable without a fresh heartbeat", "loop.go",
  "		if !s.writeHeartbeat(f, true) || !s.now().Before(in.enableBy()) {", "		if !s.now().Before(in.enableBy()) {",
  "TestInvariant1EnableWritesTheHeartbeatFirst"),
 ("an enable without a fresh look at the clock", "loop.go",
  "		if !s.writeHeartbeat(f, true) || !s.now().Before(in.enableBy()) {", "		if !s.writeHeartbeat(f, true) {",
  "TestInvariant1NoEnableAfterTheFence"),
 ("a leader recreates its Lease as often as it is deleted", "lease.go",
  "	if !leading || !now.Before(e.fence()) || (!e.recreatedAt.IsZero() && now.Sub(e.recreatedAt) < e.timing.lease) {", "	if !leading || !now.Before(e.fence()) {",
  "TestInvariant2PrunerIsNotLedThrough"),
 ("a step goes on after a 409 at the deadline", "lease.go",
  "		if !apierrors.IsConflict(err) || !e.leadingAt(e.now()) {", "		if !apierrors.IsConflict(err) {",
  "TestInvariant1ConflictAtTheFenceEndsTheStep"),
 ("a write with the same renew time is no change", "lease.go",
  "	r := leaseRecord{version: l.ResourceVersion, holder:", "	r := leaseRecord{holder:",
  "TestInvariant2AnyWriteIsAChange"),
 ("a successor's disable confirmed by a change inside unsure", "forge.go",
  "(n.before == readOn && !now.Before(n.unsure) || over)", "(n.before == readOn || over)",
  "TestInvariant4SuccessorDisableInsideUnsure|TestConfirm"),
 ("the pre-election disable only for replicas that held", "loop.go",
  "	if f := s.facts(now); !f.leading {\n", "	if f := s.facts(now); !f.leading && f.held {\n",
  "TestInvariant1NeverHeldDisablesBeforeAnyCall"),
 ("an enable close to the deadline", "forge.go",
  "	case !in.now.Before(in.enableBy()):\n		return actNone", "	case false:\n		return actNone",
  "TestInvariant1NoEnableCloseToTheDeadline|TestDecide", ("loop.go", "		if !s.writeHeartbeat(f, true) || !s.now().Before(in.enableBy()) {", "		if !s.writeHeartbeat(f, true) {")),
 ("a step goes on past the deadline after a re-read", "lease.go",
  "	case leading && !e.now().Before(e.fence()):\n		return nil", "	case false:\n		return nil",
  "TestInvariant1ConflictAtTheFenceEndsTheStep"),
 ("a partial /proc read with fresh matches is off", "signal.go",
  "	case err != nil:\n		*n = nodeState{presence: nodeAmbiguous, state: stateUnknown, findErr: err}", "	case err != nil && false:\n		*n = nodeState{presence: nodeAmbiguous, state: stateUnknown, findErr: err}",
  "TestTrackerCannotTellIsUnknown"),
 ("an enable in flight at the deadline is waited for", "forge.go",
  "		if past(in.now, in.fenceAt) || past(in.now, in.stopBy) {", "		if past(in.now, in.stopBy) {",
  "TestDecide|TestInvariant1NoEnableCloseToTheDeadline"),
 ("enables only while their whole window fits before the deadline", "forge.go",
  "	return in.fenceAt.Add(-disableWindow)", "	return in.fenceAt.Add(-in.confirm - disableWindow)",
  "TestSlowRenewsStillForge"),
 ("no bound on SIGHUP_CONFIRM_TIMEOUT", "lease.go",
  "	if t.confirm > t.renew/2 {", "	if false {",
  "TestConfigErrors"),
 ("a successor's own record makes its stopBy now", "lease.go",
  "	if r.holder != e.identity && e.holding {", "	if r.holder == e.identity && !e.holding && e.renewedAt.IsZero() && e.urgent.IsZero() {\n		e.urgent = t\n	}\n	if r.holder != e.identity && e.holding {",
  "TestSuccessorRidesOutOneFailedRenew"),
 ("the loop's sleep measured from the start of the pass", "loop.go",
  "	return s.nextWake(s.now())", "	return s.nextWake(now)",
  "TestInvariant1FenceNotLateAfterASlowStatusCall"),
 ("the look at the node not cut at the kill", "loop.go",
  "	if d.IsZero() || !n.mayForge() {\n		return context.WithCancel(ctx)", "	if true || d.IsZero() || !n.mayForge() {\n		return context.WithCancel(ctx)",
  "TestInvariant5KillNotLateBySlowGauge"),
 ("the time checked before the heartbeat, not after", "loop.go",
  "		if !s.writeHeartbeat(f, true) || !s.now().Before(in.enableBy()) {", "		if !s.now().Before(in.enableBy()) || !s.writeHeartbeat(f, true) {",
  "TestInvariant1NoEnableAfterASlowHeartbeat"),
 ("a successor disables a node that said 0 at once", "forge.go",
  "	case in.waiting():", "	case false && in.waiting():",
  "TestDecide"),
 ("a successor takes any node for one its predecessor may have enabled", "deadman.go",
  "	return in.known && in.forging && (in.node == nodeProc{} || in.node == p)", "	return in.known",
  "TestSuccessorOfAStandbySendsNothing|TestSuccessorLeavesANewNodeAlone"),
 ("a heartbeat valid for 0 passes the probe at that instant", "deadman.go",
  "	case left <= 0: // a validity of 0 has run out at once", "	case left < 0:",
  "TestSignalFailureHandsOver"),
 ("the status written on the pass's facts", "loop.go",
  "	if f = s.facts(s.now()); !f.leading {\n		return\n	}", "	if !f.leading {\n		return\n	}",
  "TestInvariant1NoStatusCallPastTheFence"),
 ("a successor disables before its first renew could succeed", "forge.go",
  "	case in.state != stateOff && in.now.Before(in.holdUntil):", "	case false:",
  "TestSuccessorRidesOutOneFailedRenew"),
 ("a successor's stopBy a margin short of its predecessor's", "deadman.go",
  "		by = in.stopBy\n", "		by = in.stopBy - 6*time.Second\n",
  "TestSuccessorRidesOutOneFailedRenew"),
 ("what the predecessor said of its node forgotten with its promise", "deadman.go",
  "	return in.known && in.forging && (in.node == nodeProc{} || in.node == p)", "	return in.active && in.forging && (in.node == nodeProc{} || in.node == p)",
  "TestInheritanceNamesTheNode"),
 ("an older version's record taken for not forging", "deadman.go",
  "			forging: rec.Forging || len(rec.Files) == 0}", "			forging: rec.Forging}",
  "TestInheritanceNamesTheNode"),
 ("the look at the node not cut at the renew deadline", "loop.go",
  "	if f.held && n.state != stateDisabling {\n		earlier(f.fenceAt)", "	if false {\n		earlier(f.fenceAt)",
  "TestInvariant1FenceNotLateBySlowGauge"),
 ("a successor's stopBy from its predecessor's promise, not its stopBy", "deadman.go",
  "	if in.stopBy != 0 {\n		by = in.stopBy\n	}", "",
  "TestInheritedStopBy"),
 ("a successor holds whatever its predecessor was", "deadman.go",
  "	if in.leading && !stopBy.Equal(now) {", "	if !stopBy.Equal(now) {",
  "TestSuccessorOfAStandbyDoesNotHold"),
 ("the hold measured from stopBy only", "deadman.go",
  "		f.holdUntil = minTime(now.Add(in.until-clock-disableWindow), f.stopBy.Add(-confirm-disableWindow))", "		f.holdUntil = f.stopBy.Add(-confirm - disableWindow)",
  "TestSuccessorHoldEndsBeforeTheDeadline"),
 ("no pre-election disable for a successor", "loop.go",
  "	if f := s.facts(now); !f.leading {\n		s.reconcile(ctx, now, f, why)", "	if f := s.facts(now); !f.leading && (f.held || !s.inherit.active) {\n		s.reconcile(ctx, now, f, why)",
  "TestSuccessorHoldEndsBeforeTheDeadline"),
 ("a holding successor's calls cut at stopBy, not at the hold's end", "loop.go",
  "	if now.Before(f.holdUntil) {\n		limit = f.holdUntil\n	}", "",
  "TestSuccessorHoldEndsBeforeTheDeadline"),
 ("the look at the node cut past the deadline also while confirming", "loop.go",
  "	if f.held && n.state != stateDisabling {", "	if f.held {",
  "TestExLeaderConfirmsWithASlowishGauge"),
 ("a successor ignores a Lease naming another replica", "deadman.go",
  "	if f.elsewhere {\n		stopBy = now\n	}", "",
  "TestSuccessorSeesAnotherHolder"),
 ("the hold's end is no wake-up", "loop.go",
  "	if n.mayForge() && f.holdUntil.After(now) {\n		wait = min(wait, f.holdUntil.Sub(now))", "	if false {\n		wait = min(wait, f.holdUntil.Sub(now))",
  "TestSuccessorHoldEndsBeforeTheDeadline"),
 ("a failed look overwrites what the gauge last said", "forge.go",
  "	if r != readNone {\n		n.lastRead, n.readAt = r, now", "	if true {\n		n.lastRead, n.readAt = r, now",
  "TestExLeaderConfirmsWithASlowishGauge|TestSuccessorWaitsThroughGaugeFaults"),
 ("a failed look ends a successor's wait", "forge.go",
  "	return in.state == stateUnknown && in.lastRead != readOn && in.now.Before(in.waitEnd())", "	return in.state == stateUnknown && in.lastRead == readOff && in.now.Before(in.waitEnd())",
  "TestDecide"),
 ("a successor's wait bounded by stopBy less the confirmation, not the predecessor's deadline", "forge.go",
  "	if !in.stopBy.IsZero() && in.lastFence.Before(in.unsure) {\n		return in.lastFence", "	if !in.stopBy.IsZero() && in.stopBy.Add(-in.confirm).Before(in.unsure) {\n		return in.stopBy.Add(-in.confirm)",
  "TestSuccessorWaitEndsAtThePredecessorsDeadline"),
 ("a successor's look not cut at the hold's end", "loop.go",
  "	if !f.holdUntil.IsZero() && n.state != stateDisabling {\n		earlier(f.holdUntil)", "	if false {\n		earlier(f.holdUntil)",
  "TestSuccessorHoldEndsBeforeTheDeadline"),
 ("a successor's wait is no wake-up", "loop.go",
  "	if w := s.waitInput(now, f); w.waiting() && !now.Before(f.holdUntil) { // and at the wait's end", "	if w := s.waitInput(now, f); false && w.waiting() {",
  "TestSuccessorWaitEndsBeforeTheDeadline"),
 ("API calls not cut at the end of a successor's wait", "loop.go",
  "	if w := s.waitInput(now, f); w.waiting() && !now.Before(f.holdUntil) {\n		limit = minTime(limit, w.waitEnd())", "	if w := s.waitInput(now, f); false && w.waiting() {\n		limit = minTime(limit, w.waitEnd())",
  "TestSuccessorWaitEndsBeforeTheDeadline"),
 ("a successor sends a disable its predecessor's late signal can undo", "forge.go",
  "	case in.overtakable():", "	case false && in.overtakable():",
  "TestSuccessorWaitEndsBeforeTheDeadline"),
 ("a successor's renews during the hold cut at its wait's end", "loop.go",
  "	if w := s.waitInput(now, f); w.waiting() && !now.Before(f.holdUntil) {\n		limit", "	if w := s.waitInput(now, f); w.waiting() {\n		limit",
  "TestSuccessorRenewsAreCutAtTheHold"),
 ("a successor's enable confirmed by its predecessor's landing", "forge.go",
  "(n.before == readOff && !n.beforeAt.Before(n.unsure) || over)", "(n.before == readOff || over)",
  "TestInvariant4SuccessorEnableNotConfirmedByItsPredecessors|TestConfirm"),
 ("a successor's enable confirmed against a 0 read before its unsure window ended", "forge.go",
  "(n.before == readOff && !n.beforeAt.Before(n.unsure) || over)", "(n.before == readOff && !n.sent.Before(n.unsure) || over)",
  "TestInvariant4SuccessorEnableNotConfirmedByAStaleZero"), # Cluster-wide coordination (cluster.go).
 ("the token's deadline does not fence", "lease.go",
  "	f.fenceAt = earliest(a.fenceAt, b.fenceAt)", "	f.fenceAt = a.fenceAt",
  "TestCluster15DeadSidecarWithAFailingToken|TestClusterLeadershipAnd|TestCluster12NoCallPastTheCut"),
 ("the token's takeover does not bound the kill", "lease.go",
  "	f.stopBy = earliest(a.stopBy, b.stopBy)", "	f.stopBy = a.stopBy",
  "TestClusterLeadershipAnd|TestCluster15DeadSidecarWithAFailingToken"),
 ("forging without the token", "lease.go",
  "	f.leading = a.leading && b.leading", "	f.leading = a.leading",
  "TestCluster1BetterRegionForges|TestCluster6CoordinationServerDown"),
 ("any eligible local leader takes the token", "cluster.go",
  "	case c.rank[0].region != c.region:", "	case false:",
  "TestCluster1BetterRegionForges|TestCluster2LocalFailoverStaysInTheRegion"),
 ("no hysteresis", "cluster.go",
  "		if since, ok := c.better[k.region]; ok && now.Sub(since) >= c.tm.preempt {", "		if _, ok := c.better[k.region]; ok {",
  "TestCluster4LeadReturnsOnlyAfterTheHysteresis|TestCluster8FlappingHealthNeverBounces|TestCluster10PriorityPatchMovesTheLead"),
 ("no minimum hold", "cluster.go",
  "	if c.viewErr != nil || c.heldFrom.IsZero() || now.Sub(c.heldFrom) < c.tm.minHold {", "	if c.viewErr != nil || c.heldFrom.IsZero() {",
  "TestCluster4LeadReturnsOnlyAfterTheHysteresis"),
 ("Disabled is ignored", "cluster.go",
  "	case forgeDisabled:\n		st.why = \"the CardanoForgeCluster says Disabled\"", "	case forgeDisabled:\n		st.why = \"\"",
  "TestCluster5DisabledStopsTheRegion"),
 ("health failures do not count", "health.go",
  "	case v.failures > 0:\n		return healthPenalty * v.failures\n	case v.recovering:\n		return healthPenalty\n	}", "	}\n	_ = healthPenalty",
  "TestCluster8FlappingHealthNeverBounces"),
 ("the takeover gate skips a missing token", "lease.go",
  "(e.expired(e.now()) && e.taking())", "e.expired(e.now())",
  "TestCluster1BetterRegionForges|TestCluster13MissingTokenIsWaitedOut|TestCluster9TokenDeletedByHand"),
 ("coordination calls not cut at the fence", "loop.go",
  "	if f.leading {\n		limit = minTime(limit, f.fenceAt)\n	}", "",
  "TestCluster12NoCallPastTheCut"),
 ("the round has no budget", "cluster.go",
  "	c.cutAt = start.Add(c.tm.api)\n	if !in.cutAt.IsZero() && in.cutAt.Before(c.cutAt) {", "	c.cutAt = start.Add(time.Hour)\n	if !in.cutAt.IsZero() && in.cutAt.Before(c.cutAt) {",
  "TestCluster16HangingServerKeepsTheLocalLease"),
 ("a previous process's promise ends with the local Lease alone", "lease.go",
  "	f.held = a.held && b.held", "	f.held = a.held",
  "TestClusterLeadershipAnd"),
 ("a blind view calls candidacies lapsed", "cluster.go",
  "	case !c.blind:\n		s.credit += t.Sub(s.at)", "	default:\n		s.credit += t.Sub(s.at)",
  "TestCluster17OutageDoesNotBounceTheLead"),
 ("the round runs before the disable after a fence met in the election step", "loop.go",
  "		if now := s.now(); !s.facts(now).leading {\n			s.reconcile(ctx, now, s.facts(now), why)\n		}", "",
  "TestCluster18DisableBeforeTheRound"),
 ("a record naming us is renewed at once", "lease.go",
  "	case deref(l.Spec.HolderIdentity) == e.identity && (leading || e.adopt):", "	case deref(l.Spec.HolderIdentity) == e.identity:",
  "TestInvariant2OwnRecordIsNotProofOfLeading"),
 ("a missing token waited out with our own duration only", "lease.go",
  "	return max(e.timing.lease, time.Duration(e.observed.duration)*time.Second, e.longest)", "	return max(e.timing.lease, time.Duration(e.observed.duration)*time.Second)",
  "TestCluster19MissingTokenWaitsTheLongestRegion"),
 ("losing the local Lease hands the token to another region", "loop.go",
  "		heir, err := s.cl.release(ctx, why != \"\" || !s.el.leadingAt(now))", "		heir, err := s.cl.release(ctx, why != \"\")",
  "TestCluster20LocalLeaseLostKeepsTheRegion"),
 ("a release naming another region is taken at once", "lease.go",
  "		(r.successor == \"\" || r.successor == e.successor) {", "		true {",
  "TestClusterReleaseNamesTheSuccessor"),

]

def main(only):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    work = tempfile.mkdtemp(prefix="forge-mutants-")
    files = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        os.makedirs(os.path.join(work, os.path.dirname(f)), exist_ok=True)
        shutil.copy2(os.path.join(root, f), os.path.join(work, f))
    bad = 0
    try:
        for m in muts:
            name, path, old, new, tests = m[:5]
            if only and not any(o in name for o in only):
                continue
            verdict = run(work, path, old, new, tests, m[5] if len(m) > 5 else None)
            bad += not verdict.startswith("killed")
            print(f"- {name}: {verdict}")
    finally:
        shutil.rmtree(work)
    return 1 if bad else 0


def run(work, path, old, new, tests, extra):
    edits = [(path, old, new)]
    if extra:  # a second replacement: (old, new) in the same file, or (file, old, new)
        edits.append(extra if len(extra) == 3 else (path,) + tuple(extra))
    origs = {}
    for p, o, n in edits:
        full = os.path.join(work, p)
        origs.setdefault(full, open(full).read())
    texts = dict(origs)
    for p, o, n in edits:
        full = os.path.join(work, p)
        if o not in texts[full]:
            return "DOES NOT APPLY (the code moved on: update this entry)"
        texts[full] = texts[full].replace(o, n, 1)
    for full, text in texts.items():
        open(full, "w").write(text)
    try:
        r = subprocess.run(["go", "test", "-count=1", "-run", tests, "."], cwd=work, capture_output=True, text=True, timeout=600)
    finally:
        for full, text in origs.items():
            open(full, "w").write(text)
    fails = [l.split()[2] for l in r.stdout.splitlines() if l.strip().startswith("--- FAIL")]
    if r.returncode != 0 and fails:
        return "killed by " + ", ".join(sorted(set(f.split("/")[0] for f in fails)))
    if r.returncode != 0:
        return "BUILD FAILED: " + (r.stdout + r.stderr)[-300:]
    return "SURVIVED: no test fails without this fix"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
