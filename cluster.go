package main

// Cluster-wide coordination (docs/regions.md): with ENABLE_CLUSTER_MANAGEMENT
// one replica of the pool forges across StatefulSets, regions and
// Kubernetes clusters. The arbiter is one Lease in the coordination API
// server, the forging token; everything else here only decides who should
// try to take it. The rules:
//
//  1. A replica forges only while it holds its region's local Lease and the
//     token, each under lease.go's deadline rule: the loop fences at the
//     earlier deadline and kills before the earlier possible takeover
//     (leadership.and).
//  2. Every replica, standbys included, steps the token's elector every
//     CLUSTER_RETRY_PERIOD; a standby only reads. Its "unchanged since"
//     clock so already runs when it becomes local leader: losing the
//     forging pod costs the longer of the two lease durations, not their
//     sum, and the new local leader of the winning region is the first to
//     see the token expire.
//  3. The token is taken by lease.go's rules (compare-and-swap, released or
//     expired by observation, a missing token like an unreleased one), only
//     by an eligible local leader, and only when its region ranks first
//     among the live candidacies or a release names it as the successor.
//     The ranking says who should try; the compare-and-swap alone keeps it
//     safe, so a ranking mistake costs time, never a second forger.
//  4. Preemption is a planned handover with hysteresis: the holder steps
//     down for a region live, eligible and better without a break for
//     CLUSTER_PREEMPT_DELAY, once it has held the token CLUSTER_MIN_HOLD.
//     It disables, confirms, and releases the token naming that region,
//     whose local leader takes it at once; any other waits a full duration.
//  5. The region's CardanoForgeCluster spec (priority, forgeState, override)
//     and its node's health make its candidate entry (evaluate). Disabled
//     withdraws the candidacy, and a holder steps down as in rule 4.
//  6. The highest token epoch seen rides on the token itself (ratchetKey),
//     written in the compare-and-swap of every acquire and renew.
//  7. Doubt about the view (a call failing, an object unreadable or
//     unparsable) makes the region not eligible to take the token; a holder
//     keeps it only while its last good view is younger than
//     CLUSTER_RENEW_DEADLINE, and one cut off fences at its deadline.

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"sort"
	"strconv"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// clusterTiming is the token's timing and the preemption hysteresis.
type clusterTiming struct {
	timing                         // CLUSTER_LEASE_DURATION, CLUSTER_RENEW_DEADLINE, CLUSTER_RETRY_PERIOD; API_TIMEOUT, SIGHUP_CONFIRM_TIMEOUT
	preempt, minHold time.Duration // CLUSTER_PREEMPT_DELAY, CLUSTER_MIN_HOLD
}

// Forge states of a CardanoForgeCluster (spec.forgeState,
// override.forceState, status.effectiveState).
const (
	forgeEnabled       = "Enabled"
	forgeDisabled      = "Disabled"
	forgePriorityBased = "Priority-based"
)

// Candidacy annotations: what the other regions rank this one by.
const (
	annState    = "cardano.io/candidate-state" // Enabled, Priority-based, or withdrawn
	annPriority = "cardano.io/effective-priority"
	annHealthy  = "cardano.io/healthy"
	annWhy      = "cardano.io/withdrawn-because"
	annRegion   = "cardano.io/region"
	withdrawn   = "Withdrawn"
	// successorKey names the region a token release hands to (rule 4).
	successorKey = "cardano.io/successor"
	// ratchetKey is the highest token epoch seen (rule 6).
	ratchetKey = "cardano.io/highest-epoch"
)

// healthPenalty is added to the effective priority per consecutive failed
// health check, and once while a recovery has not yet had
// healthRecoveryProbes good checks in a row. Priorities run 1..999, so a
// region whose node failed a check lately ranks behind every healthy one.
const healthPenalty = 1000

// candidate is one region's entry in the ranking.
type candidate struct {
	region   string
	forced   bool // Enabled (forgeState or forceState): ahead of every Priority-based region
	priority int  // effective priority: lower wins
}

// ahead is the ranking: Enabled first, then the lower effective priority,
// then the region name.
func (a candidate) ahead(b candidate) bool {
	if a.forced != b.forced {
		return a.forced
	}
	if a.priority != b.priority {
		return a.priority < b.priority
	}
	return a.region < b.region
}

// standing is what the spec, the override and the node's health make of
// this region now (rule 5).
type standing struct {
	state    string // effectiveState
	priority int    // effectivePriority
	why      string // why this region is no candidate; "" if it is
	override string // "active", "expired at ...", or "" without one
}

// evaluate applies rule 5: an active override's forceState and
// forcePriority win over the spec; an override past expiresAt (wall clock:
// liveness only) is ignored and said so; health failures add to the
// priority at once. Values the CRD schema refuses are refused here too.
func evaluate(spec forgeClusterSpec, h healthView, region string, wall time.Time) (standing, error) {
	if spec.Region != "" && spec.Region != region {
		return standing{}, fmt.Errorf("spec.region %q is not this StatefulSet's CLUSTER_REGION %q", spec.Region, region)
	}
	st := standing{state: spec.ForgeState, priority: 100}
	if st.state == "" {
		st.state = forgePriorityBased
	}
	if spec.Priority != nil {
		st.priority = *spec.Priority
	}
	if o := spec.Override; o != nil && o.Enabled {
		active, err := o.activeAt(wall)
		if err != nil {
			return standing{}, err
		}
		if active {
			st.override = "active"
			if o.ForceState != "" {
				st.state = o.ForceState
			}
			if o.ForcePriority != nil {
				st.priority = *o.ForcePriority
			}
		} else {
			st.override = "expired at " + o.ExpiresAt
		}
	}
	switch st.state {
	case forgeEnabled, forgePriorityBased:
	case forgeDisabled:
		st.why = "the CardanoForgeCluster says Disabled"
		if st.override == "active" {
			st.why = "an override says Disabled"
		}
	default:
		return standing{}, fmt.Errorf("forgeState %q is not Enabled, Disabled or Priority-based", st.state)
	}
	if st.priority < 1 || st.priority > 999 {
		return standing{}, fmt.Errorf("priority %d is not within 1..999", st.priority)
	}
	st.priority += h.penalty()
	return st, nil
}

// activeAt tells whether the override applies at wall: no expiresAt means
// until removed.
func (o *forgeOverride) activeAt(wall time.Time) (bool, error) {
	if o.ExpiresAt == "" {
		return true, nil
	}
	at, err := time.Parse(time.RFC3339, o.ExpiresAt)
	if err != nil {
		return false, fmt.Errorf("override.expiresAt %q is not an RFC 3339 time", o.ExpiresAt)
	}
	return wall.Before(at), nil
}

// entry is this region's candidate, for ranking and its candidacy.
func (st standing) entry(region string) candidate {
	return candidate{region: region, forced: st.state == forgeEnabled, priority: st.priority}
}

// candidacyOf reads another region's candidacy: withdrawn (no holder, or
// said so) or its entry. An annotation the program would not write is
// doubt (rule 7).
func candidacyOf(l *coordinationv1.Lease) (c candidate, live bool, err error) {
	a := l.Annotations
	c.region = a[annRegion]
	if c.region == "" || isDNSLabel(c.region) != nil {
		return c, false, fmt.Errorf("candidacy %s: annotation %s %q is not a region name", l.Name, annRegion, c.region)
	}
	state := a[annState]
	if deref(l.Spec.HolderIdentity) == "" || state == withdrawn {
		return c, false, nil
	}
	if state != forgeEnabled && state != forgePriorityBased {
		return c, false, fmt.Errorf("candidacy %s: annotation %s %q is not Enabled, Priority-based or Withdrawn", l.Name, annState, state)
	}
	p, err := strconv.Atoi(a[annPriority])
	if err != nil || p < 1 {
		return c, false, fmt.Errorf("candidacy %s: annotation %s %q is not a priority", l.Name, annPriority, a[annPriority])
	}
	c.forced, c.priority = state == forgeEnabled, p
	return c, true, nil
}

// sighting is how long a candidacy's record has been seen unchanged:
// liveness by observation on the local clock, as for a Lease (lease.go
// rule 1). Time between two reads counts only when they were less than half
// a CLUSTER_LEASE_DURATION apart: across a longer gap (an outage, rounds as
// a standby) the owner may have been unable to write, and what this
// replica could not see it cannot call lapsed. A live region renews every
// CLUSTER_RETRY_PERIOD, so its credit stays below that plus half a
// duration: never lapsed.
type sighting struct {
	version string
	credit  time.Duration // seen unchanged this long
	at      time.Time     // the last read that saw it
	lease   time.Duration // the longer of ours and the record's duration
	warned  bool          // its duration differs from ours, and that was logged
}

// coordinator is the cluster-wide side of one replica. It is used from the
// loop's goroutine.
type coordinator struct {
	log    *slog.Logger
	now    func() time.Time
	wall   func() time.Time // the override's expiresAt only
	tm     clusterTiming
	region string
	token  *elector
	api    clusterAPI
	// mineName is this region's candidacy Lease.
	mineName string

	seen      map[string]sighting  // candidacies by name
	better    map[string]time.Time // rule 4: since when each region has been better without a break
	rank      []candidate          // live candidates, self included when one, best first
	self      standing
	obj       *forgeClusterObject // as last read
	viewAt    time.Time           // the last complete read of the view
	viewErr   error               // the last read's failure; nil when it worked
	heldFrom  time.Time           // this process holds the token since
	nextTry   time.Time
	mine      *coordinationv1.Lease // our candidacy as last read or written
	wrote     forgeClusterStatus    // the status as last read or written
	cutAt     time.Time             // the round's end: its budget, or clusterInput.cutAt if earlier
	leading   bool                  // the token led at the last noteTransitions
	released  bool                  // ...and the last lead ended by our release
	refused   string                // the last refusal logged
	handingTo string                // the region a handover under way names (successor)
}

// callContext bounds one call by the round's cutAt, on the injected clock.
func (c *coordinator) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.cutAt.Sub(c.now()))
}

// clusterInput is what one coordinator step needs from the loop.
type clusterInput struct {
	leader  bool   // leads its region's local Lease, within the deadline
	why     string // why this replica may not forge ("" if it may)
	health  healthView
	forging bool // the node confirmed forging
	pod     string
	// cutAt: no call may run past it (the loop's apiLimit: the node may
	// forge until then at most); zero for none.
	cutAt time.Time
}

func newCoordinator(tm clusterTiming, region string, token *elector, api clusterAPI, log *slog.Logger, now, wall func() time.Time) *coordinator {
	c := &coordinator{log: log, now: now, wall: wall, tm: tm, region: region, token: token, api: api,
		seen: map[string]sighting{}, better: map[string]time.Time{}}
	token.successor = region
	token.mayTake = c.firstInLine
	return c
}

// due tells whether a coordinator step is due.
func (c *coordinator) due(t time.Time) bool { return !t.Before(c.nextTry) || c.token.due(t) }

// wakeAt is the next step or token deadline.
func (c *coordinator) wakeAt(t time.Time) time.Time { return minTime(c.nextTry, c.token.wakeAt(t)) }

// step is one round: a standby only observes the token (rule 2); the local
// leader reads the view, renews or takes the token as the rules allow, and
// writes its candidacy and its region's status. A holder renews first, on
// the last round's view, so a slow view never delays the renew; anyone
// else takes only on a view read in this round. The round as a whole gets
// one API_TIMEOUT: a coordination server that hangs costs the loop that
// much per round, never the local Lease's renew.
func (c *coordinator) step(ctx context.Context, in clusterInput) error {
	start := c.now()
	c.nextTry = start.Add(c.tm.retry)
	c.cutAt = start.Add(c.tm.api)
	if !in.cutAt.IsZero() && in.cutAt.Before(c.cutAt) {
		c.cutAt = in.cutAt
	}
	c.token.cutAt = c.cutAt
	if !in.leader {
		c.rank, c.obj, c.viewErr = nil, nil, nil
		return c.token.step(ctx, false)
	}
	var err error
	if c.holding() {
		err = c.token.step(ctx, c.mayHold(in))
	}
	c.viewErr = c.readView(ctx, in.health)
	if c.viewErr == nil {
		c.viewAt = c.now()
	}
	if !c.holding() && err == nil {
		err = c.token.step(ctx, c.mayHold(in))
	}
	c.noteHold()
	if werr := c.writeCandidacy(ctx, in); err == nil {
		err = werr
	}
	if serr := c.syncStatus(ctx, in); err == nil {
		err = serr
	}
	if c.viewErr != nil {
		return c.viewErr
	}
	return err
}

// unfit says why this region is no candidate ("" if it is): the view is
// in doubt (rule 7), or the spec or its override withdraws it (rule 5).
func (c *coordinator) unfit() string {
	switch {
	case c.viewErr != nil && (!c.holding() || c.now().Sub(c.viewAt) >= c.tm.renew):
		return "the cluster-wide view is in doubt: " + c.viewErr.Error()
	case c.obj == nil:
		return "the CardanoForgeCluster has not been read yet"
	}
	return c.self.why
}

// why says why this replica may not forge for cluster-wide reasons: unfit,
// or handing the token over (rule 4).
func (c *coordinator) why() string {
	if u := c.unfit(); u != "" {
		return u
	}
	if s := c.successor(); s != "" && c.holding() {
		return "handing the forging token over to region " + s + ", better for CLUSTER_PREEMPT_DELAY"
	}
	return ""
}

// mayHold: renew only as an eligible local leader that is not handing over.
func (c *coordinator) mayHold(in clusterInput) bool { return in.why == "" && c.why() == "" }

func (c *coordinator) holding() bool { return c.token.holding }

// noteHold starts the CLUSTER_MIN_HOLD clock when this process takes the
// token.
func (c *coordinator) noteHold() {
	switch {
	case !c.holding():
		c.heldFrom = time.Time{}
	case c.heldFrom.IsZero():
		c.heldFrom = c.now()
	}
}

// firstInLine is rule 3's gate on taking the token: a release naming this
// region (checked by the elector), or this region first among the live
// candidates. Called by the elector only for a token it may take; a
// refusal is logged once per reason.
func (c *coordinator) firstInLine() bool {
	why := c.refusal()
	if why != c.refused && why != "" {
		c.log.Info("not taking the forging token", "why", why)
	}
	c.refused = why
	return why == ""
}

// refusal says why this region does not take a free or expired token ("" if
// it does).
func (c *coordinator) refusal() string {
	if u := c.unfit(); u != "" {
		return u
	}
	r := c.token.observed
	switch {
	case r.holder == "" && r.successor == c.region:
		return ""
	case len(c.rank) == 0:
		return "no candidacies read yet"
	case c.rank[0].region != c.region:
		return fmt.Sprintf("region %s ranks first (effective priority %d)", c.rank[0].region, c.rank[0].priority)
	}
	return ""
}

// successor is the region a holder hands over to (rule 4): better without
// a break for CLUSTER_PREEMPT_DELAY, once the token was held
// CLUSTER_MIN_HOLD, on a view read this round (a stale one may name a
// region gone since). "" if none. Once chosen it stays until the token is
// released or lost: a failed read later does not undo a handover under way.
func (c *coordinator) successor() string {
	now := c.now()
	switch {
	case !c.holding():
		c.handingTo = ""
		return ""
	case c.handingTo != "":
		return c.handingTo
	case c.viewErr != nil || c.heldFrom.IsZero() || now.Sub(c.heldFrom) < c.tm.minHold:
		return ""
	}
	for _, k := range c.rank {
		if since, ok := c.better[k.region]; ok && now.Sub(since) >= c.tm.preempt {
			c.handingTo = k.region
			return k.region
		}
	}
	return ""
}

// heir is the region a release names: the preemption's successor, else
// for a step-down the best other live candidate (it takes at once), else
// none (whoever ranks first may take it at once).
func (c *coordinator) heir() string {
	if s := c.successor(); s != "" {
		return s
	}
	for _, k := range c.rank {
		if k.region != c.region {
			return k.region
		}
	}
	return ""
}

// readView reads this region's CardanoForgeCluster (creating it when
// missing) and every candidacy of the pool, and ranks them.
func (c *coordinator) readView(ctx context.Context, h healthView) error {
	obj, err := call(ctx, c, c.api.getForgeCluster)
	if apierrors.IsNotFound(err) {
		obj, err = call(ctx, c, c.api.createForgeCluster)
	}
	if err != nil {
		return err // the last good object stays, for a holder's patience (rule 7)
	}
	c.obj, c.wrote = obj, obj.Status
	st, err := evaluate(obj.Spec, h, c.region, c.wall())
	if err != nil {
		c.self = standing{why: err.Error()}
		return fmt.Errorf("CardanoForgeCluster %s: %w", obj.Metadata.Name, err)
	}
	c.self = st
	list, err := call(ctx, c, c.api.candidacies)
	if err != nil {
		c.rank = nil
		return err
	}
	return c.observe(list, c.now())
}

// observe notes each candidacy's record on the local clock and ranks the
// live ones with this region's own entry (fresh, not read back). Our own
// record is not parsed: it is ours to overwrite.
func (c *coordinator) observe(list []coordinationv1.Lease, t time.Time) error {
	var rank []candidate
	present := map[string]bool{}
	longest := time.Duration(0)
	for i := range list {
		l := &list[i]
		present[l.Name] = true
		s := c.sight(l, t)
		longest = max(longest, s.lease)
		if l.Name == c.mineName {
			c.mine = l.DeepCopy()
			continue
		}
		k, live, err := candidacyOf(l)
		if err != nil {
			c.rank = nil
			return err
		}
		if live && s.credit < s.lease {
			rank = append(rank, k)
		}
	}
	for name := range c.seen {
		if !present[name] {
			delete(c.seen, name)
		}
	}
	c.token.regions = longest // a missing token is waited out as long as any region's holder counts on
	if c.self.why == "" {
		rank = append(rank, c.self.entry(c.region))
	}
	sort.Slice(rank, func(i, j int) bool { return rank[i].ahead(rank[j]) })
	c.rank = rank
	c.trackBetter(t)
	return nil
}

// sight updates l's sighting at t: unchanged, it gains the time since the
// last read, when that was recent (sighting).
func (c *coordinator) sight(l *coordinationv1.Lease, t time.Time) sighting {
	s, ok := c.seen[l.Name]
	switch {
	case !ok || s.version != l.ResourceVersion:
		s = sighting{version: l.ResourceVersion, warned: s.warned}
	case t.Sub(s.at) <= c.tm.lease/2:
		s.credit += t.Sub(s.at)
	}
	s.at = t
	d := time.Duration(derefInt(l.Spec.LeaseDurationSeconds)) * time.Second
	s.lease = max(c.tm.lease, d)
	if d != c.tm.lease && !s.warned && l.Name != c.mineName {
		s.warned = true
		c.log.Warn("a region uses another CLUSTER_LEASE_DURATION: give every region the same token timing (docs/regions.md)",
			"candidacy", l.Name, "its", d.String(), "ours", c.tm.lease.String())
	}
	c.seen[l.Name] = s
	return s
}

// trackBetter keeps, for every live region ranked ahead of this one, since
// when it has been so without a break (rule 4). A region that drops out or
// behind starts again from zero.
func (c *coordinator) trackBetter(t time.Time) {
	ahead := map[string]bool{}
	me := c.self.entry(c.region)
	for _, k := range c.rank {
		if k.region != c.region && (c.self.why != "" || k.ahead(me)) {
			ahead[k.region] = true
			if _, ok := c.better[k.region]; !ok {
				c.better[k.region] = t
			}
		}
	}
	for r := range c.better {
		if !ahead[r] {
			delete(c.better, r)
		}
	}
}

// writeCandidacy renews this region's candidacy, or withdraws it with the
// reason, as the local leader. Not a safety object: a conflict (the
// previous local leader wrote last) is fixed by the next round's read.
func (c *coordinator) writeCandidacy(ctx context.Context, in clusterInput) error {
	l := &coordinationv1.Lease{}
	if c.mine != nil {
		l = c.mine.DeepCopy()
	}
	id := c.token.identity
	l.Spec = coordinationv1.LeaseSpec{HolderIdentity: &id, LeaseDurationSeconds: ptr(int32(c.tm.lease / time.Second)),
		RenewTime: &metav1.MicroTime{Time: c.now()}}
	l.Annotations = map[string]string{annRegion: c.region, annState: c.self.state, annPriority: strconv.Itoa(c.self.priority),
		annHealthy: strconv.FormatBool(in.health.healthy)}
	if why := firstOf(in.why, c.unfit()); why != "" {
		l.Annotations[annState], l.Annotations[annWhy] = withdrawn, why
	}
	got, err := call(ctx, c, func(ctx context.Context) (*coordinationv1.Lease, error) { return c.api.putCandidacy(ctx, l) })
	if apierrors.IsAlreadyExists(err) {
		// Ours, but not in the list (its labels edited away): read it by
		// name, so the next round overwrites it, labels included.
		got, err = call(ctx, c, c.api.getCandidacy)
	}
	if err != nil {
		c.mine = nil
		return err
	}
	c.mine = got
	return nil
}

// call runs one API call under the coordinator's callContext.
func call[T any](ctx context.Context, c *coordinator, f func(context.Context) (T, error)) (T, error) {
	cctx, cancel := c.callContext(ctx)
	defer cancel()
	return f(cctx)
}

func firstOf(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// noteTransitions logs and counts the token's real changes, once each.
func (c *coordinator) noteTransitions(now time.Time, m *metricSet) {
	leading := c.token.leadingAt(now)
	if leading == c.leading {
		return
	}
	c.leading = leading
	f := c.token.facts(now)
	switch {
	case leading:
		c.released = false
		c.log.Info("acquired the forging token", "token_epoch", f.epoch.String())
	case c.released:
	case f.holder == c.token.identity && !now.Before(f.fenceAt):
		m.fenced()
		c.log.Warn("fenced: no successful renew of the forging token within CLUSTER_RENEW_DEADLINE; forging disabled",
			"cluster_renew_deadline", c.tm.renew.String())
	default:
		c.log.Warn("lost the forging token", "holder", f.holder, "missing", c.token.observed.missing)
	}
}

// snapshot is the cluster-wide view for /status and the metrics.
func (c *coordinator) snapshot(now time.Time, localLeader, healthy bool) *clusterSnapshot {
	v := &clusterSnapshot{TokenHolder: c.token.holder(), HoldsToken: c.token.leadingAt(now), Candidates: len(c.rank),
		EffectiveState: c.self.state, EffectivePriority: c.self.priority, Healthy: healthy, LocalLeader: localLeader}
	v.Reason = c.unfit()
	v.Candidate = localLeader && v.Reason == ""
	for i, k := range c.rank {
		if k.region == c.region {
			v.Rank = i + 1
		}
	}
	return v
}

// release gives the token up once the node is off. For a reason of this
// replica's own (local), it names no successor: the region's next local
// leader, or whoever ranks first, takes it at once. Otherwise it names the
// preemption's successor or the best other live region.
func (c *coordinator) release(ctx context.Context, local bool) (string, error) {
	heir := ""
	if !local {
		heir = c.heir()
	}
	c.token.cutAt = time.Time{} // the node is off: nothing to cut for
	err := c.token.releaseTo(ctx, heir)
	c.noteHold()
	c.released = true
	if err != nil {
		return heir, fmt.Errorf("forging token: %w", err)
	}
	return heir, nil
}

// syncStatus writes this region's CardanoForgeCluster status when it
// differs from what the object holds: by the local leader only, so a
// steady state costs no writes.
func (c *coordinator) syncStatus(ctx context.Context, in clusterInput) error {
	if c.obj == nil || c.viewErr != nil {
		return nil
	}
	next := c.desired(in, c.now().UTC())
	if reflect.DeepEqual(next, c.wrote) {
		return nil
	}
	obj, err := call(ctx, c, func(ctx context.Context) (*forgeClusterObject, error) {
		return c.api.patchForgeClusterStatus(ctx, next)
	})
	if err != nil {
		return err
	}
	c.wrote = obj.Status
	return nil
}

// desired is the status for in. Condition times move only on real
// transitions (stamped).
func (c *coordinator) desired(in clusterInput, now time.Time) forgeClusterStatus {
	gen, old := c.obj.Metadata.Generation, c.wrote.Conditions
	st := forgeClusterStatus{EffectiveState: c.self.state, EffectivePriority: c.self.priority, ActiveLeader: in.pod,
		ForgingEnabled: in.forging, ObservedGeneration: gen,
		HealthStatus: &healthStatus{Healthy: in.health.healthy, ConsecutiveFailures: in.health.failures, Message: in.health.message}}
	if !in.health.changedAt.IsZero() {
		st.HealthStatus.LastProbeTime = in.health.changedAt.UTC().Format(time.RFC3339)
	}
	cond := func(typ string, ok bool, reason, message string) condition {
		k := condition{Type: typ, Status: "True", Reason: reason, Message: message, ObservedGeneration: gen}
		if !ok {
			k.Status = "False"
		}
		return stamped(k, old, now)
	}
	why := firstOf(c.unfit(), in.why)
	st.Conditions = append(st.Conditions, cond("Candidate", why == "", reasonOf(why == "", "Eligible", "NotEligible"), firstOf(why, "ranked by effective priority")))
	holder := c.token.holder()
	st.Conditions = append(st.Conditions, cond("TokenHeld", c.token.leadingAt(c.now()), reasonOf(c.token.leadingAt(c.now()), "Holding", "NotHolding"),
		"forging token holder: "+firstOf(holder, "none")))
	if o := c.self.override; o != "" {
		st.Conditions = append(st.Conditions, cond("Override", o == "active", reasonOf(o == "active", "Active", "Expired"), "override "+o))
	}
	return st
}

func reasonOf(ok bool, yes, no string) string {
	if ok {
		return yes
	}
	return no
}
