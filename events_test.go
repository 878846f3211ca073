package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

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
	a.s.events, b.s.events = ea, eb
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
	if want := []string{"NotEligible", "ForgingDisabled", "LeaseReleased"}; !inOrder(eb.reasons(), want) {
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
	a.s.events = ev
	w.settle(40 * time.Second)
	if want := []string{"Eligible", "LeaseAcquired", "ForgingEnabled"}; !inOrder(ev.reasons(), want) {
		t.Errorf("said %v after 3 failed writes; want %v", ev.reasons(), want)
	}
}
