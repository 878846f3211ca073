package main

// Cluster-wide coordination (cluster.go): the rules as table tests, and
// each rule in the simulated world across regions (cluster_sim_test.go),
// judged from the simulated nodes' own records.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
)

// regions is eu (priority 100) and us (200), two replicas each, settled
// with eu forging. us starts first, so it wins every race the ranking does
// not decide.
func regions(t *testing.T, kv ...string) *world {
	t.Helper()
	w := newWorld(t)
	w.addIn("us", "us-0", 200, kv...)
	w.addIn("us", "us-1", 200, kv...)
	w.addIn("eu", "eu-0", 100, kv...)
	w.addIn("eu", "eu-1", 100, kv...)
	w.settleIn("eu", 90*time.Second)
	return w
}

// TestCluster1BetterRegionForges: of two regions the better priority
// forges, one node only, and it stays so.
func TestCluster1BetterRegionForges(t *testing.T) {
	w := regions(t)
	w.run(2 * time.Minute)
	if r := w.forgingRegions(); len(r) != 1 || r[0] != "eu" {
		t.Errorf("forging regions %v; want eu", r)
	}
	neverForged(t, w, "us", "first: the token went to the worse region")
	w.noOverlap()
}

// neverForged fails the test if any node of region ever forged.
func neverForged(t *testing.T, w *world, region, when string) {
	t.Helper()
	for _, r := range w.region(region) {
		if r.node.forgedOnce() {
			t.Errorf("%s forged %s", r.name, when)
		}
	}
}

// forgerIn is the one forging replica of region, or fails the test.
func forgerIn(w *world, region string) *replica {
	w.t.Helper()
	for _, f := range w.forgers() {
		if r := w.rep(f); r.cfg.Region == region {
			return r
		}
	}
	w.dump()
	w.t.Fatalf("nobody forges in %s: forgers %v", region, w.forgers())
	return nil
}

// TestCluster2LocalFailoverStaysInTheRegion: the forging pod dies; its
// region's standby, which observed the token all along, takes it when it
// expires, and the other region never forges. It costs the longer of the
// two lease durations, not their sum.
func TestCluster2LocalFailoverStaysInTheRegion(t *testing.T) {
	w := regions(t)
	a := forgerIn(w, "eu")
	from := w.clock.now()
	w.kill(a)
	at := w.settleIn("eu", time.Minute)
	if took := at.Sub(from); took > 20*time.Second+2*time.Second+time.Second {
		t.Errorf("local failover took %s; want within CLUSTER_LEASE_DURATION + CLUSTER_RETRY_PERIOD + 1s", took)
	}
	w.run(time.Minute)
	if r := w.forgingRegions(); len(r) != 1 || r[0] != "eu" {
		t.Errorf("forging regions %v; want eu", r)
	}
	neverForged(t, w, "us", "during a local failover in eu")
	w.noOverlap()
}

// TestCluster3RegionLost: the whole better region goes; the other forges
// within CLUSTER_LEASE_DURATION + CLUSTER_RETRY_PERIOD and the node's
// enable, and never together with it.
func TestCluster3RegionLost(t *testing.T) {
	w := regions(t)
	from := w.clock.now()
	for _, r := range w.region("eu") {
		w.kill(r)
	}
	at := w.settleIn("us", time.Minute)
	if took := at.Sub(from); took > 20*time.Second+2*time.Second+time.Second {
		t.Errorf("region failover took %s; want within CLUSTER_LEASE_DURATION + CLUSTER_RETRY_PERIOD + 1s", took)
	}
	w.noOverlap()
}

// TestCluster4LeadReturnsOnlyAfterTheHysteresis: the better region comes
// back; the lead returns only once it has been better for
// CLUSTER_PREEMPT_DELAY and the holder has held for CLUSTER_MIN_HOLD, as a
// planned handover (no overlap, a few seconds).
func TestCluster4LeadReturnsOnlyAfterTheHysteresis(t *testing.T) {
	w := regions(t)
	eu := w.region("eu")
	for _, r := range eu {
		r.cut(true) // the region cut off: its forger fences
	}
	held := w.settleIn("us", time.Minute)
	for _, r := range eu {
		r.cut(false)
	}
	back := w.clock.now()
	w.runUntil(3*time.Minute, "the lead back in eu", func() bool {
		f := w.forgingRegions()
		return len(f) == 1 && f[0] == "eu"
	})
	after := w.clock.now()
	if after.Sub(held) < 60*time.Second || after.Sub(back) < 30*time.Second {
		t.Errorf("the lead returned %s after us took it and %s after eu came back; want at least CLUSTER_MIN_HOLD=60s and CLUSTER_PREEMPT_DELAY=30s",
			after.Sub(held), after.Sub(back))
	}
	if d := after.Sub(back); d > 60*time.Second+10*time.Second {
		t.Errorf("the lead returned %s after eu came back; want about max(MIN_HOLD - held, PREEMPT_DELAY) plus a few seconds", d)
	}
	w.noOverlap()
}

// TestCluster5DisabledStopsTheRegion: forgeState Disabled on the forging
// region's CardanoForgeCluster: it disables, confirms, releases to the
// other region, which forges within a few seconds, hysteresis or not.
func TestCluster5DisabledStopsTheRegion(t *testing.T) {
	w := regions(t)
	from := w.clock.now()
	w.cluster.spec("mainnet-eu", func(s *forgeClusterSpec) { s.ForgeState = forgeDisabled })
	at := w.settleIn("us", 30*time.Second)
	if took := at.Sub(from); took > 3*2*time.Second {
		t.Errorf("Disabled took %s to move forging; want within a few retry periods", took)
	}
	w.run(time.Minute)
	w.onlyForger(forgerIn(w, "us").name)
	if st := w.cluster.status("mainnet-eu"); st.EffectiveState != forgeDisabled || st.ForgingEnabled {
		t.Errorf("eu status %+v; want effectiveState Disabled, not forging", st)
	}
	w.noOverlap()
}

// TestCluster6CoordinationServerDown: nobody forges once
// CLUSTER_RENEW_DEADLINE has passed; forging resumes after it returns.
func TestCluster6CoordinationServerDown(t *testing.T) {
	w := regions(t)
	for _, r := range w.reps {
		r.cut(true)
	}
	from := w.clock.now()
	w.runUntil(20*time.Second, "nobody forging", func() bool { return len(w.forgers()) == 0 })
	if d := w.clock.now().Sub(from); d > 12*time.Second+time.Second {
		t.Errorf("forging stopped %s after the server went; want within CLUSTER_RENEW_DEADLINE + 1s", d)
	}
	w.run(time.Minute)
	if f := w.forgers(); len(f) != 0 {
		t.Errorf("forgers %v with the coordination server down", f)
	}
	for _, r := range w.reps {
		r.cut(false)
	}
	w.settleIn("eu", time.Minute)
	w.noOverlap()
}

// TestCluster7RegionCutOffStopsFirst: the forging region loses the
// coordination server; it stops forging before the other region starts.
func TestCluster7RegionCutOffStopsFirst(t *testing.T) {
	w := regions(t)
	for _, r := range w.region("eu") {
		r.cut(true)
	}
	w.settleIn("us", time.Minute)
	w.noOverlap()
	var euEnd, usStart time.Time
	for _, r := range w.reps {
		for _, s := range r.node.spans {
			switch {
			case r.cfg.Region == "eu" && !s.end.IsZero() && s.end.After(euEnd):
				euEnd = s.end
			case r.cfg.Region == "us" && (usStart.IsZero() || s.start.Before(usStart)):
				usStart = s.start
			}
		}
	}
	if !euEnd.Before(usStart) {
		t.Errorf("eu stopped at %s, us started at %s", euEnd, usStart)
	}
}

// TestCluster8FlappingHealthNeverBounces: the better region's health check
// fails every other probe: its effective priority never stays better for
// CLUSTER_PREEMPT_DELAY, so the lead, moved once, stays.
func TestCluster8FlappingHealthNeverBounces(t *testing.T) {
	w := regions(t)
	for _, r := range w.region("eu") {
		r.cut(true)
	}
	w.settleIn("us", time.Minute)
	for _, r := range w.region("eu") {
		r.cut(false)
	}
	flap := false
	for end := w.clock.now().Add(5 * time.Minute); w.clock.now().Before(end); {
		for _, r := range w.region("eu") {
			if flap {
				r.s.health.record(errFlap)
			} else {
				r.s.health.record(nil)
			}
		}
		flap = !flap
		w.run(10 * time.Second)
		if f := w.forgingRegions(); len(f) != 1 || f[0] != "us" {
			t.Fatalf("forging regions %v at %s; want us throughout", f, w.clock.now())
		}
	}
	w.noOverlap()
}

var errFlap = errString2("health endpoint: HTTP 503")

type errString2 string

func (e errString2) Error() string { return string(e) }

// TestCluster9TokenDeletedByHand: the token Lease deleted while a region
// forges: its holder recreates it at once and nobody else forges.
func TestCluster9TokenDeletedByHand(t *testing.T) {
	w := regions(t)
	a := forgerIn(w, "eu")
	w.cluster.token.delete()
	w.run(time.Minute)
	w.onlyForger(a.name)
	w.noOverlap()
	if h := w.cluster.token.holder(); !strings.HasPrefix(h, "eu/"+a.name) {
		t.Errorf("token holder %q; want %s's", h, a.name)
	}
}

// moveTime patches the spec and measures until the other region forges.
func moveTime(t *testing.T, w *world, name string, to string, limit time.Duration, f func(*forgeClusterSpec)) time.Duration {
	t.Helper()
	from := w.clock.now()
	w.cluster.spec(name, f)
	return w.settleIn(to, limit).Sub(from)
}

// TestCluster10PriorityPatchMovesTheLead: a better priority patched onto
// the other region moves forging once it has been better for
// CLUSTER_PREEMPT_DELAY (the holder has held for CLUSTER_MIN_HOLD), and not
// before.
func TestCluster10PriorityPatchMovesTheLead(t *testing.T) {
	w := regions(t)
	w.run(time.Minute) // eu has held for CLUSTER_MIN_HOLD
	took := moveTime(t, w, "mainnet-us", "us", 2*time.Minute, func(s *forgeClusterSpec) { s.Priority = ptr(50) })
	if took < 30*time.Second || took > 30*time.Second+3*2*time.Second {
		t.Errorf("the priority patch moved forging after %s; want CLUSTER_PREEMPT_DELAY=30s plus a few seconds", took)
	}
	w.run(2 * time.Second) // the status follows at the next round
	if st := w.cluster.status("mainnet-us"); st.EffectivePriority != 50 || !st.ForgingEnabled {
		t.Errorf("us status %+v; want effectivePriority 50, forging", st)
	}
	w.noOverlap()
}

// TestCluster11Overrides: forcePriority without expiresAt moves the lead
// after the hysteresis; with expiresAt in the past it is ignored and the
// status says it lapsed; forceState Disabled withdraws at once.
func TestCluster11Overrides(t *testing.T) {
	w := regions(t)
	w.run(time.Minute)
	took := moveTime(t, w, "mainnet-us", "us", 2*time.Minute, func(s *forgeClusterSpec) {
		s.Override = &forgeOverride{Enabled: true, Reason: "maintenance in eu", ForcePriority: ptr(1)}
	})
	if took < 30*time.Second || took > 36*time.Second {
		t.Errorf("forcePriority moved forging after %s; want CLUSTER_PREEMPT_DELAY=30s plus a few seconds", took)
	}
	w.run(time.Minute)
	// The override lapses: us is 200 again, eu 100 better; the lead goes
	// back after the hysteresis.
	expired := w.clock.now().Add(-time.Second).UTC().Format(time.RFC3339)
	took = moveTime(t, w, "mainnet-us", "eu", 2*time.Minute, func(s *forgeClusterSpec) { s.Override.ExpiresAt = expired })
	if took < 30*time.Second {
		t.Errorf("a lapsed override moved forging back after %s; want the hysteresis", took)
	}
	if c := conditionOf(w.cluster.status("mainnet-us"), "Override"); c.Status != "False" || c.Reason != "Expired" {
		t.Errorf("us Override condition %+v; want False, Expired", c)
	}
	took = moveTime(t, w, "mainnet-eu", "us", 30*time.Second, func(s *forgeClusterSpec) {
		s.Override = &forgeOverride{Enabled: true, ForceState: forgeDisabled}
	})
	if took > 6*time.Second {
		t.Errorf("forceState Disabled moved forging after %s; want a few seconds", took)
	}
	w.noOverlap()
}

func conditionOf(st forgeClusterStatus, typ string) condition {
	for _, c := range st.Conditions {
		if c.Type == typ {
			return c
		}
	}
	return condition{}
}

// TestCluster12NoCallPastTheCut: the forging holder's coordination server
// hangs every call: no call runs past the moment its node must have
// stopped, and the node stops by the token's deadline.
func TestCluster12NoCallPastTheCut(t *testing.T) {
	w := regions(t)
	a := forgerIn(w, "eu")
	for _, r := range w.reps {
		if r != a {
			r.cut(true)
		}
	}
	a.hangOn()
	var late []string
	watch := func(ctx context.Context, op string) {
		now := w.clock.now()
		f := a.s.facts(now)
		limit := f.stopBy
		if f.leading {
			limit = f.fenceAt // invariant 1: nothing runs past the renew deadline while leading
		}
		if dl, ok := ctx.Deadline(); a.node.on && f.held && (!ok || now.Add(time.Until(dl)).After(limit)) {
			late = append(late, fmt.Sprintf("%s at %s", op, now))
		}
	}
	a.cl.coord.check, a.cl.token.check = watch, watch
	renewed := a.s.cl.token.renewedAt
	w.runUntil(30*time.Second, "eu stopped", func() bool { return !a.node.on })
	if len(late) > 0 {
		t.Errorf("calls that may run past stopBy: %v", late)
	}
	if end := a.node.spans[len(a.node.spans)-1].end; !end.Before(renewed.Add(20*time.Second - killMargin)) {
		t.Errorf("forged until %s, past the token's last renew + CLUSTER_LEASE_DURATION - 1s", end.Sub(renewed))
	}
}

// TestCluster13MissingTokenIsWaitedOut: the token deleted while its holder
// is cut off: the others treat "missing" like an unreleased token and
// create it only after a full CLUSTER_LEASE_DURATION, by which time the
// holder has stopped.
func TestCluster13MissingTokenIsWaitedOut(t *testing.T) {
	w := regions(t)
	a := forgerIn(w, "eu")
	a.cut(true)
	w.cluster.token.delete()
	w.run(2 * time.Minute)
	w.noOverlap()
	if len(w.forgers()) != 1 {
		t.Errorf("forgers %v; want one", w.forgers())
	}
}

// TestCluster14EpochRatchet: the token carries the highest epoch seen; a
// token recreated after a deletion continues the count above it.
func TestCluster14EpochRatchet(t *testing.T) {
	w := regions(t)
	for _, r := range w.region("eu") {
		w.kill(r)
	}
	w.settleIn("us", time.Minute)
	l, _ := w.cluster.token.get(context.Background())
	before := derefInt(l.Spec.LeaseTransitions)
	if l.Annotations[ratchetKey] != fmt.Sprint(before) {
		t.Errorf("ratchet %q; want %d", l.Annotations[ratchetKey], before)
	}
	w.cluster.token.delete()
	w.run(time.Minute)
	l, _ = w.cluster.token.get(context.Background())
	if got := derefInt(l.Spec.LeaseTransitions); got <= before {
		t.Errorf("recreated token at epoch %d; want above %d", got, before)
	}
	w.noOverlap()
}

// TestCluster15DeadSidecarWithAFailingToken: the forging holder's token
// renews fail for a while (its local Lease renews fine), then its sidecar
// dies, while the other region ranks better (inside the hysteresis) and
// takes the token the moment it expires. The holder's last heartbeat
// promised no more than the token's deadline, so the dead-man probe has
// the node killed before that.
func TestCluster15DeadSidecarWithAFailingToken(t *testing.T) {
	w := regions(t)
	a := forgerIn(w, "eu")
	w.cluster.spec("mainnet-us", func(s *forgeClusterSpec) { s.Priority = ptr(50) })
	renewed := a.s.cl.token.renewedAt
	w.runUntil(5*time.Second, "a token renew", func() bool { return a.s.cl.token.renewedAt != renewed })
	a.cl.token.refuse = fmt.Errorf("update lease: %w", context.DeadlineExceeded)
	w.run(11 * time.Second)
	a.stopped = true
	w.run(time.Minute)
	w.noOverlap()
	if a.node.probeKill == 0 {
		t.Error("the dead-man probe did not kill the orphaned node")
	}
}

// TestCluster16HangingServerKeepsTheLocalLease: a coordination server that
// hangs every call of a region's local leader costs each round one
// API_TIMEOUT, never the local Lease: the leader keeps it.
func TestCluster16HangingServerKeepsTheLocalLease(t *testing.T) {
	w := regions(t)
	u := w.rep("us-0")
	if !u.s.el.holding {
		u = w.rep("us-1")
	}
	u.hangOn()
	changes := w.locals["us"].rv
	w.run(time.Minute)
	if !u.s.el.holding || w.locals["us"].holder() != u.name+"_uid" {
		t.Errorf("the hanging coordination server cost %s its local Lease (holder now %q)", u.name, w.locals["us"].holder())
	}
	if changes == w.locals["us"].rv {
		t.Error("no local renews at all")
	}
	w.onlyForger(forgerIn(w, "eu").name)
}

// TestClusterLeadershipAnd: with the token, a replica leads while both
// lead, fences at the earlier deadline, and must have stopped by the
// earlier possible takeover (cluster.go rule 1).
func TestClusterLeadershipAnd(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	local := leadership{leading: true, trusted: true, held: true, fenceAt: at(10), stopBy: at(14), holder: "a"}
	tests := []struct {
		name  string
		token leadership
		want  leadership
	}{
		{"token fences first", leadership{leading: true, trusted: true, held: true, fenceAt: at(8), stopBy: at(15), holder: "eu/a"},
			leadership{leading: true, trusted: true, held: true, fenceAt: at(8), stopBy: at(14), holder: "a", token: "eu/a"}},
		{"token taken over first", leadership{leading: true, trusted: true, held: true, fenceAt: at(12), stopBy: at(11), holder: "eu/a"},
			leadership{leading: true, trusted: true, held: true, fenceAt: at(10), stopBy: at(11), holder: "a", token: "eu/a"}},
		{"token not held: no lead, local bounds", leadership{holder: "us/b", elsewhere: true},
			leadership{trusted: false, fenceAt: at(10), stopBy: at(14), holder: "a", token: "us/b", elsewhere: true}},
		{"token epoch untrusted", leadership{leading: true, trusted: false, held: true, fenceAt: at(12), stopBy: at(19), holder: "eu/a"},
			leadership{leading: true, trusted: false, held: true, fenceAt: at(10), stopBy: at(14), holder: "a", token: "eu/a"}},
	}
	for _, tc := range tests {
		if got := local.and(tc.token); got != tc.want {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, got, tc.want)
		}
	}
}

// TestClusterStatusAndMetricsPerRegion: /status and the cluster metrics
// tell the truth per region: the forging pod holds the token and ranks
// first; the other region's leader ranks second with its own priority; a
// standby is no candidate.
func TestClusterStatusAndMetricsPerRegion(t *testing.T) {
	w := regions(t)
	w.run(5 * time.Second)
	a := forgerIn(w, "eu")
	var usLeader *replica
	for _, r := range w.region("us") {
		if r.s.el.holding {
			usLeader = r
		}
	}
	checks := []struct {
		r                 *replica
		holds, candidate  bool
		rank, prio        int
		leadership, cands string
	}{
		{a, true, true, 1, 100, "1", "1"},
		{usLeader, false, true, 2, 200, "0", "1"},
	}
	for _, c := range checks {
		v := c.r.s.board.load().Cluster
		if v == nil || v.HoldsToken != c.holds || v.Candidate != c.candidate || v.Rank != c.rank || v.EffectivePriority != c.prio ||
			v.TokenHolder != "eu/"+a.name+"_uid" {
			t.Errorf("%s: /status cluster %+v", c.r.name, v)
		}
		var b strings.Builder
		c.r.s.m.write(&b)
		for _, want := range []string{"cardano_forge_leadership_active{" + "pod=\"" + c.r.name + "\"", "cardano_forge_priority{"} {
			if !strings.Contains(b.String(), want) {
				t.Errorf("%s: no %s in the metrics", c.r.name, want)
			}
		}
		for _, l := range strings.Split(b.String(), "\n") {
			if strings.HasPrefix(l, "cardano_forge_leadership_active{") && !strings.HasSuffix(l, "} "+c.leadership) {
				t.Errorf("%s: %s; want %s", c.r.name, l, c.leadership)
			}
		}
	}
	for _, r := range w.reps {
		if r != a && r != usLeader {
			if v := r.s.board.load().Cluster; v.Candidate || v.LocalLeader {
				t.Errorf("standby %s: /status cluster %+v; want no candidate", r.name, v)
			}
		}
	}
}

// TestCluster17OutageDoesNotBounceTheLead: the coordination server is down
// for longer than CLUSTER_LEASE_DURATION. Nobody could renew a candidacy
// meanwhile, and nobody could see one renewed: "cannot tell" is not
// "lapsed". When the server returns, the better region's holder renews its
// own token at once; the other region never takes it.
func TestCluster17OutageDoesNotBounceTheLead(t *testing.T) {
	w := regions(t)
	a := forgerIn(w, "eu")
	// The server goes for eu first, then for us once us has read eu's last
	// records: us saw them last before the outage, and they are still the
	// same after it.
	for _, r := range w.region("eu") {
		r.cut(true)
	}
	w.run(3 * time.Second)
	for _, r := range w.region("us") {
		r.cut(true)
	}
	w.run(45 * time.Second)
	back := w.clock.now()
	for _, r := range w.region("us") { // the worse region's round comes first
		r.cut(false)
	}
	w.run(1500 * time.Millisecond)
	for _, r := range w.region("eu") {
		r.cut(false)
	}
	at := w.settleIn("eu", 30*time.Second)
	if took := at.Sub(back); took > 2*2*time.Second+time.Second {
		t.Errorf("forging resumed %s after the server returned; want within a couple of CLUSTER_RETRY_PERIODs", took)
	}
	w.run(time.Minute)
	neverForged(t, w, "us", "after the outage: the lead bounced")
	w.onlyForger(a.name)
	w.noOverlap()
}

// TestCluster18DisableBeforeTheRound: the forging holder's local API
// hangs. A local renew runs into the fence; the node is disabled before the
// coordinator round that follows makes any call (invariant 1), not after.
// The outage starts at ten phases against the replica's rounds.
func TestCluster18DisableBeforeTheRound(t *testing.T) {
	for phase := range 10 {
		w := regions(t)
		w.run(time.Duration(phase) * 200 * time.Millisecond)
		a := forgerIn(w, "eu")
		a.api.down, a.api.overrun = true, time.Millisecond
		var early []string
		watch := func(ctx context.Context, op string) {
			now := w.clock.now()
			f := a.s.facts(now)
			if st := a.s.node.n.state; f.held && !f.leading && st != stateDisabling && st != stateOff && a.node.on {
				early = append(early, fmt.Sprintf("%s at %s with the node %s", op, now, st))
			}
		}
		a.cl.coord.check, a.cl.token.check = watch, watch
		w.runUntil(30*time.Second, "eu-0 stopped", func() bool { return !a.node.on })
		if len(early) > 0 {
			t.Errorf("phase %d: coordination calls past the fence before the disable: %v", phase, early)
		}
	}
}

// TestCluster19MissingTokenWaitsTheLongestRegion: regions configured with
// different token timing. eu holds with CLUSTER_LEASE_DURATION 30s and is
// cut off, and the token is deleted; us ranks first (a better priority,
// inside the hysteresis) and takes a missing token once it has been
// missing for the longest duration any region's candidacy says, not its
// own 20s: eu forges until its deadline, 25s after its last renew.
func TestCluster19MissingTokenWaitsTheLongestRegion(t *testing.T) {
	w := newWorld(t)
	slow := []string{"CLUSTER_LEASE_DURATION", "30s", "CLUSTER_RENEW_DEADLINE", "25s"}
	a := w.addIn("eu", "eu-0", 100, slow...)
	w.settleIn("eu", 90*time.Second)
	u := w.addIn("us", "us-0", 50)
	w.run(20 * time.Second) // us is up, and better, for less than CLUSTER_PREEMPT_DELAY
	w.onlyForger(a.name)
	if !strings.Contains(u.log.String(), "a region uses another CLUSTER_LEASE_DURATION") {
		t.Error("us did not warn that eu's token timing differs")
	}
	a.cut(true)
	w.cluster.token.delete()
	w.settleIn("us", time.Minute)
	w.noOverlap()
}

// TestCluster20LocalLeaseLostKeepsTheRegion: the forging pod loses its
// local API server only (the coordination server is fine): it fences,
// and its release of the token names no other region, so its region's
// next local leader takes it and the other region never forges.
func TestCluster20LocalLeaseLostKeepsTheRegion(t *testing.T) {
	w := regions(t)
	a := forgerIn(w, "eu")
	a.api.refuse = fmt.Errorf("update lease: %w", context.DeadlineExceeded)
	w.settleIn("eu", time.Minute)
	w.run(time.Minute)
	neverForged(t, w, "us", "after eu's forging pod lost its local Lease: the lead left the region")
	w.noOverlap()
}

// TestCluster21BadCandidacyIsRepaired: an annotation the program would not
// write on a region's candidacy (a hand edit): the other regions are in
// doubt (not eligible, rule 7), and the owner, which never parses its own
// record, overwrites it at its next round; the holder keeps forging.
func TestCluster21BadCandidacyIsRepaired(t *testing.T) {
	w := regions(t)
	a := forgerIn(w, "eu")
	w.cluster.candidacy("cardano-candidate-mainnet-eu").edit(func(l *coordinationv1.Lease) { l.Annotations[annState] = "Bogus" })
	w.run(10 * time.Second)
	w.onlyForger(a.name)
	l, _ := w.cluster.candidacy("cardano-candidate-mainnet-eu").get(context.Background())
	if l.Annotations[annState] != forgePriorityBased {
		t.Errorf("eu's candidacy says %q; want it repaired", l.Annotations[annState])
	}
	for _, r := range w.region("us") {
		if v := r.s.board.load().Cluster; v.LocalLeader && v.Reason != "" {
			t.Errorf("%s still in doubt after the repair: %s", r.name, v.Reason)
		}
	}
	w.noOverlap()
}

// TestClusterReleaseNamesTheSuccessor: a token released naming a region
// (a planned handover, rule 4) is taken at once only by that region; any
// other waits a full CLUSTER_LEASE_DURATION like for an unreleased token.
func TestClusterReleaseNamesTheSuccessor(t *testing.T) {
	api, clock, a, _ := established(t)
	a.successor = "us"
	named, other := newElector(api, "eu/eu-0_uid", defaultTiming, clock.now), newElector(api, "ap/ap-0_uid", defaultTiming, clock.now)
	named.successor, other.successor = "eu", "ap"
	stepOK(t, named, true)
	stepOK(t, other, true) // both saw a hold it
	if err := a.releaseTo(context.Background(), "eu"); err != nil {
		t.Fatal(err)
	}
	clock.advance(defaultTiming.retry)
	stepOK(t, other, true)
	if leadingNow(other) {
		t.Fatal("a region the release does not name took the token at once")
	}
	stepOK(t, named, true)
	if !leadingNow(named) {
		t.Error("the named successor did not take the released token at once")
	}
}

// TestCluster22HandoverSurvivesAFailedRead: a planned handover under way
// (the holder has disabled for a better region) is not undone by one failed
// read of the view: the node is never enabled again before the release.
func TestCluster22HandoverSurvivesAFailedRead(t *testing.T) {
	w := regions(t)
	w.run(time.Minute)
	a := forgerIn(w, "eu")
	a.node.hupDelay = func(int) time.Duration { return 3 * time.Second } // the disable takes a while to confirm
	w.cluster.spec("mainnet-us", func(s *forgeClusterSpec) { s.Priority = ptr(50) })
	from := len(a.node.sent)
	w.runUntil(time.Minute, "eu-0 handing over", func() bool { return strings.HasPrefix(a.s.clusterWhy(), "handing") })
	a.cl.coord.failNext = 1
	w.settleIn("us", 30*time.Second)
	if got := a.node.delivered(from); got != "hup" {
		t.Errorf("signals to eu-0's node during the handover: %q; want the one disable", got)
	}
	w.noOverlap()
}

// TestCluster23CandidacyRepairedWhenUnlisted: this region's candidacy lost
// the labels the list finds it by: its create meets AlreadyExists, so the
// owner reads it by name and goes on renewing it.
func TestCluster23CandidacyRepairedWhenUnlisted(t *testing.T) {
	w := regions(t)
	a := forgerIn(w, "eu")
	a.cl.coord.hide = true
	a.s.cl.mine = nil
	cand := w.cluster.candidacy("cardano-candidate-mainnet-eu")
	before := cand.rv
	w.run(10 * time.Second)
	if cand.rv <= before+1 {
		t.Errorf("eu's candidacy written %d times in 10s while unlisted; want it renewed", cand.rv-before)
	}
	w.onlyForger(a.name)
}

// TestClusterCandidacyCredit: a candidacy's unchanged time counts between
// reads less than half a CLUSTER_LEASE_DURATION apart, so a dead region
// lapses even when every other read fails; across a longer gap (an outage)
// it does not, as its owner may not have been able to write.
func TestClusterCandidacyCredit(t *testing.T) {
	t0 := time.Unix(1000, 0)
	l := coordinationv1.Lease{}
	l.Name, l.ResourceVersion = "cardano-candidate-mainnet-ap", "7"
	l.Annotations = map[string]string{annRegion: "ap", annState: forgePriorityBased, annPriority: "50"}
	l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds = ptr("ap/ap-0_uid"), ptr(int32(20))
	tm := clusterTiming{timing: timing{lease: 20 * time.Second, retry: 2 * time.Second}}
	c := &coordinator{tm: tm, region: "eu", seen: map[string]sighting{}, better: map[string]time.Time{}, token: &elector{},
		log:  slog.New(slog.NewJSONHandler(io.Discard, nil)),
		self: standing{state: forgePriorityBased, priority: 100}}
	live := func(at time.Duration) bool {
		if err := c.observe([]coordinationv1.Lease{l}, t0.Add(at)); err != nil {
			t.Fatal(err)
		}
		return c.rank[0].region == "ap"
	}
	for at := time.Duration(0); at < 20*time.Second; at += 4 * time.Second { // every other 2s read failed
		if !live(at) {
			t.Fatalf("ap lapsed at %s", at)
		}
	}
	if live(24 * time.Second) {
		t.Error("a dead region's candidacy seen unchanged for 24s, reads 4s apart, is still live")
	}
	c.seen = map[string]sighting{}
	live(0)
	live(2 * time.Second)
	if !live(47 * time.Second) {
		t.Error("a candidacy lapsed across a 45s gap in which nothing could be seen")
	}
}

// TestWarnOtherIsCutLikeEveryCall: the start-up look at this pool's other
// election runs after the first pass and, while the node may forge, is cut
// where every call is (invariant 1).
func TestWarnOtherIsCutLikeEveryCall(t *testing.T) {
	w := regions(t)
	a := forgerIn(w, "eu")
	a.api.refuse = fmt.Errorf("update lease: %w", context.DeadlineExceeded)
	w.run(7 * time.Second) // the local fence is now nearer than API_TIMEOUT
	var deadline time.Time
	other := &flakyLeases{m: &memLeases{}, clock: w.clock, down: true,
		check: func(ctx context.Context, op string) {
			if dl, ok := ctx.Deadline(); ok {
				deadline = w.clock.now().Add(time.Until(dl))
			}
		}}
	a.s.other, a.s.otherName = other, "cardano-node-leader"
	a.s.warnOther(context.Background())
	if f := a.s.facts(w.clock.now()); deadline.IsZero() || deadline.After(f.fenceAt) {
		t.Errorf("the look ran until %s; the node must stop forging by the fence at %s", deadline, f.fenceAt)
	}
}
