package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// hear makes r's Events go to f, written at the end of each pass (no
// writer goroutine in the simulated world).
func hear(r *replica, f *fakeEvents) {
	r.s.events = newEventWriter(f, r.s.log, r.s.now, r.cfg.APITimeout, func(error) {})
}

// reasons lists the reasons said, in order.
func (f *fakeEvents) reasons() []string {
	var out []string
	for _, g := range f.got {
		out = append(out, strings.SplitN(g, ":", 2)[0])
	}
	return out
}

// inOrder says whether want appears in got in this order (not necessarily
// next to each other).
func inOrder(got, want []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

// TestEventsForEachTransition (SPEC 8): a failover is told as Events: the
// leader acquires and forges; cut off from the API server it is fenced and
// its forging disabled; the standby acquires and forges. A step-down is a
// release. No note carries key material.
func TestEventsForEachTransition(t *testing.T) {
	w := newWorld(t)
	a, b := w.add("bp-0"), w.add("bp-1")
	ea, eb := &fakeEvents{}, &fakeEvents{}
	hear(a, ea)
	hear(b, eb)
	if w.settle(40*time.Second) != "bp-0" {
		t.Fatal("bp-0 did not lead")
	}
	if want := []string{"Eligible", "LeaseAcquired", "ForgingEnabled"}; !inOrder(ea.reasons(), want) {
		t.Errorf("bp-0 said %v; want %v", ea.reasons(), want)
	}
	a.api.down = true
	w.runUntil(40*time.Second, "bp-1 forging, confirmed", func() bool { return len(w.forgers()) == 1 && b.s.forgingConfirmed() })
	w.run(5 * time.Second)
	if want := []string{"LeaseAcquired", "ForgingEnabled", "Fenced", "ForgingDisabled"}; !inOrder(ea.reasons(), want) {
		t.Errorf("bp-0 said %v; want %v", ea.reasons(), want)
	}
	if want := []string{"LeaseAcquired", "ForgingEnabled"}; !inOrder(eb.reasons(), want) {
		t.Errorf("bp-1 said %v; want %v", eb.reasons(), want)
	}
	// Healed (a cut-off replica's calls hang, and stop the simulated
	// clock for everyone), bp-0 stands by again; bp-1 steps down to it.
	a.api.down = false
	w.run(5 * time.Second)
	stepOut(t, w, b, time.Minute)
	w.runUntil(20*time.Second, "bp-0 forging again", func() bool { return len(w.forgers()) == 1 && w.forgers()[0] == "bp-0" })
	if want := []string{"SteppedDown", "NotEligible", "ForgingDisabled", "LeaseReleased"}; !inOrder(eb.reasons(), want) {
		t.Errorf("bp-1 stepping down said %v; want %v", eb.reasons(), want)
	}
	for _, got := range append(ea.got, eb.got...) {
		for name, b := range testSecrets() {
			cbor := hexCBOR(b)
			if len(cbor) < 16 {
				t.Fatalf("%s: no cborHex to look for", name)
			}
			if strings.Contains(got, cbor[:16]) {
				t.Errorf("an Event carries %s's key bytes: %q", name, got)
			}
		}
	}
	w.noOverlap()
}

// hexCBOR is the cborHex field of a text envelope, "" if none.
func hexCBOR(envelope []byte) string {
	s := string(envelope)
	i := strings.Index(s, `"cborHex": "`)
	if i < 0 {
		return ""
	}
	return strings.SplitN(s[i+len(`"cborHex": "`):], `"`, 2)[0]
}

// TestEventRateLimit: a burst of eventBurst, then one per eventRefill; at
// most eventQueueMax wait, the oldest dropped first; a failed write spends
// nothing.
func TestEventRateLimit(t *testing.T) {
	var q eventQueue
	now := simEpoch
	for i := range 30 {
		q.add(event{reason: fmt.Sprint(i)})
	}
	if len(q.pending) != eventQueueMax || q.pending[0].reason != "10" || q.dropped != 10 {
		t.Fatalf("queue %d long from %s, %d dropped; want %d from 10, 10 dropped", len(q.pending), q.pending[0].reason, q.dropped, eventQueueMax)
	}
	n := 0
	for q.take(now) {
		n++
	}
	if n != eventBurst {
		t.Errorf("a burst of %d; want %d", n, eventBurst)
	}
	if q.take(now.Add(eventRefill / 2)) {
		t.Error("a token before eventRefill")
	}
	if !q.take(now.Add(eventRefill)) || q.take(now.Add(eventRefill)) {
		t.Error("want exactly one token after eventRefill")
	}
	if n := 0; true {
		for q.take(now.Add(time.Hour)) {
			n++
		}
		if n != eventBurst {
			t.Errorf("after an hour %d tokens; want the burst, %d, no more", n, eventBurst)
		}
	}
}

// TestEventsFailedWriteRetried: Events the API server refused are written
// at a later pass, in order, none lost.
func TestEventsFailedWriteRetried(t *testing.T) {
	w := newWorld(t)
	a := w.add("bp-0")
	ev := &fakeEvents{fail: 3}
	hear(a, ev)
	w.settle(40 * time.Second)
	if want := []string{"Eligible", "LeaseAcquired", "ForgingEnabled"}; !inOrder(ev.reasons(), want) {
		t.Errorf("said %v after 3 failed writes; want %v", ev.reasons(), want)
	}
}

// TestEventsOnlyConfirmedForging (invariant 4): ForgingDisabled means the
// node said 0 (or is gone), ForgingEnabled that it said 1: a rotation
// while forging (an enable sent while on) says neither.
func TestEventsOnlyConfirmedForging(t *testing.T) {
	w, a := pair(t)
	ev := &fakeEvents{}
	hear(a, ev)
	w.run(3 * time.Second)
	rotate(t, a.cfg, "rotated")
	w.run(20 * time.Second)
	if got := ev.only("ForgingDisabled", "ForgingEnabled"); len(got) != 0 {
		t.Errorf("a rotation said %q; want nothing: forging never stopped", got)
	}
	w.onlyForger("bp-0")
}

// TestEventsOnSIGTERM (invariant 7): the graceful handover is told before
// the process ends: forging disabled, then the Lease released.
func TestEventsOnSIGTERM(t *testing.T) {
	w, a := pair(t)
	ev := &fakeEvents{}
	hear(a, ev)
	a.stopped = true
	a.s.shutdown()
	if want := []string{"NotEligible", "ForgingDisabled", "LeaseReleased"}; !inOrder(ev.reasons(), want) {
		t.Errorf("said %v on SIGTERM; want %v", ev.reasons(), want)
	}
	w.run(3 * time.Second)
	w.onlyForger("bp-1")
}

// blockingSink never answers until its call is cut.
type blockingSink struct{ calls atomic.Int32 }

func (b *blockingSink) emit(ctx context.Context, _ event, _ string) error {
	b.calls.Add(1)
	<-ctx.Done()
	return ctx.Err()
}

// TestEventsNeverBlockTheLoop (invariant 1): with the API server not
// answering Event writes, queueing one never waits, and the writer's own
// goroutine backs off: new Events do not make it try again sooner.
func TestEventsNeverBlockTheLoop(t *testing.T) {
	sink := &blockingSink{}
	w := newEventWriter(sink, slog.New(slog.NewJSONHandler(io.Discard, nil)), time.Now, 50*time.Millisecond, func(error) {})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.run(ctx)
	w.add(event{reason: "first", at: time.Now()})
	pollUntil(t, 10*time.Second, "the first write tried", func() bool { return sink.calls.Load() == 1 })
	done := make(chan struct{})
	go func() {
		for i := range 100 { // each wakes the writer
			w.add(event{reason: fmt.Sprint(i), at: time.Now()})
			if i%10 == 0 {
				time.Sleep(20 * time.Millisecond)
			}
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("queueing Events blocked while their writes hang")
	}
	if n := sink.calls.Load(); n != 1 {
		t.Errorf("%d writes tried within the first 1 s backoff; want 1: new Events must not cut it short", n)
	}
	pollUntil(t, 10*time.Second, "the write retried after the backoff", func() bool { return sink.calls.Load() == 2 })
}

// refusingSink answers every write with err.
type refusingSink struct {
	err   error
	calls int
}

func (r *refusingSink) emit(context.Context, event, string) error { r.calls++; return r.err }

// TestEventsRefusedForGoodAreDropped: a 403 or 422 is not retried (it
// would hold up every Event behind it); a 503 or 429 is, later.
func TestEventsRefusedForGoodAreDropped(t *testing.T) {
	now := simEpoch
	for _, tt := range []struct {
		err  error
		kept bool
	}{
		{apierrors.NewForbidden(schema.GroupResource{Group: "events.k8s.io", Resource: "events"}, "x", errors.New("no")), false},
		{apierrors.NewInvalid(schema.GroupKind{Group: "events.k8s.io", Kind: "Event"}, "x", nil), false},
		{apierrors.NewServiceUnavailable("down"), true},
		{apierrors.NewTooManyRequests("slow down", 1), true},
		{errors.New("connection refused"), true},
	} {
		sink := &refusingSink{err: wrapAPI("create", "event", "ns", "x", tt.err)}
		w := newEventWriter(sink, slog.New(slog.NewJSONHandler(io.Discard, nil)), func() time.Time { return now }, time.Second, func(error) {})
		w.add(event{reason: "A"})
		w.add(event{reason: "B"})
		wait := w.write(context.Background())
		switch {
		case tt.kept && (len(w.q.pending) != 2 || wait < time.Second || sink.calls != 1):
			t.Errorf("%v: %d left, wait %v, %d calls; want both kept, backing off after 1 call", tt.err, len(w.q.pending), wait, sink.calls)
		case !tt.kept && (len(w.q.pending) != 0 || sink.calls != 2):
			t.Errorf("%v: %d left after %d calls; want both dropped", tt.err, len(w.q.pending), sink.calls)
		}
	}
}

// countingSink counts writes.
type countingSink struct{ calls int }

func (c *countingSink) emit(context.Context, event, string) error { c.calls++; return nil }

// TestEventsWrittenOffTheLoop (invariant 1): with the writer's goroutine
// running (async), no pass writes an Event itself, not even through a
// failover: the loop only queues them.
func TestEventsWrittenOffTheLoop(t *testing.T) {
	w := newWorld(t)
	a := w.add("bp-0")
	w.add("bp-1")
	sink := &countingSink{}
	a.s.events = newEventWriter(sink, a.s.log, a.s.now, a.cfg.APITimeout, func(error) {})
	a.s.events.async = true
	w.settle(40 * time.Second)
	a.api.down = true
	w.run(30 * time.Second)
	if sink.calls != 0 || len(a.s.events.q.pending) < 3 {
		t.Errorf("the loop wrote %d Events, %d queued; want none written, all queued", sink.calls, len(a.s.events.q.pending))
	}
}

// pollUntil waits for cond on the real clock, for at most limit.
func pollUntil(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(limit); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("%s: not within %s", what, limit)
		}
	}
}

// uidSink records the CardanoLeader UID each Event was written with.
type uidSink struct{ uids []string }

func (u *uidSink) emit(_ context.Context, _ event, uid string) error {
	u.uids = append(u.uids, uid)
	return nil
}

// TestEventsAboutTheLeaderCarryItsUID: kubectl describe finds Events by
// the object's UID, so one about the CardanoLeader waits for it (a new
// leader learns it in the same pass), for at most uidWait.
func TestEventsAboutTheLeaderCarryItsUID(t *testing.T) {
	now := simEpoch
	sink := &uidSink{}
	w := newEventWriter(sink, slog.New(slog.NewJSONHandler(io.Discard, nil)), func() time.Time { return now }, time.Second, func(error) {})
	w.add(event{reason: "LeaseAcquired", leader: true, at: now})
	if wait := w.write(context.Background()); len(sink.uids) != 0 || wait <= 0 || wait > uidWait {
		t.Fatalf("written %v, wait %v; want it held for the UID", sink.uids, wait)
	}
	w.setLeader("uid-1")
	w.write(context.Background())
	w.add(event{reason: "ForgingEnabled", at: now})
	w.write(context.Background())
	if len(sink.uids) != 2 || sink.uids[0] != "uid-1" {
		t.Errorf("written with %q; want uid-1 first", sink.uids)
	}
	w2 := newEventWriter(sink, slog.New(slog.NewJSONHandler(io.Discard, nil)), func() time.Time { return now }, time.Second, func(error) {})
	w2.add(event{reason: "LeaseAcquired", leader: true, at: now.Add(-uidWait)})
	sink.uids = nil
	if w2.write(context.Background()); len(sink.uids) != 1 || sink.uids[0] != "" {
		t.Errorf("after uidWait: written %q; want it written without the UID", sink.uids)
	}
}
