//go:build integration

package main

// The election's rules (lease.go) against the real API server, with the
// sidecar's own ServiceAccount and a clock the test moves by hand: what the
// in-memory store of lease_test.go assumes about the server (409 on a
// stale write, what an update of a deleted Lease does, labels, annotations)
// is checked here on the server itself.

import (
	"context"
	"encoding/json"
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

type electionEnv struct {
	t     *testing.T
	clock *fakeClock
	api   func() leaseAPI
	admin *kubeLeases
}

func newElectionEnv(t *testing.T) *electionEnv {
	tn := newTenant(t)
	saClient := restClientFor(t, tn.SA)
	return &electionEnv{
		t: t, clock: newClock(),
		api:   func() leaseAPI { return &kubeLeases{rc: saClient, namespace: tn.Namespace, name: "lease"} },
		admin: &kubeLeases{rc: restClientFor(t, controlPlane(t).AdminConfig()), namespace: tn.Namespace, name: "lease"},
	}
}

func (e *electionEnv) elector(identity string) *elector {
	return newElector(e.api(), identity, defaultTiming, e.clock.now)
}

// leader is a elector that created the Lease after seeing it missing for
// LEASE_DURATION.
func (e *electionEnv) leader(identity string) *elector {
	e.t.Helper()
	a := e.elector(identity)
	stepOK(e.t, a, true)
	e.clock.advance(defaultTiming.lease)
	stepOK(e.t, a, true)
	if !leadingNow(a) {
		e.t.Fatal("no leader after the Lease was missing for LEASE_DURATION")
	}
	return a
}

func (e *electionEnv) get() *coordinationv1.Lease {
	e.t.Helper()
	l, err := e.admin.get(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return l
}

func TestElectionOnTheServer(t *testing.T) {
	e := newElectionEnv(t)
	a := e.leader("bp-0_uid-a")
	if got := a.epoch().Transitions; got != 0 {
		t.Errorf("new Lease epoch %d; want 0", got)
	}
	b := e.elector("bp-1_uid-b")
	stepOK(t, b, true)
	for i := 0; i < 3; i++ { // renewing keeps it
		e.clock.advance(defaultTiming.retry)
		stepOK(t, a, true)
		stepOK(t, b, true)
	}
	if !leadingNow(a) || leadingNow(b) {
		t.Fatal("the standby took a Lease its leader renews")
	}
	e.clock.advance(defaultTiming.lease)
	stepOK(t, b, true)
	if !leadingNow(b) || b.epoch().Transitions != 1 {
		t.Fatalf("standby after LEASE_DURATION: leading %v epoch %v; want leading at 1", leadingNow(b), b.epoch())
	}
	stepOK(t, a, true)
	if leadingNow(a) {
		t.Error("old leader still leads after the Lease passed")
	}
	// A release carries its mark; the next holder takes it at once and
	// removes the mark.
	if err := b.release(context.Background()); err != nil {
		t.Fatal(err)
	}
	if l := e.get(); deref(l.Spec.HolderIdentity) != "" || l.Annotations[releasedBy] != b.identity {
		t.Errorf("released Lease: holder %q, %s=%q; want empty and %s", deref(l.Spec.HolderIdentity), releasedBy, l.Annotations[releasedBy], b.identity)
	}
	stepOK(t, a, true)
	if !leadingNow(a) {
		t.Fatal("a released Lease was not taken at once")
	}
	if l := e.get(); l.Annotations[releasedBy] != "" || derefInt(l.Spec.LeaseTransitions) != 2 {
		t.Errorf("after taking a released Lease: mark %q, transitions %d; want none, 2", l.Annotations[releasedBy], derefInt(l.Spec.LeaseTransitions))
	}
}

// TestLeaseDeletedOnTheServer: what the server answers the holder whose
// Lease was deleted (a renew with the old UID is refused, 409), and that
// the holder recreates it at once while a standby waits.
func TestLeaseDeletedOnTheServer(t *testing.T) {
	e := newElectionEnv(t)
	a := e.leader("bp-0_uid-a")
	b := e.elector("bp-1_uid-b")
	stepOK(t, b, true)
	old := e.get()
	if err := e.admin.rc.Delete().AbsPath(append(e.admin.path(), "lease")...).Do(context.Background()).Error(); err != nil {
		t.Fatal(err)
	}
	stepOK(t, b, true)
	_, err := e.api().update(context.Background(), a.renewed(e.clock.now()))
	if !apierrors.IsConflict(err) {
		t.Errorf("renew of a deleted Lease with its old UID: %v; want 409 (lease_test.go's store assumes it)", err)
	}
	e.clock.advance(defaultTiming.retry)
	stepOK(t, a, true)
	l := e.get()
	if !leadingNow(a) || deref(l.Spec.HolderIdentity) != a.identity || l.UID == old.UID {
		t.Fatalf("holder %q uid %s: want the leader to have recreated its Lease at once", deref(l.Spec.HolderIdentity), l.UID)
	}
	if derefInt(l.Spec.LeaseTransitions) != 1 {
		t.Errorf("recreated Lease transitions %d; want the count continued (1)", derefInt(l.Spec.LeaseTransitions))
	}
	stepOK(t, b, true)
	if leadingNow(b) {
		t.Error("the standby took the recreated Lease")
	}
}

// TestEpochRestoredOnTheServer: after an etcd restore puts
// leaseTransitions below a value seen, the next renew puts it above.
func TestEpochRestoredOnTheServer(t *testing.T) {
	e := newElectionEnv(t)
	a := e.leader("bp-0_uid-a")
	for _, n := range []int32{7, 3} {
		l := e.get()
		l.Spec.LeaseTransitions = &n
		if _, err := e.admin.update(context.Background(), l); err != nil {
			t.Fatal(err)
		}
		e.clock.advance(defaultTiming.retry)
		stepOK(t, a, true)
	}
	if got := derefInt(e.get().Spec.LeaseTransitions); got != 8 {
		t.Errorf("transitions after renewing over a restored record: %d; want 8", got)
	}
}

// TestLeaseLabels: the Lease carries the tenant labels.
func TestLeaseLabels(t *testing.T) {
	tn := newTenant(t)
	c, _ := loadConfig(runEnv("POOL_ID", bech32Pool).lookup, "run")
	tt := resolveTenant(c)
	api := &kubeLeases{rc: restClientFor(t, tn.SA), namespace: tn.Namespace, name: tt.Lease, labels: tt.Labels}
	clock := newClock()
	el := newElector(api, "bp-0_u", c.timing(), clock.now)
	stepOK(t, el, true)
	clock.advance(c.LeaseDuration)
	stepOK(t, el, true)
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

// TestElectionConflictOnTheServer: two candidates racing for one expired
// Lease: the server's optimistic concurrency lets exactly one win.
func TestElectionConflictOnTheServer(t *testing.T) {
	e := newElectionEnv(t)
	e.leader("bp-0_uid-a")
	b, c := e.elector("bp-1_uid-b"), e.elector("bp-2_uid-c")
	stepOK(t, b, true)
	stepOK(t, c, true)
	e.clock.advance(defaultTiming.lease)
	if _, err := b.read(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.read(context.Background()); err != nil {
		t.Fatal(err)
	}
	errB := b.write(context.Background(), e.clock.now(), b.takeover(e.clock.now()))
	errC := c.write(context.Background(), e.clock.now(), c.takeover(e.clock.now()))
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
}
