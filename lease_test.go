package main

// The election's rules (lease.go), fast: an in-memory Lease store with the
// API server's optimistic concurrency, and a clock the test moves by hand.
// lease_api_test.go runs the same rules against the real API server.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// fakeClock is a monotonic clock moved by the test.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Unix(1000, 0)} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// memLeases is one Lease in memory with the API server's rules for it:
// every update carries the resourceVersion (and UID) it read, a stale one is
// a 409, and an update of a deleted Lease with a UID is a 409 (the UID
// precondition), without one it creates (Lease allows create on update).
type memLeases struct {
	mu    sync.Mutex
	l     *coordinationv1.Lease // nil: missing
	rv    int
	uids  int
	calls int
	// before runs at the start of every call, outside the lock: tests use
	// it to move the clock (a slow request) or to fail the call.
	before func(op string) error
	// afterWrite runs after every create or update, outside the lock.
	afterWrite func()
	watches    []*simWatch // replicas following it (watch.go)
}

// simWatch is one sidecar's watch on a memLeases: every change is a
// sighting stamped with the clock, except while cut, when changes are
// silently lost (a dropped connection) until recover lists again.
type simWatch struct {
	w      *leaseWatch
	clock  *fakeClock
	cut    func() bool
	missed bool
	gone   bool // its sidecar process was replaced
	// deaf: the stream is silently dead (a dropped connection the client
	// has not noticed): changes are lost until the follower lists again.
	deaf bool
}

// follow starts a watch: a list first, as the real one does.
func (m *memLeases) follow(w *leaseWatch, clock *fakeClock, cut func() bool) *simWatch {
	m.mu.Lock()
	defer m.mu.Unlock()
	sw := &simWatch{w: w, clock: clock, cut: cut, missed: true}
	m.watches = append(m.watches, sw)
	return sw
}

// tell hands a change (nil: deleted) to every watch. Under m.mu.
func (m *memLeases) tell(l *coordinationv1.Lease) {
	for _, sw := range m.watches {
		switch {
		case sw.gone:
		case sw.cut() || sw.deaf:
			sw.missed = true
		default:
			sw.w.push(leaseSight{kind: sightEvent, lease: l.DeepCopy(), rv: uint64(m.rv), at: sw.clock.now()})
		}
	}
}

// recover lists again for a watch that missed changes or was asked to
// (W1), once it is no longer cut.
func (m *memLeases) recover(sw *simWatch) {
	m.mu.Lock()
	defer m.mu.Unlock()
	select {
	case <-sw.w.behind:
		sw.missed, sw.deaf = true, false
	default:
	}
	if !sw.missed || sw.gone || sw.cut() || sw.deaf {
		return
	}
	sw.missed = false
	sw.w.push(leaseSight{kind: sightListed, lease: m.l.DeepCopy(), rv: uint64(m.rv), at: sw.clock.now(), sent: sw.clock.now()})
	sw.w.push(leaseSight{kind: sightSynced, rv: uint64(m.rv), at: sw.clock.now()})
}

var leaseResource = schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}

func (m *memLeases) hook(op string) error {
	m.mu.Lock()
	m.calls++
	before := m.before
	m.mu.Unlock()
	if before != nil {
		return before(op)
	}
	return nil
}

func (m *memLeases) get(ctx context.Context) (*coordinationv1.Lease, error) {
	if err := m.hook("get"); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.l == nil {
		return nil, apierrors.NewNotFound(leaseResource, "lease")
	}
	return m.l.DeepCopy(), nil
}

func (m *memLeases) create(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	if err := m.hook("create"); err != nil {
		return nil, err
	}
	m.mu.Lock()
	if m.l != nil {
		m.mu.Unlock()
		return nil, apierrors.NewAlreadyExists(leaseResource, "lease")
	}
	got := m.store(l, true)
	m.mu.Unlock()
	m.wrote()
	return got, nil
}

func (m *memLeases) wrote() {
	if m.afterWrite != nil {
		m.afterWrite()
	}
}

func (m *memLeases) update(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	if err := m.hook("update"); err != nil {
		return nil, err
	}
	got, err := m.put(l)
	if err == nil {
		m.wrote()
	}
	return got, err
}

func (m *memLeases) put(l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.l == nil && l.UID != "":
		return nil, apierrors.NewConflict(leaseResource, "lease", fmt.Errorf("Precondition failed: UID in precondition: %s, UID in object meta: ", l.UID))
	case m.l == nil:
		return m.store(l, true), nil
	case l.UID != "" && l.UID != m.l.UID, l.ResourceVersion != m.l.ResourceVersion:
		return nil, apierrors.NewConflict(leaseResource, "lease", fmt.Errorf("the object has been modified"))
	}
	return m.store(l, false), nil
}

func (m *memLeases) store(l *coordinationv1.Lease, create bool) *coordinationv1.Lease {
	l = l.DeepCopy()
	if create {
		m.uids++
		l.UID = types.UID(fmt.Sprintf("uid-%d", m.uids))
	}
	m.rv++
	l.ResourceVersion = fmt.Sprint(m.rv)
	m.l = l
	m.tell(l)
	return l.DeepCopy()
}

// edit changes the stored Lease as a person with kubectl would.
func (m *memLeases) edit(f func(l *coordinationv1.Lease)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f(m.l)
	m.rv++
	m.l.ResourceVersion = fmt.Sprint(m.rv)
	m.tell(m.l)
}

func (m *memLeases) delete() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.l = nil
	m.rv++
	m.tell(nil)
}

func (m *memLeases) holder() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.l == nil {
		return ""
	}
	return deref(m.l.Spec.HolderIdentity)
}

// defaultTiming is the shipped timing: 15s / 10s / 2s, API_TIMEOUT 5s,
// SIGHUP_CONFIRM_TIMEOUT 5s.
var defaultTiming = timing{lease: 15 * time.Second, renew: 10 * time.Second, retry: 2 * time.Second, api: 5 * time.Second, confirm: 5 * time.Second}

func stepOK(t *testing.T, el *elector, eligible bool) {
	t.Helper()
	if err := el.step(context.Background(), eligible); err != nil && !raceLost(err) {
		t.Fatalf("%s: step: %v", el.identity, err)
	}
}

// leadingNow is facts().leading at the elector's clock.
func leadingNow(el *elector) bool { return el.facts(el.now()).leading }

// established is a Lease held by a, with b a standby that has seen it.
func established(t *testing.T) (*memLeases, *fakeClock, *elector, *elector) {
	t.Helper()
	api, clock := &memLeases{}, newClock()
	a, b := newElector(api, "bp-0_a", defaultTiming, clock.now), newElector(api, "bp-1_b", defaultTiming, clock.now)
	stepOK(t, a, true) // sees it missing
	clock.advance(defaultTiming.lease)
	stepOK(t, a, true)
	if !leadingNow(a) {
		t.Fatal("a did not create a Lease missing for LEASE_DURATION")
	}
	stepOK(t, b, true)
	return api, clock, a, b
}

// TestInvariant2MissingLeaseIsWaitedOut: a missing Lease is an unreleased
// one: nobody creates it before seeing it missing for LEASE_DURATION.
func TestInvariant2MissingLeaseIsWaitedOut(t *testing.T) {
	api, clock := &memLeases{}, newClock()
	a := newElector(api, "bp-0_a", defaultTiming, clock.now)
	stepOK(t, a, true)
	clock.advance(defaultTiming.lease - time.Millisecond)
	stepOK(t, a, true)
	if leadingNow(a) || api.l != nil {
		t.Fatal("a replica created a Lease it had seen missing for less than LEASE_DURATION")
	}
	clock.advance(time.Millisecond)
	stepOK(t, a, true)
	if !leadingNow(a) || a.epoch().Transitions != 0 {
		t.Fatalf("after LEASE_DURATION missing: leading %v epoch %v; want leading at epoch 0", leadingNow(a), a.epoch())
	}
}

// TestInvariant2LeaseDeletedWhileLeaderForges: the leader whose renew finds
// its Lease gone recreates it at once and keeps leading; a standby that
// saw it missing waits, and then sees the leader's new record.
func TestInvariant2LeaseDeletedWhileLeaderForges(t *testing.T) {
	api, clock, a, b := established(t)
	api.delete()
	stepOK(t, b, true) // b sees it missing first
	if leadingNow(b) || api.l != nil {
		t.Fatal("a standby recreated a deleted Lease at once")
	}
	clock.advance(defaultTiming.retry)
	stepOK(t, a, true) // a's renew: 409 (UID precondition), read: missing, recreate
	if !leadingNow(a) || api.holder() != a.identity {
		t.Fatalf("the leader did not recreate its deleted Lease at once (holder %q)", api.holder())
	}
	if a.epoch().Transitions != 1 {
		t.Errorf("recreated Lease epoch %v; want the count continued (1)", a.epoch())
	}
	for i := 0; i < 10; i++ {
		clock.advance(defaultTiming.retry)
		stepOK(t, a, true)
		stepOK(t, b, true)
		if leadingNow(b) {
			t.Fatalf("round %d: the standby took the recreated Lease from a leader that renews it", i)
		}
	}
}

// TestInvariant2DeletedLeaseEndsLeadership: a holder that finds its Lease
// gone and does not recreate it (stepping down, not eligible) stops
// counting itself leader at once.
func TestInvariant2DeletedLeaseEndsLeadership(t *testing.T) {
	api, clock, a, _ := established(t)
	api.delete()
	clock.advance(defaultTiming.retry)
	stepOK(t, a, false)
	if leadingNow(a) || api.l != nil {
		t.Errorf("after its Lease was deleted: leading %v, Lease %v; want not leading, not recreated", leadingNow(a), api.l != nil)
	}
}

// TestInvariant1RecreateCutAtTheFence: the leader recreating its deleted
// Lease no longer holds it, and the create is still cut at the renew
// deadline.
func TestInvariant1RecreateCutAtTheFence(t *testing.T) {
	api, clock, a, _ := established(t)
	fence := a.facts(clock.now()).fenceAt
	clock.advance(defaultTiming.renew - time.Second)
	api.delete()
	var left time.Duration
	api.before = func(op string) error {
		if op == "create" {
			return errors.New("probe only")
		}
		return nil
	}
	a.api = &deadlineSpy{leaseAPI: api, seen: &left}
	a.step(context.Background(), true)
	if want := fence.Sub(clock.now()); left > want+10*time.Millisecond || left <= 0 {
		t.Errorf("the create's timeout %s; want it cut at the renew deadline, %s away", left, want)
	}
}

// deadlineSpy notes the time left on a create's context.
type deadlineSpy struct {
	leaseAPI
	seen *time.Duration
}

func (d *deadlineSpy) create(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	if dl, ok := ctx.Deadline(); ok {
		*d.seen = time.Until(dl)
	}
	return d.leaseAPI.create(ctx, l)
}

// TestInvariant2DeletedLeaseOfAPartitionedLeader: a leader that cannot
// renew cannot recreate; the standby waits a full LEASE_DURATION of
// "missing", by which time the leader is fenced and past its stopBy.
func TestInvariant2DeletedLeaseOfAPartitionedLeader(t *testing.T) {
	api, clock, a, b := established(t)
	f := a.facts(clock.now())
	api.delete()
	stepOK(t, b, true)
	seen := clock.now()
	for !leadingNow(b) {
		clock.advance(100 * time.Millisecond)
		stepOK(t, b, true)
	}
	if took := clock.now().Sub(seen); took < defaultTiming.lease {
		t.Errorf("standby created the deleted Lease %s after seeing it missing; want >= %s", took, defaultTiming.lease)
	}
	if !clock.now().After(f.stopBy) {
		t.Errorf("standby took over at %s, before the old leader's stopBy %s", clock.now(), f.stopBy)
	}
}

// TestInvariant2HolderStopsAtOnce: a Lease edited to name another holder,
// or recreated by another replica, ends the leadership at the next look,
// and stopBy is then: at once.
func TestInvariant2HolderStopsAtOnce(t *testing.T) {
	api, clock, a, _ := established(t)
	api.edit(func(l *coordinationv1.Lease) { l.Spec.HolderIdentity = ptr("intruder") })
	clock.advance(defaultTiming.retry)
	stepOK(t, a, true)
	f := a.facts(clock.now())
	if f.leading {
		t.Fatal("the holder still leads a Lease that names another")
	}
	if f.stopBy.After(clock.now()) {
		t.Errorf("stopBy %s after the Lease passed; want now (%s): the other may already forge", f.stopBy, clock.now())
	}
}

// TestInvariant2ObservationStampedWhenReadReturns: a slow read (API
// priority and fairness queueing, a starved sidecar) is not credited to the
// wait: the record may have been written just before the answer.
func TestInvariant2ObservationStampedWhenReadReturns(t *testing.T) {
	api, clock, a, b := established(t)
	slow := 4 * time.Second
	api.before = func(op string) error {
		if op == "get" {
			api.before = nil
			clock.advance(slow) // queued; meanwhile the leader renews once more
			stepOK(t, a, true)
		}
		return nil
	}
	clock.advance(defaultTiming.retry)
	stepOK(t, b, true)
	returned := clock.now()
	clock.advance(defaultTiming.lease - time.Millisecond)
	stepOK(t, b, true)
	if leadingNow(b) {
		t.Fatalf("standby took over %s after its slow read returned (%s before it was sent)", clock.now().Sub(returned), clock.now().Sub(returned)+slow)
	}
}

// TestInvariant2NeverShorterThanOwnLeaseDuration: a record that says
// leaseDurationSeconds 1 (not a release) is still waited out for this
// replica's own LEASE_DURATION.
func TestInvariant2NeverShorterThanOwnLeaseDuration(t *testing.T) {
	api, clock, _, b := established(t)
	api.edit(func(l *coordinationv1.Lease) { l.Spec.LeaseDurationSeconds = ptr(int32(1)) })
	stepOK(t, b, true)
	clock.advance(defaultTiming.lease - time.Millisecond)
	stepOK(t, b, true)
	if leadingNow(b) {
		t.Fatal("standby took over after the record's 1s instead of its own LEASE_DURATION")
	}
	clock.advance(time.Millisecond)
	stepOK(t, b, true)
	if !leadingNow(b) {
		t.Fatal("standby did not take a Lease unchanged for its LEASE_DURATION")
	}
}

// TestElectionTakeoverWaitsLeaseDuration: a renewal restarts the wait; an
// unchanged record is taken after LEASE_DURATION; the old holder learns it
// at its next look.
func TestElectionTakeoverWaitsLeaseDuration(t *testing.T) {
	_, clock, a, b := established(t)
	for i := 0; i < 5; i++ {
		clock.advance(defaultTiming.retry)
		stepOK(t, a, true)
		stepOK(t, b, true)
		if leadingNow(b) {
			t.Fatalf("round %d: standby took a Lease its leader kept renewing", i)
		}
	}
	last := clock.now()
	for !leadingNow(b) {
		clock.advance(100 * time.Millisecond)
		stepOK(t, b, true)
	}
	if took := clock.now().Sub(last); took < defaultTiming.lease || took > defaultTiming.lease+100*time.Millisecond {
		t.Errorf("takeover %s after the last renew was seen; want LEASE_DURATION", took)
	}
	if b.epoch().Transitions != 1 {
		t.Errorf("epoch after takeover %v; want 1", b.epoch())
	}
	stepOK(t, a, true)
	if leadingNow(a) {
		t.Error("old leader still leads after the Lease passed")
	}
}

// TestInvariant7LostReleaseReplyEndsLeadership: a release whose reply is
// lost may have landed and been taken: the replica stops counting itself
// leader when it sends it, and leads again only by a write of its own.
func TestInvariant7LostReleaseReplyEndsLeadership(t *testing.T) {
	api, clock, a, b := established(t)
	api.before = func(op string) error {
		if op == "update" {
			api.before = nil
			l := a.lease.DeepCopy() // the release lands...
			l.Spec.HolderIdentity, l.Annotations = ptr(""), map[string]string{releasedBy: a.identity}
			api.update(context.Background(), l)
			return errors.New("connection reset by peer") // ...and its answer is lost
		}
		return nil
	}
	if err := a.release(context.Background()); err == nil {
		t.Fatal("release: want the lost reply's error")
	}
	if leadingNow(a) {
		t.Error("a replica whose release reply was lost still counts itself leader")
	}
	stepOK(t, b, true)
	if !leadingNow(b) {
		t.Error("the standby did not take the released Lease")
	}
	stepOK(t, a, true)
	if leadingNow(a) {
		t.Error("the old leader leads again without having written")
	}
	_ = clock
}

// TestInvariant7ReleaseIsTakenAtOnce and its hand-made twin: a Lease
// released by its holder is taken at once; an empty holder without the
// release mark (kubectl edit) is waited out like any unreleased Lease, and
// the holder stops at once.
func TestInvariant7ReleaseIsTakenAtOnce(t *testing.T) {
	t.Run("released by the holder", func(t *testing.T) {
		_, _, a, b := established(t)
		if err := a.release(context.Background()); err != nil {
			t.Fatal(err)
		}
		if leadingNow(a) {
			t.Error("leader still leads after releasing")
		}
		stepOK(t, b, true)
		if !leadingNow(b) {
			t.Fatal("standby did not take a released Lease at once")
		}
	})
	t.Run("holder emptied by hand", func(t *testing.T) {
		api, clock, a, b := established(t)
		api.edit(func(l *coordinationv1.Lease) { l.Spec.HolderIdentity = ptr("") })
		stepOK(t, b, true)
		if leadingNow(b) {
			t.Fatal("standby took at once a Lease whose holder was emptied by hand")
		}
		clock.advance(defaultTiming.retry)
		stepOK(t, a, true)
		if leadingNow(a) {
			t.Error("the holder still leads a Lease that no longer names it")
		}
		clock.advance(defaultTiming.lease)
		stepOK(t, b, true)
		if !leadingNow(b) {
			t.Error("standby did not take the emptied Lease after LEASE_DURATION")
		}
	})
}

// TestInvariant3IdentityIsPodIncarnation: a pod recreated under the same
// name is a new holder and must wait; the same incarnation restarting (a
// sidecar container restart) resumes, leading only once it renewed (until
// then the previous process's heartbeat bounds its node: forge_test.go).
func TestInvariant3IdentityIsPodIncarnation(t *testing.T) {
	api, clock, a, _ := established(t)
	recreated := newElector(api, "bp-0_new-uid", defaultTiming, clock.now)
	stepOK(t, recreated, true)
	if leadingNow(recreated) {
		t.Fatal("a recreated pod with the same name took its predecessor's live Lease")
	}
	restarted := newElector(api, a.identity, defaultTiming, clock.now)
	restarted.adopt = true      // its predecessor's heartbeat says it led
	stepOK(t, restarted, false) // not eligible: it reads only
	if restarted.facts(clock.now()).leading {
		t.Error("a restarted sidecar of the holder leads before renewing")
	}
	stepOK(t, restarted, true)
	if !leadingNow(restarted) {
		t.Error("a restarted sidecar of the holding pod did not resume its Lease")
	}
}

// TestInvariant2OwnRecordIsNotProofOfLeading: a record naming this replica
// that it does not hold now (an etcd restore of the coordination server
// brought back a token it handed over long ago; a takeover whose reply was
// lost), with no predecessor that led, is waited out like anyone's:
// another replica may be leading. Renewed at once, two would forge.
func TestInvariant2OwnRecordIsNotProofOfLeading(t *testing.T) {
	api, clock, a, _ := established(t)
	old := api.l.DeepCopy() // the snapshot: a holds
	b := newElector(api, "bp-1_uid", defaultTiming, clock.now)
	stepOK(t, b, true) // sees a hold
	if err := a.release(context.Background()); err != nil {
		t.Fatal(err)
	}
	clock.advance(defaultTiming.retry)
	stepOK(t, b, true)
	if !leadingNow(b) {
		t.Fatal("b did not take the released Lease")
	}
	api.edit(func(l *coordinationv1.Lease) { l.Spec = old.Spec }) // the restore
	clock.advance(defaultTiming.retry)
	stepOK(t, a, true)
	if leadingNow(a) {
		t.Fatal("a renewed a restored record naming it while b leads")
	}
	clock.advance(defaultTiming.lease)
	stepOK(t, a, true)
	if !leadingNow(a) {
		t.Error("a did not take the record over after LEASE_DURATION")
	}
}

// TestInvariant9EpochNeverGoesBack: after a restore puts leaseTransitions
// below a value seen, the epoch is not trusted, and the next renew puts the
// count back above it.
func TestInvariant9EpochNeverGoesBack(t *testing.T) {
	api, clock, a, _ := established(t)
	api.edit(func(l *coordinationv1.Lease) { l.Spec.LeaseTransitions = ptr(int32(7)) })
	clock.advance(defaultTiming.retry)
	stepOK(t, a, true) // 409, read 7, renew
	api.edit(func(l *coordinationv1.Lease) { l.Spec.LeaseTransitions = ptr(int32(3)) })
	l, _ := api.get(context.Background())
	a.lease = l
	a.observe(l, clock.now())
	if a.epochTrusted() {
		t.Error("an epoch below one already seen is trusted")
	}
	clock.advance(defaultTiming.retry)
	stepOK(t, a, true)
	if got := derefInt(api.l.Spec.LeaseTransitions); got != 8 || !a.epochTrusted() {
		t.Errorf("transitions after renewing over a restored record: %d (trusted %v); want 8, trusted", got, a.epochTrusted())
	}
}

// TestInvariant1CallTimeoutWithinDeadline: every call made while leading
// ends before the renew deadline.
func TestInvariant1CallTimeoutWithinDeadline(t *testing.T) {
	_, clock, a, _ := established(t)
	clock.advance(8 * time.Second) // 2s left; API_TIMEOUT is 5s
	ctx, cancel := a.callContext(context.Background())
	defer cancel()
	dl, _ := ctx.Deadline()
	if left := time.Until(dl); left > 2*time.Second || left < 1900*time.Millisecond {
		t.Errorf("call timeout %s; want the 2s left before the deadline", left)
	}
}

// TestElectionConflict: two candidates racing for one expired Lease: the
// optimistic concurrency lets exactly one win.
func TestElectionConflict(t *testing.T) {
	api, clock, _, b := established(t)
	c := newElector(api, "bp-2_c", defaultTiming, clock.now)
	stepOK(t, c, true)
	clock.advance(defaultTiming.lease)
	if _, err := b.read(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.read(context.Background()); err != nil {
		t.Fatal(err)
	}
	errB := b.write(context.Background(), clock.now(), b.takeover(clock.now()))
	errC := c.write(context.Background(), clock.now(), c.takeover(clock.now()))
	if (errB == nil) == (errC == nil) || !raceLost(errB) && !raceLost(errC) {
		t.Fatalf("want exactly one winner and a 409: b=%v c=%v", errB, errC)
	}
	if leadingNow(b) == leadingNow(c) {
		t.Error("both or neither lead after the race")
	}
}

// TestInvariant1ConflictAtTheFenceEndsTheStep: a renew refused with a 409
// at the renew deadline, or whose re-read returns at it, does not go on
// with another call: past the deadline the loop disables first.
func TestInvariant1ConflictAtTheFenceEndsTheStep(t *testing.T) {
	for _, at := range []string{"update", "get"} {
		t.Run("deadline reached during the "+at, func(t *testing.T) {
			api, clock, a, _ := established(t)
			fence := a.facts(clock.now()).fenceAt
			clock.setTo(fence.Add(-time.Millisecond))
			var ops []string
			api.before = func(op string) error {
				ops = append(ops, op)
				if op == at {
					clock.setTo(fence)
				}
				if op == "update" && len(ops) == 1 {
					return apierrors.NewConflict(leaseResource, "lease", errors.New("modified"))
				}
				return nil
			}
			a.step(context.Background(), true)
			if want := map[string]int{"update": 1, "get": 2}[at]; len(ops) != want {
				t.Errorf("calls %v in a step that reached the deadline during the %s; want %d", ops, at, want)
			}
		})
	}
}

// TestInvariant2AnyWriteIsAChange: a renew whose renew time happens to be
// the same (a wall clock stepped back or stuck) is still a change: the
// resourceVersion moved.
func TestInvariant2AnyWriteIsAChange(t *testing.T) {
	api, clock := &memLeases{}, newClock()
	stuck := newClock() // the leader's wall clock does not move
	a, b := newElector(api, "bp-0_a", defaultTiming, stuck.now), newElector(api, "bp-1_b", defaultTiming, clock.now)
	stepOK(t, a, true)
	stuck.advance(defaultTiming.lease)
	stepOK(t, a, true)
	stuck.t = stuck.t.Add(-time.Nanosecond) // each renew now writes the same renew time...
	for i := 0; i < 10; i++ {
		stuck.advance(0)
		a.renewedAt = stuck.now() // ...and a still counts itself leader
		stepOK(t, a, true)
		stepOK(t, b, true)
		clock.advance(defaultTiming.retry)
		if leadingNow(b) {
			t.Fatalf("round %d: the standby took a Lease renewed every %s", i, defaultTiming.retry)
		}
	}
}

// TestInvariant2FencedHolderTakesBackItsOwnRecord: a holder whose renews
// failed past its deadline, or whose last renew landed with its reply lost,
// finds its own recent write on the server: nobody can have taken over
// since, so it renews at once instead of waiting a lease.
func TestInvariant2FencedHolderTakesBackItsOwnRecord(t *testing.T) {
	api, clock, a, _ := established(t)
	failing := true
	api.before = func(op string) error {
		if failing && op == "update" {
			return fmt.Errorf("update lease: %w", context.DeadlineExceeded)
		}
		return nil
	}
	for i := 0; i < 6; i++ { // 12s: past the 10s deadline
		clock.advance(defaultTiming.retry)
		a.step(context.Background(), true)
	}
	if leadingNow(a) {
		t.Fatal("still leading past the deadline")
	}
	failing = false
	clock.advance(defaultTiming.retry)
	stepOK(t, a, true)
	if !leadingNow(a) {
		t.Error("a fenced holder did not take back its own record at once")
	}
}
