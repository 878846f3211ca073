package main

// The chain's clock (SPEC 12, docs/keys.md): which slot the wall clock is
// in, how far the node's tip is behind it, and the KES period a
// certificate may forge in. Facts from cardano-node-facts G2 and G4.

import (
	"fmt"
	"math"
	"time"
)

// slotClock maps wall-clock time to slots. zero is the time slot 0 would
// have had at the Shelley slot length: the Byron era (20 s slots) ended
// long ago, and every slot since is linear in time, so one origin per
// network serves every date after its Shelley start.
type slotClock struct {
	zero           time.Time
	slotLength     time.Duration
	kesPeriodSlots uint64 // slotsPerKESPeriod
	maxEvolutions  uint64 // maxKESEvolutions
	since          time.Time
}

// Mainnet: Shelley began at slot 4492800, 2020-07-29T21:44:51Z; preprod at
// slot 86400, 2022-06-21T00:00:00Z; preview had no Byron era and began at
// 2022-10-25T00:00:00Z. Slots of 1 s, KES periods of 129600 slots, 62
// evolutions on all three.
var knownChains = map[string]slotClock{
	"mainnet": shelleyClock(time.Unix(1596059091, 0), 4492800),
	"preprod": shelleyClock(time.Unix(1655769600, 0), 86400),
	"preview": shelleyClock(time.Unix(1666656000, 0), 0),
}

func shelleyClock(start time.Time, slot uint64) slotClock {
	return slotClock{zero: start.Add(-time.Duration(slot) * time.Second).UTC(), slotLength: time.Second,
		kesPeriodSlots: 129600, maxEvolutions: 62, since: start.UTC()}
}

// slotAt is the slot the wall clock is in at t.
func (sc slotClock) slotAt(t time.Time) (uint64, error) {
	if t.Before(sc.since) {
		return 0, fmt.Errorf("the clock says %s, before this network's Shelley era (%s): is the system clock right?",
			t.UTC().Format(time.RFC3339), sc.since.Format(time.RFC3339))
	}
	return uint64(t.Sub(sc.zero) / sc.slotLength), nil
}

// timeOf is the start of slot s; past what a time.Duration holds (292
// years of nanoseconds) it is the latest instant that does.
func (sc slotClock) timeOf(s uint64) time.Time {
	if s > uint64(math.MaxInt64/int64(sc.slotLength)) {
		return sc.zero.Add(math.MaxInt64)
	}
	return sc.zero.Add(time.Duration(s) * sc.slotLength)
}

// kesPeriodAt is the KES period the wall clock is in at t.
func (sc slotClock) kesPeriodAt(t time.Time) (uint64, error) {
	s, err := sc.slotAt(t)
	return s / sc.kesPeriodSlots, err
}

// kesWindow is what a certificate starting at period c0 may do at t: it
// forges while c0 <= period < c0 + maxKESEvolutions (KESBeforeStartOCERT,
// KESAfterEndOCERT), and expires at the start of period c0 + 62.
type kesWindow struct {
	start, period, remaining uint64
	expires                  time.Time
}

func (sc slotClock) kesWindow(c0 uint64, t time.Time) (kesWindow, error) {
	p, err := sc.kesPeriodAt(t)
	w := kesWindow{start: c0, period: p, expires: sc.timeOf((c0 + sc.maxEvolutions) * sc.kesPeriodSlots)}
	if end := c0 + sc.maxEvolutions; p < end {
		w.remaining = end - p
	}
	return w, err
}

// problem says why the certificate may not forge now ("" if it may).
func (w kesWindow) problem() string {
	switch {
	case w.period < w.start:
		return fmt.Sprintf("the operational certificate starts at KES period %d, and this is period %d: it is not valid yet (issue it with the current period)",
			w.start, w.period)
	case w.remaining == 0:
		return fmt.Sprintf("the operational certificate (KES period %d) expired at %s, in period %d: rotate the KES key and issue a new certificate",
			w.start, w.expires.UTC().Format(time.RFC3339), w.period)
	}
	return ""
}

// chainSnapshot is what /status and the metrics say of the chain and the
// keys at now.
func (s *sidecar) chainSnapshot(now time.Time) chainSnapshot {
	n := &s.node.n
	v := chainSnapshot{MaxTipLag: s.tm.maxTipLag, CredentialsRefused: errString(s.rejected)}
	i64 := func(x int64) *int64 { return &x }
	if !n.chainAt.IsZero() && n.chain.slot >= 0 {
		v.TipSlot = i64(n.chain.slot)
		if lag, err := s.tipLag(now); err == nil {
			v.TipLagSlots = i64(int64(lag))
		}
	}
	if !n.chainAt.IsZero() && n.chain.kesStart >= 0 {
		v.NodeKESPeriodStart = i64(n.chain.kesStart)
	}
	if s.sources == nil || s.keyset.pool == "" {
		return v
	}
	oc := s.keyset.cert
	if ks := s.keyStatus(now); ks.HighestOpCertCounter != nil {
		v.HighestOpCertCounter = i64(int64(*ks.HighestOpCertCounter))
	}
	v.CounterWarning = s.counterWarning()
	if k := v.NodeKESPeriodStart; k != nil && n.lastRead == readOn && n.sending == s.digest && now.Sub(n.sent) >= s.tm.confirm && uint64(*k) != oc.kesPeriod {
		v.NodeCertificateMismatch = fmt.Sprintf("the node forges with a certificate of KES period %d, not the one in place (period %d): it did not load the set (a KES key the node refuses?); see its log",
			*k, oc.kesPeriod)
	}
	v.KeysPoolID, v.KeysPoolIDHex = s.keyset.poolBech32(), s.keyset.pool
	v.OpCertCounter, v.KESPeriodStart = i64(int64(oc.counter)), i64(int64(oc.kesPeriod))
	if w, err := s.chain.kesWindow(oc.kesPeriod, now); err == nil {
		v.KESPeriod, v.KESPeriodsRemaining = i64(int64(w.period)), i64(int64(w.remaining))
		v.KESExpires = w.expires.UTC().Format(time.RFC3339)
	}
	return v
}

// kesProblem says why the loaded certificate may not forge now ("" if it
// may): outside its KES window, or a clock before the network began.
func (s *sidecar) kesProblem(now time.Time) string { return s.chainProblemOf(s.keyset, now) }

func (s *sidecar) chainProblemOf(ks keySet, now time.Time) string {
	w, err := s.chain.kesWindow(ks.cert.kesPeriod, now)
	if err != nil {
		return err.Error()
	}
	return w.problem()
}

// tipProblem says why the node's chain is not fit to forge on ("" if it
// is): its tip lags the wall-clock slot by more than MAX_TIP_LAG, or it
// does not say where its tip is, which is not "at the tip" (SPEC 12).
func (s *sidecar) tipProblem(now time.Time) string {
	n := &s.node.n
	if s.tm.maxTipLag == 0 {
		return ""
	}
	if n.chainAt.IsZero() {
		return "the node's tip is not known yet: no reading of its metrics"
	}
	if n.chain.slot < 0 {
		return "the node reports no tip (no cardano_node_metrics_slotNum_int at NODE_METRICS_URL), so whether it is in sync is unknown: " +
			"turn on its ChainDB metrics, or set MAX_TIP_LAG=0 to forge without a tip check"
	}
	lag, err := s.tipLag(now)
	if err != nil {
		return err.Error()
	}
	if lag > s.tm.maxTipLag {
		return fmt.Sprintf("the node's tip is %d slots behind the wall clock (tip slot %d; MAX_TIP_LAG=%d): it is syncing, replaying or stuck",
			lag, n.chain.slot, s.tm.maxTipLag)
	}
	return ""
}

// tipAhead: the node and this sidecar read one clock (one pod, one host),
// so a tip more than a few slots ahead of it is a gauge or a clock that
// cannot be trusted, and the KES period reckoned from that clock neither.
const tipAhead = 60

// tipLag is how many slots the node's last reported tip is behind the
// wall-clock slot (0 if it is ahead by at most tipAhead).
func (s *sidecar) tipLag(now time.Time) (uint64, error) {
	wall, err := s.chain.slotAt(now)
	if err != nil {
		return 0, err
	}
	tip := uint64(s.node.n.chain.slot)
	switch {
	case tip > wall+tipAhead:
		return 0, fmt.Errorf("the node's tip (slot %d) is %d slots ahead of this pod's clock (slot %d): the clock or the node's gauge is wrong, so neither the lag nor the KES period can be known",
			tip, tip-wall, wall)
	case tip >= wall:
		return 0, nil
	}
	return wall - tip, nil
}
