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
// deleted by hand keeps the record only through replicas that read it
// before (a new Lease gets it from them), and an etcd restore can bring
// an older one back.

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
)

// counterKey holds "<pool id hex>:<counter>".
const counterKey = "cardano.io/opcert-counter"

// counterRecord is a Lease's record; ok is false when there is none. uid
// is the Lease it was read on.
type counterRecord struct {
	pool string
	n    uint64
	ok   bool
	uid  string
	name string // of the Lease
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
		return counterRecord{uid: string(l.UID), name: l.Name}, nil
	}
	pool, num, _ := strings.Cut(v, ":")
	n, err := strconv.ParseUint(num, 10, 64)
	hexID, ok := poolIDHex(pool)
	if err != nil || !ok || len(pool) != 2*poolIDSize {
		return counterRecord{}, fmt.Errorf("Lease %s has %s=%q, not <pool id hex>:<counter>: remove the annotation to reset the record (docs/keys.md)",
			l.Name, counterKey, truncate(v, 100))
	}
	return counterRecord{pool: hexID, n: n, ok: true, uid: string(l.UID), name: l.Name}, nil
}

// counterLeases are the Leases that elect this replica's forging.
func (s *sidecar) counterLeases() []*elector {
	if s.cl != nil {
		return []*elector{s.el, s.cl.token}
	}
	return []*elector{s.el}
}

// seenRecord is a Lease's record as this replica knows it: read from the
// elector's view, and, while that view is gone (a conflict, a failed read,
// the Lease missing), the last one read, so a gap forgets nothing. A
// record of a Lease since recreated (another UID, or none yet) carries
// over: only removing the annotation from the Lease resets it.
func (s *sidecar) seenRecord(e *elector) (counterRecord, error) {
	if s.records == nil {
		s.records = map[*elector]counterRecord{}
	}
	last := s.records[e]
	if e.lease == nil {
		return last, nil
	}
	rec, err := recordOn(e.lease)
	if err != nil {
		return rec, err
	}
	rec = carried(rec, last)
	s.records[e] = rec
	return rec, nil
}

// carried is rec, read on a Lease, judged with last, read on the Lease of
// that name before it was recreated (another UID): the higher record of
// the pool wins, and stays tied to the earlier UID until the new Lease
// carries one at least as high. Only removing the annotation from the
// same Lease resets the record.
func carried(rec, last counterRecord) counterRecord {
	if !last.ok || last.uid == rec.uid {
		return rec
	}
	if !rec.ok || (rec.pool == last.pool && rec.n < last.n) {
		return last
	}
	return rec
}

// highestRecord is the highest record of pool on the Leases that elect
// this replica, or an error if one cannot be read.
func (s *sidecar) highestRecord(pool string) (counterRecord, error) {
	var best counterRecord
	for _, e := range s.counterLeases() {
		rec, err := s.seenRecord(e)
		if err != nil {
			return counterRecord{}, err
		}
		if rec.ok && rec.pool == pool && (!best.ok || rec.n > best.n) {
			best = rec
		}
	}
	return best, nil
}

// counterProblem says why the set in place may not forge by its counter
// ("" if it may).
func (s *sidecar) counterProblem() string { return s.counterProblemOf(s.keyset) }

// counterProblemOf: the set's counter is below the record of its pool on
// a Lease that elects the forger, or a record cannot be read.
func (s *sidecar) counterProblemOf(ks keySet) string {
	rec, err := s.highestRecord(ks.pool)
	switch {
	case err != nil:
		return err.Error()
	case rec.ok && ks.cert.counter < rec.n:
		return fmt.Sprintf("the operational certificate's issue counter %d is below %d, which this pool already forged with (Lease %s): its blocks would be invalid (a rolled-back Secret?); mount the current certificate, or reset the record as docs/keys.md says",
			ks.cert.counter, rec.n, rec.name)
	}
	return ""
}

// stampCounter sets how each elector's next writes as holder edit the
// record, judged on the record being written (the latest read or
// written), so a record raised since, by hand or by another holder, is
// never lowered: a Lease recreated without it gets the one this replica
// last read; the record is raised to the counter the node confirmed
// forging with (by its KES gauge, when it exports one: a reload it did not
// take is not "loaded"). Another pool's record is left alone: a Lease
// records one pool (docs/keys.md).
func (s *sidecar) stampCounter() {
	n := &s.node.n
	forging := n.state == stateOn && n.loaded == s.digest && s.keyset.pool != ""
	mine := counterRecord{pool: s.keyset.pool, n: s.keyset.cert.counter, ok: true}
	for _, e := range s.counterLeases() {
		last, err := s.seenRecord(e)
		if err != nil {
			e.stamp = nil
			continue
		}
		e.stamp = func(l *coordinationv1.Lease) {
			rec, err := recordOn(l)
			if err != nil {
				return
			}
			rec = carried(rec, last)
			if forging && (!rec.ok || (rec.pool == mine.pool && rec.n < mine.n)) {
				rec = mine
			}
			if rec.ok {
				l.Annotations[counterKey] = rec.String()
			}
		}
	}
}

// keyStatus is the CardanoLeader's view of the credentials in place.
func (s *sidecar) keyStatus(now time.Time) keyStatus {
	if s.sources == nil || s.keyset.pool == "" {
		return keyStatus{}
	}
	oc := s.keyset.cert
	ks := keyStatus{KeysPoolID: ptr(s.keyset.poolBech32()), OpCertCounter: ptr(oc.counter), KESPeriodStart: ptr(oc.kesPeriod)}
	if w, err := s.chain.kesWindow(oc.kesPeriod, now); err == nil {
		ks.KESExpires = ptr(w.expires.UTC().Format(time.RFC3339))
	}
	if rec, err := s.highestRecord(s.keyset.pool); err == nil && rec.ok {
		ks.HighestOpCertCounter = ptr(rec.n)
	}
	return ks
}

// counterWarning: the chain accepts the recorded counter or one more; a
// certificate further ahead forges blocks the chain rejects, unless the
// chain's counter moved without this record (another tool forged).
func (s *sidecar) counterWarning() string {
	if rec, err := s.highestRecord(s.keyset.pool); err == nil && rec.ok && s.keyset.cert.counter > rec.n+1 {
		return fmt.Sprintf("the operational certificate's issue counter %d is more than one above %d, the highest this pool forged with: the chain accepts only %d or %d (CounterOverIncrementedOCERT)",
			s.keyset.cert.counter, rec.n, rec.n, rec.n+1)
	}
	for _, e := range s.counterLeases() {
		if rec, err := s.seenRecord(e); err == nil && rec.ok && s.keyset.pool != "" && rec.pool != s.keyset.pool {
			return fmt.Sprintf("Lease %s records the counter of another pool (%s), so this pool's is not recorded and a rolled-back certificate would not be caught: remove the annotation %s (docs/keys.md)",
				rec.name, rec.pool, counterKey)
		}
	}
	return ""
}
