package main

// The CardanoLeader custom resource (deploy/crds): one per tenant, written only
// by the leader, only through the /status subresource with a JSON merge
// patch, and only when its content changes, so a steady state costs no
// writes. Custom resources travel as plain JSON through the REST client.

import (
	"context"
	"encoding/json"
	"reflect"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
)

// resync: the leader re-reads its CardanoLeader this often, so an object
// deleted or edited by hand is put right without writing in steady state.
const resync = time.Minute

type leaderObject struct {
	Metadata struct {
		Generation int64  `json:"generation"`
		UID        string `json:"uid"`
	} `json:"metadata"`
	Status leaderStatus `json:"status"`
}

type leaderStatus struct {
	LeaderPod          string      `json:"leaderPod"`
	HolderIdentity     string      `json:"holderIdentity"`
	ForgingEnabled     bool        `json:"forgingEnabled"`
	LeaseTransitions   int32       `json:"leaseTransitions"`
	LeaseUID           string      `json:"leaseUID"`
	LastTransitionTime string      `json:"lastTransitionTime,omitempty"`
	ObservedGeneration int64       `json:"observedGeneration"`
	Conditions         []condition `json:"conditions"`
	keyStatus
}

// keyStatus is what the leader's credentials say (SPEC 12): values that
// change only with the keys, so the status is still written on change only.
// The status is written as a JSON merge patch, in which only a null
// removes a field: so no omitempty here.
type keyStatus struct {
	KeysPoolID           *string `json:"keysPoolID"` // proven by the cold key, bech32
	OpCertCounter        *uint64 `json:"opCertCounter"`
	HighestOpCertCounter *uint64 `json:"highestOpCertCounter"` // the record on the Lease
	KESPeriodStart       *uint64 `json:"kesPeriodStart"`
	KESExpires           *string `json:"kesExpires"`
}

// condition has the standard shape (metav1.Condition).
type condition struct {
	Type               string `json:"type"`
	Status             string `json:"status"`
	ObservedGeneration int64  `json:"observedGeneration"`
	LastTransitionTime string `json:"lastTransitionTime"`
	Reason             string `json:"reason"`
	Message            string `json:"message"`
}

// leaderAPI is the API access the status writer needs.
type leaderAPI interface {
	get(ctx context.Context) (*leaderObject, error)
	create(ctx context.Context) (*leaderObject, error)
	patchStatus(ctx context.Context, st leaderStatus) (*leaderObject, error)
}

// leaderFacts is what the leader reports; the writer turns it into status.
type leaderFacts struct {
	forging bool   // confirmed by the node
	why     string // why not, if not
	epoch   epoch
	keys    keyStatus
	refused string // the mounted credential set refused, and why ("" when none)
}

// statusWriter keeps the CardanoLeader status true with as few writes as
// possible.
type statusWriter struct {
	api           leaderAPI
	pod, identity string
	known         *leaderStatus // what the server holds, as last read or written
	// sent is the status last written, until the next read: a server that
	// stores it otherwise (a field its schema prunes) is not written the
	// same again every pass, only once per resync.
	sent       *leaderStatus
	generation int64
	readAt     time.Time
	uid        string // the CardanoLeader's, for Events about it (events.go)
}

func newStatusWriter(api leaderAPI, pod, identity string) *statusWriter {
	return &statusWriter{api: api, pod: pod, identity: identity}
}

// sync makes the server's status say f. It reads the object when it does
// not know it (first time as leader, after an error, every resync) and
// creates it if missing; it writes only a real change.
func (w *statusWriter) sync(ctx context.Context, now time.Time, f leaderFacts) (wrote bool, err error) {
	if w.known == nil || now.Sub(w.readAt) > resync {
		if err := w.read(ctx, now); err != nil {
			return false, err
		}
	}
	next := w.desired(now, f)
	if reflect.DeepEqual(next, *w.known) || (w.sent != nil && reflect.DeepEqual(next, *w.sent)) {
		return false, nil
	}
	obj, err := w.api.patchStatus(ctx, next)
	if err != nil {
		w.known = nil // re-read next time: deleted by hand, or we do not know what landed
		return false, err
	}
	w.known, w.generation, w.sent = &obj.Status, obj.Metadata.Generation, &next
	return true, nil
}

func (w *statusWriter) read(ctx context.Context, now time.Time) error {
	obj, err := w.api.get(ctx)
	if apierrors.IsNotFound(err) {
		obj, err = w.api.create(ctx)
	}
	if err != nil {
		return err
	}
	w.known, w.generation, w.readAt, w.sent, w.uid = &obj.Status, obj.Metadata.Generation, now, nil, obj.Metadata.UID
	return nil
}

// forget drops what the writer knows, so the next leadership starts with a
// read: a stale entry from a dead leader is then corrected, never assumed.
func (w *statusWriter) forget() { w.known = nil }

// desired is the status for f. Times move only on real transitions: who
// leads, under which epoch, and whether it forges.
func (w *statusWriter) desired(now time.Time, f leaderFacts) leaderStatus {
	old := *w.known
	st := leaderStatus{
		LeaderPod: w.pod, HolderIdentity: w.identity, ForgingEnabled: f.forging,
		LeaseTransitions: f.epoch.Transitions, LeaseUID: f.epoch.UID,
		LastTransitionTime: old.LastTransitionTime, ObservedGeneration: w.generation, keyStatus: f.keys,
	}
	stamp := now.UTC().Format(time.RFC3339)
	if st.LeaderPod != old.LeaderPod || st.HolderIdentity != old.HolderIdentity || st.ForgingEnabled != old.ForgingEnabled ||
		st.LeaseTransitions != old.LeaseTransitions || st.LeaseUID != old.LeaseUID || st.LastTransitionTime == "" {
		st.LastTransitionTime = stamp
	}
	c := condition{Type: "Forging", Status: "True", Reason: "NodeConfirmed", Message: "the leader's node confirmed forging", ObservedGeneration: w.generation}
	if !f.forging {
		c.Status, c.Reason, c.Message = "False", "NotForging", f.why
	}
	cr := condition{Type: "CredentialsAccepted", Status: "True", Reason: "Valid", Message: "the mounted credential set passes every check", ObservedGeneration: w.generation}
	if f.refused != "" {
		cr.Status, cr.Reason, cr.Message = "False", "Refused", f.refused
	}
	st.Conditions = []condition{stamped(c, old.Conditions, now), stamped(cr, old.Conditions, now)}
	return st
}

// stamped gives c the transition time of the same condition in old when
// its status did not change, else now.
func stamped(c condition, old []condition, now time.Time) condition {
	c.LastTransitionTime = now.UTC().Format(time.RFC3339)
	for _, oc := range old {
		if oc.Type == c.Type && oc.Status == c.Status {
			c.LastTransitionTime = oc.LastTransitionTime
		}
	}
	return c
}

// kubeObject is one custom resource over the REST client, as raw JSON:
// read, created with a spec, its status merge-patched.
type kubeObject struct {
	rc                     *rest.RESTClient
	group, version, plural string // CRD_GROUP, CRD_VERSION, CRD_PLURAL
	kind, resource         string // for the body, and for errors
	namespace, name        string
	labels                 map[string]string
}

func (k *kubeObject) path(sub ...string) string {
	p := "/apis/" + k.group + "/" + k.version + "/namespaces/" + k.namespace + "/" + k.plural
	for _, s := range sub {
		p += "/" + s
	}
	return p
}

func (k *kubeObject) get(ctx context.Context) ([]byte, error) {
	b, err := k.rc.Get().AbsPath(k.path(k.name)).DoRaw(ctx)
	return b, wrapAPI("get", k.resource, k.namespace, k.name, err)
}

func (k *kubeObject) create(ctx context.Context, spec any) ([]byte, error) {
	body, _ := json.Marshal(map[string]any{
		"apiVersion": k.group + "/" + k.version, "kind": k.kind,
		"metadata": map[string]any{"name": k.name, "labels": k.labels}, "spec": spec,
	})
	b, err := k.rc.Post().AbsPath(k.path()).SetHeader("Content-Type", "application/json").Body(body).DoRaw(ctx)
	return b, wrapAPI("create", k.resource, k.namespace, k.name, err)
}

func (k *kubeObject) patchStatus(ctx context.Context, st any) ([]byte, error) {
	body, _ := json.Marshal(map[string]any{"status": st})
	b, err := k.rc.Patch(types.MergePatchType).AbsPath(k.path(k.name, "status")).Body(body).DoRaw(ctx)
	return b, wrapAPI("patch", k.resource, k.namespace, k.name, err)
}

// kubeLeaders is leaderAPI over the REST client.
type kubeLeaders struct{ kubeObject }

var _ leaderAPI = (*kubeLeaders)(nil)

func (k *kubeLeaders) get(ctx context.Context) (*leaderObject, error) {
	return decodeJSON[leaderObject](k.kubeObject.get(ctx))
}

func (k *kubeLeaders) create(ctx context.Context) (*leaderObject, error) {
	return decodeJSON[leaderObject](k.kubeObject.create(ctx, map[string]any{}))
}

func (k *kubeLeaders) patchStatus(ctx context.Context, st leaderStatus) (*leaderObject, error) {
	return decodeJSON[leaderObject](k.kubeObject.patchStatus(ctx, st))
}

// decodeJSON decodes an answer, or passes its error on.
func decodeJSON[T any](b []byte, err error) (*T, error) {
	if err != nil {
		return nil, err
	}
	obj := new(T)
	if err := json.Unmarshal(b, obj); err != nil {
		return nil, err
	}
	return obj, nil
}

// The CardanoForgeCluster (deploy/crds/cardanoforgecluster.yaml): one per
// region and tenant in the coordination API server. Its spec is the
// operator's, read every CLUSTER_RETRY_PERIOD by the region's local leader
// and never written after creation; its status is the leader's, written on
// change only (cluster.go).
type forgeClusterObject struct {
	Metadata struct {
		Name       string `json:"name"`
		Generation int64  `json:"generation"`
	} `json:"metadata"`
	Spec   forgeClusterSpec   `json:"spec"`
	Status forgeClusterStatus `json:"status"`
}

type forgeClusterSpec struct {
	Network struct {
		Name  string `json:"name"`
		Magic int64  `json:"magic"`
	} `json:"network"`
	Region     string         `json:"region"`
	Priority   *int           `json:"priority,omitempty"`
	ForgeState string         `json:"forgeState,omitempty"`
	Override   *forgeOverride `json:"override,omitempty"`
}

type forgeOverride struct {
	Enabled       bool   `json:"enabled"`
	Reason        string `json:"reason,omitempty"`
	ForceState    string `json:"forceState,omitempty"`
	ForcePriority *int   `json:"forcePriority,omitempty"`
	ExpiresAt     string `json:"expiresAt,omitempty"`
}

type forgeClusterStatus struct {
	EffectiveState     string        `json:"effectiveState,omitempty"`
	EffectivePriority  int           `json:"effectivePriority,omitempty"`
	ActiveLeader       string        `json:"activeLeader"`
	ForgingEnabled     bool          `json:"forgingEnabled"`
	HealthStatus       *healthStatus `json:"healthStatus,omitempty"`
	Conditions         []condition   `json:"conditions"`
	ObservedGeneration int64         `json:"observedGeneration"`
}

type healthStatus struct {
	Healthy             bool   `json:"healthy"`
	ConsecutiveFailures int    `json:"consecutiveFailures"`
	LastProbeTime       string `json:"lastProbeTime,omitempty"` // the check that last changed the verdict
	Message             string `json:"message"`
}

// clusterAPI is the coordination API server access cluster.go needs.
type clusterAPI interface {
	getForgeCluster(ctx context.Context) (*forgeClusterObject, error)
	createForgeCluster(ctx context.Context) (*forgeClusterObject, error)
	patchForgeClusterStatus(ctx context.Context, st forgeClusterStatus) (*forgeClusterObject, error)
	candidacies(ctx context.Context) ([]coordinationv1.Lease, error)
	getCandidacy(ctx context.Context) (*coordinationv1.Lease, error)
	putCandidacy(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error)
}

// forgeClusterBody is what a created CardanoForgeCluster says: this
// StatefulSet's configuration, which the operator may then change.
type forgeClusterBody struct {
	Network         string
	Magic           uint32
	PoolID, PoolHex string
	PoolName        string
	Ticker          string
	Region          string
	Priority        int
}

// kubeCluster is clusterAPI over the REST client of the coordination API
// server.
type kubeCluster struct {
	cr        kubeObject
	body      forgeClusterBody
	candidacy *kubeLeases // this region's
	selector  string      // every region's candidacy of the pool
}

var _ clusterAPI = (*kubeCluster)(nil)

func (k *kubeCluster) getForgeCluster(ctx context.Context) (*forgeClusterObject, error) {
	return decodeJSON[forgeClusterObject](k.cr.get(ctx))
}

func (k *kubeCluster) createForgeCluster(ctx context.Context) (*forgeClusterObject, error) {
	b := k.body
	pool := map[string]any{}
	for key, v := range map[string]string{"id": b.PoolID, "idHex": b.PoolHex, "name": b.PoolName, "ticker": b.Ticker} {
		if v != "" {
			pool[key] = v
		}
	}
	spec := map[string]any{"network": map[string]any{"name": b.Network, "magic": b.Magic}, "region": b.Region,
		"priority": b.Priority, "forgeState": forgePriorityBased}
	if len(pool) > 0 {
		spec["pool"] = pool
	}
	return decodeJSON[forgeClusterObject](k.cr.create(ctx, spec))
}

func (k *kubeCluster) patchForgeClusterStatus(ctx context.Context, st forgeClusterStatus) (*forgeClusterObject, error) {
	return decodeJSON[forgeClusterObject](k.cr.patchStatus(ctx, st))
}

func (k *kubeCluster) candidacies(ctx context.Context) ([]coordinationv1.Lease, error) {
	return k.candidacy.list(ctx, k.selector)
}

func (k *kubeCluster) getCandidacy(ctx context.Context) (*coordinationv1.Lease, error) {
	return k.candidacy.get(ctx)
}

// putCandidacy creates this region's candidacy, or updates it with the
// resourceVersion last read; either way with its labels, which the list
// finds it by.
func (k *kubeCluster) putCandidacy(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	if l.ResourceVersion == "" {
		return k.candidacy.create(ctx, l)
	}
	l.Labels = k.candidacy.labels
	return k.candidacy.update(ctx, l)
}
