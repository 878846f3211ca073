package main

// The issue counter guard (SPEC 12; docs/keys.md, The counter record). The
// chain accepts a block only when its certificate's counter n satisfies
// m <= n <= m + 1, m the pool's counter on chain; the chain itself is out
// of a sidecar's reach, but a counter lower than one this pool has already
// forged with is certainly invalid: a rolled-back Secret. So the highest
// counter forged with rides on the Lease that elects the forger (and on
// the forging token with cluster management), written by the holder in
// the same compare-and-swap as its renew, read by every replica with the
// record it observes.
//
// What it does not promise: a holder that dies within RETRY_PERIOD of its
// first forging with a new counter has not recorded it yet; a Lease
// deleted by hand forgets the record (the CardanoLeader status keeps the
// last one for the operator to see).

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
)

// counterKey holds "<pool id hex>:<counter>".
const counterKey = "cardano.io/opcert-counter"

// counterRecord is a Lease's record; ok is false when there is none.
type counterRecord struct {
	pool string
	n    uint64
	ok   bool
}

func (r counterRecord) String() string { return fmt.Sprintf("%s:%d", r.pool, r.n) }

// recordOn reads the record of l. A record that does not parse is an
// error: it is not "none", which would let any counter forge.
func recordOn(l *coordinationv1.Lease) (counterRecord, error) {
	if l == nil {
		return counterRecord{}, nil
	}
	v, set := l.Annotations[counterKey]
	if !set {
		return counterRecord{}, nil
	}
	pool, num, _ := strings.Cut(v, ":")
	n, err := strconv.ParseUint(num, 10, 64)
	if _, ok := poolIDHex(pool); err != nil || !ok || len(pool) != 2*poolIDSize {
		return counterRecord{}, fmt.Errorf("Lease %s has %s=%q, not <pool id hex>:<counter>: remove the annotation to reset the record (docs/keys.md)",
			l.Name, counterKey, truncate(v, 100))
	}
	return counterRecord{pool: pool, n: n, ok: true}, nil
}

// counterLeases are the Leases that elect this replica's forging.
func (s *sidecar) counterLeases() []*elector {
	if s.cl != nil {
		return []*elector{s.el, s.cl.token}
	}
	return []*elector{s.el}
}

// counterProblem says why the set in place may not forge by its counter
// ("" if it may).
func (s *sidecar) counterProblem() string { return s.counterProblemOf(s.keyset) }

// counterProblemOf: the set's counter is below the record of its pool on
// a Lease that elects the forger, or a record cannot be read.
func (s *sidecar) counterProblemOf(ks keySet) string {
	for _, e := range s.counterLeases() {
		rec, err := recordOn(e.lease)
		switch {
		case err != nil:
			return err.Error()
		case rec.ok && rec.pool == ks.pool && ks.cert.counter < rec.n:
			return fmt.Sprintf("the operational certificate's issue counter %d is below %d, which this pool already forged with (Lease %s): its blocks would be invalid (a rolled-back Secret?); mount the current certificate, or reset the record as docs/keys.md says",
				ks.cert.counter, rec.n, e.lease.Name)
		}
	}
	return ""
}

// stampCounter sets how each elector's next writes as holder edit the
// record: raised to the counter the node confirmed forging with, a record
// of another pool replaced. The edit is judged on the record being
// written, the latest read or written, so a record raised since (by hand,
// or by another holder) is never lowered.
func (s *sidecar) stampCounter() {
	n := &s.node.n
	var stamp func(l *coordinationv1.Lease)
	if n.state == stateOn && n.loaded == s.digest && s.keyset.pool != "" {
		mine := counterRecord{pool: s.keyset.pool, n: s.keyset.cert.counter, ok: true}
		stamp = func(l *coordinationv1.Lease) {
			rec, err := recordOn(l)
			if err == nil && (!rec.ok || rec.pool != mine.pool || rec.n < mine.n) {
				l.Annotations[counterKey] = mine.String()
			}
		}
	}
	for _, e := range s.counterLeases() {
		e.stamp = stamp
	}
}

// keyStatus is the CardanoLeader's view of the credentials in place.
func (s *sidecar) keyStatus(now time.Time) keyStatus {
	if s.sources == nil || s.keyset.pool == "" {
		return keyStatus{}
	}
	oc := s.keyset.cert
	ks := keyStatus{KeysPoolID: s.keyset.poolBech32(), OpCertCounter: ptr(oc.counter), KESPeriodStart: ptr(oc.kesPeriod)}
	if w, err := s.chain.kesWindow(oc.kesPeriod, now); err == nil {
		ks.KESExpires = w.expires.UTC().Format(time.RFC3339)
	}
	if rec, err := recordOn(s.el.lease); err == nil && rec.ok && rec.pool == s.keyset.pool {
		ks.HighestOpCertCounter = ptr(rec.n)
	}
	return ks
}

// counterWarning: the chain accepts the recorded counter or one more; a
// certificate further ahead forges blocks the chain rejects, unless the
// chain's counter moved without this record (another tool forged).
func (s *sidecar) counterWarning() string {
	for _, e := range s.counterLeases() {
		if rec, err := recordOn(e.lease); err == nil && rec.ok && rec.pool == s.keyset.pool && s.keyset.cert.counter > rec.n+1 {
			return fmt.Sprintf("the operational certificate's issue counter %d is more than one above %d, the highest this pool forged with: the chain accepts only %d or %d (CounterOverIncrementedOCERT)",
				s.keyset.cert.counter, rec.n, rec.n, rec.n+1)
		}
	}
	return ""
}
