package main

// Leader election on a coordination.k8s.io/v1 Lease, written for this job
// rather than taken from client-go's leaderelection package, whose typed
// client drags in every API group. The rules are client-go's, made
// stricter where a second forger is at stake (docs/design.md, invariants 1, 2, 3
// and 9):
//
//  1. Expiry is judged on the local monotonic clock only. A replica notes
//     when a read *returned* the current record (holder, renew time,
//     transitions, duration, release mark); it may take the Lease only after
//     that record stayed unchanged for its own LEASE_DURATION, or for the
//     record's leaseDurationSeconds if that is longer. Another machine's
//     timestamps are never compared with ours.
//  2. A missing Lease is an unreleased one: it is created only after it was
//     seen missing for LEASE_DURATION. The one exception is the leader whose
//     own renew (or watch) finds it gone: it is the only replica that can be
//     forging, so it recreates it at once and keeps leading; if it cannot
//     try, it leads no more. Seen missing again after reads that failed for
//     longer than a look and a half (missGap), or after a create that found
//     it existing, it may have been created and deleted in between: it is
//     seen missing from then. (Within one look is polling's own limit.)
//  3. Every write carries the resourceVersion read or written last, so two
//     writers cannot both win: a 409 Conflict means someone else moved and
//     the Lease is read again.
//  4. The holder renews every RETRY_PERIOD with one update (no read first).
//     It counts as leader only while the Lease as last seen names it and
//     only until RENEW_DEADLINE after the start of its last successful
//     write. A Lease deleted, recreated by another replica or edited so that
//     it names someone else ends the leadership at once; past the deadline
//     the holder fences itself (loop.go) without waiting for any API call,
//     and every call's timeout is cut to the time left before it.
//  5. On a clean stop the holder, once its node has stopped forging,
//     releases the Lease: empty holder and an annotation naming itself. A
//     replica takes a released Lease at once only when that annotation names
//     the holder it saw last; an empty holder without it (an edit by hand) is
//     waited out like any unreleased Lease.
//  6. The epoch is the Lease's UID with its leaseTransitions; it only goes
//     up. A record whose transitions went backwards (an etcd restore) is not
//     trusted to forge under, and the next write puts the count back above
//     every value seen. A Lease recreated after a deletion continues the
//     count.
//
// Timing (defaults 15s/10s/2s): the leader's last renew starts at s. It
// fences at s+10s, and kills a node that has not confirmed the disable by
// s+14s (killMargin). No other replica can take the Lease before s+15s: it
// saw that record, or the Lease missing, no earlier than the write
// committed, after s. So the two never overlap as long as the clocks' rates
// differ by less than 15/14. Like client-go, this is not fencing by the
// storage: it relies on the deadline being honoured, which is why the node
// side is confirmed and, failing that, killed, and why a dead-man probe
// covers a sidecar that can no longer act (deadman.go). What a replica does
// not promise: anything about writers that do not follow these rules (a
// replica of an older version, the Python predecessor, a person editing
// the holder to another name).

import (
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strconv"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// The margins of the timing arithmetic above, each enforced by the
// configuration loader through timingProblems.
const (
	// killMargin: a node not confirmed off this long before another replica
	// may take the Lease is killed. One second covers the SIGKILL and the
	// other replica's own SIGHUP handling.
	killMargin = time.Second
	// disableWindow: the least time between the fence (RENEW_DEADLINE) and
	// the kill (LEASE_DURATION - killMargin), for an unlink, a SIGHUP and its
	// confirmation (cardano-node answers within milliseconds).
	disableWindow = time.Second
	// shutdownSlack: on SIGTERM, beyond SIGHUP_CONFIRM_TIMEOUT for the
	// disable and API_TIMEOUT for the release, for the passes in between.
	shutdownSlack = 2 * time.Second
)

// releasedBy marks a Lease released by its holder (rule 5).
const releasedBy = "cardano.io/released-by"

// timing is the election's and the node side's timing, as configured.
type timing struct {
	lease, renew, retry, api, confirm time.Duration
}

// timingProblems states every rule the timing arithmetic relies on, each as
// the error text of its violation. The forging token (cluster.go) follows
// the same rules under its own names: prefix is "" or "CLUSTER_".
func timingProblems(t timing, p deadmanProbe, prefix string) []string {
	var out []string
	add := func(format string, a ...any) { out = append(out, fmt.Sprintf(format, a...)) }
	ld, rd, rp := prefix+"LEASE_DURATION", prefix+"RENEW_DEADLINE", prefix+"RETRY_PERIOD"
	if t.lease%time.Second != 0 {
		add(`%s="%s" must be a whole number of seconds (the Lease stores leaseDurationSeconds)`, ld, t.lease)
	}
	if gap := disableWindow + killMargin; t.lease-t.renew < gap {
		add(`%s="%s" must be shorter than %s="%s" by at least %s (%s to disable forging after the fence, and the node killed %s before another replica may take over)`,
			rd, t.renew, ld, t.lease, gap, disableWindow, killMargin)
	}
	// Two renew attempts must fit in the deadline, so one failed request
	// does not fence a healthy leader.
	if t.renew < 2*t.retry {
		add(`%s="%s" must be at most half of %s="%s" (room for a retried renew)`, rp, t.retry, rd, t.renew)
	}
	if t.api > t.renew/2 {
		add(`API_TIMEOUT="%s" must be at most half of %s="%s"`, t.api, rd, t.renew)
	}
	// A handover waits for it (disable, confirm, then release, inside the
	// pod's termination grace), and so does a node whose state is unknown.
	if t.confirm > t.renew/2 {
		add(`SIGHUP_CONFIRM_TIMEOUT="%s" must be at most half of %s="%s"`, t.confirm, rd, t.renew)
	}
	if b := p.budget(); b+killMargin > t.lease-t.renew {
		add(`the dead-man probe kills the node up to %s after the heartbeat runs out (DEADMAN_PROBE_PERIOD="%s" x DEADMAN_PROBE_FAILURE_THRESHOLD="%d" + DEADMAN_PROBE_TIMEOUT="%s" + DEADMAN_PROBE_GRACE="%s"); with %s margin that must fit in %s - %s = %s`,
			b, p.period, p.threshold, p.timeout, p.grace, killMargin, ld, rd, t.lease-t.renew)
	}
	return out
}

// leaseAPI is the API access the election needs.
type leaseAPI interface {
	get(ctx context.Context) (*coordinationv1.Lease, error)
	create(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error)
	update(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error)
}

// epoch is the leadership epoch: the Lease's UID and leaseTransitions.
type epoch struct {
	UID         string
	Transitions int32
}

func (e epoch) String() string { return fmt.Sprintf("%d (lease %s)", e.Transitions, e.UID) }

// leadership is what one pass acts on, computed once after the election
// step (elector.facts).
type leadership struct {
	leading bool      // holds the Lease and renewed less than RENEW_DEADLINE ago
	trusted bool      // the epoch is not older than one already seen (rule 6)
	held    bool      // this process has held the Lease
	fenceAt time.Time // when leading ends without a renew
	// stopBy is the latest instant this replica's node may still forge:
	// killMargin before the earliest moment another replica may take the
	// Lease. Zero when this pod never held it.
	stopBy time.Time
	epoch  epoch
	holder string
	// inherited: stopBy comes from the heartbeat of a previous sidecar
	// process of this pod, which this one has not renewed since; until
	// holdUntil it may leave its node as it is (deadman.go inheritance.bound).
	inherited bool
	holdUntil time.Time
	// elsewhere: the Lease (or the token) as last seen names another holder.
	elsewhere bool
	// token is the forging token's holder as last seen, with cluster
	// management (cluster.go); "" otherwise.
	token string
}

// and is the leadership of a replica that must hold both a and b (the
// local Lease and the forging token, cluster.go rule 1): it leads while
// both lead, fences at the earlier deadline and stops its node before the
// earlier possible takeover. The epoch and holder shown are a's.
func (a leadership) and(b leadership) leadership {
	f := a
	f.leading = a.leading && b.leading
	f.trusted = a.trusted && b.trusted
	f.held = a.held && b.held // a previous sidecar process's promise stands until both are ours
	f.fenceAt = earliest(a.fenceAt, b.fenceAt)
	f.stopBy = earliest(a.stopBy, b.stopBy)
	f.elsewhere = a.elsewhere || b.elsewhere
	f.token = b.holder
	return f
}

// earliest is the earlier of two instants, zero meaning none.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// elector runs the election for one identity. It is used from one goroutine.
type elector struct {
	api      leaseAPI
	identity string
	timing   timing
	now      func() time.Time

	lease      *coordinationv1.Lease // last object read or written; nil when missing or unknown
	observed   leaseRecord           // rule 1: the record as last seen...
	observedAt time.Time             // ...and when a read first returned it
	lastHolder string                // the last non-empty holder seen (rule 5)
	holding    bool                  // the Lease as last seen names us, by our own write
	renewedAt  time.Time             // start of our last successful write as holder; zero if none
	// urgent is set when another replica may take the Lease sooner than the
	// renew arithmetic says: it passed to someone else.
	urgent      time.Time
	recreatedAt time.Time        // rule 2's exception, last used
	maxSeen     map[string]int32 // rule 6: highest transitions seen per Lease UID...
	maxAny      int32            // ...and across UIDs, for a recreated Lease
	seenAny     bool
	nextTry     time.Time
	jitter      *rand.Rand // seeded by the identity: replicas spread apart, runs repeat

	// The forging token's extras (cluster.go; unset for the local Lease):
	// a release naming another successor is waited out like an unreleased
	// Lease, and mayTake gates every takeover and creation.
	successor string
	mayTake   func() bool
	cutAt     time.Time // no call runs past it (the loop's apiLimit); zero for none
	// adopt: the previous sidecar process of this pod led (its heartbeat
	// says so), so a record naming us is ours to renew at once.
	adopt bool
	// longest is the longest lease duration a holder may count on that a
	// missing Lease does not show: the last record's, and for the token
	// every region's candidacy as last listed (regions may be configured
	// apart). A missing Lease is waited out this long (rule 2).
	lastDuration, regions time.Duration
	// stamp, if set, edits every record written as holder, a copy of the
	// latest one read or written: the certificate counter record
	// (counter.go).
	stamp func(l *coordinationv1.Lease)
	// attempts are the renew times of our writes as holder since our last
	// release, within LEASE_DURATION: a record carrying one is ours, and
	// nobody can have taken over since (rule 1).
	attempts []time.Time
	// The watch (watch.go): synced while it is in sync (W1), so the step
	// reads nothing; stale once a write of ours found it behind (a 409),
	// until a newer sighting; rv is the highest resourceVersion known from
	// any read, write or sighting (W4); resync asks the watch to list again.
	synced, stale bool
	rv            uint64
	rvAt          time.Time // when rv was last raised
	resync        func()
	// gap: a read failed since answeredAt, the last one answered (rule 2:
	// a missing Lease is then seen missing from the next answer on);
	// heardAt: the last sighting (quiet).
	gap                 bool
	answeredAt, heardAt time.Time
}

// leaseRecord is what rule 1 compares.
type leaseRecord struct {
	missing       bool
	version       string // resourceVersion: any write is a change, even one with the same renew time
	holder, renew string
	transitions   int32
	duration      int32
	releasedBy    string
	successor     string // a token released for this region (cluster.go rule 4)
}

func recordOf(l *coordinationv1.Lease) leaseRecord {
	r := leaseRecord{version: l.ResourceVersion, holder: deref(l.Spec.HolderIdentity), transitions: derefInt(l.Spec.LeaseTransitions),
		duration: derefInt(l.Spec.LeaseDurationSeconds), releasedBy: l.Annotations[releasedBy], successor: l.Annotations[successorKey]}
	if l.Spec.RenewTime != nil {
		r.renew = l.Spec.RenewTime.UTC().Format(time.RFC3339Nano)
	}
	return r
}

func newElector(api leaseAPI, identity string, t timing, now func() time.Time) *elector {
	h := fnv.New64a()
	h.Write([]byte(identity))
	return &elector{api: api, identity: identity, timing: t, now: now, maxSeen: map[string]int32{},
		jitter: rand.New(rand.NewPCG(h.Sum64(), 0))}
}

// leadingAt is rule 4.
func (e *elector) leadingAt(t time.Time) bool {
	return e.holding && !e.renewedAt.IsZero() && t.Before(e.fence())
}

// facts is the leadership as of t.
func (e *elector) facts(t time.Time) leadership {
	f := leadership{leading: e.leadingAt(t), trusted: e.epochTrusted(), held: !e.renewedAt.IsZero(),
		epoch: e.epoch(), holder: e.holder()}
	f.elsewhere = f.holder != "" && f.holder != e.identity
	if f.held {
		f.fenceAt = e.fence()
		f.stopBy = e.renewedAt.Add(e.timing.lease - killMargin)
	}
	if !e.urgent.IsZero() && (f.stopBy.IsZero() || e.urgent.Before(f.stopBy)) {
		f.stopBy = e.urgent
	}
	return f
}

// epoch is the current leadership epoch as last seen.
func (e *elector) epoch() epoch {
	if e.lease == nil {
		return epoch{}
	}
	return epoch{string(e.lease.UID), derefInt(e.lease.Spec.LeaseTransitions)}
}

// holder is the holder identity as last seen.
func (e *elector) holder() string {
	if e.lease == nil {
		return ""
	}
	return deref(e.lease.Spec.HolderIdentity)
}

// epochTrusted is rule 6: false while the Lease's transitions are below a
// value this process saw before for the same Lease.
func (e *elector) epochTrusted() bool {
	ep := e.epoch()
	return ep.Transitions >= e.maxSeen[ep.UID]
}

// due tells whether it is time for the next election step.
func (e *elector) due(t time.Time) bool { return !t.Before(e.nextTry) }

// callContext bounds one API call by API_TIMEOUT and, before the renew
// deadline of the last renew, by the time left to it (rule 4): also the
// recreation of a Lease found deleted, which is no longer "holding". ctx may
// bound it further (the loop cuts every call at its node's stopBy).
func (e *elector) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	limit, t := e.timing.api, e.now()
	if !e.renewedAt.IsZero() && t.Before(e.fence()) {
		limit = min(limit, e.fence().Sub(t))
	}
	if !e.cutAt.IsZero() {
		limit = min(limit, e.cutAt.Sub(t))
	}
	return context.WithTimeout(ctx, limit)
}

// fence is the renew deadline of the last successful renew.
func (e *elector) fence() time.Time { return e.renewedAt.Add(e.timing.renew) }

// step runs one election round: renew if leading, else observe and, when
// eligible and the Lease is free, expired or long missing, take it. It
// reports an API error; the outcome is read through facts().
func (e *elector) step(ctx context.Context, eligible bool) error {
	start := e.now()
	defer e.schedule(start)
	leading := e.leadingAt(start)
	if leading && eligible && e.lease != nil {
		// Rule 4: renew with the cached object, no read first. A Lease
		// deleted since is a 409 too: the update carries the old UID.
		err := e.write(ctx, start, e.renewed(start))
		if !apierrors.IsConflict(err) || !e.leadingAt(e.now()) {
			return err // past the deadline the loop disables before any other call
		}
	}
	// Rules 1 and 2: read, note changes on the local clock, and take over
	// only what is released, expired or long missing. The leader that finds
	// its own Lease gone recreates it at once (rule 2's exception).
	l, err := e.look(ctx, leading && eligible)
	if apierrors.IsNotFound(err) {
		if eligible && (e.mayRecreate(leading) || (e.expired(e.now()) && e.taking())) {
			return e.create(ctx, start)
		}
		return nil
	}
	switch {
	case err != nil:
		if e.observed.missing {
			e.holding = false // our Lease seen deleted (watch.go) and not recreated: no lead without it
		}
		return err
	case !eligible:
		return nil
	case leading && !e.now().Before(e.fence()):
		return nil // past the deadline: the loop disables before any other call
	case deref(l.Spec.HolderIdentity) == e.identity && (leading || e.adopt || e.wrote(recordOf(l), start)):
		// Our own record: renewed at once only while this process leads,
		// its predecessor in this pod did (adopt), or it is one of our own
		// recent writes (a fenced holder back, a reply lost). Any other
		// record naming us (an etcd restore brought back an old one) is
		// waited out like anyone's: another replica may lead now.
		return e.write(ctx, start, e.renewed(start))
	case !e.expired(e.now()) || !e.taking():
		return nil
	}
	return e.write(ctx, start, e.takeover(start))
}

// taking asks the token's gate (cluster.go rule 3) whether to take a Lease
// that may be taken.
func (e *elector) taking() bool { return e.mayTake == nil || e.mayTake() }

// mayRecreate is rule 2's exception: a leader, still inside its deadline,
// recreates its deleted Lease at once, at most once per LEASE_DURATION. A
// Lease deleted again and again (a pruner racing every write) would hide each
// recreation from the others, who would then recreate it too.
func (e *elector) mayRecreate(leading bool) bool {
	now := e.now()
	if !leading || !now.Before(e.fence()) || (!e.recreatedAt.IsZero() && now.Sub(e.recreatedAt) < e.timing.lease) {
		return false
	}
	e.recreatedAt = now
	return true
}

// wait is how long the observed record must stay unchanged: never less than
// our own LEASE_DURATION, whatever the record says (rule 1).
func (e *elector) wait() time.Duration {
	w := max(e.timing.lease, time.Duration(e.observed.duration)*time.Second, e.regions)
	if e.observed.missing {
		w = max(w, e.lastDuration)
	}
	return w
}

// wrote tells whether r carries the renew time of one of our writes as
// holder made less than LEASE_DURATION before t, and since our last
// release: then nobody else can have written since, nor taken over.
func (e *elector) wrote(r leaseRecord, t time.Time) bool {
	for _, a := range e.attempts {
		// The API server keeps renewTime to the microsecond.
		if t.Sub(a) < e.timing.lease && r.renew == a.UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano) {
			return true
		}
	}
	return false
}

// attempt records a write as holder about to be sent with renew time t.
func (e *elector) attempt(t time.Time) {
	keep := e.attempts[:0]
	for _, a := range e.attempts {
		if t.Sub(a) < e.timing.lease {
			keep = append(keep, a)
		}
	}
	e.attempts = append(keep, t)
}

// expired tells whether the observed record may be taken at t: released by
// the holder we saw last, or unchanged (or missing) for wait().
func (e *elector) expired(t time.Time) bool {
	r := e.observed
	if !r.missing && r.holder == "" && r.releasedBy != "" && r.releasedBy == e.lastHolder &&
		(r.successor == "" || r.successor == e.successor) {
		return true
	}
	return !e.observedAt.IsZero() && !t.Before(e.observedAt.Add(e.wait()))
}

// schedule sets the next round: a leader renews every RETRY_PERIOD; anyone
// else looks every RETRY_PERIOD plus up to 10% jitter, but never later than
// the moment the record it sees would expire.
func (e *elector) schedule(t time.Time) {
	if e.leadingAt(t) {
		e.nextTry = t.Add(e.timing.retry)
		return
	}
	e.nextTry = t.Add(e.timing.retry + time.Duration(e.jitter.Int64N(int64(e.timing.retry/10+1))))
	if e.gap && e.observed.missing && t.Sub(e.answeredAt) < e.missGap() {
		// A missing Lease's read failed: once more soon, so one blip stays
		// within missGap and does not restart its clock (observeMissing).
		e.nextTry = t.Add(e.timing.retry / 10)
	}
	if e.observed.holder == e.identity || e.observedAt.IsZero() {
		return
	}
	if expiry := e.observedAt.Add(e.wait()); expiry.After(t) && expiry.Before(e.nextTry) {
		e.nextTry = expiry
	}
}

// wakeAt is the next instant the caller must run step or act on the
// deadline.
func (e *elector) wakeAt(t time.Time) time.Time {
	w := e.nextTry
	if e.leadingAt(t) && e.fence().Before(w) {
		w = e.fence()
	}
	return w
}

// look is the Lease as it stands: the watch's view while it is in sync
// and shows one, else a read. A leader that means to renew reads after a
// conflict (rule 4). A watch found behind, by a 409 or by a read after a
// holder fell quiet, is read past and listed again (W1, W3).
func (e *elector) look(ctx context.Context, renewing bool) (*coordinationv1.Lease, error) {
	quiet := e.quiet()
	if e.synced && !e.stale && !renewing && !e.observed.missing && e.lease != nil && !quiet {
		return e.lease, nil // W2: a missing Lease is always read
	}
	known := e.rv
	l, err := e.read(ctx)
	if e.resync != nil && e.synced && (e.stale || (quiet && err == nil && e.rv > known)) {
		e.resync()
	}
	e.stale = false
	return l, err
}

// quiet: the watch shows another holder, and nothing came for longer than
// two renews and a request (a holder renews every RETRY_PERIOD): a dead
// holder or a stalled watch, which one read tells apart (W3).
func (e *elector) quiet() bool {
	h := e.observed.holder
	return e.synced && h != "" && h != e.identity && e.now().Sub(e.heardAt) > e.pollGap()
}

// pollGap is more than one missed look: two RETRY_PERIODs and a request.
func (e *elector) pollGap() time.Duration { return 2*e.timing.retry + e.timing.api }

// missGap is the longest a missing Lease may go unread and still count as
// seen missing throughout: a look and a half (one failed read, retried
// after a tenth of a look, fits; polling's own limit is one look).
func (e *elector) missGap() time.Duration { return e.timing.retry * 3 / 2 }

// read gets the Lease and observes it, stamped when the read returned.
func (e *elector) read(ctx context.Context) (*coordinationv1.Lease, error) {
	cctx, cancel := e.callContext(ctx)
	defer cancel()
	l, err := e.api.get(cctx)
	if apierrors.IsNotFound(err) {
		e.observeMissing(e.now())
		e.answeredAt = e.now()
		return nil, err
	}
	if err != nil {
		e.gap = true
		return nil, err
	}
	e.gap, e.answeredAt = false, e.now()
	e.lease = l
	e.observe(l, e.now())
	return l, nil
}

// observe applies rules 1, 4 and 6 to a record seen at t.
func (e *elector) observe(l *coordinationv1.Lease, t time.Time) {
	if v, err := strconv.ParseUint(l.ResourceVersion, 10, 64); err == nil && v > e.rv {
		e.rv, e.rvAt = v, e.now()
	}
	r := recordOf(l)
	e.note(r, t)
	uid, tr := string(l.UID), derefInt(l.Spec.LeaseTransitions)
	if v, err := strconv.ParseInt(l.Annotations[ratchetKey], 10, 32); err == nil && e.successor != "" && v < 1<<30 {
		tr = max(tr, int32(v)) // the token's ratchet: an epoch some holder saw (cluster.go rule 6)
	}
	e.maxSeen[uid] = max(e.maxSeen[uid], tr)
	e.maxAny, e.seenAny = max(e.maxAny, tr), true
	if r.holder != e.identity && e.holding {
		// Someone else's now: they may forge at once. (A record naming us
		// from an earlier sidecar process is bounded by that process's
		// heartbeat, which its successor inherits: deadman.go.)
		e.holding, e.urgent = false, t
	}
}

// observeMissing applies rules 1, 2 and 4 to a Lease found missing at t.
// Whoever takes it over must first see it missing for LEASE_DURATION after
// the deletion, which came after our last renew, so the renew arithmetic
// still bounds a holder's stopBy (unless the Lease is deleted again within
// one of the others' polls: the documented pruner limit).
func (e *elector) observeMissing(t time.Time) {
	e.lease, e.holding = nil, false
	if e.gap && t.Sub(e.answeredAt) > e.missGap() {
		// Reads failed for longer than a look and a half: it may have been
		// created and deleted since it was last seen missing (within one
		// look is the pruner limit of polling), so it is missing from now.
		e.observedAt = time.Time{}
	}
	e.gap = false
	e.note(leaseRecord{missing: true}, t)
}

func (e *elector) note(r leaseRecord, t time.Time) {
	if r != e.observed || e.observedAt.IsZero() {
		e.observed, e.observedAt = r, t
	}
	if !r.missing {
		e.lastDuration = time.Duration(r.duration) * time.Second
	}
	if r.holder != "" {
		e.lastHolder = r.holder
	}
}

// create makes the Lease with us as holder; after a deletion the count goes
// on from the highest seen (rule 6).
func (e *elector) create(ctx context.Context, start time.Time) error {
	t := e.takeover(start)
	l := &coordinationv1.Lease{Spec: t.Spec}
	l.Annotations = t.Annotations
	if !e.seenAny {
		l.Spec.LeaseTransitions = ptr(int32(0))
	}
	e.attempt(start)
	cctx, cancel := e.callContext(ctx)
	defer cancel()
	got, err := e.api.create(cctx, l)
	if apierrors.IsAlreadyExists(err) {
		// It was not missing: whatever was seen missing is no longer the
		// record to time (rule 2). Read next, even with the watch in sync.
		e.observed, e.observedAt, e.stale = leaseRecord{}, time.Time{}, e.synced
	}
	if err != nil {
		return err
	}
	e.accept(got, start)
	return nil
}

// write sends l with the cached resourceVersion and UID. Success makes us
// the holder from start; a conflict drops the cache so the next read
// refreshes.
func (e *elector) write(ctx context.Context, start time.Time, l *coordinationv1.Lease) error {
	e.attempt(start)
	cctx, cancel := e.callContext(ctx)
	defer cancel()
	got, err := e.api.update(cctx, l)
	if apierrors.IsConflict(err) {
		// Read next, unless the watch shows a newer record first: a
		// conflict after a sighting is the watch behind (W1).
		e.lease, e.stale = nil, e.synced
	}
	if err != nil {
		return err
	}
	e.accept(got, start)
	return nil
}

func (e *elector) accept(l *coordinationv1.Lease, start time.Time) {
	e.lease = l
	if deref(l.Spec.HolderIdentity) == e.identity {
		e.holding, e.renewedAt, e.urgent = true, start, time.Time{}
	}
	e.observe(l, e.now())
}

// renewed is our record with a fresh renew time. If the transitions count
// went backwards (rule 6), it is put back above every value seen.
func (e *elector) renewed(t time.Time) *coordinationv1.Lease {
	l := e.lease.DeepCopy()
	delete(l.Annotations, releasedBy)
	delete(l.Annotations, successorKey)
	l.Spec.HolderIdentity = &e.identity
	l.Spec.LeaseDurationSeconds = ptr(int32(e.timing.lease / time.Second))
	l.Spec.RenewTime = &metav1.MicroTime{Time: t}
	if tr := derefInt(l.Spec.LeaseTransitions); tr < e.maxSeen[string(l.UID)] {
		l.Spec.LeaseTransitions = ptr(e.maxSeen[string(l.UID)] + 1)
	}
	return e.ratchet(l)
}

// ratchet writes the stamps, and the highest epoch seen into the record
// (cluster.go rule 6) for the forging token only: its transitions then
// never go back below it, whoever writes next.
func (e *elector) ratchet(l *coordinationv1.Lease) *coordinationv1.Lease {
	if l.Annotations == nil {
		l.Annotations = map[string]string{}
	}
	if e.stamp != nil {
		e.stamp(l)
	}
	if e.successor == "" {
		return l
	}
	l.Annotations[ratchetKey] = strconv.Itoa(int(max(e.maxAny, derefInt(l.Spec.LeaseTransitions))))
	return l
}

// takeover is the record of a new holder: transitions one above the highest
// seen, acquire and renew time now.
func (e *elector) takeover(t time.Time) *coordinationv1.Lease {
	l := &coordinationv1.Lease{}
	if e.lease != nil {
		l = e.lease.DeepCopy()
		delete(l.Annotations, releasedBy)
		delete(l.Annotations, successorKey)
	}
	l.Spec = coordinationv1.LeaseSpec{
		HolderIdentity:       &e.identity,
		LeaseDurationSeconds: ptr(int32(e.timing.lease / time.Second)),
		AcquireTime:          &metav1.MicroTime{Time: t},
		RenewTime:            &metav1.MicroTime{Time: t},
		LeaseTransitions:     ptr(e.maxAny + 1),
	}
	return e.ratchet(l)
}

// release gives the Lease up (rule 5): empty holder, the release mark, a
// one-second duration as client-go writes it, transitions kept. Call it
// only once the node has stopped forging. A Lease not ours (as last seen)
// is left alone.
func (e *elector) release(ctx context.Context) error { return e.releaseTo(ctx, "") }

// releaseTo is release naming the region that may take the token at once
// (cluster.go rule 4); "" names none.
func (e *elector) releaseTo(ctx context.Context, heir string) error {
	if !e.holding || e.lease == nil {
		return nil
	}
	l := e.lease.DeepCopy()
	if l.Annotations == nil {
		l.Annotations = map[string]string{}
	}
	l.Annotations[releasedBy] = e.identity
	delete(l.Annotations, successorKey)
	if heir != "" {
		l.Annotations[successorKey] = heir
	}
	l.Spec.HolderIdentity = ptr("")
	l.Spec.LeaseDurationSeconds = ptr(int32(1))
	l.Spec.RenewTime = &metav1.MicroTime{Time: e.now()}
	// Not leading from here, whatever the answer: a release whose reply is
	// lost may have landed, and another replica may already hold the Lease.
	// Leading again takes a write of our own, and no earlier write of ours
	// counts as ours any more.
	e.holding, e.attempts = false, nil
	cctx, cancel := context.WithTimeout(ctx, e.timing.api)
	defer cancel()
	got, err := e.api.update(cctx, l)
	if err != nil {
		e.lease = nil
		return fmt.Errorf("release: %w", err)
	}
	e.lease = got
	e.observe(got, e.now())
	return nil
}

// kubeLeases is leaseAPI over the REST client.
type kubeLeases struct {
	rc        *rest.RESTClient
	namespace string
	name      string
	labels    map[string]string
	span      time.Duration // a watch's timeoutSeconds; 0: watchSpan (watch.go)
}

var _ leaseAPI = (*kubeLeases)(nil)

func (k *kubeLeases) path() []string {
	return []string{"/apis/coordination.k8s.io/v1/namespaces", k.namespace, "leases"}
}

func (k *kubeLeases) get(ctx context.Context) (*coordinationv1.Lease, error) {
	l := &coordinationv1.Lease{}
	err := k.rc.Get().AbsPath(append(k.path(), k.name)...).Do(ctx).Into(l)
	return l, wrapAPI("get", "lease", k.namespace, k.name, err)
}

func (k *kubeLeases) create(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	l.Name, l.Namespace, l.Labels = k.name, k.namespace, k.labels
	out := &coordinationv1.Lease{}
	err := k.rc.Post().AbsPath(k.path()...).Body(l).Do(ctx).Into(out)
	return out, wrapAPI("create", "lease", k.namespace, k.name, err)
}

func (k *kubeLeases) update(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	out := &coordinationv1.Lease{}
	err := k.rc.Put().AbsPath(append(k.path(), k.name)...).Body(l).Do(ctx).Into(out)
	return out, wrapAPI("update", "lease", k.namespace, k.name, err)
}

// list gets the Leases of the namespace that match selector (the pool's
// candidacies, cluster.go).
func (k *kubeLeases) list(ctx context.Context, selector string) ([]coordinationv1.Lease, error) {
	out := &coordinationv1.LeaseList{}
	err := k.rc.Get().AbsPath(k.path()...).Param("labelSelector", selector).Do(ctx).Into(out)
	return out.Items, wrapAPI("list", "lease", k.namespace, selector, err)
}
