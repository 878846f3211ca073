package testenv

// Several StatefulSets of one pool (regions), each a Cluster, possibly on
// its own control plane, judged as one pool, and the coordination API
// server they share (docs/regions.md).

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// Group is several clusters of one pool: their records are judged
// together (one host, one CLOCK_MONOTONIC).
type Group []*Cluster

// Intervals reads every pod's forging record in every cluster, live and
// retired.
func (g Group) Intervals() ([]Interval, error) {
	var all []Interval
	for _, c := range g {
		for _, p := range c.All() {
			iv, err := ForgingIntervals(p.Spec.Name, p.Record())
			if err != nil {
				return nil, err
			}
			all = append(all, iv...)
		}
	}
	return all, nil
}

// Forging returns the intervals still open: the nodes forging now.
func (g Group) Forging() ([]Interval, error) {
	all, err := g.Intervals()
	var open []Interval
	for _, iv := range all {
		if iv.End == 0 {
			open = append(open, iv)
		}
	}
	sort.Slice(open, func(i, j int) bool { return open[i].Pod < open[j].Pod })
	return open, err
}

// Settled waits until exactly one node of the group forges and keeps
// forging for hold; it returns that pod and how long after since
// (CLOCK_MONOTONIC) its forging began (0 if it was forging already).
func (g Group) Settled(ctx context.Context, since int64, hold time.Duration) (string, time.Duration, error) {
	var cand Interval
	var candSince time.Time
	for {
		open, err := g.Forging()
		if err != nil {
			return "", 0, err
		}
		if len(open) == 1 {
			if open[0] != cand {
				cand, candSince = open[0], time.Now()
			}
			if time.Since(candSince) >= hold {
				return cand.Pod, max(time.Duration(cand.Start-since), 0), nil
			}
		} else {
			cand = Interval{}
		}
		select {
		case <-ctx.Done():
			return "", 0, fmt.Errorf("no single stable forger: forging now %v: %w", open, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Coordination is a namespace of a coordination API server as the regions'
// pods reach it: deploy/coordination applied, and its ServiceAccount's
// token.
type Coordination struct {
	CP        *ControlPlane
	Namespace string
	Token     string
}

// NewCoordinationOn prepares namespace ns of cp as a coordination server.
func NewCoordinationOn(ctx context.Context, cp *ControlPlane, root, ns string) (*Coordination, error) {
	t, err := cp.NewCoordination(ctx, root, ns)
	if err != nil {
		return nil, err
	}
	return &Coordination{CP: cp, Namespace: t.Namespace, Token: t.SAToken}, nil
}

// Configure points c's pods at the coordination server: CLUSTER_NAMESPACE,
// and a CLUSTER_KUBECONFIG file per pod (its network slot decides the
// server's address), as a mounted Secret would hold it. It chains c.Edit.
func (co *Coordination) Configure(c *Cluster) {
	if c.Env == nil {
		c.Env = map[string]string{}
	}
	c.Env["CLUSTER_NAMESPACE"] = co.Namespace
	prev := c.Edit
	c.Edit = func(name string, s *PodSpec) {
		path := filepath.Join(c.Base, name+"-coordination.kubeconfig")
		if err := os.WriteFile(path, co.CP.PodKubeconfig(s.Index, co.Token), 0o644); err == nil {
			s.Env["CLUSTER_KUBECONFIG"] = path
		}
		if prev != nil {
			prev(name, s)
		}
	}
}
