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

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
)

// resync: the leader re-reads its CardanoLeader this often, so an object
// deleted or edited by hand is put right without writing in steady state.
const resync = time.Minute

type leaderObject struct {
	Metadata struct {
		Generation int64 `json:"generation"`
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
}

// statusWriter keeps the CardanoLeader status true with as few writes as
// possible.
type statusWriter struct {
	api           leaderAPI
	pod, identity string
	known         *leaderStatus // what the server holds, as last read or written
	generation    int64
	readAt        time.Time
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
	if reflect.DeepEqual(next, *w.known) {
		return false, nil
	}
	obj, err := w.api.patchStatus(ctx, next)
	if err != nil {
		w.known = nil // re-read next time: deleted by hand, or we do not know what landed
		return false, err
	}
	w.known, w.generation = &obj.Status, obj.Metadata.Generation
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
	w.known, w.generation, w.readAt = &obj.Status, obj.Metadata.Generation, now
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
		LastTransitionTime: old.LastTransitionTime, ObservedGeneration: w.generation,
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
	c.LastTransitionTime = stamp
	for _, oc := range old.Conditions {
		if oc.Type == c.Type && oc.Status == c.Status {
			c.LastTransitionTime = oc.LastTransitionTime
		}
	}
	st.Conditions = []condition{c}
	return st
}

// kubeLeaders is leaderAPI over the REST client.
type kubeLeaders struct {
	rc                     *rest.RESTClient
	group, version, plural string // CRD_GROUP, CRD_VERSION, CRD_PLURAL
	namespace, name        string
	labels                 map[string]string
}

var _ leaderAPI = (*kubeLeaders)(nil)

func (k *kubeLeaders) path(sub ...string) string {
	p := "/apis/" + k.group + "/" + k.version + "/namespaces/" + k.namespace + "/" + k.plural
	for _, s := range sub {
		p += "/" + s
	}
	return p
}

func (k *kubeLeaders) get(ctx context.Context) (*leaderObject, error) {
	b, err := k.rc.Get().AbsPath(k.path(k.name)).DoRaw(ctx)
	return decodeLeader(b, wrapAPI("get", "cardanoleader", k.namespace, k.name, err))
}

func (k *kubeLeaders) create(ctx context.Context) (*leaderObject, error) {
	body, _ := json.Marshal(map[string]any{
		"apiVersion": k.group + "/" + k.version, "kind": "CardanoLeader",
		"metadata": map[string]any{"name": k.name, "labels": k.labels}, "spec": map[string]any{},
	})
	b, err := k.rc.Post().AbsPath(k.path()).SetHeader("Content-Type", "application/json").Body(body).DoRaw(ctx)
	return decodeLeader(b, wrapAPI("create", "cardanoleader", k.namespace, k.name, err))
}

func (k *kubeLeaders) patchStatus(ctx context.Context, st leaderStatus) (*leaderObject, error) {
	body, _ := json.Marshal(map[string]any{"status": st})
	b, err := k.rc.Patch(types.MergePatchType).AbsPath(k.path(k.name, "status")).Body(body).DoRaw(ctx)
	return decodeLeader(b, wrapAPI("patch", "cardanoleader", k.namespace, k.name, err))
}

func decodeLeader(b []byte, err error) (*leaderObject, error) {
	if err != nil {
		return nil, err
	}
	obj := &leaderObject{}
	if err := json.Unmarshal(b, obj); err != nil {
		return nil, err
	}
	return obj, nil
}
