package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/client-go/rest"
)

// InstallCRDs applies deploy/crds from the repository at root and waits until
// the server serves them (established, and past the "storage is
// (re)initializing" 429s that follow a new CRD).
func (cp *ControlPlane) InstallCRDs(ctx context.Context, root string) error {
	if _, err := cp.Kubectl("apply", "--server-side", "-f", filepath.Join(root, "deploy", "crds")); err != nil {
		return err
	}
	if _, err := cp.Kubectl("wait", "--for=condition=Established", "--timeout=60s",
		"crd/cardanoleaders.cardano.io", "crd/cardanoforgeclusters.cardano.io"); err != nil {
		return err
	}
	return cp.waitServed(ctx, "default")
}

// waitServed polls a namespaced list of each custom resource until it
// answers: right after a CRD is created the server says 429 for a while,
// namespaced lists longer than cluster-wide ones.
func (cp *ControlPlane) waitServed(ctx context.Context, ns string) error {
	deadline := time.Now().Add(60 * time.Second)
	for _, r := range []string{"cardanoleaders.cardano.io", "cardanoforgeclusters.cardano.io"} {
		for {
			_, err := cp.Kubectl("get", r, "-n", ns, "-o", "name")
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s not served after 60s: %w", r, err)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}

// Tenant is a namespace prepared as the shipped manifests prepare one: the
// RBAC of deploy/rbac (ServiceAccount, Role, RoleBinding) applied through
// kustomize with the namespace set, and a token for the ServiceAccount from
// the TokenRequest API.
type Tenant struct {
	Namespace string
	SAToken   string
	SA        *rest.Config // the sidecar's own identity
}

// ServiceAccount is the sidecar's ServiceAccount in deploy/rbac.
const ServiceAccount = "forge-manager"

// NewTenant creates namespace ns with the shipped RBAC applied.
func (cp *ControlPlane) NewTenant(ctx context.Context, root, ns string) (*Tenant, error) {
	return cp.NewTenantWith(ctx, root, ns, filepath.Join("deploy", "rbac"), ServiceAccount)
}

// CoordinationServiceAccount is the identity of deploy/coordination.
const CoordinationServiceAccount = "forge-manager-coordination"

// NewCoordination creates namespace ns as the coordination API server's
// side: deploy/coordination applied, and a token for its ServiceAccount.
func (cp *ControlPlane) NewCoordination(ctx context.Context, root, ns string) (*Tenant, error) {
	return cp.NewTenantWith(ctx, root, ns, filepath.Join("deploy", "coordination"), CoordinationServiceAccount)
}

// NewTenantWith creates namespace ns, applies the kustomization in dir
// (relative to root) to it and returns a token for ServiceAccount sa.
func (cp *ControlPlane) NewTenantWith(ctx context.Context, root, ns, dir, sa string) (*Tenant, error) {
	if _, err := cp.Kubectl("create", "namespace", ns); err != nil {
		return nil, err
	}
	if err := cp.Apply(root, ns, dir); err != nil {
		return nil, err
	}
	if err := cp.waitServed(ctx, ns); err != nil {
		return nil, err
	}
	tok, err := cp.Kubectl("create", "token", sa, "-n", ns, "--duration=24h")
	if err != nil {
		return nil, err
	}
	t := &Tenant{Namespace: ns, SAToken: strings.TrimSpace(string(tok))}
	t.SA = cp.tokenConfig(t.SAToken)
	return t, nil
}

// Apply applies the kustomization in rbacDir (relative to root) to namespace
// ns, as `kubectl apply -k` with the namespace set.
func (cp *ControlPlane) Apply(root, ns, rbacDir string) error {
	dir, err := os.MkdirTemp(cp.Dir, "kustomize-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	rbac, err := filepath.Abs(filepath.Join(root, rbacDir))
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(dir, rbac)
	if err != nil {
		return err
	}
	k := fmt.Sprintf("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: %s\nresources:\n- %s\n", ns, rel)
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		return err
	}
	_, err = cp.Kubectl("apply", "-k", dir)
	return err
}

// Up starts a control plane with the CRDs installed and one tenant
// namespace prepared: what the demo and the benchmarks start from.
func Up(ctx context.Context, root, ns string) (*ControlPlane, *Tenant, error) {
	cp, err := Start(ctx)
	if err != nil {
		return nil, nil, err
	}
	if err := cp.InstallCRDs(ctx, root); err != nil {
		cp.Stop()
		return nil, nil, err
	}
	t, err := cp.NewTenant(ctx, root, ns)
	if err != nil {
		cp.Stop()
		return nil, nil, err
	}
	return cp, t, nil
}
