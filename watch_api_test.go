//go:build integration

package main

// The Lease watch (watch.go) on the real API server, with the sidecar's own
// ServiceAccount: what the fake stream of watch_test.go assumes (a list by
// name, events in order with numeric resourceVersions, a deletion, a
// stream the server ends and its resumption) is checked on the server.

import (
	"context"
	"strconv"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// followOnServer starts a follower on the tenant's Lease through the
// sidecar's credentials; the server ends each watch after span.
func followOnServer(t *testing.T, e *electionEnv, span time.Duration) *leaseWatch {
	t.Helper()
	api := e.api().(*kubeLeases)
	api.span = span
	return startFollower(t, &follower{api: api, now: e.clock.now, timeout: 5 * time.Second, retry: 100 * time.Millisecond, idle: watchIdle})
}

// TestWatchOnTheServer: list, create, update, a stream ended by the server
// and resumed without a gap, deletion: each change once, in order.
func TestWatchOnTheServer(t *testing.T) {
	e := newElectionEnv(t)
	w := followOnServer(t, e, time.Second)
	if s := nextSight(t, w); s.kind != sightListed || s.lease != nil || s.rv == 0 {
		t.Fatalf("first sighting %+v; want the list, missing, with a resourceVersion", s)
	}
	if s := nextSight(t, w); s.kind != sightSynced {
		t.Fatalf("sighting %+v; want in sync once the watch started", s)
	}
	ctx := context.Background()
	created, err := e.admin.create(ctx, &coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr("bp-0_a")}})
	if err != nil {
		t.Fatal(err)
	}
	s := nextSight(t, w)
	if s.kind != sightEvent || s.lease == nil || s.lease.ResourceVersion != created.ResourceVersion {
		t.Fatalf("sighting %+v; want the creation at %s", s, created.ResourceVersion)
	}
	time.Sleep(2500 * time.Millisecond) // the fault: two server-side stream ends (timeoutSeconds=1)
	created.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
	updated, err := e.admin.update(ctx, created)
	if err != nil {
		t.Fatal(err)
	}
	if s = nextSight(t, w); s.kind != sightEvent || s.lease == nil || s.lease.ResourceVersion != updated.ResourceVersion {
		t.Fatalf("sighting %+v; want the update at %s and nothing before it (no break, no repeat)", s, updated.ResourceVersion)
	}
	if err := e.admin.rc.Delete().AbsPath(append(e.admin.path(), e.admin.name)...).Do(ctx).Error(); err != nil {
		t.Fatal(err)
	}
	if s = nextSight(t, w); s.kind != sightEvent || s.lease != nil || s.rv <= rvOf(t, updated) {
		t.Fatalf("sighting %+v; want the deletion, after the update", s)
	}
}

// rvOf is a resourceVersion as a number (W4).
func rvOf(t *testing.T, l *coordinationv1.Lease) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(l.ResourceVersion, 10, 64)
	if err != nil {
		t.Fatalf("resourceVersion %q is not a number", l.ResourceVersion)
	}
	return v
}

// TestWatchElectionOnTheServer: a standby fed by the watch reads nothing
// while the leader renews, and takes the Lease the leader releases at
// once, with one write.
func TestWatchElectionOnTheServer(t *testing.T) {
	e := newElectionEnv(t)
	a := e.leader("bp-0_uid-a")
	w := followOnServer(t, e, time.Minute)
	calls := &countingLeases{leaseAPI: e.api()}
	b := newElector(calls, "bp-1_uid-b", defaultTiming, e.clock.now)
	pump := func() {
		for _, s := range w.take() {
			b.seen(s)
		}
	}
	b.seen(nextSight(t, w)) // the list
	b.seen(nextSight(t, w)) // in sync
	for range 3 {
		e.clock.advance(defaultTiming.retry)
		stepOK(t, a, true)
		waitFor(t, "the renew's sighting", func() bool { pump(); return b.rv >= rvOf(t, a.lease) })
		stepOK(t, b, true)
	}
	if calls.n != 0 || leadingNow(b) {
		t.Fatalf("the standby sent %d requests while the leader renewed (leading %v); want none", calls.n, leadingNow(b))
	}
	if err := a.release(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the release's sighting", func() bool { pump(); return b.due(e.clock.now()) })
	stepOK(t, b, true)
	if !leadingNow(b) || calls.n != 1 {
		t.Fatalf("leading %v after %d requests; want the released Lease taken at once with one write", leadingNow(b), calls.n)
	}
}

// countingLeases counts the requests sent through it.
type countingLeases struct {
	leaseAPI
	n int
}

func (c *countingLeases) get(ctx context.Context) (*coordinationv1.Lease, error) {
	c.n++
	return c.leaseAPI.get(ctx)
}

func (c *countingLeases) update(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	c.n++
	return c.leaseAPI.update(ctx, l)
}

func (c *countingLeases) create(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	c.n++
	return c.leaseAPI.create(ctx, l)
}

// waitFor polls cond every 10ms for up to 5s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("%s: not within 5s", what)
		}
	}
}
