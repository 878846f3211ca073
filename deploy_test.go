//go:build integration

package main

// Tests of the manifests in deploy/ against the real API server: the CRDs'
// schemas and the least-privilege Role.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
)

// apiDo sends one request as the given identity and returns the error the
// server gave, if any.
func apiDo(rc *rest.RESTClient, method, path string, body any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := rc.Verb(method).AbsPath(path)
	if strings.Contains(path, "?") {
		req = rc.Verb(method).RequestURI(path)
	}
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		req = req.Body(b)
		if method == http.MethodPatch {
			req = req.SetHeader("Content-Type", "application/merge-patch+json")
		}
	}
	return req.Do(ctx).Error()
}

func forgeCluster(name string, spec map[string]any) map[string]any {
	return map[string]any{
		"apiVersion": "cardano.io/v1", "kind": "CardanoForgeCluster",
		"metadata": map[string]any{"name": name},
		"spec":     spec,
	}
}

func validSpec() map[string]any {
	return map[string]any{
		"network":    map[string]any{"name": "mainnet", "magic": 764824073},
		"pool":       map[string]any{"id": bech32Pool, "idHex": strings.Repeat("0f", 28), "name": "My Pool", "ticker": "MYPL"},
		"region":     "us-east-1",
		"priority":   1,
		"forgeState": "Priority-based",
		"healthCheck": map[string]any{"enabled": true, "endpoint": "http://127.0.0.1:12798/health",
			"interval": "30s", "timeout": "5", "failureThreshold": 3},
		"override": map[string]any{"enabled": true, "reason": "maintenance", "forceState": "Disabled",
			"forcePriority": 999, "expiresAt": "2026-12-01T00:00:00Z"},
	}
}

func TestCRDsAcceptValidObjects(t *testing.T) {
	tn := newTenant(t)
	admin := restClientFor(t, controlPlane(t).AdminConfig())
	base := "/apis/cardano.io/v1/namespaces/" + tn.Namespace
	if err := apiDo(admin, "POST", base+"/cardanoforgeclusters", forgeCluster("ok", validSpec())); err != nil {
		t.Fatalf("valid CardanoForgeCluster rejected: %v", err)
	}
	leader := map[string]any{"apiVersion": "cardano.io/v1", "kind": "CardanoLeader", "metadata": map[string]any{"name": "cardano-leader"}, "spec": map[string]any{}}
	if err := apiDo(admin, "POST", base+"/cardanoleaders", leader); err != nil {
		t.Fatalf("CardanoLeader rejected: %v", err)
	}
	status := map[string]any{"status": map[string]any{
		"leaderPod": "bp-0", "holderIdentity": "bp-0_0b7c", "forgingEnabled": true, "leaseTransitions": 3,
		"leaseUID": "6c1f", "lastTransitionTime": "2026-11-25T10:00:00Z", "observedGeneration": 1,
		"conditions": []any{map[string]any{"type": "Forging", "status": "True", "reason": "NodeConfirmed", "message": "", "lastTransitionTime": "2026-11-25T10:00:00Z", "observedGeneration": 1}},
	}}
	if err := apiDo(admin, "PATCH", base+"/cardanoleaders/cardano-leader/status", status); err != nil {
		t.Fatalf("status patch rejected: %v", err)
	}
	out, err := controlPlane(t).Kubectl("get", "cardanoleaders", "-n", tn.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	for _, col := range []string{"LEADER", "FORGING", "EPOCH", "bp-0", "true", "3"} {
		if !strings.Contains(string(out), col) {
			t.Errorf("kubectl get cardanoleaders lacks %q:\n%s", col, out)
		}
	}
}

// TestCRDRejectsInvalid: the server's schema refuses what the configuration
// refuses.
func TestCRDRejectsInvalid(t *testing.T) {
	tn := newTenant(t)
	admin := restClientFor(t, controlPlane(t).AdminConfig())
	tests := []struct {
		name  string
		field string
		edit  func(s map[string]any)
	}{
		{"priority zero", "spec.priority", func(s map[string]any) { s["priority"] = 0 }},
		{"priority 1000", "spec.priority", func(s map[string]any) { s["priority"] = 1000 }},
		{"forgeState unknown", "spec.forgeState", func(s map[string]any) { s["forgeState"] = "On" }},
		{"forgeState lower case", "spec.forgeState", func(s map[string]any) { s["forgeState"] = "enabled" }},
		{"override forceState", "spec.override.forceState", func(s map[string]any) { s["override"].(map[string]any)["forceState"] = "Priority-based" }},
		{"override priority", "spec.override.forcePriority", func(s map[string]any) { s["override"].(map[string]any)["forcePriority"] = 0 }},
		{"override expiry not a time", "spec.override.expiresAt", func(s map[string]any) { s["override"].(map[string]any)["expiresAt"] = "tomorrow" }},
		{"network upper case", "spec.network.name", func(s map[string]any) { s["network"].(map[string]any)["name"] = "Mainnet" }},
		{"magic negative", "spec.network.magic", func(s map[string]any) { s["network"].(map[string]any)["magic"] = -1 }},
		{"magic too large", "spec.network.magic", func(s map[string]any) { s["network"].(map[string]any)["magic"] = 4294967296 }},
		{"pool hex", "spec.pool.idHex", func(s map[string]any) { s["pool"].(map[string]any)["idHex"] = "abcd" }},
		{"ticker", "spec.pool.ticker", func(s map[string]any) { s["pool"].(map[string]any)["ticker"] = "MY POOL" }},
		{"region", "spec.region", func(s map[string]any) { s["region"] = "US_EAST" }},
		{"health interval", "spec.healthCheck.interval", func(s map[string]any) { s["healthCheck"].(map[string]any)["interval"] = "soon" }},
		{"health threshold", "spec.healthCheck.failureThreshold", func(s map[string]any) { s["healthCheck"].(map[string]any)["failureThreshold"] = 0 }},
		{"health endpoint", "spec.healthCheck.endpoint", func(s map[string]any) { s["healthCheck"].(map[string]any)["endpoint"] = "localhost:12798" }},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := validSpec()
			tc.edit(spec)
			err := apiDo(admin, "POST", "/apis/cardano.io/v1/namespaces/"+tn.Namespace+"/cardanoforgeclusters", forgeCluster(fmt.Sprintf("bad-%d", i), spec))
			if !apierrors.IsInvalid(err) {
				t.Fatalf("got %v; want 422 Invalid", err)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error does not name %s: %v", tc.field, err)
			}
		})
	}
}

// TestServerAcceptsConfiguredNames: every name, label and spec value the
// configuration accepts, the API server accepts too.
func TestServerAcceptsConfiguredNames(t *testing.T) {
	tn := newTenant(t)
	admin := restClientFor(t, controlPlane(t).AdminConfig())
	cases := [][]string{
		nil,
		{"POOL_ID", "STAKE-POOL-A", "CLUSTER_REGION", "us-east-1"},
		{"POOL_ID", bech32Pool, "CARDANO_NETWORK", "preprod", "POOL_TICKER", strings.Repeat("T", 16)},
		{"POOL_ID", strings.Repeat("x", 256), "CARDANO_NETWORK", "preview", "CLUSTER_REGION", strings.Repeat("r", 63)},
		{"POOL_ID", "Pool with spaces/and:slashes", "CARDANO_NETWORK", strings.Repeat("n", 63), "NETWORK_MAGIC", "4294967295", "SYSTEM_START", "2024-01-01T00:00:00Z"},
		{"POOL_ID", "é-ü", "CLUSTER_PRIORITY", "999", "POOL_NAME", strings.Repeat("ñ", 64)},
		{"LEASE_NAME", strings.Repeat("l", 63), "CRD_NAME", "a.b.c", "CLUSTER_IDENTIFIER", "x"},
	}
	for i, kv := range cases {
		c, err := loadConfig(runEnv(append(kv, "POOL_ID_HEX", strings.Repeat("ab", 28))...).lookup, "run")
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		tt := resolveTenant(c)
		meta := func(name string) map[string]any {
			return map[string]any{"name": name, "labels": tt.Labels}
		}
		ns := "/namespaces/" + tn.Namespace
		lease := map[string]any{"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta(tt.Lease)}
		if err := apiDo(admin, "POST", "/apis/coordination.k8s.io/v1"+ns+"/leases", lease); err != nil {
			t.Errorf("case %d: Lease %q: %v", i, tt.Lease, err)
		}
		leader := map[string]any{"apiVersion": "cardano.io/v1", "kind": "CardanoLeader", "metadata": meta(tt.Leader)}
		if err := apiDo(admin, "POST", "/apis/cardano.io/v1"+ns+"/cardanoleaders", leader); err != nil {
			t.Errorf("case %d: CardanoLeader %q: %v", i, tt.Leader, err)
		}
		spec := map[string]any{
			"network":  map[string]any{"name": c.Network, "magic": c.NetworkMagic},
			"pool":     map[string]any{"id": c.PoolID, "idHex": c.PoolIDHex, "name": c.PoolName, "ticker": c.PoolTicker},
			"region":   c.Region,
			"priority": c.Priority,
			"healthCheck": map[string]any{"interval": c.HealthInterval.String(), "timeout": "5",
				"failureThreshold": c.HealthThreshold},
		}
		fc := forgeCluster(tt.Cluster, spec)
		fc["metadata"] = meta(tt.Cluster)
		if err := apiDo(admin, "POST", "/apis/cardano.io/v1"+ns+"/cardanoforgeclusters", fc); err != nil {
			t.Errorf("case %d: CardanoForgeCluster %q: %v", i, tt.Cluster, err)
		}
	}
}

// eventObject is an Event about a pod in ns: events.k8s.io/v1 as events.go
// writes one (version "events.k8s.io/v1"), or core/v1 ("v1").
func eventObject(version, ns string) map[string]any {
	pod := map[string]any{"apiVersion": "v1", "kind": "Pod", "namespace": ns, "name": "bp-0"}
	o := map[string]any{"apiVersion": version, "kind": "Event", "metadata": map[string]any{"generateName": "bp-0-", "namespace": ns},
		"reason": "CredentialsRefused", "type": "Warning"}
	if version == "v1" {
		o["involvedObject"], o["message"] = pod, "test"
		return o
	}
	o["regarding"], o["note"], o["action"] = pod, "test", "Refuse"
	o["eventTime"], o["reportingController"], o["reportingInstance"] = time.Now().UTC().Format("2006-01-02T15:04:05.000000Z"), "cardano.io/forge-manager", "bp-0"
	return o
}

// checkRole fails t unless err is what the Role must give: nil when
// allowed, Forbidden when not.
func checkRole(t *testing.T, what string, allowed bool, err error) {
	t.Helper()
	switch {
	case allowed && err != nil:
		t.Errorf("%s: the Role must allow it, got %v", what, err)
	case !allowed && !apierrors.IsForbidden(err):
		t.Errorf("%s: the Role must forbid it, got %v", what, err)
	}
}

// TestRoleIsLeastPrivilege: the shipped Role lets the ServiceAccount do
// exactly what forge-manager does, checked by real requests with the
// ServiceAccount's own token.
func TestRoleIsLeastPrivilege(t *testing.T) {
	tn := newTenant(t)
	other := newTenant(t)
	sa := restClientFor(t, tn.SA)
	admin := restClientFor(t, controlPlane(t).AdminConfig())
	lease := func(ns, name string) map[string]any {
		return map[string]any{"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": map[string]any{"name": name, "namespace": ns}}
	}
	leases := "/apis/coordination.k8s.io/v1/namespaces/" + tn.Namespace + "/leases"
	otherLeases := "/apis/coordination.k8s.io/v1/namespaces/" + other.Namespace + "/leases"
	leaders := "/apis/cardano.io/v1/namespaces/" + tn.Namespace + "/cardanoleaders"
	clusters := "/apis/cardano.io/v1/namespaces/" + tn.Namespace + "/cardanoforgeclusters"
	events := "/apis/events.k8s.io/v1/namespaces/" + tn.Namespace + "/events"
	if err := apiDo(admin, "POST", otherLeases, lease(other.Namespace, "theirs")); err != nil {
		t.Fatal(err)
	}
	if err := apiDo(admin, "POST", clusters, forgeCluster("mine", validSpec())); err != nil {
		t.Fatal(err)
	}
	leader := map[string]any{"apiVersion": "cardano.io/v1", "kind": "CardanoLeader", "metadata": map[string]any{"name": "l"}}
	mergeStatus := map[string]any{"status": map[string]any{"leaderPod": "bp-0"}}

	steps := []struct {
		what         string
		method, path string
		body         any
		allowed      bool
	}{
		{"create its Lease", "POST", leases, lease(tn.Namespace, "mine"), true},
		{"get its Lease", "GET", leases + "/mine", nil, true},
		{"update its Lease", "PUT", leases + "/mine", nil, true}, // body filled below
		{"delete its Lease", "DELETE", leases + "/mine", nil, false},
		{"patch its Lease", "PATCH", leases + "/mine", map[string]any{"metadata": map[string]any{"labels": map[string]any{"x": "y"}}}, false},
		{"list Leases (get already reads each)", "GET", leases, nil, true},
		{"watch its Lease", "GET", leases + "?watch=true&timeoutSeconds=1&fieldSelector=metadata.name%3Dmine", nil, true},
		{"list Leases in another namespace", "GET", otherLeases, nil, false},
		{"get a Lease in another namespace", "GET", otherLeases + "/theirs", nil, false},
		{"create a Lease in another namespace", "POST", otherLeases, lease(other.Namespace, "x"), false},
		{"update a Lease in another namespace", "PUT", otherLeases + "/theirs", lease(other.Namespace, "theirs"), false},
		{"delete a Lease in another namespace", "DELETE", otherLeases + "/theirs", nil, false},
		{"list Secrets", "GET", "/api/v1/namespaces/" + tn.Namespace + "/secrets", nil, false},
		{"get a Secret", "GET", "/api/v1/namespaces/" + tn.Namespace + "/secrets/keys", nil, false},
		{"list Secrets cluster-wide", "GET", "/api/v1/secrets", nil, false},
		{"create CardanoLeader", "POST", leaders, leader, true},
		{"get CardanoLeader", "GET", leaders + "/l", nil, true},
		{"patch CardanoLeader status", "PATCH", leaders + "/l/status", mergeStatus, true},
		{"get CardanoLeader status", "GET", leaders + "/l/status", nil, true},
		{"delete CardanoLeader", "DELETE", leaders + "/l", nil, false},
		{"list CardanoLeaders", "GET", leaders, nil, false},
		// Cluster-wide objects are the coordination Role's (deploy/coordination).
		{"get CardanoForgeCluster", "GET", clusters + "/mine", nil, false},
		{"patch CardanoForgeCluster status", "PATCH", clusters + "/mine/status", map[string]any{"status": map[string]any{"activeLeader": "bp-0"}}, false},
		{"patch CardanoForgeCluster spec", "PATCH", clusters + "/mine", map[string]any{"spec": map[string]any{"priority": 1}}, false},
		{"create CardanoForgeCluster", "POST", clusters, forgeCluster("new", validSpec()), false},
		{"delete CardanoForgeCluster", "DELETE", clusters + "/mine", nil, false},
		{"create an Event", "POST", events, eventObject("events.k8s.io/v1", tn.Namespace), true},
		{"list Events", "GET", events, nil, false},
		{"update an Event", "PUT", events + "/x", eventObject("events.k8s.io/v1", tn.Namespace), false},
		{"create a core/v1 Event", "POST", "/api/v1/namespaces/" + tn.Namespace + "/events", eventObject("v1", tn.Namespace), false},
		{"create an Event in another namespace", "POST", "/apis/events.k8s.io/v1/namespaces/" + other.Namespace + "/events", eventObject("events.k8s.io/v1", other.Namespace), false},
		{"list pods", "GET", "/api/v1/namespaces/" + tn.Namespace + "/pods", nil, false},
		{"list namespaces", "GET", "/api/v1/namespaces", nil, false},
	}
	for _, s := range steps {
		body := s.body
		if s.what == "update its Lease" {
			var current map[string]any
			raw, err := sa.Get().AbsPath(leases + "/mine").DoRaw(context.Background())
			if err != nil || json.Unmarshal(raw, &current) != nil {
				t.Fatalf("read Lease back: %v", err)
			}
			current["spec"] = map[string]any{"holderIdentity": "bp-0_uid"}
			body = current
		}
		checkRole(t, s.what, s.allowed, apiDo(sa, s.method, s.path, body))
	}
}

// TestPoolRoleIsLeastPrivilege: deploy/production/rbac gives pool A's
// sidecar its own Lease and CardanoLeader, by the names forge-manager
// derives from its StatefulSet's environment, and nothing of pool B's in
// the same namespace. The residual is create: RBAC cannot limit it by name.
func TestPoolRoleIsLeastPrivilege(t *testing.T) {
	c := controlPlane(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tn, err := c.NewTenantWith(ctx, ".", nsName("pool", t), filepath.Join("deploy", "production", "rbac"), "forge-manager-pool-a")
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Kubectl("create", "--dry-run=client", "-o", "json", "-f", "deploy/production/statefulset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e := runEnv()
	for _, ct := range statefulSets(t, out)[0] {
		for _, v := range ct.Env {
			if ct.Name == "forge-manager" && v.Value != "" {
				e[v.Name] = v.Value
			}
		}
	}
	cfgA, err := loadConfig(e.lookup, "run")
	if err != nil {
		t.Fatal(err)
	}
	cfgB, err := loadConfig(runEnv("CARDANO_NETWORK", "preprod", "POOL_ID", "pool1z22x50lqsrwent6en0llzzs9e577rx7n3mv9kfw7udwa2rf42fa").lookup, "run")
	if err != nil {
		t.Fatal(err)
	}
	a, b := resolveTenant(cfgA), resolveTenant(cfgB)
	sa := restClientFor(t, tn.SA)
	admin := restClientFor(t, c.AdminConfig())
	leases := "/apis/coordination.k8s.io/v1/namespaces/" + tn.Namespace + "/leases"
	leaders := "/apis/cardano.io/v1/namespaces/" + tn.Namespace + "/cardanoleaders"
	lease := func(name string) map[string]any {
		return map[string]any{"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": map[string]any{"name": name}}
	}
	leader := func(name string) map[string]any {
		return map[string]any{"apiVersion": "cardano.io/v1", "kind": "CardanoLeader", "metadata": map[string]any{"name": name}}
	}
	for _, o := range []struct {
		path string
		body map[string]any
	}{{leases, lease(b.Lease)}, {leases, lease(otherElection(cfgA))}, {leaders, leader(b.Leader)}} {
		if err := apiDo(admin, "POST", o.path, o.body); err != nil {
			t.Fatal(err)
		}
	}
	update := func(path string) map[string]any {
		var cur map[string]any
		raw, err := admin.Get().AbsPath(path).DoRaw(context.Background())
		if err != nil || json.Unmarshal(raw, &cur) != nil {
			t.Fatalf("read %s: %v", path, err)
		}
		cur["spec"] = map[string]any{"holderIdentity": "pool-a-0_uid"}
		return cur
	}
	status := map[string]any{"status": map[string]any{"leaderPod": "pool-a-0"}}
	steps := []struct {
		what         string
		method, path string
		body         func() map[string]any
		allowed      bool
	}{
		{"create its Lease", "POST", leases, func() map[string]any { return lease(a.Lease) }, true},
		{"get its Lease", "GET", leases + "/" + a.Lease, nil, true},
		{"update its Lease", "PUT", leases + "/" + a.Lease, func() map[string]any { return update(leases + "/" + a.Lease) }, true},
		{"get its other election's Lease", "GET", leases + "/" + otherElection(cfgA), nil, true},
		{"update its other election's Lease", "PUT", leases + "/" + otherElection(cfgA), func() map[string]any { return update(leases + "/" + otherElection(cfgA)) }, false},
		{"delete its Lease", "DELETE", leases + "/" + a.Lease, nil, false},
		{"list Leases", "GET", leases, nil, false},
		{"list its Lease by name", "GET", leases + "?fieldSelector=metadata.name%3D" + a.Lease, nil, true},
		{"watch its Lease by name", "GET", leases + "?watch=true&timeoutSeconds=1&fieldSelector=metadata.name%3D" + a.Lease, nil, true},
		{"watch pool B's Lease by name", "GET", leases + "?watch=true&timeoutSeconds=1&fieldSelector=metadata.name%3D" + b.Lease, nil, false},
		{"get pool B's Lease", "GET", leases + "/" + b.Lease, nil, false},
		{"update pool B's Lease", "PUT", leases + "/" + b.Lease, func() map[string]any { return update(leases + "/" + b.Lease) }, false},
		{"patch pool B's Lease", "PATCH", leases + "/" + b.Lease, func() map[string]any { return map[string]any{"spec": map[string]any{"holderIdentity": "x"}} }, false},
		{"delete pool B's Lease", "DELETE", leases + "/" + b.Lease, nil, false},
		// The residual: a create is authorized before the name is known.
		{"create a Lease of another name", "POST", leases, func() map[string]any { return lease("not-pool-a") }, true},
		{"create its CardanoLeader", "POST", leaders, func() map[string]any { return leader(a.Leader) }, true},
		{"get its CardanoLeader", "GET", leaders + "/" + a.Leader, nil, true},
		{"patch its CardanoLeader status", "PATCH", leaders + "/" + a.Leader + "/status", func() map[string]any { return status }, true},
		{"get pool B's CardanoLeader", "GET", leaders + "/" + b.Leader, nil, false},
		{"patch pool B's CardanoLeader status", "PATCH", leaders + "/" + b.Leader + "/status", func() map[string]any { return status }, false},
		{"list CardanoLeaders", "GET", leaders, nil, false},
		{"create an Event", "POST", "/apis/events.k8s.io/v1/namespaces/" + tn.Namespace + "/events", func() map[string]any { return eventObject("events.k8s.io/v1", tn.Namespace) }, true},
		{"get a Secret", "GET", "/api/v1/namespaces/" + tn.Namespace + "/secrets/keys", nil, false},
	}
	for _, s := range steps {
		var body any
		if s.body != nil {
			body = s.body()
		}
		checkRole(t, s.what, s.allowed, apiDo(sa, s.method, s.path, body))
	}
}

// TestCoordinationRoleIsLeastPrivilege: the coordination API server's Role
// (deploy/coordination) grants the token and candidacy Leases, the
// CardanoForgeCluster (read, create) and its status (patch), and nothing
// else: not the spec, no delete, no other namespace, no Secrets.
func TestCoordinationRoleIsLeastPrivilege(t *testing.T) {
	c := controlPlane(t)
	ct, err := c.NewCoordination(context.Background(), ".", nsName("c", t))
	if err != nil {
		t.Fatal(err)
	}
	other := newTenant(t)
	sa := restClientFor(t, ct.SA)
	admin := restClientFor(t, c.AdminConfig())
	leases := "/apis/coordination.k8s.io/v1/namespaces/" + ct.Namespace + "/leases"
	clusters := "/apis/cardano.io/v1/namespaces/" + ct.Namespace + "/cardanoforgeclusters"
	lease := map[string]any{"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": map[string]any{"name": "token"}}
	if err := apiDo(admin, "POST", clusters, forgeCluster("theirs", validSpec())); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		what         string
		method, path string
		body         any
		allowed      bool
	}{
		{"create the token", "POST", leases, lease, true},
		{"get the token", "GET", leases + "/token", nil, true},
		{"list candidacies", "GET", leases + "?labelSelector=" + "cardano.io%2Frole%3Dcandidacy", nil, true},
		{"delete the token", "DELETE", leases + "/token", nil, false},
		{"patch the token", "PATCH", leases + "/token", map[string]any{"metadata": map[string]any{"labels": map[string]any{"x": "y"}}}, false},
		{"watch Leases", "GET", leases + "?watch=true&timeoutSeconds=1", nil, false},
		{"list Leases in another namespace", "GET", "/apis/coordination.k8s.io/v1/namespaces/" + other.Namespace + "/leases", nil, false},
		{"create a CardanoForgeCluster", "POST", clusters, forgeCluster("mine", validSpec()), true},
		{"get a CardanoForgeCluster", "GET", clusters + "/mine", nil, true},
		{"patch its status", "PATCH", clusters + "/mine/status", map[string]any{"status": map[string]any{"activeLeader": "eu-0"}}, true},
		{"patch its spec", "PATCH", clusters + "/mine", map[string]any{"spec": map[string]any{"priority": 1}}, false},
		{"update it", "PUT", clusters + "/theirs", forgeCluster("theirs", validSpec()), false},
		{"delete it", "DELETE", clusters + "/theirs", nil, false},
		{"list CardanoForgeClusters", "GET", clusters, nil, false},
		{"get a Secret", "GET", "/api/v1/namespaces/" + ct.Namespace + "/secrets/keys", nil, false},
		{"list CardanoLeaders", "GET", "/apis/cardano.io/v1/namespaces/" + ct.Namespace + "/cardanoleaders", nil, false},
	}
	for _, s := range steps {
		checkRole(t, s.what, s.allowed, apiDo(sa, s.method, s.path, s.body))
	}
	var l map[string]any
	raw, err := sa.Get().AbsPath(leases + "/token").DoRaw(context.Background())
	if err != nil || json.Unmarshal(raw, &l) != nil {
		t.Fatalf("read the token back: %v", err)
	}
	l["spec"] = map[string]any{"holderIdentity": "eu/eu-0_uid"}
	if err := apiDo(sa, "PUT", leases+"/token", l); err != nil {
		t.Errorf("update the token: the Role must allow it, got %v", err)
	}
}

// TestManifestsDryRun: every manifest in deploy/ passes the real API
// server's validation (kubectl apply --dry-run=server), both as plain files
// (kubectl apply -f) and through kustomize (kubectl apply -k deploy/).
func TestManifestsDryRun(t *testing.T) {
	c := controlPlane(t)
	if _, err := c.Kubectl("apply", "-f", "testdata/monitoring-crds.yaml"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Kubectl("wait", "--for=condition=Established", "--timeout=60s",
		"crd/prometheusrules.monitoring.coreos.com", "crd/podmonitors.monitoring.coreos.com"); err != nil {
		t.Fatal(err)
	}
	c.Kubectl("create", "namespace", "cardano") // the manifests' namespace; may exist already
	var files []string
	filepath.WalkDir("deploy", func(path string, d fs.DirEntry, err error) error {
		// A Component's patches are not whole objects: component_test.go
		// builds it over a StatefulSet and validates the result.
		if err == nil && d.IsDir() && path == filepath.Join("deploy", "components") {
			return filepath.SkipDir
		}
		if err == nil && strings.HasSuffix(path, ".yaml") && filepath.Base(filepath.Dir(path)) != "prometheus" {
			files = append(files, path)
		}
		return err
	})
	if len(files) < 10 {
		t.Fatalf("found only %d manifests: %v", len(files), files)
	}
	for _, f := range files {
		deadline := time.Now().Add(30 * time.Second)
		for {
			out, err := c.Kubectl("apply", "--dry-run=server", "-f", f)
			if err == nil {
				break
			}
			// A CRD just created answers 429 for a while (internal/testenv).
			if !strings.Contains(string(out), "storage is (re)initializing") || time.Now().After(deadline) {
				t.Errorf("%s: %v", f, err)
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	for _, dir := range []string{"deploy/crds", "deploy/rbac", "deploy/examples/single-tenant", "deploy/examples/multi-tenant", "deploy/monitoring"} {
		if _, err := c.Kubectl("apply", "--dry-run=server", "-f", dir); err != nil {
			t.Errorf("kubectl apply -f %s: %v", dir, err)
		}
	}
	out, err := c.Kubectl("apply", "--dry-run=server", "-k", "deploy/production")
	if err != nil {
		t.Errorf("kubectl apply -k deploy/production: %v", err)
	}
	for _, want := range []string{"statefulset.apps/cardano-bp-pool-a", "role.rbac.authorization.k8s.io/forge-manager-pool-a", "networkpolicy.networking.k8s.io/cardano-bp-pool-a", "poddisruptionbudget.policy/cardano-bp-pool-a", "namespace/cardano"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("kubectl apply -k deploy/production lacks %s:\n%s", want, out)
		}
	}
	out, err = c.Kubectl("apply", "--dry-run=server", "-k", "deploy")
	if err != nil {
		t.Fatalf("kubectl apply -k deploy: %v", err)
	}
	for _, want := range []string{"statefulset.apps/cardano-bp", "role.rbac.authorization.k8s.io/forge-manager", "customresourcedefinition.apiextensions.k8s.io/cardanoleaders.cardano.io", "poddisruptionbudget.policy/cardano-bp"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("kubectl apply -k deploy lacks %s:\n%s", want, out)
		}
	}
}

// TestAlertRules: the rules pass promtool's check and their unit tests, and
// the PrometheusRule carries exactly the same groups.
func TestAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: install it (Debian package prometheus); .ci/run does")
	}
	for _, args := range [][]string{{"check", "rules", "rules.yaml"}, {"test", "rules", "rules_test.yaml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "deploy/monitoring/prometheus"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	rules, _ := os.ReadFile("deploy/monitoring/prometheus/rules.yaml")
	pr, _ := os.ReadFile("deploy/monitoring/prometheusrule.yaml")
	want := string(rules[strings.Index(string(rules), "groups:"):])
	got := string(pr[strings.Index(string(pr), "  groups:"):])
	var dedented []string
	for _, l := range strings.Split(got, "\n") {
		dedented = append(dedented, strings.TrimPrefix(l, "  "))
	}
	if strings.Join(dedented, "\n") != want {
		t.Error("prometheusrule.yaml's groups differ from rules.yaml: regenerate one from the other")
	}
}

// TestShippedProbeFitsTheBudget: in every shipped StatefulSet, the node
// container's dead-man livenessProbe is what the sidecar's DEADMAN_PROBE_*
// say it is (its environment, else the defaults), the loader accepts that
// configuration (so the probe kills a node before another replica may take
// over), and one slow exec restarts nothing (failureThreshold >= 2).
func TestShippedProbeFitsTheBudget(t *testing.T) {
	files, _ := filepath.Glob("deploy/examples/*/*.yaml")
	files = append(files, "deploy/production/statefulset.yaml")
	seen := 0
	for _, f := range files {
		out, err := controlPlane(t).Kubectl("create", "--dry-run=client", "-o", "json", "-f", f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, sts := range statefulSets(t, out) {
			seen++
			checkProbe(t, f, sts)
		}
		checkTokenInSidecarOnly(t, f, out)
	}
	// The Component, as built over an operator's StatefulSet; the relay
	// beside it is not adopted and has no probe to check.
	yaml, err := controlPlane(t).Kubectl("kustomize", adoptDir)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "adopted.yaml")
	os.WriteFile(f, yaml, 0o644)
	out, err := controlPlane(t).Kubectl("create", "--dry-run=client", "-o", "json", "-f", f)
	if err != nil {
		t.Fatal(err)
	}
	checkTokenInSidecarOnly(t, adoptDir, out)
	for _, sts := range statefulSets(t, out) {
		if slices.ContainsFunc(sts, func(c podContainer) bool { return c.Name == "forge-manager" }) {
			seen++
			checkProbe(t, "deploy/components/forge-manager over "+adoptDir, sts)
		}
	}
	if seen < 5 {
		t.Fatalf("checked %d StatefulSets; want the 3 examples, deploy/production's and the Component's", seen)
	}
}

type podContainer struct {
	Name string `json:"name"`
	Env  []struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	} `json:"env"`
	LivenessProbe *struct {
		Exec *struct {
			Command []string `json:"command"`
		} `json:"exec"`
		PeriodSeconds                 int  `json:"periodSeconds"`
		TimeoutSeconds                int  `json:"timeoutSeconds"`
		FailureThreshold              int  `json:"failureThreshold"`
		TerminationGracePeriodSeconds *int `json:"terminationGracePeriodSeconds"`
	} `json:"livenessProbe"`
}

// statefulSets picks the StatefulSets' containers out of kubectl's JSON: one
// object after another.
func statefulSets(t *testing.T, out []byte) [][]podContainer {
	var all [][]podContainer
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var o struct {
			Kind string `json:"kind"`
			Spec struct {
				Template struct {
					Spec struct {
						Containers []podContainer `json:"containers"`
					} `json:"spec"`
				} `json:"template"`
			} `json:"spec"`
		}
		if err := dec.Decode(&o); err == io.EOF {
			return all
		} else if err != nil {
			t.Fatal(err)
		}
		if o.Kind == "StatefulSet" {
			all = append(all, o.Spec.Template.Spec.Containers)
		}
	}
}

func checkProbe(t *testing.T, file string, containers []podContainer) {
	t.Helper()
	e := runEnv()
	var probe *deadmanProbe
	for _, c := range containers {
		if c.Name == "forge-manager" {
			for _, v := range c.Env {
				if v.Value != "" {
					e[v.Name] = v.Value
				}
			}
		}
		if lp := c.LivenessProbe; lp != nil && lp.Exec != nil && strings.HasSuffix(lp.Exec.Command[0], "forge-manager") {
			if lp.TerminationGracePeriodSeconds == nil || lp.FailureThreshold < 2 {
				t.Errorf("%s: dead-man probe %+v: want a probe-level terminationGracePeriodSeconds and failureThreshold >= 2", file, lp)
				continue
			}
			sec := func(n int) time.Duration { return time.Duration(n) * time.Second }
			probe = &deadmanProbe{period: sec(lp.PeriodSeconds), threshold: lp.FailureThreshold, timeout: sec(lp.TimeoutSeconds), grace: sec(*lp.TerminationGracePeriodSeconds)}
		}
	}
	if probe == nil {
		t.Fatalf("%s: no dead-man livenessProbe", file)
	}
	c, err := loadConfig(e.lookup, "run")
	if err != nil {
		t.Fatalf("%s: the sidecar's configuration: %v", file, err)
	}
	if c.Probe != *probe {
		t.Errorf("%s: the probe deployed is %+v, the sidecar's DEADMAN_PROBE_* say %+v", file, *probe, c.Probe)
	}
}

// checkTokenInSidecarOnly: in every StatefulSet running forge-manager, the
// kubelet mounts no API token by itself, and only the sidecar mounts one:
// not the internet-facing node container, not the init container.
func checkTokenInSidecarOnly(t *testing.T, file string, out []byte) {
	t.Helper()
	const tokenDir = "/var/run/secrets/kubernetes.io/serviceaccount"
	type ctr struct {
		Name         string `json:"name"`
		VolumeMounts []struct {
			MountPath string `json:"mountPath"`
		} `json:"volumeMounts"`
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var o struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Spec struct {
				Template struct {
					Spec struct {
						Automount      *bool `json:"automountServiceAccountToken"`
						Containers     []ctr `json:"containers"`
						InitContainers []ctr `json:"initContainers"`
					} `json:"spec"`
				} `json:"template"`
			} `json:"spec"`
		}
		if err := dec.Decode(&o); err == io.EOF {
			return
		} else if err != nil {
			t.Fatal(err)
		}
		ps := o.Spec.Template.Spec
		all := append(ps.Containers, ps.InitContainers...)
		if o.Kind != "StatefulSet" || !slices.ContainsFunc(all, func(c ctr) bool { return c.Name == "forge-manager" }) {
			continue
		}
		if ps.Automount == nil || *ps.Automount {
			t.Errorf("%s: StatefulSet %s: want automountServiceAccountToken: false", file, o.Metadata.Name)
		}
		for _, c := range all {
			has := slices.ContainsFunc(c.VolumeMounts, func(m struct {
				MountPath string `json:"mountPath"`
			}) bool {
				return m.MountPath == tokenDir
			})
			if has != (c.Name == "forge-manager") {
				t.Errorf("%s: StatefulSet %s: container %s mounts the API token: %v; want the sidecar alone", file, o.Metadata.Name, c.Name, has)
			}
		}
	}
}
