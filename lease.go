package main

// Leader election on a coordination.k8s.io/v1 Lease, written for this job
// rather than taken from client-go's leaderelection package, whose typed
// client drags in every API group (SPEC 9). The rules are client-go's:
//
//  1. Expiry is judged on the local monotonic clock only. A standby notes
//     when it first saw the current record (holder, renew time,
//     transitions, duration); it may take the Lease only after that record
//     stayed unchanged for the record's own leaseDurationSeconds. Another
//     machine's timestamps are never compared with ours.
//  2. Every write carries the resourceVersion read or written last, so two
//     writers cannot both win: a 409 Conflict means someone else moved and
//     the Lease is read again.
//  3. The holder renews every RETRY_PERIOD with one update (no read first).
//     It counts as leader only until RENEW_DEADLINE after the start of its
//     last successful write; past that it fences itself (forge.go) without
//     waiting for any API call, and every call's timeout is cut to the time
//     left before that deadline.
//  4. On a clean stop the holder, once its node has stopped forging,
//     releases the Lease (empty holder) so a standby takes it at once.
//  5. The epoch is the Lease's UID with its leaseTransitions; it only goes
//     up. A record whose transitions went backwards (an etcd restore) is not
//     trusted to forge under, and the next write puts the count back above
//     every value seen.
//
// Timing (defaults 15s/10s/2s): the leader's last renew starts at s. It
// fences at s+10s, and terminates a node that has not confirmed the disable
// by s+14s. No standby can take the Lease before s+15s: it saw that record
// no earlier than the write committed, after s. So the two never overlap as
// long as the clocks' rates differ by less than 15/14. Like client-go, this
// is not fencing by the storage: it relies on the deadline being honoured,
// which is why the node side is confirmed and, failing that, terminated, and
// why a dead-man probe covers a sidecar that can no longer act (README).

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// killMargin: a disable not confirmed this long before a standby may take
// the Lease ends with the node terminated. One second covers a SIGKILL and
// the standby's own SIGHUP handling.
const killMargin = time.Second

// leaseAPI is the API access the election needs.
type leaseAPI interface {
	get(ctx context.Context) (*coordinationv1.Lease, error)
	create(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error)
	update(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error)
}

// epoch is the leadership epoch: the Lease's UID and leaseTransitions.
type epoch struct {
	UID         string
	Transitions int32
}

func (e epoch) String() string { return fmt.Sprintf("%d (lease %s)", e.Transitions, e.UID) }

// elector runs the election for one identity. It is used from one goroutine.
type elector struct {
	api      leaseAPI
	identity string
	duration time.Duration // LEASE_DURATION, written into the record
	deadline time.Duration // RENEW_DEADLINE
	retry    time.Duration // RETRY_PERIOD
	timeout  time.Duration // API_TIMEOUT
	now      func() time.Time

	lease      *coordinationv1.Lease // last object read or written
	observed   leaseRecord           // rule 1: the record as last seen...
	observedAt time.Time             // ...and when it was first seen so
	renewedAt  time.Time             // start of our last successful write as holder; zero if none
	maxSeen    map[string]int32      // rule 5: highest transitions seen per Lease UID
	nextTry    time.Time
}

// leaseRecord is what rule 1 compares.
type leaseRecord struct {
	holder, renew string
	transitions   int32
	duration      int32
}

func recordOf(l *coordinationv1.Lease) leaseRecord {
	r := leaseRecord{holder: deref(l.Spec.HolderIdentity), transitions: derefInt(l.Spec.LeaseTransitions), duration: derefInt(l.Spec.LeaseDurationSeconds)}
	if l.Spec.RenewTime != nil {
		r.renew = l.Spec.RenewTime.UTC().Format(time.RFC3339Nano)
	}
	return r
}

func newElector(api leaseAPI, identity string, c *config, now func() time.Time) *elector {
	return &elector{
		api: api, identity: identity, now: now,
		duration: c.LeaseDuration, deadline: c.RenewDeadline, retry: c.RetryPeriod, timeout: c.APITimeout,
		maxSeen: map[string]int32{},
	}
}

// leading tells whether this replica may act as leader at t: it holds the
// Lease and its last renew started less than RENEW_DEADLINE ago (rule 3).
func (e *elector) leading(t time.Time) bool {
	return !e.renewedAt.IsZero() && t.Before(e.fenceAt())
}

// fenceAt is when this replica stops counting as leader unless it renews.
func (e *elector) fenceAt() time.Time { return e.renewedAt.Add(e.deadline) }

// mustStopBy is the latest instant this replica's node may still be forging:
// killMargin before any standby could take the Lease. Zero if this replica
// never held it in this process.
func (e *elector) mustStopBy() time.Time {
	if e.renewedAt.IsZero() {
		return time.Time{}
	}
	return e.renewedAt.Add(e.duration - killMargin)
}

// epoch is the current leadership epoch as last seen.
func (e *elector) epoch() epoch {
	if e.lease == nil {
		return epoch{}
	}
	return epoch{string(e.lease.UID), derefInt(e.lease.Spec.LeaseTransitions)}
}

// holder is the holder identity as last seen.
func (e *elector) holder() string {
	if e.lease == nil {
		return ""
	}
	return deref(e.lease.Spec.HolderIdentity)
}

// epochTrusted is rule 5: false while the Lease's transitions are below a
// value this process saw before for the same Lease.
func (e *elector) epochTrusted() bool {
	ep := e.epoch()
	return ep.Transitions >= e.maxSeen[ep.UID]
}

// due tells whether it is time for the next election step.
func (e *elector) due(t time.Time) bool { return !t.Before(e.nextTry) }

// callContext bounds one API call by API_TIMEOUT and, while leading, by the
// time left before the renew deadline (SPEC 3 invariant 1).
func (e *elector) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	limit := e.timeout
	if t := e.now(); e.leading(t) {
		limit = min(limit, e.fenceAt().Sub(t))
	}
	return context.WithTimeout(ctx, limit)
}

// step runs one election round: renew if holding, else observe and, when
// eligible and the Lease is free or expired, take it. It reports an API
// error; the outcome is read through leading().
func (e *elector) step(ctx context.Context, eligible bool) error {
	start := e.now()
	defer e.schedule(start) // with what this round learnt
	// Step 3: renew with the cached object, no read first.
	if e.leading(start) && e.lease != nil && eligible {
		err := e.write(ctx, start, e.renewed(start))
		if !apierrors.IsConflict(err) {
			return err
		}
	}
	// Steps 1 and 2: read, note changes on the local clock, and take over
	// only what is free or expired.
	l, err := e.read(ctx)
	if apierrors.IsNotFound(err) {
		e.lease = nil
		if !eligible {
			return nil
		}
		return e.createLease(ctx, start)
	}
	if err != nil {
		return err
	}
	e.observe(l, start)
	holder := deref(l.Spec.HolderIdentity)
	switch {
	case !eligible:
		return nil
	case holder == e.identity:
		return e.write(ctx, start, e.renewed(start))
	case holder != "" && start.Before(e.observedAt.Add(seconds(l.Spec.LeaseDurationSeconds, e.duration))):
		return nil // held by another replica, not expired on our clock
	}
	return e.write(ctx, start, e.takeover(start))
}

// schedule sets the next round: a holder renews every RETRY_PERIOD; a
// standby looks every RETRY_PERIOD plus up to 10% jitter, but never later
// than the moment the Lease it sees would expire.
func (e *elector) schedule(t time.Time) {
	if e.leading(t) {
		e.nextTry = t.Add(e.retry)
		return
	}
	e.nextTry = t.Add(e.retry + rand.N(e.retry/10+1))
	if h := e.holder(); h != "" && h != e.identity && e.lease != nil {
		expiry := e.observedAt.Add(seconds(e.lease.Spec.LeaseDurationSeconds, e.duration))
		if expiry.After(t) && expiry.Before(e.nextTry) {
			e.nextTry = expiry
		}
	}
}

// wakeAt is the next instant the caller must run step or act on the
// deadline.
func (e *elector) wakeAt(t time.Time) time.Time {
	w := e.nextTry
	if e.leading(t) && e.fenceAt().Before(w) {
		w = e.fenceAt()
	}
	return w
}

func (e *elector) read(ctx context.Context) (*coordinationv1.Lease, error) {
	cctx, cancel := e.callContext(ctx)
	defer cancel()
	l, err := e.api.get(cctx)
	if err != nil {
		return nil, err
	}
	e.lease = l
	return l, nil
}

// observe applies rule 1 and rule 5 to a record just read.
func (e *elector) observe(l *coordinationv1.Lease, t time.Time) {
	r := recordOf(l)
	if r != e.observed || e.observedAt.IsZero() {
		e.observed, e.observedAt = r, t
	}
	uid, tr := string(l.UID), derefInt(l.Spec.LeaseTransitions)
	if tr > e.maxSeen[uid] {
		e.maxSeen[uid] = tr
	}
	if deref(l.Spec.HolderIdentity) != e.identity {
		e.renewedAt = time.Time{} // someone else's now: whatever we held is gone
	}
}

func (e *elector) createLease(ctx context.Context, start time.Time) error {
	l := &coordinationv1.Lease{Spec: e.takeover(start).Spec}
	cctx, cancel := e.callContext(ctx)
	defer cancel()
	got, err := e.api.create(cctx, l)
	if err != nil {
		return err
	}
	e.accept(got, start)
	return nil
}

// write sends l with the cached resourceVersion. Success makes us the
// holder from start; a conflict drops the cache so the next read refreshes.
func (e *elector) write(ctx context.Context, start time.Time, l *coordinationv1.Lease) error {
	cctx, cancel := e.callContext(ctx)
	defer cancel()
	got, err := e.api.update(cctx, l)
	if err != nil {
		if apierrors.IsConflict(err) {
			e.lease = nil
		}
		return err
	}
	e.accept(got, start)
	return nil
}

func (e *elector) accept(l *coordinationv1.Lease, start time.Time) {
	e.lease = l
	e.observe(l, start)
	if deref(l.Spec.HolderIdentity) == e.identity {
		e.renewedAt = start
	}
}

// renewed is our record with a fresh renew time. If the transitions count
// went backwards (rule 5), it is put back above every value seen.
func (e *elector) renewed(t time.Time) *coordinationv1.Lease {
	l := e.lease.DeepCopy()
	l.Spec.HolderIdentity = &e.identity
	l.Spec.LeaseDurationSeconds = ptr(int32(e.duration / time.Second))
	l.Spec.RenewTime = &metav1.MicroTime{Time: t}
	if tr := derefInt(l.Spec.LeaseTransitions); tr < e.maxSeen[string(l.UID)] {
		l.Spec.LeaseTransitions = ptr(e.maxSeen[string(l.UID)] + 1)
	}
	return l
}

// takeover is the record of a new holder: transitions one above the highest
// seen, acquire and renew time now.
func (e *elector) takeover(t time.Time) *coordinationv1.Lease {
	l, tr := &coordinationv1.Lease{}, int32(0) // a new Lease starts at 0
	if e.lease != nil {
		l = e.lease.DeepCopy()
		tr = max(derefInt(l.Spec.LeaseTransitions), e.maxSeen[string(l.UID)]) + 1
	}
	l.Spec = coordinationv1.LeaseSpec{
		HolderIdentity:       &e.identity,
		LeaseDurationSeconds: ptr(int32(e.duration / time.Second)),
		AcquireTime:          &metav1.MicroTime{Time: t},
		RenewTime:            &metav1.MicroTime{Time: t},
		LeaseTransitions:     ptr(tr),
	}
	return l
}

// release gives the Lease up (rule 4): empty holder, a one-second duration
// as client-go writes it, transitions kept. Call it only once the node has
// stopped forging.
func (e *elector) release(ctx context.Context) error {
	defer func() { e.renewedAt = time.Time{} }()
	if e.lease == nil || deref(e.lease.Spec.HolderIdentity) != e.identity {
		l, err := e.read(ctx)
		if err != nil || deref(l.Spec.HolderIdentity) != e.identity {
			return err // not ours (any more): nothing to release
		}
	}
	l := e.lease.DeepCopy()
	empty := ""
	l.Spec.HolderIdentity = &empty
	l.Spec.LeaseDurationSeconds = ptr(int32(1))
	l.Spec.RenewTime = &metav1.MicroTime{Time: e.now()}
	cctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	got, err := e.api.update(cctx, l)
	if err != nil {
		return fmt.Errorf("release: %w", err)
	}
	e.lease = got
	return nil
}

// kubeLeases is leaseAPI over the REST client.
type kubeLeases struct {
	rc        *rest.RESTClient
	namespace string
	name      string
	labels    map[string]string
}

var _ leaseAPI = (*kubeLeases)(nil)

func (k *kubeLeases) path() []string {
	return []string{"/apis/coordination.k8s.io/v1/namespaces", k.namespace, "leases"}
}

func (k *kubeLeases) get(ctx context.Context) (*coordinationv1.Lease, error) {
	l := &coordinationv1.Lease{}
	err := k.rc.Get().AbsPath(append(k.path(), k.name)...).Do(ctx).Into(l)
	return l, wrapAPI("get", "lease", k.namespace, k.name, err)
}

func (k *kubeLeases) create(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	l.Name, l.Namespace, l.Labels = k.name, k.namespace, k.labels
	out := &coordinationv1.Lease{}
	err := k.rc.Post().AbsPath(k.path()...).Body(l).Do(ctx).Into(out)
	return out, wrapAPI("create", "lease", k.namespace, k.name, err)
}

func (k *kubeLeases) update(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	out := &coordinationv1.Lease{}
	err := k.rc.Put().AbsPath(append(k.path(), k.name)...).Body(l).Do(ctx).Into(out)
	return out, wrapAPI("update", "lease", k.namespace, k.name, err)
}

// wrapAPI names the operation and object; apierrors.Is* still see through.
func wrapAPI(op, kind, ns, name string, err error) error {
	if err == nil {
		return nil
	}
	return &apiError{op: op, err: fmt.Errorf("%s %s %s/%s: %w", op, kind, ns, name, err)}
}

// apiError carries the operation for the api_errors metric.
type apiError struct {
	op  string
	err error
}

func (e *apiError) Error() string { return e.err.Error() }
func (e *apiError) Unwrap() error { return e.err }

// apiOp is the operation of a failed API call, for metrics.
func apiOp(err error) string {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.op
	}
	return "other"
}

func seconds(s *int32, fallback time.Duration) time.Duration {
	if s == nil || *s <= 0 {
		return fallback
	}
	return time.Duration(*s) * time.Second
}

func ptr[T any](v T) *T { return &v }

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func derefInt(i *int32) int32 {
	if i == nil {
		return 0
	}
	return *i
}
