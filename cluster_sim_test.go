package main

// The simulated world of sim_test.go across regions: each region has its
// own local Lease (its own API server), and one in-memory coordination
// server holds the forging token, the candidacies and the
// CardanoForgeClusters, with the API server's concurrency rules. A region
// or a single replica can be cut off from the coordination server.

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// memCluster is the coordination server's objects in memory.
type memCluster struct {
	mu      sync.Mutex
	token   *memLeases
	cands   map[string]*memLeases          // candidacies by name
	cfcs    map[string]*forgeClusterObject // CardanoForgeClusters by name
	patches int                            // status writes
	calls   int
}

func newMemCluster() *memCluster {
	return &memCluster{token: &memLeases{}, cands: map[string]*memLeases{}, cfcs: map[string]*forgeClusterObject{}}
}

// spec changes a CardanoForgeCluster's spec as `kubectl patch` would.
func (m *memCluster) spec(name string, f func(*forgeClusterSpec)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o := m.cfcs[name]
	f(&o.Spec)
	o.Metadata.Generation++
}

func (m *memCluster) status(name string) forgeClusterStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cfcs[name].Status
}

// simCluster is one replica's clusterAPI on m: it can be cut off (every
// call hangs until its timeout) like flakyLeases.
type simCluster struct {
	m         *memCluster
	clock     *fakeClock
	name      string // its CardanoForgeCluster
	candidacy string
	body      forgeClusterBody
	down      bool
	hang      bool // a call to a down server hangs until its timeout
	failNext  int  // the next this many calls fail at once
	hide      bool // the list does not show this region's candidacy (its labels edited away)
	// check runs before every call (a test's watch on the timeouts).
	check func(ctx context.Context, op string)
}

var _ clusterAPI = (*simCluster)(nil)

var forgeClusterResource = schema.GroupResource{Group: "cardano.io", Resource: "cardanoforgeclusters"}

func (s *simCluster) through(ctx context.Context, op string) error {
	if s.check != nil {
		s.check(ctx, op)
	}
	s.m.mu.Lock()
	s.m.calls++
	s.m.mu.Unlock()
	if s.failNext > 0 {
		s.failNext--
		return fmt.Errorf("%s: %w", op, context.DeadlineExceeded)
	}
	if !s.down {
		return nil
	}
	if dl, ok := ctx.Deadline(); ok && s.hang {
		s.clock.advance(max(time.Until(dl), 0))
	}
	return fmt.Errorf("%s: %w", op, context.DeadlineExceeded)
}

func (s *simCluster) getForgeCluster(ctx context.Context) (*forgeClusterObject, error) {
	if err := s.through(ctx, "get cardanoforgecluster"); err != nil {
		return nil, err
	}
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	o, ok := s.m.cfcs[s.name]
	if !ok {
		return nil, apierrors.NewNotFound(forgeClusterResource, s.name)
	}
	c := *o
	return &c, nil
}

func (s *simCluster) createForgeCluster(ctx context.Context) (*forgeClusterObject, error) {
	if err := s.through(ctx, "create cardanoforgecluster"); err != nil {
		return nil, err
	}
	s.m.mu.Lock()
	if _, ok := s.m.cfcs[s.name]; ok {
		s.m.mu.Unlock()
		return nil, apierrors.NewAlreadyExists(forgeClusterResource, s.name)
	}
	o := &forgeClusterObject{}
	o.Metadata.Name, o.Metadata.Generation = s.name, 1
	o.Spec.Network.Name, o.Spec.Network.Magic = s.body.Network, int64(s.body.Magic)
	o.Spec.Region, o.Spec.Priority, o.Spec.ForgeState = s.body.Region, ptr(s.body.Priority), forgePriorityBased
	s.m.cfcs[s.name] = o
	s.m.mu.Unlock()
	return s.getForgeCluster(ctx)
}

func (s *simCluster) patchForgeClusterStatus(ctx context.Context, st forgeClusterStatus) (*forgeClusterObject, error) {
	if err := s.through(ctx, "patch cardanoforgecluster"); err != nil {
		return nil, err
	}
	s.m.mu.Lock()
	o, ok := s.m.cfcs[s.name]
	if ok {
		o.Status = st
		s.m.patches++
	}
	s.m.mu.Unlock()
	if !ok {
		return nil, apierrors.NewNotFound(forgeClusterResource, s.name)
	}
	return s.getForgeCluster(ctx)
}

func (s *simCluster) candidacies(ctx context.Context) ([]coordinationv1.Lease, error) {
	if err := s.through(ctx, "list lease"); err != nil {
		return nil, err
	}
	s.m.mu.Lock()
	names := make([]string, 0, len(s.m.cands))
	for n := range s.m.cands {
		names = append(names, n)
	}
	s.m.mu.Unlock()
	sort.Strings(names)
	var out []coordinationv1.Lease
	for _, n := range names {
		if l, err := s.m.candidacy(n).get(ctx); err == nil && !(s.hide && n == s.candidacy) {
			out = append(out, *l)
		}
	}
	return out, nil
}

func (s *simCluster) getCandidacy(ctx context.Context) (*coordinationv1.Lease, error) {
	if err := s.through(ctx, "get lease"); err != nil {
		return nil, err
	}
	return s.m.candidacy(s.candidacy).get(ctx)
}

func (s *simCluster) putCandidacy(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	if err := s.through(ctx, "put lease"); err != nil {
		return nil, err
	}
	l = l.DeepCopy()
	l.Name = s.candidacy
	if l.ResourceVersion == "" {
		return s.m.candidacy(s.candidacy).create(ctx, l)
	}
	return s.m.candidacy(s.candidacy).update(ctx, l)
}

func (m *memCluster) candidacy(name string) *memLeases {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cands[name] == nil {
		m.cands[name] = &memLeases{}
	}
	return m.cands[name]
}

// clusterReplica is what a replica in a region adds to replica.
type clusterReplica struct {
	token *flakyLeases
	coord *simCluster
}

// addIn starts a pod of the StatefulSet in region, with cluster management
// on and its priority as the created CardanoForgeCluster's.
func (w *world) addIn(region, name string, priority int, kv ...string) *replica {
	w.t.Helper()
	if w.cluster == nil {
		w.cluster, w.locals = newMemCluster(), map[string]*memLeases{}
	}
	if w.locals[region] == nil {
		w.locals[region] = &memLeases{}
	}
	env := append([]string{"ENABLE_CLUSTER_MANAGEMENT", "true", "CLUSTER_REGION", region, "CLUSTER_PRIORITY", fmt.Sprint(priority),
		"CLUSTER_PREEMPT_DELAY", "30s", "CLUSTER_MIN_HOLD", "60s"}, kv...)
	return w.add(name, env...)
}

// wireCluster gives r's sidecar its cluster-wide side on the world's
// coordination server.
func (w *world) wireCluster(r *replica) {
	c := r.cfg
	if !c.ClusterManagement {
		return
	}
	if r.cl == nil {
		tn := resolveTenant(c)
		r.cl = &clusterReplica{token: &flakyLeases{m: w.cluster.token, clock: w.clock},
			coord: &simCluster{m: w.cluster, clock: w.clock, name: tn.Cluster, candidacy: tn.Candidacy,
				body: forgeClusterBody{Network: c.Network, Magic: c.NetworkMagic, Region: c.Region, Priority: c.Priority}}}
	}
	token := newElector(r.cl.token, c.Region+"/"+r.name+"_uid", c.clusterTiming().timing, w.clock.now)
	r.s.cl = newCoordinator(c.clusterTiming(), c.Region, token, r.cl.coord, r.s.log, w.clock.now, w.clock.now)
	r.s.cl.mineName = r.cl.coord.candidacy
}

// cut cuts r off from the coordination server, or reconnects it. Its
// calls fail at once: in this world one replica's hanging call would stop
// the clock for all (hangOn makes them hang, for one replica).
func (r *replica) cut(down bool) {
	r.cl.token.refuse, r.cl.coord.down = nil, down
	if down {
		r.cl.token.refuse = fmt.Errorf("update lease: %w", context.DeadlineExceeded)
	}
}

// hangOn cuts r off with every call hanging until its timeout.
func (r *replica) hangOn() { r.cl.token.down, r.cl.coord.down, r.cl.coord.hang = true, true, true }

// region lists the replicas of one region.
func (w *world) region(name string) []*replica {
	var out []*replica
	for _, r := range w.reps {
		if r.cfg.Region == name {
			out = append(out, r)
		}
	}
	return out
}

// forgingRegions lists the regions with a forging node now.
func (w *world) forgingRegions() []string {
	seen := map[string]bool{}
	var out []string
	for _, f := range w.forgers() {
		if r := w.rep(f).cfg.Region; !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	return out
}

// settleIn runs until exactly one node forges, in region, and returns when.
func (w *world) settleIn(region string, limit time.Duration) time.Time {
	w.t.Helper()
	w.runUntil(limit, "one forger in "+region, func() bool {
		f := w.forgers()
		return len(f) == 1 && w.rep(f[0]).cfg.Region == region
	})
	return w.clock.now()
}

// kill takes r's pod away: sidecar and node dead, never restarted.
func (w *world) kill(r *replica) {
	r.stopped = true
	r.node.delay = 1000 * time.Hour
	r.node.die(w.clock.now())
	r.probeAt = w.clock.now().Add(1000 * time.Hour)
}
