package main

// The election's rules (lease.go), each tested against the real API server
// with the sidecar's own ServiceAccount, and a clock the test moves by hand
// so expiry is judged exactly.

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// fakeClock is a monotonic clock moved by the test.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

type electionEnv struct {
	t      *testing.T
	api    func() leaseAPI
	admin  leaseAPI
	config *config
}

func newElectionEnv(t *testing.T) *electionEnv {
	tn := newTenant(t)
	c, err := loadConfig(runEnv().lookup, "run") // defaults: 15s / 10s / 2s
	if err != nil {
		t.Fatal(err)
	}
	saClient := restClientFor(t, tn.SA)
	return &electionEnv{
		t:      t,
		api:    func() leaseAPI { return &kubeLeases{rc: saClient, namespace: tn.Namespace, name: "lease"} },
		admin:  &kubeLeases{rc: restClientFor(t, controlPlane(t).AdminConfig()), namespace: tn.Namespace, name: "lease"},
		config: c,
	}
}

func (e *electionEnv) elector(identity string, clock *fakeClock) *elector {
	return newElector(e.api(), identity, e.config, clock.now)
}

func step(t *testing.T, el *elector, eligible bool) {
	t.Helper()
	if err := el.step(context.Background(), eligible); err != nil && !apierrors.IsConflict(err) {
		t.Fatalf("%s: step: %v", el.identity, err)
	}
}

func TestElectionAcquireAndRenew(t *testing.T) {
	e := newElectionEnv(t)
	clock := &fakeClock{t: time.Unix(1000, 0)}
	a := e.elector("bp-0_uid-a", clock)
	step(t, a, true)
	if !a.leading(clock.now()) {
		t.Fatal("first eligible replica did not take the free Lease")
	}
	if got := a.epoch().Transitions; got != 0 {
		t.Errorf("new Lease epoch %d; want 0", got)
	}
	// Renewing keeps it within RENEW_DEADLINE of the last renew...
	clock.advance(9 * time.Second)
	step(t, a, true)
	clock.advance(9 * time.Second)
	if !a.leading(clock.now()) {
		t.Error("leader lost the lead although it renewed 9s ago (deadline 10s)")
	}
	// ...and past it, without any API call, it no longer leads (invariant 1).
	clock.advance(1 * time.Second)
	if a.leading(clock.now()) {
		t.Error("leader still leads 10s after its last renew")
	}
}

// TestElectionTakeoverWaitsLeaseDuration is invariant 2: a standby takes an
// unreleased Lease only after seeing it unchanged for LEASE_DURATION on its
// own clock, whatever the timestamps in it say.
func TestElectionTakeoverWaitsLeaseDuration(t *testing.T) {
	e := newElectionEnv(t)
	ca, cb := &fakeClock{t: time.Unix(1000, 0)}, &fakeClock{t: time.Unix(5000, 0)} // clocks far apart
	a, b := e.elector("bp-0_uid-a", ca), e.elector("bp-1_uid-b", cb)
	step(t, a, true)
	step(t, b, true) // b first sees a's record now
	if b.leading(cb.now()) {
		t.Fatal("standby took a Lease held by a live leader")
	}
	cb.advance(15*time.Second - time.Millisecond)
	step(t, b, true)
	if b.leading(cb.now()) {
		t.Fatal("standby took the Lease before it stayed unchanged for LEASE_DURATION")
	}
	cb.advance(2 * time.Millisecond)
	step(t, b, true)
	if !b.leading(cb.now()) {
		t.Fatal("standby did not take a Lease unchanged for LEASE_DURATION")
	}
	if got := b.epoch().Transitions; got != 1 {
		t.Errorf("epoch after takeover %d; want 1", got)
	}
	// The old leader learns on its next round and stops at once.
	ca.advance(time.Second)
	step(t, a, true)
	if a.leading(ca.now()) {
		t.Error("old leader still leads after the Lease passed")
	}
}

// TestElectionRenewResetsStandbyClock: a renewal changes the record, so a
// standby's observation starts over.
func TestElectionRenewResetsStandbyClock(t *testing.T) {
	e := newElectionEnv(t)
	ca, cb := &fakeClock{t: time.Unix(1000, 0)}, &fakeClock{t: time.Unix(1000, 0)}
	a, b := e.elector("bp-0_uid-a", ca), e.elector("bp-1_uid-b", cb)
	step(t, a, true)
	step(t, b, true)
	for i := 0; i < 5; i++ {
		ca.advance(2 * time.Second)
		cb.advance(14 * time.Second)
		step(t, a, true) // renew
		step(t, b, true) // sees a new record: not expired
		if b.leading(cb.now()) {
			t.Fatalf("round %d: standby took a Lease its leader kept renewing", i)
		}
	}
}

// TestElectionRelease is rule 4: a released Lease is taken at once.
func TestElectionRelease(t *testing.T) {
	e := newElectionEnv(t)
	ca, cb := &fakeClock{t: time.Unix(1000, 0)}, &fakeClock{t: time.Unix(1000, 0)}
	a, b := e.elector("bp-0_uid-a", ca), e.elector("bp-1_uid-b", cb)
	step(t, a, true)
	step(t, b, true)
	if err := a.release(context.Background()); err != nil {
		t.Fatal(err)
	}
	if a.leading(ca.now()) {
		t.Error("leader still leads after releasing")
	}
	step(t, b, true)
	if !b.leading(cb.now()) {
		t.Fatal("standby did not take a released Lease at once")
	}
	if got := b.epoch().Transitions; got != 1 {
		t.Errorf("epoch after release and takeover %d; want 1", got)
	}
}

// TestElectionIdentityIsPodIncarnation is invariant 3: a pod recreated
// under the same name is a new holder and must wait like any standby.
func TestElectionIdentityIsPodIncarnation(t *testing.T) {
	e := newElectionEnv(t)
	clock := &fakeClock{t: time.Unix(1000, 0)}
	old := e.elector("bp-0_uid-1", clock)
	step(t, old, true)
	recreated := e.elector("bp-0_uid-2", clock)
	step(t, recreated, true)
	if recreated.leading(clock.now()) {
		t.Fatal("a recreated pod with the same name took its predecessor's live Lease")
	}
	// The same incarnation restarting (a sidecar container restart) keeps it.
	restarted := e.elector("bp-0_uid-1", clock)
	step(t, restarted, true)
	if !restarted.leading(clock.now()) {
		t.Error("a restarted sidecar of the holding pod did not resume its Lease")
	}
}

// TestElectionConflict: two candidates racing for one expired Lease: the
// server's optimistic concurrency lets exactly one win.
func TestElectionConflict(t *testing.T) {
	e := newElectionEnv(t)
	clock := &fakeClock{t: time.Unix(1000, 0)}
	holder := e.elector("bp-0_uid-a", clock)
	step(t, holder, true)
	b, c := e.elector("bp-1_uid-b", clock), e.elector("bp-2_uid-c", clock)
	step(t, b, true)
	step(t, c, true)
	clock.advance(16 * time.Second)
	// Both read the same expired record before either writes.
	lb, err := b.read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b.observe(lb, clock.now())
	lc, err := c.read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c.observe(lc, clock.now())
	errB := b.write(context.Background(), clock.now(), b.takeover(clock.now()))
	errC := c.write(context.Background(), clock.now(), c.takeover(clock.now()))
	if (errB == nil) == (errC == nil) {
		t.Fatalf("want exactly one winner: b=%v c=%v", errB, errC)
	}
	loser := errB
	if errB == nil {
		loser = errC
	}
	if !apierrors.IsConflict(loser) {
		t.Errorf("loser got %v; want 409 Conflict", loser)
	}
	if b.leading(clock.now()) == c.leading(clock.now()) {
		t.Error("both or neither lead after the race")
	}
}

// TestElectionEpochNeverGoesBack is invariant 9: after an etcd restore
// puts leaseTransitions below a value seen, the replica does not trust the
// epoch, and its next write puts the count back above it.
func TestElectionEpochNeverGoesBack(t *testing.T) {
	e := newElectionEnv(t)
	clock := &fakeClock{t: time.Unix(1000, 0)}
	a := e.elector("bp-0_uid-a", clock)
	step(t, a, true)
	setTransitions(t, e.admin, 7)
	clock.advance(2 * time.Second)
	step(t, a, true)
	if !a.epochTrusted() || a.epoch().Transitions != 7 {
		t.Fatalf("epoch %v trusted %v; want 7, trusted", a.epoch(), a.epochTrusted())
	}
	setTransitions(t, e.admin, 3) // the restore
	a.lease = nil                 // force a read, as after a conflict
	clock.advance(2 * time.Second)
	if err := a.step(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	l, err := e.admin.get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := derefInt(l.Spec.LeaseTransitions); got != 8 {
		t.Errorf("transitions after renewing over a restored record: %d; want 8", got)
	}
	if !a.epochTrusted() {
		t.Error("epoch still untrusted after the count was put back above every value seen")
	}
	// An untrusted epoch on its own: the record read back says 3 < 8.
	setTransitions(t, e.admin, 3)
	l, _ = e.admin.get(context.Background())
	a.observe(l, clock.now())
	a.lease = l
	if a.epochTrusted() {
		t.Error("an epoch below one already seen is trusted")
	}
}

func setTransitions(t *testing.T, admin leaseAPI, n int32) {
	t.Helper()
	l, err := admin.get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	l.Spec.LeaseTransitions = &n
	if _, err := admin.update(context.Background(), l); err != nil {
		t.Fatal(err)
	}
}

// TestElectionCallTimeoutWithinDeadline is invariant 1's second half: every
// call made while leading ends before the renew deadline.
func TestElectionCallTimeoutWithinDeadline(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	c, _ := loadConfig(runEnv().lookup, "run")
	el := newElector(nil, "x", c, clock.now)
	el.renewedAt = clock.now()
	clock.advance(8 * time.Second) // 2s left; API_TIMEOUT is 5s
	ctx, cancel := el.callContext(context.Background())
	defer cancel()
	dl, _ := ctx.Deadline()
	if left := time.Until(dl); left > 2*time.Second || left < 1900*time.Millisecond {
		t.Errorf("call timeout %s; want the 2s left before the deadline", left)
	}
}

// TestLeaseLabels: the Lease carries the tenant labels.
func TestLeaseLabels(t *testing.T) {
	tn := newTenant(t)
	c, _ := loadConfig(runEnv("POOL_ID", bech32Pool).lookup, "run")
	tt := resolveTenant(c)
	api := &kubeLeases{rc: restClientFor(t, tn.SA), namespace: tn.Namespace, name: tt.Lease, labels: tt.Labels}
	clock := &fakeClock{t: time.Unix(1000, 0)}
	el := newElector(api, "bp-0_u", c, clock.now)
	step(t, el, true)
	raw, err := restClientFor(t, controlPlane(t).AdminConfig()).Get().AbsPath("/apis/coordination.k8s.io/v1/namespaces", tn.Namespace, "leases", tt.Lease).DoRaw(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var l coordinationv1.Lease
	json.Unmarshal(raw, &l)
	for k, v := range tt.Labels {
		if l.Labels[k] != v {
			t.Errorf("label %s=%q; want %q", k, l.Labels[k], v)
		}
	}
}
