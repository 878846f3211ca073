package main

// Kubernetes Events for what an operator must act on and that does not
// stop forging by itself (SPEC 12): a mounted credential set refused, a
// reload the node did not take, a counter the chain will not accept. Each
// is one Warning Event on this pod when it starts or its message changes,
// seen in `kubectl describe pod` and `kubectl get events`. Best effort:
// never in the way of forging (the report step, cut like every call), and
// a failed write is retried at the next pass.

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"k8s.io/client-go/rest"
)

// eventSink writes one Event about this pod.
type eventSink interface {
	emit(ctx context.Context, reason, message string, now time.Time) error
}

// kubeEvents writes core/v1 Events as JSON (no generated types).
type kubeEvents struct {
	rc                  *rest.RESTClient
	namespace, pod, uid string
}

func (k *kubeEvents) emit(ctx context.Context, reason, message string, now time.Time) error {
	stamp := now.UTC().Format(time.RFC3339)
	body, _ := json.Marshal(map[string]any{
		"apiVersion": "v1", "kind": "Event",
		"metadata": map[string]any{"generateName": k.pod + ".", "namespace": k.namespace},
		"involvedObject": map[string]any{"apiVersion": "v1", "kind": "Pod", "namespace": k.namespace,
			"name": k.pod, "uid": k.uid},
		"reason": reason, "message": truncate(message, 1024), "type": "Warning", "count": 1,
		"firstTimestamp": stamp, "lastTimestamp": stamp,
		"source":             map[string]any{"component": "forge-manager"},
		"reportingComponent": "forge-manager", "reportingInstance": k.pod,
	})
	_, err := k.rc.Post().AbsPath(fmt.Sprintf("/api/v1/namespaces/%s/events", k.namespace)).Body(body).DoRaw(ctx)
	return wrapAPI("create", "event", k.namespace, k.pod, err)
}

// noteEvents emits an Event for each condition that started or changed
// since the last pass; evented remembers what was said.
func (s *sidecar) noteEvents(ctx context.Context, v chainSnapshot) {
	if s.events == nil {
		return
	}
	if s.evented == nil {
		s.evented = map[string]string{}
	}
	for _, ev := range [][2]string{{"CredentialsRefused", v.CredentialsRefused}, {"CertificateNotLoaded", v.NodeCertificateMismatch},
		{"CounterAhead", v.CounterWarning}} {
		reason, msg := ev[0], ev[1]
		if msg == s.evented[reason] {
			continue
		}
		if msg != "" {
			if err := s.events.emit(ctx, reason, msg, s.now()); err != nil {
				s.m.apiError(apiOp(err))
				continue // said at the next pass
			}
		}
		s.evented[reason] = msg
	}
}
