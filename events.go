package main

// Kubernetes Events (SPEC 8): one for each real transition an operator
// wants in `kubectl describe` and `kubectl get events`. Leadership (the
// Lease acquired, released, lost, fenced) is about the CardanoLeader; the
// node (forging enabled or disabled, killed, eligibility, a step-down) and
// the credentials (refused, not loaded, a counter ahead, KES expiry near)
// are about the pod. Each names the other as related.
//
// Events are best effort and never in the way of forging: the loop only
// queues them in memory where a transition happens; a goroutine of their
// own writes them, each call bounded by API_TIMEOUT, so no Event write
// ever stands between a deadline and a disable or a kill (invariant 1),
// nor delays a renew. A failed write is retried, backing off; one the API
// server refuses for good (a 4xx other than 429) is dropped, and failures
// are a WARN when they start and when they end. Rate-limited: a burst of
// eventBurst, then one per eventRefill, at most eventQueueMax waiting (the
// oldest dropped first). Notes are the log lines' reasons, which never
// carry key bytes (invariant 8).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"
	"unicode/utf8"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
)

const (
	// 10 at once covers a failover's burst (lost, disabled, killed,
	// acquired...); one per 30 s after that is at most 130 in the hour the
	// API server keeps Events by default, per pod, however a fault flaps.
	eventBurst    = 10
	eventRefill   = 30 * time.Second
	eventQueueMax = 20
	noteMax       = 1024 // events.k8s.io/v1 refuses longer notes
)

// event is one Event to write.
type event struct {
	warning bool
	reason  string // CamelCase, what happened: LeaseAcquired
	action  string // what forge-manager did: Acquire
	note    string
	leader  bool // about the CardanoLeader; otherwise about the pod
	at      time.Time
	seq     uint64 // this writer's count, in the name: two Events of one instant stay two
}

// eventSink writes one Event; leaderUID is the CardanoLeader's, "" if not
// known yet.
type eventSink interface {
	emit(ctx context.Context, e event, leaderUID string) error
}

// kubeEvents writes events.k8s.io/v1 Events as JSON (no generated types).
// Each is named pod.<eventTime in hex nanoseconds>.<sequence>, after
// client-go's recorder: a retried write is the same object, never a
// second one (events.k8s.io refuses a generateName ending in a dot).
type kubeEvents struct {
	rc                     *rest.RESTClient
	namespace, pod, podUID string
	leader                 string // the CardanoLeader's name
}

func (k *kubeEvents) emit(ctx context.Context, e event, leaderUID string) error {
	pod := map[string]any{"apiVersion": "v1", "kind": "Pod", "namespace": k.namespace, "name": k.pod, "uid": k.podUID}
	leader := map[string]any{"apiVersion": "cardano.io/v1", "kind": "CardanoLeader", "namespace": k.namespace, "name": k.leader}
	if leaderUID != "" {
		leader["uid"] = leaderUID // kubectl describe finds an object's Events by its UID
	}
	regarding, related := pod, leader
	if e.leader {
		regarding, related = leader, pod
	}
	typ := "Normal"
	if e.warning {
		typ = "Warning"
	}
	body, _ := json.Marshal(map[string]any{
		"apiVersion": "events.k8s.io/v1", "kind": "Event",
		"metadata":  map[string]any{"name": fmt.Sprintf("%s.%x.%d", k.pod, e.at.UnixNano(), e.seq), "namespace": k.namespace},
		"eventTime": e.at.UTC().Format("2006-01-02T15:04:05.000000Z07:00"),
		"regarding": regarding, "related": related,
		"reason": e.reason, "action": e.action, "note": truncateUTF8(e.note, noteMax), "type": typ,
		"reportingController": "cardano.io/forge-manager", "reportingInstance": k.pod,
	})
	_, err := k.rc.Post().AbsPath(fmt.Sprintf("/apis/events.k8s.io/v1/namespaces/%s/events", k.namespace)).Body(body).DoRaw(ctx)
	if apierrors.IsAlreadyExists(err) {
		return nil // a retry of a write whose answer was lost: it is there
	}
	return wrapAPI("create", "event", k.namespace, e.reason, err)
}

// eventQueue holds the Events not written yet and the rate limit's tokens.
type eventQueue struct {
	pending []event
	tokens  float64
	filled  time.Time // when tokens was last topped up
	dropped int       // since the last write, for the log
}

// add queues e; a full queue drops its oldest.
func (q *eventQueue) add(e event) {
	if len(q.pending) == eventQueueMax {
		q.pending = q.pending[1:]
		q.dropped++
	}
	q.pending = append(q.pending, e)
}

// take spends one token if there is one at now.
func (q *eventQueue) take(now time.Time) bool {
	if q.filled.IsZero() {
		q.tokens, q.filled = eventBurst, now
	}
	if d := now.Sub(q.filled); d > 0 {
		q.tokens = min(eventBurst, q.tokens+float64(d)/float64(eventRefill))
		q.filled = now
	}
	if q.tokens < 1 {
		return false
	}
	q.tokens--
	return true
}

// eventWriter is the queue and its writer. add is the loop's; write runs
// in the writer's goroutine (run), or, where no goroutine runs (the
// simulated world's tests), at the end of each pass.
type eventWriter struct {
	sink    eventSink
	log     *slog.Logger
	now     func() time.Time
	timeout time.Duration // API_TIMEOUT, per write
	async   bool          // run is writing: the loop never does
	failed  func(error)   // counts a failed write (forge_manager_api_errors_total)
	wake    chan struct{}
	stopped chan struct{} // closed when run returns

	mu        sync.Mutex
	seq       uint64
	q         eventQueue
	leaderUID string    // the CardanoLeader's, once known (crd.go)
	failures  int       // in a row, for the backoff
	retryAt   time.Time // no write before
	trouble   trouble
}

func newEventWriter(sink eventSink, log *slog.Logger, now func() time.Time, timeout time.Duration, failed func(error)) *eventWriter {
	return &eventWriter{sink: sink, log: log, now: now, timeout: timeout, failed: failed, wake: make(chan struct{}, 1), stopped: make(chan struct{}),
		trouble: trouble{what: "Events cannot be written", ok: "Events written again"}}
}

// add queues e and wakes the writer; it never blocks.
func (w *eventWriter) add(e event) {
	w.mu.Lock()
	w.seq++
	e.seq = w.seq
	w.q.add(e)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// setLeader records the CardanoLeader's UID for the Events about it, and
// wakes the writer if one waits for it.
func (w *eventWriter) setLeader(uid string) {
	w.mu.Lock()
	known := w.leaderUID != ""
	if uid != "" {
		w.leaderUID = uid
	}
	w.mu.Unlock()
	if !known && uid != "" {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// uidWait is how long an Event about the CardanoLeader waits for its UID
// (kubectl describe finds Events by it). A new leader learns it in the
// same pass, a few milliseconds after saying it acquired the Lease; one
// that never learns it (the object unreadable) says it without, later.
const uidWait = 5 * time.Second

// run writes Events as they come, until ctx ends.
func (w *eventWriter) run(ctx context.Context) {
	defer close(w.stopped)
	for {
		wait := w.write(ctx)
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
		case <-time.After(wait):
		}
	}
}

// write writes queued Events, oldest first, while the rate limit allows,
// and returns how long until it should try again.
func (w *eventWriter) write(ctx context.Context) time.Duration {
	for {
		e, uid, wait, ok := w.next()
		if !ok {
			return wait
		}
		cctx, cancel := context.WithTimeout(ctx, w.timeout)
		err := w.sink.emit(cctx, e, uid)
		cancel()
		if again := w.done(err); again > 0 {
			return again
		}
	}
}

// drain writes what is queued now, at once, within ctx: at shutdown, when
// the writer's goroutine has stopped (maybe mid-write, backing off).
func (w *eventWriter) drain(ctx context.Context) {
	if w.async {
		select { // its last write first: both could take the same head
		case <-w.stopped:
		case <-ctx.Done():
			return
		}
	}
	w.mu.Lock()
	w.retryAt = time.Time{}
	w.mu.Unlock()
	w.write(ctx)
}

// next is the Event to write now, if any; else how long to wait.
func (w *eventWriter) next() (event, string, time.Duration, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.now()
	if w.q.dropped > 0 {
		w.log.Warn("Events dropped: too many at once", "dropped", w.q.dropped)
		w.q.dropped = 0
	}
	switch {
	case len(w.q.pending) == 0:
		return event{}, "", time.Hour, false
	case now.Before(w.retryAt):
		return event{}, "", w.retryAt.Sub(now), false
	case w.q.pending[0].leader && w.leaderUID == "" && now.Sub(w.q.pending[0].at) < uidWait:
		return event{}, "", uidWait - now.Sub(w.q.pending[0].at), false
	case !w.q.take(now):
		return event{}, "", eventRefill, false
	}
	return w.q.pending[0], w.leaderUID, 0, true
}

// done takes the outcome of the write of the queue's head: written or
// refused for good, it goes; otherwise it stays, and the writer backs off
// (1 s, doubling, at most a minute). It returns the backoff, 0 to go on.
func (w *eventWriter) done(err error) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.trouble.set(w.log, err)
	if err != nil {
		w.failed(err)
	}
	if err == nil || refusedForGood(err) {
		w.q.pending, w.failures = w.q.pending[1:], 0
		return 0
	}
	w.q.tokens++ // not spent: nothing was written
	w.failures++
	backoff := min(time.Second<<min(w.failures-1, 6), time.Minute)
	w.retryAt = w.now().Add(backoff)
	return backoff
}

// refusedForGood: a 4xx other than 429 (too many requests) will not
// succeed by trying again: a Role without the right (403), a note the
// server does not take (422).
func refusedForGood(err error) bool {
	var st apierrors.APIStatus
	if !errors.As(err, &st) {
		return false
	}
	c := st.Status().Code
	return c >= 400 && c < 500 && c != http.StatusTooManyRequests
}

// say queues an Event about the pod (leader: about the CardanoLeader).
func (s *sidecar) say(warning, leader bool, reason, action, note string) {
	if s.events == nil {
		return
	}
	s.events.add(event{warning: warning, leader: leader, reason: reason, action: action, note: note, at: s.now()})
}

// noteConditions queues an Event for each condition that started or
// changed since the last pass; evented remembers what was said.
func (s *sidecar) noteConditions(v chainSnapshot) {
	if s.evented == nil {
		s.evented = map[string]string{}
	}
	for _, c := range [][3]string{{"CredentialsRefused", "Refuse", v.CredentialsRefused},
		{"CertificateNotLoaded", "Check", v.NodeCertificateMismatch}, {"CounterAhead", "Check", v.CounterWarning},
		{"KESExpiringSoon", "Check", kesExpiryNote(v)}} {
		reason, action, msg := c[0], c[1], c[2]
		if msg != "" && msg != s.evented[reason] {
			s.say(true, false, reason, action, msg)
		}
		s.evented[reason] = msg
	}
}

// kesExpiryNote is the KES warning once kesWarnPeriods or fewer periods
// are left (the CardanoKESExpiringSoon alert's threshold); "" before.
func kesExpiryNote(v chainSnapshot) string {
	if v.KESPeriodsRemaining == nil || *v.KESPeriodsRemaining > kesWarnPeriods {
		return ""
	}
	return fmt.Sprintf("%d KES periods left: the operational certificate expires at %s; rotate the KES key (README, KES rotation)",
		*v.KESPeriodsRemaining, v.KESExpires)
}

// kesWarnPeriods: 7 periods of 36 h on mainnet, about 10 days to rotate.
const kesWarnPeriods = 7

// truncateUTF8 cuts s to at most n bytes on a character boundary: a cut
// inside one would be sent as U+FFFD, three bytes, past the limit.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
