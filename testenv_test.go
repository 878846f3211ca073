//go:build integration

package main

// The integration tests' control plane: a real etcd and kube-apiserver
// (built by `make testenv`), started once for the package on first use and
// stopped by TestMain, also when a test fails. Each test gets its own
// namespace, prepared with the shipped RBAC from deploy/rbac.

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"forge-manager/internal/testenv"

	"k8s.io/client-go/rest"
)

var (
	cpOnce sync.Once
	cp     *testenv.ControlPlane
	cpErr  error
	nsSeq  atomic.Int32
)

func TestMain(m *testing.M) {
	code := m.Run()
	if cp != nil {
		cp.Stop()
	}
	stopExtraPlanes()
	os.Exit(code)
}

// controlPlane starts the control plane on first use. Missing binaries fail
// the test with the command that builds them: nothing is skipped.
func controlPlane(t testing.TB) *testenv.ControlPlane {
	t.Helper()
	cpOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		start := time.Now()
		cp, cpErr = testenv.Start(ctx)
		if cpErr != nil {
			return
		}
		if cpErr = cp.InstallCRDs(ctx, "."); cpErr != nil {
			return
		}
		v, err := cp.Version()
		if err != nil {
			cpErr = err
			return
		}
		fmt.Printf("control plane: kube-apiserver %s, etcd %s at %s, ready with CRDs in %s\n",
			v, testenv.EtcdVersion, cp.URL(), time.Since(start).Round(time.Millisecond))
	})
	if cpErr != nil {
		t.Fatalf("control plane: %v", cpErr)
	}
	return cp
}

// newTenant makes a fresh namespace with the shipped RBAC and returns it with
// the sidecar ServiceAccount's token.
func newTenant(t testing.TB) *testenv.Tenant {
	t.Helper()
	c := controlPlane(t)
	ns := strings.Trim(truncate(fmt.Sprintf("t%d-%s", nsSeq.Add(1), foldDNS(t.Name())), 50), "-")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tn, err := c.NewTenant(ctx, ".", ns)
	if err != nil {
		t.Fatalf("namespace %s: %v", ns, err)
	}
	return tn
}

// restClientFor builds the product's own REST client for a test identity.
func restClientFor(t testing.TB, rc *rest.Config) *rest.RESTClient {
	t.Helper()
	c, err := newRESTClient(rc)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// eventually polls cond every 50ms until it holds or limit passes.
func eventually(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
