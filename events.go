package main

// Kubernetes Events (SPEC 8): one for each real transition an operator
// wants in `kubectl describe` and `kubectl get events`. Leadership (the
// Lease acquired, released, lost, fenced) is about the CardanoLeader; the
// node (forging enabled or disabled, killed, eligibility, a step-down) and
// the credentials (refused, not loaded, a counter ahead, KES expiry near)
// are about the pod. Each names the other as related.
//
// Events are best effort and never in the way of forging: a transition is
// queued in memory where it happens, and the queue is written in the
// pass's report step, after every action, cut like every call, within one
// API_TIMEOUT for all of them. A failed write stays queued for the next
// pass. Rate-limited: a burst of eventBurst, then one per eventRefill,
// at most eventQueueMax waiting (the oldest dropped first). Notes are the
// log lines' reasons, which never carry key bytes (invariant 8).

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

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
}

// eventSink writes one Event; leaderUID is the CardanoLeader's, "" if not
// known yet.
type eventSink interface {
	emit(ctx context.Context, e event, leaderUID string) error
}

// kubeEvents writes events.k8s.io/v1 Events as JSON (no generated types).
// Each is named pod.<eventTime in hex nanoseconds>, as client-go's
// recorder names them: a retried write is the same object, never a second
// one (events.k8s.io refuses a generateName ending in a dot).
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
		"metadata":  map[string]any{"name": fmt.Sprintf("%s.%x", k.pod, e.at.UnixNano()), "namespace": k.namespace},
		"eventTime": e.at.UTC().Format("2006-01-02T15:04:05.000000Z07:00"),
		"regarding": regarding, "related": related,
		"reason": e.reason, "action": e.action, "note": truncate(e.note, noteMax), "type": typ,
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

// say queues an Event about the pod (leader: about the CardanoLeader).
func (s *sidecar) say(warning, leader bool, reason, action, note string) {
	if s.events == nil {
		return
	}
	s.evq.add(event{warning: warning, leader: leader, reason: reason, action: action, note: note, at: s.now()})
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

// flushEvents writes queued Events while the rate limit allows, oldest
// first; the first failure leaves the rest for the next pass.
func (s *sidecar) flushEvents(ctx context.Context) {
	if s.events == nil {
		return
	}
	if s.evq.dropped > 0 {
		s.log.Warn("Events dropped: too many at once", "dropped", s.evq.dropped)
		s.evq.dropped = 0
	}
	for len(s.evq.pending) > 0 && s.evq.take(s.now()) {
		if err := s.events.emit(ctx, s.evq.pending[0], s.status.uid); err != nil {
			s.evq.tokens++ // not spent: nothing was written
			s.m.apiError(apiOp(err))
			s.log.Debug("Event not written; retried at the next pass", "reason", s.evq.pending[0].reason, "err", err)
			return
		}
		s.evq.pending = s.evq.pending[1:]
	}
}
