package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"forge-manager/internal/testenv"
)

// The issue counter guard (counter.go, SPEC 12).

func (w *world) counterRecord() string {
	w.leases.mu.Lock()
	defer w.leases.mu.Unlock()
	if w.leases.l == nil {
		return ""
	}
	return w.leases.l.Annotations[counterKey]
}

// TestCounterRecordedOnTheLease: the holder records the counter its node
// confirmed forging with, and raises it after a rotation to the next.
func TestCounterRecordedOnTheLease(t *testing.T) {
	w, a := pair(t)
	w.run(3 * time.Second)
	pool := a.s.keyset.pool
	if got := w.counterRecord(); got != pool+":0" {
		t.Fatalf("record %q; want %s:0", got, pool)
	}
	rotate(t, a.cfg, "rotated") // counter 1
	w.run(10 * time.Second)
	if got := w.counterRecord(); got != pool+":1" {
		t.Errorf("record %q after the rotation; want %s:1", got, pool)
	}
	if st := a.s.board.load().Chain; st.HighestOpCertCounter == nil || *st.HighestOpCertCounter != 1 {
		t.Errorf("status highestOpCertCounter %v; want 1", st.HighestOpCertCounter)
	}
}

// TestLowerCounterNeverForges: the pool forged with counter 1; the
// standby's Secret still holds counter 0 (rolled back). When the leader
// dies the standby does not forge, and says why with both counters; the
// leader's own Secret rolled back is refused while its set runs.
func TestLowerCounterNeverForges(t *testing.T) {
	w, a := pair(t)
	b := w.rep("bp-1")
	rotate(t, a.cfg, "rotated")
	w.run(10 * time.Second)
	mount(t, a, testenv.KeySpec{Marker: "old", KESPeriod: testenv.MainnetKESPeriod(simEpoch) - 1}) // counter 0 again
	w.run(5 * time.Second)
	if a.s.rejected == nil || !strings.Contains(a.s.rejected.Error(), "issue counter 0 is below 1") {
		t.Errorf("the leader took a rolled-back set: rejected %v", a.s.rejected)
	}
	w.onlyForger("bp-0")
	a.stopped = true // the leader's sidecar dies; its node is killed with it
	a.node.die(w.clock.now())
	w.run(40 * time.Second)
	if b.node.forgedOnce() {
		t.Fatal("the standby forged with counter 0 after the pool forged with 1")
	}
	if why := b.s.ineligible(w.clock.now()); !strings.Contains(why, "issue counter 0 is below 1") {
		t.Errorf("standby reason %q", why)
	}
}

// TestCounterRecordReset: removing the annotation by hand resets the
// record to what the leader forges with now; a record that does not parse
// makes no replica eligible (it is not "no record"). Without the watch: the
// stale view the guard defends against is the leader's between two reads.
func TestCounterRecordReset(t *testing.T) {
	w, a := pair(t, "LEASE_WATCH", "false")
	w.run(3 * time.Second)
	pool := a.s.keyset.pool
	w.leases.edit(func(l *coordinationv1.Lease) { l.Annotations[counterKey] = pool + ":7" })
	w.run(3 * time.Second)
	if why := a.s.ineligible(w.clock.now()); !strings.Contains(why, "issue counter 0 is below 7") {
		t.Fatalf("reason %q with a record of 7", why)
	}
	w.leases.edit(func(l *coordinationv1.Lease) { delete(l.Annotations, counterKey) })
	w.run(20 * time.Second)
	if got := w.counterRecord(); got != pool+":0" {
		t.Errorf("record %q after the reset; want %s:0 again", got, pool)
	}
	w.settle(30 * time.Second)
	w.leases.edit(func(l *coordinationv1.Lease) { l.Annotations[counterKey] = "garbage" })
	w.run(20 * time.Second)
	if len(w.forgers()) != 0 {
		t.Errorf("forgers %v with an unreadable record; want none", w.forgers())
	}
}

// TestCounterAheadWarns: a counter more than one above the record is
// warned about, not refused (the chain's counter may have moved without
// this record).
func TestCounterAheadWarns(t *testing.T) {
	w, a := pair(t)
	w.run(3 * time.Second)
	mount(t, a, testenv.KeySpec{Marker: "ahead", Counter: 3, KESPeriod: testenv.MainnetKESPeriod(simEpoch), KES: 1, CertFor: 1})
	w.run(3 * time.Second)
	if wn := a.s.board.load().Chain.CounterWarning; !strings.Contains(wn, "more than one above 0") {
		t.Errorf("warning %q", wn)
	}
	w.onlyForger("bp-0")
}

// TestCounterRecordReadInTheTakeoverPass: the standby's view of the Lease
// is lost just before the Lease expires (a lost race resets it): it reads
// the record in the same step that takes the Lease over, and must not
// enable in that pass with a counter below it.
func TestCounterRecordReadInTheTakeoverPass(t *testing.T) {
	w, a := pair(t)
	b := w.rep("bp-1")
	rotate(t, a.cfg, "rotated")
	w.run(10 * time.Second)
	a.stopped = true
	a.node.die(w.clock.now())
	for range 200 {
		w.run(100 * time.Millisecond)
		b.s.el.lease, b.s.records = nil, nil // the record not known before the step (defence in depth: it is remembered)
	}
	w.run(20 * time.Second)
	if b.node.forgedOnce() {
		t.Fatal("the standby enabled counter 0 in the pass that took the Lease with record 1")
	}
}

// TestCounterRecordOnTheToken: with cluster management the record rides
// on the forging token too, so a region whose Secret is rolled back does
// not forge when the token comes to it, although its own local Lease has
// never seen the pool forge.
func TestCounterRecordOnTheToken(t *testing.T) {
	w := regions(t)
	for _, r := range w.region("eu") {
		rotate(t, r.cfg, "rotated") // counter 1
	}
	w.run(15 * time.Second)
	w.cluster.token.mu.Lock()
	rec := w.cluster.token.l.Annotations[counterKey]
	w.cluster.token.mu.Unlock()
	if !strings.HasSuffix(rec, ":1") {
		t.Fatalf("token record %q; want counter 1", rec)
	}
	for _, r := range w.region("eu") { // the region is lost
		r.stopped = true
		r.node.die(w.clock.now())
	}
	w.run(90 * time.Second)
	neverForged(t, w, "us", "with counter 0 after the pool forged with 1")
	us := w.region("us")[0]
	if why := us.s.ineligible(w.clock.now()); !strings.Contains(why, "issue counter 0 is below 1") {
		t.Errorf("us reason %q", why)
	}
}

// TestCounterRecordSurvivesAGap: the leader forged with counter 1 and its
// Secret is rolled back to 0 (refused); then its renew conflicts with a
// hand edit and the reads that follow fail: its view of the Lease is gone
// for a while, and the record with it, but not from what it remembers: the
// rolled-back set is never taken. Without the watch, which would show the
// leader the edit before its renew.
func TestCounterRecordSurvivesAGap(t *testing.T) {
	w, a := pair(t, "LEASE_WATCH", "false")
	rotate(t, a.cfg, "rotated")
	w.run(10 * time.Second)
	mount(t, a, testenv.KeySpec{Marker: "old", KESPeriod: testenv.MainnetKESPeriod(simEpoch) - 1})
	w.run(3 * time.Second)
	w.leases.edit(func(l *coordinationv1.Lease) { l.Labels = map[string]string{"touched": "by-hand"} })
	renewed := false
	a.api.check = func(_ context.Context, op string) {
		switch {
		case renewed: // every call after the conflicting renew fails
			a.api.refuse, a.api.check = apierrors.NewServiceUnavailable("busy"), nil
		case op == "update":
			renewed = true
		}
	}
	w.runUntil(5*time.Second, "the leader's view of the Lease lost", func() bool { return a.s.el.lease == nil })
	for range 40 {
		w.run(100 * time.Millisecond)
		if a.s.keyset.cert.counter != 1 {
			t.Fatalf("the rolled-back set (counter %d) was taken while the Lease was not readable", a.s.keyset.cert.counter)
		}
	}
	a.api.refuse = nil
	w.run(10 * time.Second)
	if a.s.keyset.cert.counter != 1 {
		t.Errorf("counter %d in place; want 1", a.s.keyset.cert.counter)
	}
}

// TestCounterRecordCarriedOverARecreation: a Lease recreated (a new UID)
// without the record gets the one last read on its predecessor, even from
// a writer not forging itself; the same Lease with the annotation removed
// (the documented reset) does not.
func TestCounterRecordCarriedOverARecreation(t *testing.T) {
	w, a := pair(t)
	rotate(t, a.cfg, "rotated")
	w.run(10 * time.Second)
	s := a.s
	old := w.leases.l.DeepCopy()
	if rec, err := s.seenRecord(s.el); err != nil || !rec.ok || rec.n != 1 {
		t.Fatalf("seen record %+v, %v", rec, err)
	}
	s.node.n.loaded = "not this set" // not forging with the set in place: no stamp of its own
	s.stampCounter()
	recreated := &coordinationv1.Lease{}
	recreated.UID, recreated.Annotations = "uid-new", map[string]string{}
	s.el.stamp(recreated)
	if got := recreated.Annotations[counterKey]; !strings.HasSuffix(got, ":1") {
		t.Errorf("recreated Lease record %q; want counter 1 carried over", got)
	}
	// Read back (twice: a carried record is not forgotten after one look),
	// with no record or a lower one, it is still counter 1.
	for _, ann := range []string{"", s.keyset.pool + ":0"} {
		view := recreated.DeepCopy()
		view.Annotations = map[string]string{}
		if ann != "" {
			view.Annotations[counterKey] = ann
		}
		s.el.lease = view
		for range 2 {
			if rec, err := s.seenRecord(s.el); err != nil || !rec.ok || rec.n != 1 {
				t.Errorf("record %q on the recreated Lease read as %+v, %v; want counter 1", ann, rec, err)
			}
		}
	}
	s.el.lease = old
	s.seenRecord(s.el)
	reset := old.DeepCopy()
	delete(reset.Annotations, counterKey)
	s.el.stamp(reset)
	if got, ok := reset.Annotations[counterKey]; ok {
		t.Errorf("the reset Lease got %q back", got)
	}
	// With the Lease deleted by hand the leader recreates it at once, and
	// the record is on it.
	w.leases.delete()
	w.run(5 * time.Second)
	if got := w.counterRecord(); !strings.HasSuffix(got, ":1") {
		t.Errorf("record %q on the recreated Lease; want counter 1", got)
	}
}

// TestAnotherPoolsSetIsNotTaken: a running sidecar never takes a set of
// another pool (POOL_ID a plain name, so nothing else binds it), even
// after a moment with no set at all; the record of its pool stays.
func TestAnotherPoolsSetIsNotTaken(t *testing.T) {
	w, a := pair(t)
	w.run(3 * time.Second)
	rec := w.counterRecord()
	vrf, _ := os.ReadFile(a.cfg.SourceVRF)
	os.Remove(a.cfg.SourceVRF) // a moment without a readable set
	w.run(3 * time.Second)
	putSecret(t, a.cfg.SourceVRF, vrf)
	mount(t, a, testenv.KeySpec{Marker: "other", Cold: "another pool", KESPeriod: testenv.MainnetKESPeriod(simEpoch)})
	w.run(10 * time.Second)
	if a.s.rejected == nil || !strings.Contains(a.s.rejected.Error(), "another pool's keys") {
		t.Errorf("rejected = %v", a.s.rejected)
	}
	if got := w.counterRecord(); got != rec {
		t.Errorf("record %q; want %q kept", got, rec)
	}
}

// TestCounterOtherPoolRecordWarns: a Lease that records another pool's
// counter cannot protect this one: said, not silent.
func TestCounterOtherPoolRecordWarns(t *testing.T) {
	w, a := pair(t)
	w.leases.edit(func(l *coordinationv1.Lease) { l.Annotations[counterKey] = strings.Repeat("ab", 28) + ":3" })
	w.run(5 * time.Second)
	if wn := a.s.board.load().Chain.CounterWarning; !strings.Contains(wn, "records the counter of another pool") {
		t.Errorf("warning %q", wn)
	}
	w.onlyForger("bp-0")
}
