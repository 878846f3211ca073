package main

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"forge-manager/internal/testenv"
)

// SPEC 12 in the simulated world: what the chain and the keys say decides
// eligibility, fail closed.

// TestTipLaggingReplicaNeverLeads: a replica whose node lags the wall
// clock by more than MAX_TIP_LAG never takes the lead, even alone; the
// one at the tip does.
func TestTipLaggingReplicaNeverLeads(t *testing.T) {
	w := newWorld(t)
	a := w.add("bp-0")
	a.node.tipLag = 601
	w.run(40 * time.Second)
	if a.node.forgedOnce() || w.leases.holder() != "" {
		t.Fatalf("a node 601 slots behind forged or took the Lease (holder %q)", w.leases.holder())
	}
	if why := a.s.ineligible(w.clock.now()); !strings.Contains(why, "slots behind the wall clock") {
		t.Errorf("reason %q; want the lag named", why)
	}
	w.add("bp-1").node.tipLag = 40 // a normal gap between blocks
	w.settle(40 * time.Second)
	w.onlyForger("bp-1")
	if a.node.forgedOnce() {
		t.Error("the lagging node forged")
	}
}

// TestTipLeaderFallsBehindHandsOver: the leader's node falls behind: it
// hands over (disable, confirm, release) and the standby forges, without
// overlap; when it catches up it does not take the lead back.
func TestTipLeaderFallsBehindHandsOver(t *testing.T) {
	w, a := pair(t)
	a.node.tipLag = 700
	w.runUntil(10*time.Second, "bp-1 forging", func() bool { return w.rep("bp-1").node.on })
	w.noOverlap()
	if a.node.on || w.leases.holder() != "bp-1_uid" {
		t.Errorf("bp-0 forging %v, holder %q; want bp-1 holding and forging alone", a.node.on, w.leases.holder())
	}
	a.node.tipLag = 0
	w.run(30 * time.Second)
	w.onlyForger("bp-1")
}

// TestTipUnknownIsNotAtTheTip: a node that exports no slotNum is of
// unknown sync state: never eligible, and the reason says how to fix it.
func TestTipUnknownIsNotAtTheTip(t *testing.T) {
	w := newWorld(t)
	a := w.add("bp-0")
	a.node.noTip = true
	w.run(40 * time.Second)
	if a.node.forgedOnce() {
		t.Fatal("a node that does not report its tip forged")
	}
	if why := a.s.ineligible(w.clock.now()); !strings.Contains(why, "cardano_node_metrics_slotNum_int") || !strings.Contains(why, "MAX_TIP_LAG=0") {
		t.Errorf("reason %q; want the missing metric and the way out", why)
	}
}

// TestTipCheckOff: MAX_TIP_LAG=0 is the operator's explicit choice to
// forge without knowing the tip.
func TestTipCheckOff(t *testing.T) {
	w := newWorld(t)
	w.add("bp-0", "MAX_TIP_LAG", "0").node.noTip = true
	w.settle(40 * time.Second)
	w.onlyForger("bp-0")
}

// mount writes a credential set over r's sources.
func mount(t *testing.T, r *replica, spec testenv.KeySpec) {
	t.Helper()
	set := testenv.Keys(spec)
	for name, path := range map[string]string{"kes.skey": r.cfg.SourceKES, "vrf.skey": r.cfg.SourceVRF, "node.cert": r.cfg.SourceOpCert} {
		putSecret(t, path, set[name])
	}
}

// TestKESOutsideItsWindowNeverForges: a certificate that expired, or that
// starts after the present period, is never enabled; the reason names the
// periods.
func TestKESOutsideItsWindowNeverForges(t *testing.T) {
	now := testenv.MainnetKESPeriod(simEpoch)
	for _, tc := range []struct {
		name string
		c0   uint64
		want string
	}{
		{"expired", now - 62, "expired at"},
		{"not valid yet", now + 1, "not valid yet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			a := w.add("bp-0")
			mount(t, a, testenv.KeySpec{Marker: "secret", KESPeriod: tc.c0})
			w.run(40 * time.Second)
			if a.node.forgedOnce() {
				t.Fatal("forged with a certificate outside its KES window")
			}
			if why := a.s.ineligible(w.clock.now()); !strings.Contains(why, tc.want) {
				t.Errorf("reason %q; want %q", why, tc.want)
			}
		})
	}
}

// TestRefusedSetKeepsTheRunningOne: the leader forges; a new set whose KES
// key is not the certificate's is mounted: refused, no SIGHUP, forging
// goes on with the running set. A good set afterwards is loaded with one
// SIGHUP.
func TestRefusedSetKeepsTheRunningOne(t *testing.T) {
	w, a := pair(t)
	before := len(a.node.sent)
	hups := a.node.hups
	mount(t, a, testenv.KeySpec{Marker: "bad", Counter: 1, KESPeriod: testenv.MainnetKESPeriod(simEpoch), KES: 1, CertFor: 0})
	w.run(20 * time.Second)
	w.onlyForger("bp-0")
	if d := a.node.delivered(before); d != "" {
		t.Errorf("signals %q after a refused set; want none", d)
	}
	if a.s.rejected == nil || !strings.Contains(a.s.rejected.Error(), "does not belong to SOURCE_OP_CERT") {
		t.Errorf("rejected = %v", a.s.rejected)
	}
	mount(t, a, testenv.KeySpec{Marker: "good", Counter: 1, KESPeriod: testenv.MainnetKESPeriod(simEpoch), KES: 1, CertFor: 1})
	w.run(10 * time.Second)
	w.onlyForger("bp-0")
	if a.node.hups != hups+1 || a.s.rejected != nil {
		t.Errorf("%d SIGHUPs for the good set, rejected %v; want 1 and none", a.node.hups-hups, a.s.rejected)
	}
}

// TestRefusedSetWithoutARunningOne: a replica that starts with a set that
// fails validation has nothing to keep: not eligible, the reason named.
func TestRefusedSetWithoutARunningOne(t *testing.T) {
	w := newWorld(t)
	a := w.add("bp-0")
	cert, _ := os.ReadFile(a.cfg.SourceOpCert)
	putSecret(t, a.cfg.SourceOpCert, []byte(strings.Replace(string(cert), `"cborHex": "8284`, `"cborHex": "8285`, 1)))
	a.s.sources, a.s.digest = nil, "" // as a sidecar starting on this Secret
	w.run(40 * time.Second)
	if a.node.forgedOnce() {
		t.Fatal("forged with a certificate that does not parse")
	}
	if why := a.s.ineligible(w.clock.now()); !strings.Contains(why, "credentials refused: SOURCE_OP_CERT") {
		t.Errorf("reason %q", why)
	}
}

// TestChainStatusAndMetrics: /status and /metrics say where the tip is,
// which pool the keys prove, and the certificate's KES window; with
// another pool's keys (after a restart) the key_pool_id series follows.
func TestChainStatusAndMetrics(t *testing.T) {
	w, a := pair(t)
	a.node.tipLag = 30
	w.run(3 * time.Second)
	v := a.s.board.load().Chain
	c0 := testenv.MainnetKESPeriod(time.Now()) - 1
	switch {
	case v.TipLagSlots == nil || *v.TipLagSlots < 30 || *v.TipLagSlots > 40:
		t.Errorf("tip lag %v; want about 30", v.TipLagSlots)
	case !strings.HasPrefix(v.KeysPoolID, "pool1") || len(v.KeysPoolIDHex) != 56:
		t.Errorf("keys pool %q / %q", v.KeysPoolID, v.KeysPoolIDHex)
	case v.KESPeriodStart == nil || uint64(*v.KESPeriodStart) != c0 || v.OpCertCounter == nil || *v.OpCertCounter != 0:
		t.Errorf("KES start %v, counter %v; want %d and 0", v.KESPeriodStart, v.OpCertCounter, c0)
	case v.KESPeriodsRemaining == nil || *v.KESPeriodsRemaining < 60 || v.KESExpires == "":
		t.Errorf("remaining %v, expires %q", v.KESPeriodsRemaining, v.KESExpires)
	}
	var b strings.Builder
	a.s.m.write(&b)
	for _, want := range []string{`forge_manager_keys_info{`, `key_pool_id="` + v.KeysPoolID + `"} 1`, "cardano_kes_periods_remaining{", "cardano_node_tip_lag_slots{"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	mount(t, a, testenv.KeySpec{Marker: "new", Cold: "another pool", KESPeriod: testenv.MainnetKESPeriod(simEpoch)})
	w.startSidecar(a) // another pool's keys are taken only by a process that runs no set yet
	w.run(3 * time.Second)
	b.Reset()
	a.s.m.write(&b)
	if n := strings.Count(b.String(), "forge_manager_keys_info{"); n != 1 || strings.Contains(b.String(), v.KeysPoolID) {
		t.Errorf("%d keys_info series after the keys changed pool; want 1, the new pool's", n)
	}
}

// TestNodeCertificateMismatchReported: the node forges with the set in
// place but reports another certificate's start period (it kept its old
// state, as it does with a KES key it refuses): reported in /status, the
// metric and the log; the same period reports nothing.
func TestNodeCertificateMismatchReported(t *testing.T) {
	w, a := pair(t)
	c0 := int64(testenv.MainnetKESPeriod(time.Now()) - 1)
	a.node.kesStart = c0
	w.run(3 * time.Second)
	if m := a.s.board.load().Chain.NodeCertificateMismatch; m != "" {
		t.Fatalf("mismatch %q with the same period", m)
	}
	a.node.kesStart = c0 - 62
	w.run(3 * time.Second)
	if m := a.s.board.load().Chain.NodeCertificateMismatch; !strings.Contains(m, "did not load the set") {
		t.Errorf("mismatch %q; want it reported", m)
	}
	if !strings.Contains(a.log.String(), "the node did not take the credential set in place") {
		t.Error("not logged")
	}
}

// TestTipAheadOfTheClockIsUnknown: a tip far ahead of the pod's own clock
// is a gauge or a clock not to be trusted: not "at the tip".
func TestTipAheadOfTheClockIsUnknown(t *testing.T) {
	w := newWorld(t)
	a := w.add("bp-0")
	a.node.tipAhead = 1 << 40
	w.run(40 * time.Second)
	if a.node.forgedOnce() {
		t.Fatal("forged on a tip ahead of the clock")
	}
	if why := a.s.ineligible(w.clock.now()); !strings.Contains(why, "ahead of this pod's clock") {
		t.Errorf("reason %q", why)
	}
}

// TestNewSetNotValidYetKeepsTheRunningOne: while the running set can
// forge, a valid new set whose certificate starts next period is refused
// (it would stop the pool until then); the running set goes on.
func TestNewSetNotValidYetKeepsTheRunningOne(t *testing.T) {
	w, a := pair(t)
	before := len(a.node.sent)
	mount(t, a, testenv.KeySpec{Marker: "early", Counter: 1, KESPeriod: testenv.MainnetKESPeriod(simEpoch) + 1, KES: 1, CertFor: 1})
	w.run(20 * time.Second)
	w.onlyForger("bp-0")
	if d := a.node.delivered(before); d != "" {
		t.Errorf("signals %q; want none", d)
	}
	if a.s.rejected == nil || !strings.Contains(a.s.rejected.Error(), "not valid yet") {
		t.Errorf("rejected = %v", a.s.rejected)
	}
}

// TestRefusalClearsWhenTheSetInPlaceReturns: a refused set, then the
// running set mounted again: the refusal ends (status, metric, log).
func TestRefusalClearsWhenTheSetInPlaceReturns(t *testing.T) {
	w, a := pair(t)
	good := map[string][]byte{}
	for _, p := range []string{a.cfg.SourceKES, a.cfg.SourceVRF, a.cfg.SourceOpCert} {
		good[p], _ = os.ReadFile(p)
	}
	mount(t, a, testenv.KeySpec{Marker: "bad", Counter: 1, KESPeriod: testenv.MainnetKESPeriod(simEpoch), KES: 1, CertFor: 0})
	w.run(3 * time.Second)
	if a.s.board.load().Chain.CredentialsRefused == "" {
		t.Fatal("the broken set was not refused")
	}
	for p, b := range good {
		putSecret(t, p, b)
	}
	w.run(3 * time.Second)
	if r := a.s.board.load().Chain.CredentialsRefused; r != "" || !strings.Contains(a.log.String(), "mounted credential set valid again") {
		t.Errorf("refusal %q after the running set came back; want none, and the log saying so", r)
	}
}

// TestRotationConfirmedByTheKESGauge: new keys into a forging node that
// exports its KES gauge: one SIGHUP, confirmed when the gauge shows the new
// certificate's period, not by the forging gauge, which read 1 before.
func TestRotationConfirmedByTheKESGauge(t *testing.T) {
	w, a := pair(t)
	a.node.exportKES = true
	hups := a.node.hups
	mount(t, a, testenv.KeySpec{Marker: "next", Counter: 1, KESPeriod: testenv.MainnetKESPeriod(simEpoch), KES: 1, CertFor: 1})
	w.run(15 * time.Second)
	if a.node.hups != hups+1 || a.s.node.n.state != stateOn || a.s.node.n.loaded != a.s.digest {
		t.Errorf("%d SIGHUPs, state %s, loaded current %v; want 1, on, true", a.node.hups-hups, a.s.node.n.state, a.s.node.n.loaded == a.s.digest)
	}
	if m := a.s.board.load().Chain.NodeCertificateMismatch; m != "" {
		t.Errorf("mismatch %q", m)
	}
}

// TestRotationNotTakenIsRetried: the node keeps its old keys on the
// reload (as with a KES key it refuses) and forges on: the forging gauge's
// 1 does not confirm it; the reload is retried, backing off, and the
// mismatch reported; the leader keeps the lead and nobody else forges.
func TestRotationNotTakenIsRetried(t *testing.T) {
	w, a := pair(t)
	a.node.exportKES, a.node.refuseKES = true, true
	w.run(3 * time.Second)
	a.node.kesStart = int64(testenv.MainnetKESPeriod(time.Now()) - 1)
	hups := a.node.hups
	mount(t, a, testenv.KeySpec{Marker: "next", Counter: 1, KESPeriod: testenv.MainnetKESPeriod(simEpoch) + 0, KES: 1, CertFor: 1})
	w.run(120 * time.Second)
	// Each try waits SIGHUP_CONFIRM_TIMEOUT (5 s), then backs off 5, 10,
	// 20, 30 s: about 5 tries in 120 s; without backing off, 12.
	if n := a.node.hups - hups; n < 2 || n > 6 {
		t.Errorf("%d SIGHUPs in 120 s; want the reload retried, backing off", n)
	}
	if a.s.node.n.loaded == a.s.digest {
		t.Error("the reload counts as loaded although the node reports the old certificate")
	}
	if m := a.s.board.load().Chain.NodeCertificateMismatch; !strings.Contains(m, "did not load the set") {
		t.Errorf("mismatch %q; want it reported", m)
	}
	w.onlyForger("bp-0")
	w.noOverlap()
}

// fakeEvents records Events; fail makes the next writes fail.
type fakeEvents struct {
	got  []string
	fail int
}

func (f *fakeEvents) emit(_ context.Context, e event, _ string) error {
	if f.fail > 0 {
		f.fail--
		return errors.New("events: 503")
	}
	f.got = append(f.got, e.reason+": "+e.note)
	return nil
}

// only is what was said for these reasons, in order.
func (f *fakeEvents) only(reasons ...string) []string {
	var out []string
	for _, g := range f.got {
		for _, r := range reasons {
			if strings.HasPrefix(g, r+": ") {
				out = append(out, g)
			}
		}
	}
	return out
}

// TestEventOncePerRefusal: a refused set is one Warning Event, not one per
// pass; a failed write is retried; a new refusal after a good set is
// another Event.
func TestEventOncePerRefusal(t *testing.T) {
	w, a := pair(t)
	ev := &fakeEvents{fail: 2}
	hear(a, ev)
	good := map[string][]byte{}
	for _, p := range []string{a.cfg.SourceKES, a.cfg.SourceVRF, a.cfg.SourceOpCert} {
		good[p], _ = os.ReadFile(p)
	}
	bad := testenv.KeySpec{Marker: "bad", Counter: 1, KESPeriod: testenv.MainnetKESPeriod(simEpoch), KES: 1, CertFor: 0}
	mount(t, a, bad)
	w.run(20 * time.Second)
	if got := ev.only("CredentialsRefused"); len(got) != 1 || !strings.HasPrefix(got[0], "CredentialsRefused: SOURCE_KES_KEY does not belong") {
		t.Fatalf("events %q; want one CredentialsRefused after two failed writes", ev.got)
	}
	for p, b := range good {
		putSecret(t, p, b)
	}
	w.run(5 * time.Second)
	mount(t, a, bad)
	w.run(5 * time.Second)
	if got := ev.only("CredentialsRefused"); len(got) != 2 {
		t.Errorf("events %q; want a second one for the second refusal", ev.got)
	}
}
