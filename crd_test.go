//go:build integration

package main

// CardanoLeader status (crd.go) against the real API server, written with
// the sidecar's own ServiceAccount.

import (
	"context"
	"encoding/json"
	"testing"
	"time"
)

type leaderEnv struct {
	t      *testing.T
	ns     string
	sa     *kubeLeaders
	admin  *kubeLeaders
	cfg    *config
	tenant tenant
}

func newLeaderEnv(t *testing.T) *leaderEnv {
	tn := newTenant(t)
	c, err := loadConfig(runEnv("NAMESPACE", tn.Namespace, "POOL_ID", "mypool").lookup, "run")
	if err != nil {
		t.Fatal(err)
	}
	tt := resolveTenant(c)
	return &leaderEnv{t: t, ns: tn.Namespace, cfg: c, tenant: tt,
		sa:    leaderObjectOf(restClientFor(t, tn.SA), c, tt),
		admin: leaderObjectOf(restClientFor(t, controlPlane(t).AdminConfig()), c, tt),
	}
}

// object reads the CardanoLeader as admin: status and resourceVersion.
func (e *leaderEnv) object() (leaderStatus, string, map[string]string) {
	e.t.Helper()
	b, err := e.admin.rc.Get().AbsPath(e.admin.path(e.tenant.Leader)).DoRaw(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	var obj struct {
		Metadata struct {
			ResourceVersion string            `json:"resourceVersion"`
			Labels          map[string]string `json:"labels"`
		} `json:"metadata"`
		Status leaderStatus `json:"status"`
	}
	json.Unmarshal(b, &obj)
	return obj.Status, obj.Metadata.ResourceVersion, obj.Metadata.Labels
}

func mustSync(t *testing.T, w *statusWriter, now time.Time, f leaderFacts) bool {
	t.Helper()
	wrote, err := w.sync(context.Background(), now, f)
	if err != nil {
		t.Fatal(err)
	}
	return wrote
}

func TestLeaderStatusWrittenOnlyOnChange(t *testing.T) {
	e := newLeaderEnv(t)
	w := newStatusWriter(e.sa, "bp-0", "bp-0_uid-a")
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	ep := epoch{UID: "lease-1", Transitions: 3}
	if !mustSync(t, w, now, leaderFacts{forging: false, why: "enabling", epoch: ep}) {
		t.Fatal("first sync created nothing")
	}
	st, rv, labels := e.object()
	if st.LeaderPod != "bp-0" || st.ForgingEnabled || st.LeaseTransitions != 3 || st.ObservedGeneration != 1 {
		t.Errorf("status after first sync: %+v", st)
	}
	if labels["cardano.io/pool-id"] != "mypool" || labels["app.kubernetes.io/managed-by"] != "forge-manager" {
		t.Errorf("labels: %v", labels)
	}
	// Steady state: no writes at all.
	for i := 0; i < 5; i++ {
		now = now.Add(2 * time.Second)
		if mustSync(t, w, now, leaderFacts{forging: false, why: "enabling", epoch: ep}) {
			t.Fatalf("sync %d wrote an unchanged status", i)
		}
	}
	if _, rv2, _ := e.object(); rv2 != rv {
		t.Errorf("resourceVersion moved from %s to %s without a change", rv, rv2)
	}
	// A real transition moves the times; the next identical sync does not.
	now = now.Add(time.Second)
	if !mustSync(t, w, now, leaderFacts{forging: true, epoch: ep}) {
		t.Fatal("forging transition not written")
	}
	st2, _, _ := e.object()
	want := now.Format(time.RFC3339)
	if !st2.ForgingEnabled || st2.LastTransitionTime != want || st2.Conditions[0].LastTransitionTime != want || st2.Conditions[0].Status != "True" {
		t.Errorf("after enabling: %+v; want forging with transition time %s", st2, want)
	}
	if mustSync(t, w, now.Add(2*time.Second), leaderFacts{forging: true, epoch: ep}) {
		t.Error("wrote again without a change")
	}
}

// TestLeaderStatusStaleEntryCorrected: a dead leader's entry is replaced by
// the next leader's, at its first sync.
func TestLeaderStatusStaleEntryCorrected(t *testing.T) {
	e := newLeaderEnv(t)
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	dead := newStatusWriter(e.sa, "bp-0", "bp-0_uid-a")
	mustSync(t, dead, now, leaderFacts{forging: true, epoch: epoch{"l", 1}})
	next := newStatusWriter(e.sa, "bp-1", "bp-1_uid-b")
	now = now.Add(20 * time.Second)
	if !mustSync(t, next, now, leaderFacts{forging: true, epoch: epoch{"l", 2}}) {
		t.Fatal("new leader did not correct the stale entry")
	}
	st, _, _ := e.object()
	if st.LeaderPod != "bp-1" || st.HolderIdentity != "bp-1_uid-b" || st.LeaseTransitions != 2 || st.LastTransitionTime != now.Format(time.RFC3339) {
		t.Errorf("status %+v; want bp-1 at epoch 2 since %s", st, now)
	}
	// The forging condition did not change status, so it keeps its time.
	if st.Conditions[0].LastTransitionTime != "2026-11-25T10:00:00Z" {
		t.Errorf("condition time %s moved although forging stayed true", st.Conditions[0].LastTransitionTime)
	}
}

// TestLeaderStatusRecreated: an object deleted by hand comes back, at the
// next write or at the next resync.
func TestLeaderStatusRecreated(t *testing.T) {
	e := newLeaderEnv(t)
	w := newStatusWriter(e.sa, "bp-0", "bp-0_uid-a")
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	mustSync(t, w, now, leaderFacts{forging: true, epoch: epoch{"l", 1}})
	del := func() {
		if err := e.admin.rc.Delete().AbsPath(e.admin.path(e.tenant.Leader)).Do(context.Background()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	del()
	// Steady state: noticed at the resync.
	if mustSync(t, w, now.Add(resync/2), leaderFacts{forging: true, epoch: epoch{"l", 1}}) {
		t.Error("wrote before the resync although nothing changed")
	}
	if !mustSync(t, w, now.Add(resync+time.Second), leaderFacts{forging: true, epoch: epoch{"l", 1}}) {
		t.Fatal("deleted object not recreated at the resync")
	}
	if st, _, _ := e.object(); st.LeaderPod != "bp-0" || !st.ForgingEnabled {
		t.Errorf("recreated status %+v", st)
	}
	// With a change to write: the failed patch makes it read, create and
	// write on the next pass.
	del()
	later := now.Add(resync + 2*time.Second)
	if _, err := w.sync(context.Background(), later, leaderFacts{forging: false, epoch: epoch{"l", 1}}); err == nil {
		t.Error("patch of a deleted object succeeded")
	}
	if !mustSync(t, w, later.Add(time.Second), leaderFacts{forging: false, epoch: epoch{"l", 1}}) {
		t.Fatal("not recreated after the failed patch")
	}
	if st, _, _ := e.object(); st.ForgingEnabled {
		t.Errorf("recreated status %+v; want forging false", st)
	}
}

// TestLeaderStatusKeysAndRefusal: the keys' facts and a refused set reach
// the CardanoLeader through the real API server's schema (nothing pruned,
// so a steady status is not rewritten), with the CredentialsAccepted
// condition.
func TestLeaderStatusKeysAndRefusal(t *testing.T) {
	e := newLeaderEnv(t)
	w := newStatusWriter(e.sa, "bp-0", "bp-0_uid-a")
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	ep := epoch{UID: "lease-1", Transitions: 3}
	keys := keyStatus{KeysPoolID: ptr("pool1pu5jlj4q9w9jlxeu370a3c9myx47md5j5m2str0naunn2q3lkdy"), OpCertCounter: ptr(uint64(4)),
		HighestOpCertCounter: ptr(uint64(4)), KESPeriodStart: ptr(uint64(1500)), KESExpires: ptr("2027-01-01T00:00:00Z")}
	f := leaderFacts{forging: true, epoch: ep, keys: keys, refused: "SOURCE_KES_KEY does not belong to SOURCE_OP_CERT"}
	mustSync(t, w, now, f)
	if mustSync(t, w, now.Add(2*time.Second), f) {
		t.Error("an unchanged status with keys was written again: a field pruned by the schema?")
	}
	st, _, _ := e.object()
	if st.KeysPoolID == nil || *st.KeysPoolID != *keys.KeysPoolID || st.HighestOpCertCounter == nil || *st.HighestOpCertCounter != 4 || st.KESExpires == nil {
		t.Errorf("keys in the status: %+v", st.keyStatus)
	}
	// The record reset and the keys gone: the fields are removed (a merge
	// patch removes only what is sent as null), and then nothing is written.
	f.keys = keyStatus{}
	mustSync(t, w, now.Add(4*time.Second), f)
	if mustSync(t, w, now.Add(6*time.Second), f) {
		t.Error("written again after the keys' fields went: the merge patch did not remove them")
	}
	if st, _, _ := e.object(); st.KeysPoolID != nil || st.HighestOpCertCounter != nil {
		t.Errorf("keys still in the status: %+v", st.keyStatus)
	}
	if len(st.Conditions) != 2 || st.Conditions[1].Type != "CredentialsAccepted" || st.Conditions[1].Status != "False" || st.Conditions[1].Reason != "Refused" {
		t.Errorf("conditions %+v", st.Conditions)
	}
}
