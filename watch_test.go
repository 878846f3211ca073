package main

// The Lease watch (watch.go): the elector's side in the simulated world and
// on an elector alone, and the follower goroutine over a fake stream.
// watch_api_test.go follows a real Lease on the real API server.

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// countCalls counts each replica's Lease requests by op.
func countCalls(w *world) map[string]int {
	calls := map[string]int{}
	for _, r := range w.reps {
		r.api.check = func(_ context.Context, op string) { calls[r.name+" "+op]++ }
	}
	return calls
}

// TestInvariant2WatchStandbysReadNothing: with the watch in sync, a standby
// sends no request at all, and the leader one renew per RETRY_PERIOD.
func TestInvariant2WatchStandbysReadNothing(t *testing.T) {
	w := newWorld(t)
	for _, n := range []string{"bp-0", "bp-1", "bp-2"} {
		w.add(n)
	}
	leader := w.settle(40 * time.Second)
	calls := countCalls(w)
	w.run(60 * time.Second)
	for _, r := range w.reps {
		if r.name != leader {
			if n := calls[r.name+" get"] + calls[r.name+" update"] + calls[r.name+" create"]; n != 0 {
				t.Errorf("standby %s sent %d Lease requests in 60s; want none", r.name, n)
			}
		}
	}
	if n := calls[leader+" update"]; n < 29 || n > 31 || calls[leader+" get"] != 0 {
		t.Errorf("the leader sent %d renews and %d reads in 60s; want 30 renews (one per RETRY_PERIOD), no read", n, calls[leader+" get"])
	}
	w.onlyForger(leader)
}

// TestInvariant2WatchTakeoverAtTheExactExpiry: the leader's pod is killed;
// the standby saw its last renew when it landed and takes the Lease
// LEASE_DURATION later, on a timer: not sooner, and not at a later poll.
func TestInvariant2WatchTakeoverAtTheExactExpiry(t *testing.T) {
	w, a := pair(t)
	var last, took time.Time
	w.leases.afterWrite = func() {
		switch w.leases.holder() {
		case "bp-0_uid":
			last = w.clock.now()
		case "bp-1_uid":
			if took.IsZero() {
				took = w.clock.now()
			}
		}
	}
	w.run(3 * time.Second)
	w.kill(a)
	w.runUntil(30*time.Second, "bp-1 takes the Lease", func() bool { return !took.IsZero() })
	if d := took.Sub(last); d < defaultTiming.lease || d > defaultTiming.lease+time.Millisecond {
		t.Errorf("bp-1 took the Lease %s after the last renew; want LEASE_DURATION (%s) exactly", d, defaultTiming.lease)
	}
	w.run(5 * time.Second)
	w.noOverlap()
	w.onlyForger("bp-1")
}

// TestInvariant7WatchReleaseTakenAtOnceByOne: the leader hands over; one
// standby takes the released Lease at the instant it lands, and the other
// sees the new holder and writes nothing.
func TestInvariant7WatchReleaseTakenAtOnceByOne(t *testing.T) {
	w := newWorld(t)
	for _, n := range []string{"bp-0", "bp-1", "bp-2"} {
		w.add(n)
	}
	l := w.rep(w.settle(40 * time.Second))
	var released, taken time.Time
	w.leases.afterWrite = func() {
		switch h := w.leases.holder(); {
		case h == "" && released.IsZero():
			released = w.clock.now()
		case h != "" && !released.IsZero() && taken.IsZero():
			taken = w.clock.now()
		}
	}
	calls := countCalls(w)
	l.stopped = true
	l.s.shutdown()
	w.run(10 * time.Second)
	if released.IsZero() || taken.Sub(released) != 0 {
		t.Fatalf("released at %v, taken %s later; want at once", released, taken.Sub(released))
	}
	winner := w.leases.holder()
	for _, r := range w.reps {
		if r != l && r.name+"_uid" != winner && calls[r.name+" update"]+calls[r.name+" get"] > 1 {
			t.Errorf("%s sent %d writes and %d reads after the handover; want one write at most", r.name, calls[r.name+" update"], calls[r.name+" get"])
		}
	}
	w.noOverlap()
	w.onlyForger(winner[:len(winner)-len("_uid")])
}

// TestInvariant2WatchBehindIsReadPast: a standby's watch is silently dead.
// Once the holder it sees falls quiet for two renews and a request, it
// reads once, finds the watch behind and lists again, and after that
// follows the leader's renews: it never writes or forges beside the
// leader, and takes over on time when the leader dies.
func TestInvariant2WatchBehindIsReadPast(t *testing.T) {
	w, a := pair(t)
	b := w.rep("bp-1")
	b.watch.deaf = true
	calls := countCalls(w)
	w.run(30 * time.Second)
	if b.watch.deaf || calls["bp-1 update"] != 0 || calls["bp-1 get"] != 1 {
		t.Errorf("deaf %v, %d writes and %d reads; want no write, one read, and the watch listed again",
			b.watch.deaf, calls["bp-1 update"], calls["bp-1 get"])
	}
	w.onlyForger("bp-0")
	var last, took time.Time
	w.leases.afterWrite = func() {
		if h := w.leases.holder(); h == "bp-0_uid" {
			last = w.clock.now()
		} else if h == "bp-1_uid" && took.IsZero() {
			took = w.clock.now()
		}
	}
	w.run(3 * time.Second)
	w.kill(a)
	w.runUntil(30*time.Second, "bp-1 takes the Lease", func() bool { return !took.IsZero() })
	if d := took.Sub(last); d > defaultTiming.lease+time.Millisecond {
		t.Errorf("bp-1 took the Lease %s after the last renew; want LEASE_DURATION", d)
	}
	w.run(5 * time.Second)
	w.noOverlap()
}

// leading is an elector that created the Lease (seen missing for
// LEASE_DURATION) and leads.
func leading(t *testing.T) (*memLeases, *fakeClock, *elector) {
	t.Helper()
	api, clock := &memLeases{}, newClock()
	a := newElector(api, "bp-0_a", defaultTiming, clock.now)
	stepOK(t, a, true)
	clock.advance(defaultTiming.lease)
	stepOK(t, a, true)
	if !leadingNow(a) {
		t.Fatal("a did not lead")
	}
	return api, clock, a
}

// TestInvariant2WatchOlderSightingIsSkipped: a sighting queued before the
// leader's own write (W4) names another holder; applied after the write's
// answer, it must not end the lead. A newer one does.
func TestInvariant2WatchOlderSightingIsSkipped(t *testing.T) {
	_, clock, a := leading(t)
	other := a.lease.DeepCopy()
	other.Spec.HolderIdentity = ptr("bp-9_z")
	a.seen(leaseSight{kind: sightEvent, lease: other, rv: a.rv - 1, at: clock.now()})
	if !leadingNow(a) {
		t.Fatal("a sighting older than the leader's own write ended its lead")
	}
	other.ResourceVersion = "999"
	if !a.seen(leaseSight{kind: sightEvent, lease: other, rv: 999, at: clock.now()}) || leadingNow(a) {
		t.Fatal("a newer record naming another holder did not end the lead at once")
	}
}

// TestInvariant2WatchMissingLeaseIsRead: a standby saw the Lease deleted,
// then its watch stalls while it is created, led and deleted again 14.5s
// later (a prune). A missing Lease is always read (W2), so the standby saw
// it exist and does not create it at 15s on its old sighting.
func TestInvariant2WatchMissingLeaseIsRead(t *testing.T) {
	api, clock := &memLeases{}, newClock()
	el := newElector(api, "bp-1_b", defaultTiming, clock.now)
	el.seen(leaseSight{kind: sightListed, rv: 1, at: clock.now()})
	el.seen(leaseSight{kind: sightSynced, rv: 1, at: clock.now()})
	clock.advance(time.Second)
	api.create(context.Background(), &coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr("bp-0_a")}})
	for range 6 { // the stalled watch shows nothing of it
		clock.advance(defaultTiming.retry)
		stepOK(t, el, true)
	}
	clock.advance(defaultTiming.lease - 13*time.Second - 500*time.Millisecond)
	api.delete()
	clock.advance(time.Second)
	stepOK(t, el, true)
	if api.l != nil {
		t.Fatal("created the Lease on a stale sighting of it missing; it existed 0.5s ago")
	}
}

// TestInvariant2WatchDeletionRestartsTheClock: a Lease seen missing, then a
// deletion sighting (it existed in between, in sightings a full queue
// dropped): missing from the deletion on, not from the first sighting.
func TestInvariant2WatchDeletionRestartsTheClock(t *testing.T) {
	api, clock := &memLeases{}, newClock()
	el := newElector(api, "bp-1_b", defaultTiming, clock.now)
	el.seen(leaseSight{kind: sightListed, rv: 1, at: clock.now()})
	clock.advance(14 * time.Second)
	el.seen(leaseSight{kind: sightEvent, rv: 9, at: clock.now()})
	clock.advance(time.Second)
	stepOK(t, el, true)
	if api.l != nil {
		t.Fatal("created the Lease 1s after a deletion was seen")
	}
}

// TestInvariant2WatchLostSightingsRestartTheClock: the queue overflows
// (the loop was stuck): the dropped sightings may hide a creation and a
// deletion, so a Lease read missing next is missing from then.
func TestInvariant2WatchLostSightingsRestartTheClock(t *testing.T) {
	api, clock := &memLeases{}, newClock()
	el := newElector(api, "bp-1_b", defaultTiming, clock.now)
	stepOK(t, el, true) // seen missing
	w := newLeaseWatch()
	for i := range maxSightings + 1 {
		w.push(leaseSight{kind: sightEvent, rv: uint64(i + 1), at: clock.now()})
	}
	clock.advance(14 * time.Second)
	got := w.take()
	if len(got) != 1 || got[0].kind != sightBroken || !got[0].lost {
		t.Fatalf("an overflowing queue holds %d sightings, first %+v; want one broken, lost", len(got), got[0])
	}
	el.seen(got[0])
	clock.advance(time.Second)
	stepOK(t, el, true)
	if api.l != nil {
		t.Fatal("created the Lease 1s after sightings were lost")
	}
}

// TestInvariant1WatchSightingIsNotARenew: the leader's renews fail while
// its watch shows records naming it with fresh renew times (someone else
// writing them): it fences at RENEW_DEADLINE after its own last write (W4).
func TestInvariant1WatchSightingIsNotARenew(t *testing.T) {
	api, clock, a := leading(t)
	fence := a.fence()
	api.before = func(op string) error {
		if op == "update" {
			return apierrors.NewServiceUnavailable("busy")
		}
		return nil
	}
	for clock.now().Before(fence) {
		clock.advance(time.Second)
		api.edit(func(l *coordinationv1.Lease) { l.Spec.RenewTime = &metav1.MicroTime{Time: clock.now()} })
		a.seen(leaseSight{kind: sightEvent, lease: api.l.DeepCopy(), rv: uint64(api.rv), at: clock.now()})
		a.step(context.Background(), true)
	}
	if leadingNow(a) {
		t.Fatal("the leader counted a sighting of its record as a renew: still leading past RENEW_DEADLINE")
	}
}

// fakeFollow is a leaseFollower whose streams the test drives.
type fakeFollow struct {
	mu      sync.Mutex
	lists   []string // the resourceVersion each list returns
	listed  int
	from    []string // each watch's resourceVersion
	streams chan *watch.FakeWatcher
	hang    int // this many watches answer only when their context ends
}

func (f *fakeFollow) listOne(ctx context.Context) (*coordinationv1.Lease, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	rv := f.lists[min(f.listed, len(f.lists)-1)]
	f.listed++
	return nil, rv, nil
}

func (f *fakeFollow) watchFrom(ctx context.Context, rv string) (watch.Interface, error) {
	f.mu.Lock()
	f.from = append(f.from, rv)
	hang := f.hang > 0
	f.hang--
	f.mu.Unlock()
	if hang {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	fw := watch.NewFakeWithChanSize(4, false)
	select {
	case f.streams <- fw:
		return fw, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (f *fakeFollow) watched() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.from...)
}

// following starts a follower over f, stopped at the test's end.
func following(t *testing.T, f *fakeFollow, idle time.Duration) *leaseWatch {
	return startFollower(t, &follower{api: f, now: time.Now, timeout: 100 * time.Millisecond, retry: 10 * time.Millisecond, idle: idle})
}

// startFollower runs fl on a new queue until the test's end.
func startFollower(t *testing.T, fl *follower) *leaseWatch {
	fl.w, fl.log = newLeaseWatch(), slog.New(slog.NewJSONHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { fl.run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return fl.w
}

// nextSight waits for the next sighting.
func nextSight(t *testing.T, w *leaseWatch) leaseSight {
	t.Helper()
	for deadline := time.After(5 * time.Second); ; {
		w.mu.Lock()
		if len(w.queue) > 0 {
			s := w.queue[0]
			w.queue = w.queue[1:]
			w.mu.Unlock()
			return s
		}
		w.mu.Unlock()
		select {
		case <-w.ready:
		case <-deadline:
			t.Fatal("no sighting within 5s")
		}
	}
}

// nextStream waits for the follower's next watch.
func nextStream(t *testing.T, f *fakeFollow) *watch.FakeWatcher {
	t.Helper()
	select {
	case s := <-f.streams:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no watch within 5s")
		return nil
	}
}

func leaseAt(rv string) *coordinationv1.Lease {
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "l", ResourceVersion: rv}}
}

// TestWatchResumesWithoutAGap (W1): a stream the server ends is resumed from
// the last resourceVersion seen, a bookmark's included, without a list and
// without telling the loop it broke.
func TestWatchResumesWithoutAGap(t *testing.T) {
	f := &fakeFollow{lists: []string{"10"}, streams: make(chan *watch.FakeWatcher, 4)}
	w := following(t, f, time.Hour)
	if s := nextSight(t, w); s.kind != sightListed || s.rv != 10 || s.lease != nil {
		t.Fatalf("first sighting %+v; want the list, missing, at 10", s)
	}
	s1 := nextStream(t, f)
	if s := nextSight(t, w); s.kind != sightSynced {
		t.Fatalf("sighting %+v; want in sync once the watch started", s)
	}
	s1.Modify(leaseAt("11"))
	if s := nextSight(t, w); s.kind != sightEvent || s.rv != 11 || s.lease == nil {
		t.Fatalf("sighting %+v; want the change at 11", s)
	}
	s1.Action(watch.Bookmark, leaseAt("15"))
	s1.Stop()
	s2 := nextStream(t, f)
	s2.Delete(leaseAt("16"))
	if s := nextSight(t, w); s.kind != sightEvent || s.rv != 16 || s.lease != nil {
		t.Fatalf("sighting %+v; want the deletion at 16, and nothing before it", s)
	}
	if got := f.watched(); len(got) != 2 || got[1] != "15" || f.listed != 1 {
		t.Errorf("watched from %v after %d lists; want 10 then 15 (the bookmark), one list", got, f.listed)
	}
}

// TestWatchListsAgainAfterGone (W1, W2): a 410 Gone tells the loop the
// watch broke, and the follower lists again before watching.
func TestWatchListsAgainAfterGone(t *testing.T) {
	f := &fakeFollow{lists: []string{"10", "30"}, streams: make(chan *watch.FakeWatcher, 4)}
	w := following(t, f, time.Hour)
	nextSight(t, w)
	s1 := nextStream(t, f)
	nextSight(t, w) // in sync
	s1.Error(&apierrors.NewResourceExpired("too old resource version").ErrStatus)
	if s := nextSight(t, w); s.kind != sightBroken {
		t.Fatalf("sighting %+v; want broken", s)
	}
	if s := nextSight(t, w); s.kind != sightListed || s.rv != 30 {
		t.Fatalf("sighting %+v; want a new list at 30", s)
	}
	if nextStream(t, f); f.watched()[1] != "30" {
		t.Errorf("watched from %v; want 30 after the list", f.watched())
	}
}

// TestWatchSilentStreamIsRestarted (W3): no event and no bookmark within
// the idle window: the stream is dropped and resumed from where it was.
func TestWatchSilentStreamIsRestarted(t *testing.T) {
	f := &fakeFollow{lists: []string{"10"}, streams: make(chan *watch.FakeWatcher, 4)}
	w := following(t, f, 50*time.Millisecond)
	nextSight(t, w)
	s1 := nextStream(t, f)
	nextStream(t, f) // the second stream: the first fell silent
	if got := f.watched(); got[1] != "10" {
		t.Errorf("watched from %v; want 10 again", got)
	}
	select {
	case <-s1.ResultChan():
	default:
		t.Error("the silent stream was not stopped")
	}
}

// TestWatchLateAnswerBreaks (W1, W2, W3): a watch whose headers do not
// come within API_TIMEOUT is cut; the loop never counted it in sync (it
// reads), and the follower lists again (the server may have lost the
// resourceVersion), in sync only once a watch starts.
func TestWatchLateAnswerBreaks(t *testing.T) {
	f := &fakeFollow{lists: []string{"10", "20"}, streams: make(chan *watch.FakeWatcher, 4), hang: 1}
	w := following(t, f, time.Hour)
	nextSight(t, w)
	if s := nextSight(t, w); s.kind != sightListed || s.rv != 20 {
		t.Fatalf("sighting %+v; want a new list at 20", s)
	}
	if nextStream(t, f); f.watched()[1] != "20" {
		t.Errorf("watched from %v; want 20 after the list", f.watched())
	}
	if s := nextSight(t, w); s.kind != sightSynced {
		t.Errorf("sighting %+v; want in sync once a watch started", s)
	}
}

// TestInvariant2WatchDeletionEndsAnIneligibleLead: the watch shows the
// leader its Lease deleted while it may not forge (it will not recreate
// it): it stops counting itself leader at its next step.
func TestInvariant2WatchDeletionEndsAnIneligibleLead(t *testing.T) {
	api, clock, a := leading(t)
	a.seen(leaseSight{kind: sightListed, lease: api.l.DeepCopy(), rv: uint64(api.rv), at: clock.now()})
	api.delete()
	if !a.seen(leaseSight{kind: sightEvent, rv: uint64(api.rv), at: clock.now()}) {
		t.Error("the deletion of the leader's own Lease did not call for a pass")
	}
	a.step(context.Background(), false)
	if leadingNow(a) {
		t.Fatal("still leading after the step; want the lead ended")
	}
}

// TestInvariant9WatchRestoredRevisionsAreFollowed: after an etcd restore
// the revisions go back; a list below what the elector knew is the new
// truth, not an old sighting, and the sightings after it are followed.
func TestInvariant9WatchRestoredRevisionsAreFollowed(t *testing.T) {
	_, clock, a := leading(t)
	a.rv = 1000
	clock.advance(time.Millisecond)
	restored := a.lease.DeepCopy()
	restored.Spec.HolderIdentity = ptr("bp-9_z")
	restored.ResourceVersion = "500"
	a.seen(leaseSight{kind: sightListed, lease: restored, rv: 500, at: clock.now(), sent: clock.now()})
	if leadingNow(a) || a.holder() != "bp-9_z" {
		t.Fatalf("leading %v, holder %q after a restored list naming another holder; want it followed", leadingNow(a), a.holder())
	}
	restored.ResourceVersion = "501"
	restored.Spec.HolderIdentity = ptr("bp-8_y")
	if a.seen(leaseSight{kind: sightEvent, lease: restored, rv: 501, at: clock.now()}); a.holder() != "bp-8_y" {
		t.Errorf("holder %q; want the sighting after the restored list followed", a.holder())
	}
}

// TestWatchUnorderedVersionsStopIt (W4): a resourceVersion that is not a
// number cannot be ordered: the follower stops, and the loop polls.
func TestWatchUnorderedVersionsStopIt(t *testing.T) {
	f := &fakeFollow{lists: []string{"abc"}, streams: make(chan *watch.FakeWatcher, 4)}
	w := newLeaseWatch()
	fl := &follower{api: f, w: w, now: time.Now, log: slog.New(slog.NewJSONHandler(io.Discard, nil)),
		timeout: 100 * time.Millisecond, retry: 10 * time.Millisecond, idle: time.Hour}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fl.run(ctx)
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || len(w.take()) != 0 {
		t.Fatal("the follower went on with a resourceVersion that is not a number")
	}
}

// TestWatchRefusedTriesRarely: a Role without list or watch on the Lease
// (RBAC older than LEASE_WATCH) is tried again every watchIdle, not every
// RETRY_PERIOD, and every failure is counted.
func TestWatchRefusedTriesRarely(t *testing.T) {
	var failed int
	f := &follower{retry: 2 * time.Second, idle: watchIdle, failed: func(error) { failed++ }}
	forbidden := apierrors.NewForbidden(coordinationv1.Resource("leases"), "l", errors.New("cannot list"))
	if got := f.pauseAfter(forbidden); got != watchIdle {
		t.Errorf("after a 403: next try in %s; want watchIdle (%s)", got, watchIdle)
	}
	if got := f.pauseAfter(errors.New("connection refused")); got != 2*time.Second || failed != 2 {
		t.Errorf("after another failure: next try in %s, %d counted; want RETRY_PERIOD, 2", got, failed)
	}
}

// TestInvariant7WatchListBeforeOurWriteIsOld: a list sent before this
// replica's takeover write, answered with an older revision, is an old
// state, not a restore: the new leader keeps its lead.
func TestInvariant7WatchListBeforeOurWriteIsOld(t *testing.T) {
	_, clock, a := leading(t)
	clock.advance(defaultTiming.retry)
	stepOK(t, a, true)                         // a renew: revision 2
	sent := clock.now().Add(-time.Millisecond) // before the write's answer
	older := a.lease.DeepCopy()
	older.Spec.HolderIdentity = ptr("")
	a.seen(leaseSight{kind: sightListed, lease: older, rv: a.rv - 1, at: clock.now(), sent: sent})
	if !leadingNow(a) {
		t.Fatal("a list older than the leader's own takeover ended its lead")
	}
}

// TestInvariant2WatchFailedCreateReadsAgain: a standby whose watch is
// silently dead saw the Lease missing; its create finds it exists
// (another replica created it). The Lease is then deleted again: the
// standby must not create it on the old sighting, but see it missing anew.
func TestInvariant2WatchFailedCreateReadsAgain(t *testing.T) {
	api, clock := &memLeases{}, newClock()
	s := newElector(api, "bp-1_b", defaultTiming, clock.now)
	s.seen(leaseSight{kind: sightListed, rv: 1, at: clock.now()})
	clock.advance(defaultTiming.lease)
	api.before = func(op string) error { // another replica's create lands between the read and ours
		if op == "create" {
			api.before = nil
			api.create(context.Background(), &coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr("bp-0_a")}})
		}
		return nil
	}
	stepOK(t, s, true) // AlreadyExists
	api.delete()       // a prune, unseen by the dead watch
	for end := clock.now().Add(defaultTiming.lease - time.Second); clock.now().Before(end); clock.advance(time.Second) {
		stepOK(t, s, true)
		if api.l != nil {
			t.Fatalf("created the Lease %s after its create found it existing; want it seen missing for LEASE_DURATION first", clock.now().Sub(end.Add(-defaultTiming.lease+time.Second)))
		}
	}
}

// TestInvariant2FailedReadsRestampAMissingLease: a Lease seen missing, then
// reads that fail for longer than LEASE_DURATION (it may have been created,
// led and deleted meanwhile), then missing again: seen missing from then.
func TestInvariant2FailedReadsRestampAMissingLease(t *testing.T) {
	api, clock := &memLeases{}, newClock()
	s := newElector(api, "bp-1_b", defaultTiming, clock.now)
	stepOK(t, s, true)
	down := true
	api.before = func(op string) error {
		if down {
			return apierrors.NewServiceUnavailable("busy")
		}
		return nil
	}
	for range 10 {
		clock.advance(defaultTiming.retry)
		s.step(context.Background(), true)
	}
	down = false
	stepOK(t, s, true)
	if api.l != nil {
		t.Fatal("created the Lease at once after 20s of failed reads; want it seen missing for LEASE_DURATION from the first answer")
	}
	clock.advance(defaultTiming.lease)
	stepOK(t, s, true)
	if api.l == nil {
		t.Fatal("did not create the Lease seen missing for LEASE_DURATION after the reads came back")
	}
}

// TestInvariant2WatchDeletedLeaseAndAFailedRead: the leader's watch shows
// its Lease deleted and the read before its recreation fails: it does not
// go on leading on a Lease it knows is gone.
func TestInvariant2WatchDeletedLeaseAndAFailedRead(t *testing.T) {
	api, clock, a := leading(t)
	api.delete()
	a.seen(leaseSight{kind: sightEvent, rv: uint64(api.rv), at: clock.now()})
	api.before = func(op string) error { return apierrors.NewServiceUnavailable("busy") }
	a.step(context.Background(), true)
	if leadingNow(a) {
		t.Fatal("still leading on a Lease seen deleted, whose recreation could not be tried")
	}
}

// TestInvariant9WatchEpochBackIsUrgent: the watch shows the leader its own
// Lease with fewer transitions than it saw (an etcd restore): the epoch is
// no longer trusted, and the pass that disables runs at once.
func TestInvariant9WatchEpochBackIsUrgent(t *testing.T) {
	_, clock, a := leading(t)
	a.maxSeen[string(a.lease.UID)] = 5
	back := a.lease.DeepCopy()
	back.ResourceVersion = "999"
	if !a.seen(leaseSight{kind: sightEvent, lease: back, rv: 999, at: clock.now()}) || a.facts(clock.now()).trusted {
		t.Fatal("a record whose transitions went back did not call for a pass at once")
	}
}

// TestWatchNotInSyncBeforeAWatchStarts (W2): a list alone is a read: until
// a watch started from it, the standby reads every step (a watch that
// never starts, behind a proxy that holds long requests, is polling).
func TestWatchNotInSyncBeforeAWatchStarts(t *testing.T) {
	api, clock, a := leading(t)
	b := newElector(api, "bp-1_b", defaultTiming, clock.now)
	b.seen(leaseSight{kind: sightListed, lease: api.l.DeepCopy(), rv: uint64(api.rv), at: clock.now(), sent: clock.now()})
	calls := api.calls
	clock.advance(defaultTiming.retry)
	stepOK(t, a, true)
	stepOK(t, b, true)
	if api.calls != calls+2 || b.observed.renew != recordOf(api.l).renew {
		t.Fatalf("the standby sent %d requests and saw renew %q; want one read showing the renew", api.calls-calls-1, b.observed.renew)
	}
}

// TestInvariant7WatchConflictReadsAndLists: a standby sees a release and
// writes its takeover, but another replica took the Lease first and its
// watch has not shown it: the 409 makes the next step read (not write
// again on the same view) and list the watch again.
func TestInvariant7WatchConflictReadsAndLists(t *testing.T) {
	api, clock, a := leading(t)
	b := newElector(api, "bp-1_b", defaultTiming, clock.now)
	asked := 0
	b.resync = func() { asked++ }
	b.seen(leaseSight{kind: sightListed, lease: api.l.DeepCopy(), rv: uint64(api.rv), at: clock.now()})
	b.seen(leaseSight{kind: sightSynced, rv: uint64(api.rv), at: clock.now()})
	c := newElector(api, "bp-2_c", defaultTiming, clock.now)
	stepOK(t, c, true)
	if err := a.release(context.Background()); err != nil {
		t.Fatal(err)
	}
	released := api.l.DeepCopy()
	stepOK(t, c, true) // c takes it; b's watch has shown only the release
	b.seen(leaseSight{kind: sightEvent, lease: released, rv: uint64(api.rv - 1), at: clock.now()})
	stepOK(t, b, true) // 409
	calls := api.calls
	clock.advance(defaultTiming.retry)
	stepOK(t, b, true)
	if leadingNow(b) || b.holder() != c.identity || asked != 1 || api.calls != calls+1 {
		t.Fatalf("after the 409: leading %v, holder %q, %d lists asked, %d requests; want one read showing c, one list", leadingNow(b), b.holder(), asked, api.calls-calls)
	}
}

// TestWatchShortStreamsPoll (W3): watches the server ends at once (a proxy
// cutting long requests) are not restarted in a tight loop: each waits
// RETRY_PERIOD, and the third in a row tells the loop to read instead.
func TestWatchShortStreamsPoll(t *testing.T) {
	f := &fakeFollow{lists: []string{"10"}, streams: make(chan *watch.FakeWatcher, 4)}
	w := following(t, f, time.Hour)
	nextSight(t, w) // the list
	for range 3 {
		nextStream(t, f).Stop()
	}
	if s := nextSight(t, w); s.kind != sightSynced {
		t.Fatalf("sighting %+v; want in sync once the first watch started", s)
	}
	if s := nextSight(t, w); s.kind != sightBroken {
		t.Fatalf("sighting %+v; want broken after three watches ended at once", s)
	}
	if n := len(f.watched()); n > 4 {
		t.Errorf("%d watches; want one per RETRY_PERIOD, not a tight loop", n)
	}
}

// TestInvariant2FlakyReadsStillCreate: a missing Lease and an API that
// fails one read in seven: a failure within one look is the pruner limit
// of polling, not a gap, so the Lease is still created after
// LEASE_DURATION and a few looks.
func TestInvariant2FlakyReadsStillCreate(t *testing.T) {
	api, clock := &memLeases{}, newClock()
	el := newElector(api, "bp-1_b", defaultTiming, clock.now)
	n := 0
	api.before = func(op string) error {
		if n++; op == "get" && n%7 == 0 {
			return apierrors.NewServiceUnavailable("busy")
		}
		return nil
	}
	for end := clock.now().Add(defaultTiming.lease + 4*defaultTiming.retry); clock.now().Before(end) && api.l == nil; clock.setTo(el.nextTry) {
		el.step(context.Background(), true) // at the times it asks for
	}
	if api.l == nil {
		t.Fatal("a missing Lease was never created while one read in seven failed")
	}
}

// TestInvariant2FailedReadsHideACreation: a missing Lease, three reads that
// fail fast while another replica creates it, leads it and a prune deletes
// it 6s later; the next read finds it missing. More than a look and a half
// went unread, so the clock restarts: no create on the old sighting.
func TestInvariant2FailedReadsHideACreation(t *testing.T) {
	api, clock := &memLeases{}, newClock()
	el := newElector(api, "bp-1_b", defaultTiming, clock.now)
	stepOK(t, el, true) // seen missing
	clock.advance(defaultTiming.lease - time.Second)
	stepOK(t, el, true)
	failing := true
	api.before = func(op string) error {
		if failing && op == "get" {
			return apierrors.NewServiceUnavailable("busy")
		}
		return nil
	}
	api.create(context.Background(), &coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr("bp-0_a")}})
	for range 3 {
		clock.advance(defaultTiming.retry)
		el.step(context.Background(), true)
	}
	api.delete()
	failing = false
	clock.advance(defaultTiming.retry)
	stepOK(t, el, true)
	if api.l != nil {
		t.Fatal("created the Lease on a sighting of it missing from before 6s of failed reads, in which it existed")
	}
}
