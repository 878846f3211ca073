package main

// Following the Lease through a watch (LEASE_WATCH, default on). A goroutine
// lists the one Lease (fieldSelector metadata.name), then watches it from
// the list's resourceVersion with bookmarks, and hands every change to the
// loop stamped with the instant this process received it: the observation
// time of lease.go rule 1, on the local clock. The loop applies them in
// order (elector.seen), so a standby learns of each renew and release when
// it happens, takes a released Lease at once and an expired one on a timer
// at the exact expiry, and sends no periodic request while the watch is in
// sync. The rules:
//
//  W1. The watch is in sync from a watch started at a list until it
//      breaks. A stream the server ends (timeoutSeconds) or that falls
//      silent is resumed from
//      the last resourceVersion seen, event or bookmark: the server replays
//      every change after it, so there is no gap. A watch that fails to
//      start (a 410 Gone, a server restarted), an error event or a loop
//      that finds it behind (a write of its own answered 409) lists again.
//  W2. The watch is in sync only once a watch started from a list's
//      resourceVersion; until then, and while it is not, the elector reads
//      the Lease every RETRY_PERIOD, as without the watch. A gap is never
//      read as "unchanged": a record present is unchanged only with the same
//      resourceVersion (lease.go note). A missing Lease has none, so it is
//      always read, never taken from the watch: it is created (rule 2) only
//      on reads, each of which shows a creation since; a deletion seen
//      restarts its clock, and so do sightings lost to a full queue.
//  W3. Every request has API_TIMEOUT for its answer (the watch: for its
//      headers), and a stream with no event and no bookmark for watchIdle
//      is restarted. The API server sends a bookmark about every minute
//      (k8s.io/apiserver cacher: "roughly every minute"), and the leader's
//      renews come every RETRY_PERIOD: a holder quiet for two of them and a
//      request is read once (a dead holder, or a stalled watch, listed
//      again). Streams that end at once are paced, and three in a row
//      count as broken.
//  W4. A sighting never counts as a renew: leading still takes a write of
//      our own (lease.go rule 4), so a leader fences on time whatever the
//      watch says. A sighting older than what the elector knows (its own
//      write's answer, a read) is skipped: resourceVersions are etcd
//      revisions, compared as numbers; one that is not a number stops the
//      watch (W2 then holds for good). A list is the latest state, so one
//      sent after the elector learned its revision and answered below it
//      means the revisions went back (an etcd restore): it is applied, and
//      ordering starts again from it.
//
// What it does not do: the forging token (cluster.go) is still read every
// CLUSTER_RETRY_PERIOD; a watch is one more long request per replica, so a
// proxy that cuts long requests gets LEASE_WATCH=false.

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/watch"
)

const (
	// watchIdle: a stream silent this long is restarted (W3): a minute of
	// bookmark cadence and 10s for a loaded server.
	watchIdle = 70 * time.Second
	// watchSpan: the server ends a watch after this (timeoutSeconds); it is
	// resumed at once (W1). Like client-go's reflectors, 5 minutes.
	watchSpan = 5 * time.Minute
	// maxSightings: sightings waiting for the loop. More means the loop is
	// stuck; the queue is dropped and the watch lists again (W1).
	maxSightings = 256
)

// sightKind is what a sighting says.
type sightKind int

const (
	sightEvent  sightKind = iota // a change: lease, or nil for a deletion
	sightListed                  // a list: the current state, as a read
	sightSynced                  // a watch started from the list: in sync from here
	sightBroken                  // not in sync: read instead (W2)
)

// leaseSight is one thing the watch saw.
type leaseSight struct {
	kind  sightKind
	lease *coordinationv1.Lease // nil: missing
	rv    uint64                // the resourceVersion it is at
	at    time.Time             // when this process received it
	sent  time.Time             // a list's: when it was sent
	lost  bool                  // broken: sightings were dropped (the queue overflowed)
}

// leaseWatch is the queue between the watch goroutine and the loop.
type leaseWatch struct {
	mu     sync.Mutex
	queue  []leaseSight
	ready  chan struct{} // a sighting waits
	behind chan struct{} // the loop asks for a list (W1)
}

func newLeaseWatch() *leaseWatch {
	return &leaseWatch{ready: make(chan struct{}, 1), behind: make(chan struct{}, 1)}
}

// push queues a sighting and wakes the loop.
func (w *leaseWatch) push(s leaseSight) {
	w.mu.Lock()
	if len(w.queue) >= maxSightings {
		w.queue = w.queue[:0]
		s = leaseSight{kind: sightBroken, at: s.at, lost: true}
		w.ask()
	}
	w.queue = append(w.queue, s)
	w.mu.Unlock()
	select {
	case w.ready <- struct{}{}:
	default:
	}
}

// take returns the waiting sightings, oldest first.
func (w *leaseWatch) take() []leaseSight {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.queue
	w.queue = nil
	return out
}

// ask makes the goroutine list again (W1).
func (w *leaseWatch) ask() {
	select {
	case w.behind <- struct{}{}:
	default:
	}
}

// leaseFollower is the API access the watch needs.
type leaseFollower interface {
	listOne(ctx context.Context) (*coordinationv1.Lease, string, error)
	watchFrom(ctx context.Context, rv string) (watch.Interface, error)
}

// follower runs the watch goroutine.
type follower struct {
	api       leaseFollower
	w         *leaseWatch
	now       func() time.Time
	log       *slog.Logger
	timeout   time.Duration // API_TIMEOUT
	retry     time.Duration // RETRY_PERIOD: the wait after a failure
	idle      time.Duration // watchIdle
	failed    func(error)   // counts a failed request (api_errors)
	inSync    bool
	failing   bool
	unordered bool // a resourceVersion was not a number (W4)
}

// run follows the Lease until ctx ends.
func (f *follower) run(ctx context.Context) {
	var rv uint64 // 0: list first
	short := 0    // streams in a row the server ended within RETRY_PERIOD
	for ctx.Err() == nil {
		var err error
		if rv == 0 {
			rv, err = f.list(ctx)
		}
		if err == nil {
			began := time.Now() // how long a stream lived is real time, whatever clock stamps sightings
			if rv, err = f.stream(ctx, rv); err == nil && rv != 0 {
				short, err = f.shortLived(ctx, short, time.Since(began))
			}
		}
		if err != nil && ctx.Err() == nil {
			if short > 0 {
				rv, short = 0, 0 // then list again, in sync only once a watch holds
			}
			f.broken(err)
			if f.unordered {
				f.log.Warn("the Lease watch is off: this API server's resourceVersions cannot be ordered; reading the Lease every RETRY_PERIOD")
				return // W4: polling for good
			}
			select {
			case <-ctx.Done():
			case <-time.After(f.pauseAfter(err)):
			}
		}
	}
}

// shortLived counts streams ended within RETRY_PERIOD (a proxy that cuts
// long requests, a server that closes each watch at once): each is
// followed by a pause, as a failure is, and the third in a row is one, so
// the loop reads instead of trusting a watch that does not hold (W3).
func (f *follower) shortLived(ctx context.Context, short int, lived time.Duration) (int, error) {
	if lived >= f.retry {
		return 0, nil
	}
	if short++; short >= 3 {
		return short, fmt.Errorf("watch lease: %d watches in a row ended within RETRY_PERIOD (%s): a proxy cutting long requests? (LEASE_WATCH=false reads instead)", short, f.retry)
	}
	select {
	case <-ctx.Done():
	case <-time.After(f.retry - lived):
	}
	return short, nil
}

// pauseAfter is the wait before the next try: RETRY_PERIOD, so the watch is
// back as soon as a read would be; a Role without list or watch on the Lease
// (RBAC older than LEASE_WATCH) is tried again only every watchIdle.
func (f *follower) pauseAfter(err error) time.Duration {
	if f.failed != nil {
		f.failed(err)
	}
	if apierrors.IsForbidden(err) {
		return f.idle
	}
	return f.retry
}

// broken tells the loop the watch is not in sync, and logs when it starts
// failing and when it is back.
func (f *follower) broken(err error) {
	if f.inSync {
		f.w.push(leaseSight{kind: sightBroken, at: f.now()})
	}
	f.inSync = false
	switch {
	case f.failing:
	case apierrors.IsForbidden(err):
		f.log.Warn("the Lease watch is refused: the Role needs list and watch on the Lease (deploy/rbac), or set LEASE_WATCH=false; reading the Lease every RETRY_PERIOD", "err", err)
	default:
		f.log.Warn("the Lease watch broke; reading the Lease every RETRY_PERIOD until it is back", "err", err)
	}
	f.failing = true
}

// list reads the Lease's current state (W1) and returns the resourceVersion
// to watch from.
func (f *follower) list(ctx context.Context) (uint64, error) {
	cctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	sent := f.now()
	l, version, err := f.api.listOne(cctx)
	if err != nil {
		return 0, err
	}
	rv, err := f.version(version)
	if err != nil {
		return 0, err
	}
	f.w.push(leaseSight{kind: sightListed, lease: l, rv: rv, at: f.now(), sent: sent})
	return rv, nil
}

// version parses a resourceVersion (W4).
func (f *follower) version(s string) (uint64, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		f.unordered = true
		return 0, fmt.Errorf("resourceVersion %q is not a number, so sightings cannot be ordered: %w", s, err)
	}
	return v, nil
}

// stream watches from rv until the stream ends, falls silent or breaks. It
// returns the resourceVersion to resume from, 0 to list again.
func (f *follower) stream(ctx context.Context, rv uint64) (uint64, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	late := time.AfterFunc(f.timeout, cancel) // W3: the headers within API_TIMEOUT
	wi, err := f.api.watchFrom(wctx, strconv.FormatUint(rv, 10))
	if !late.Stop() && err == nil {
		err = fmt.Errorf("watch lease: no answer within API_TIMEOUT (%s)", f.timeout)
	}
	if err != nil {
		// List again: rv may be too old (410 Gone) or, after an etcd
		// restore, ahead of the server (W1).
		return 0, err
	}
	defer wi.Stop()
	if !f.inSync {
		f.w.push(leaseSight{kind: sightSynced, rv: rv, at: f.now()})
		f.inSync = true
	}
	if f.failing {
		f.log.Info("the Lease watch is back")
		f.failing = false
	}
	idle := time.NewTimer(f.idle)
	defer idle.Stop()
	for {
		select {
		case <-ctx.Done():
			return rv, nil
		case <-f.w.behind:
			f.w.push(leaseSight{kind: sightBroken, at: f.now()})
			f.inSync = false
			return 0, nil
		case <-idle.C:
			return rv, nil // silent: resumed from rv, no gap (W1, W3)
		case ev, ok := <-wi.ResultChan():
			if !ok {
				return rv, nil // ended by the server: resumed from rv
			}
			idle.Reset(f.idle)
			next, err := f.event(ev)
			if err != nil || next == 0 {
				return next, err
			}
			rv = next
		}
	}
}

// event hands one watch event to the loop and returns the resourceVersion
// it is at; 0 (with the error) when the watch must list again.
func (f *follower) event(ev watch.Event) (uint64, error) {
	at := f.now()
	if ev.Type == watch.Error {
		return 0, fmt.Errorf("watch lease: %w", apierrors.FromObject(ev.Object))
	}
	l, ok := ev.Object.(*coordinationv1.Lease)
	if !ok {
		return 0, fmt.Errorf("watch lease: unexpected %T in a %s event", ev.Object, ev.Type)
	}
	rv, err := f.version(l.ResourceVersion)
	if err != nil {
		return 0, err
	}
	switch ev.Type {
	case watch.Bookmark:
	case watch.Deleted:
		f.w.push(leaseSight{kind: sightEvent, rv: rv, at: at})
	default:
		f.w.push(leaseSight{kind: sightEvent, lease: l, rv: rv, at: at})
	}
	return rv, nil
}

// listOne lists the one Lease: it, or nil when missing, and the list's
// resourceVersion.
func (k *kubeLeases) listOne(ctx context.Context) (*coordinationv1.Lease, string, error) {
	out := &coordinationv1.LeaseList{}
	err := k.rc.Get().AbsPath(k.path()...).Param("fieldSelector", "metadata.name="+k.name).Do(ctx).Into(out)
	if err != nil {
		return nil, "", wrapAPI("list", "lease", k.namespace, k.name, err)
	}
	for i := range out.Items {
		if out.Items[i].Name == k.name {
			return &out.Items[i], out.ResourceVersion, nil
		}
	}
	return nil, out.ResourceVersion, nil
}

// watchFrom watches the one Lease from rv, with bookmarks, for watchSpan.
func (k *kubeLeases) watchFrom(ctx context.Context, rv string) (watch.Interface, error) {
	wi, err := k.rc.Get().AbsPath(k.path()...).Param("fieldSelector", "metadata.name="+k.name).
		Param("watch", "true").Param("resourceVersion", rv).Param("allowWatchBookmarks", "true").
		Param("timeoutSeconds", strconv.Itoa(int(cmp.Or(k.span, watchSpan)/time.Second))).Watch(ctx)
	return wi, wrapAPI("watch", "lease", k.namespace, k.name, err)
}

// seen applies one sighting (W1, W2, W4) and tells whether the loop must
// run a pass now: the Lease may be taken (released, or a list found it
// expired), or this replica's lead ended or its Lease is gone. A renew by
// the holder only moves the expiry timer.
func (e *elector) seen(sg leaseSight) bool {
	e.heardAt = sg.at
	switch sg.kind {
	case sightBroken:
		e.synced = false
		if sg.lost && e.observed.missing {
			e.observedAt = time.Time{} // dropped sightings may hide a creation and a deletion (rule 2)
		}
		return false
	case sightSynced:
		e.synced = true
		return false
	case sightListed:
		if sg.rv < e.rv && sg.sent.After(e.rvAt) {
			// A list sent after the elector learned its revision is the
			// later state: a revision below it means they went back (an
			// etcd restore). Order from here. (A list sent before one of
			// our writes is merely older, and skipped.)
			e.rv = 0
		}
	}
	if sg.rv <= e.rv {
		return false // known already: our own write's answer, or a read
	}
	e.rv, e.rvAt, e.stale = sg.rv, sg.at, false
	holding := e.holding
	if sg.lease == nil {
		// Deleted. A holder keeps holding: its next step reads, finds it
		// gone and recreates it at once (rule 2's exception), as when its
		// renew finds it gone; nobody else may create it for LEASE_DURATION.
		e.lease = nil
		if sg.kind == sightEvent {
			e.observedAt = time.Time{} // it existed a moment ago: missing from now
		}
		e.note(leaseRecord{missing: true}, sg.at)
	} else {
		e.lease = sg.lease
		e.observe(sg.lease, sg.at)
	}
	now := e.now()
	urgent := (holding && (!e.holding || e.lease == nil || !e.epochTrusted())) || (!e.holding && e.expired(now))
	if urgent {
		e.nextTry = now
	}
	return urgent
}

// takeSightings applies what the watch saw since the last look; true when
// one calls for a pass now.
func (s *sidecar) takeSightings() bool {
	if s.watch == nil {
		return false
	}
	urgent := false
	for _, sg := range s.watch.take() {
		urgent = s.el.seen(sg) || urgent
	}
	return urgent
}

// watchReady is the watch's wake-up, nil (never ready) without one.
func (s *sidecar) watchReady() <-chan struct{} {
	if s.watch == nil {
		return nil
	}
	return s.watch.ready
}
