package main

// Tenant resolution: which pool, network and region this replica serves, and
// the object names and labels that follow from them (forge-manager help, NAMES). Pure functions,
// no I/O.

import (
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Single-tenant names, kept from the predecessor so its objects carry over.
const (
	defaultLeaseName  = "cardano-node-leader"
	defaultLeaderName = "cardano-leader"
	maxNameLen        = 63
	hashLen           = 10 // hex digits: 40 bits, enough that two pools never meet by chance
)

// tenant is the resolved identity of the pool this replica serves.
type tenant struct {
	Network, PoolID, Region string
	Lease, Leader, Cluster  string // object names
	Labels                  map[string]string
	// With cluster management (cluster.go): the forging token (one per
	// pool), this region's candidacy, their labels, and the selector that
	// finds every region's candidacy of this pool and no other pool's.
	Token, Candidacy string
	ClusterLabels    map[string]string
	Candidacies      string
}

// resolveTenant derives names and labels from the configuration. An explicit
// LEASE_NAME, CRD_NAME or CLUSTER_IDENTIFIER wins over the derived name.
// With cluster management on, the local Lease and CardanoLeader names
// include the region: two regions' StatefulSets may share a namespace.
func resolveTenant(c *config) tenant {
	tn := tenant{Network: c.Network, PoolID: c.PoolID, Region: c.Region}
	key, parts := c.Network, []string{c.Network}
	if c.PoolID != "" {
		key, parts = c.Network+"\x00"+c.PoolID, []string{c.Network, c.PoolID}
	}
	regional, rkey := append(parts[:len(parts):len(parts)], c.Region), key+"\x00"+c.Region
	switch {
	case c.PoolID == "" && c.ClusterManagement:
		tn.Lease, tn.Leader = joinName(defaultLeaseName+"-", regional, rkey), joinName(defaultLeaderName+"-", regional, rkey)
	case c.PoolID == "":
		tn.Lease, tn.Leader = defaultLeaseName, defaultLeaderName
	case c.ClusterManagement:
		tn.Lease = joinName("cardano-leader-", regional, rkey)
		tn.Leader = tn.Lease
	default:
		tn.Lease = joinName("cardano-leader-", parts, key)
		tn.Leader = tn.Lease
	}
	tn.Cluster = joinName("", regional, rkey)
	tn.Token = joinName("cardano-forge-", parts, key)
	tn.Candidacy = joinName("cardano-candidate-", regional, rkey)
	tn.Lease = override(c.LeaseName, tn.Lease)
	tn.Leader = override(c.CRDName, tn.Leader)
	tn.Cluster = override(c.ClusterIdentifier, tn.Cluster)
	tn.Labels = tenantLabels(c)
	tn.ClusterLabels, tn.Candidacies = clusterLabels(tn.Labels, c.ClusterEnvironment)
	return tn
}

// clusterLabels are the tenant's labels plus the environment, and the
// selector of the pool's candidacies: same managed-by, network and pool id
// (or none: a single-tenant pool is not any multi-tenant one).
func clusterLabels(base map[string]string, environment string) (map[string]string, string) {
	l := map[string]string{"cardano.io/environment": environment}
	for k, v := range base {
		l[k] = v
	}
	sel := []string{"app.kubernetes.io/managed-by=forge-manager", "cardano.io/network=" + base["cardano.io/network"], candidacyRole}
	if id, ok := base["cardano.io/pool-id"]; ok {
		sel = append(sel, "cardano.io/pool-id="+id)
	} else {
		sel = append(sel, "!cardano.io/pool-id")
	}
	return l, strings.Join(sel, ",")
}

// candidacyRole labels candidacy Leases, so the list finds no other Lease.
const candidacyRole = "cardano.io/role=candidacy"

// candidacyLabels are the cluster labels with the candidacy role.
func candidacyLabels(cluster map[string]string) map[string]string {
	l := map[string]string{"cardano.io/role": "candidacy"}
	for k, v := range cluster {
		l[k] = v
	}
	return l
}

func override(explicit, derived string) string {
	if explicit != "" {
		return explicit
	}
	return derived
}

// joinName joins a fixed prefix and parts with '-' into a DNS-1123 name of
// at most 63 characters. The plain join is used only when it is unambiguous:
// every part is already a lowercase DNS label and every part but the last is
// free of '-', so the name splits back into its parts. Otherwise the parts
// are folded to lowercase DNS characters, shortened if needed, and a hash of
// key (the full, unfolded values) keeps distinct tenants apart.
func joinName(prefix string, parts []string, key string) string {
	exact := true
	var folded []string
	for i, p := range parts {
		f := foldDNS(p)
		if f != p || (i < len(parts)-1 && strings.Contains(p, "-")) {
			exact = false
		}
		if f != "" {
			folded = append(folded, f)
		}
	}
	name := prefix + strings.Join(folded, "-")
	if exact && len(name) <= maxNameLen {
		return name
	}
	h := shortHash(key)
	name = strings.TrimRight(truncate(name, maxNameLen-1-len(h)), "-")
	if name == "" {
		return "t-" + h
	}
	return name + "-" + h
}

// foldDNS lowercases s and turns every run of characters outside [a-z0-9]
// into one '-', trimming '-' at the ends.
func foldDNS(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if 'a' <= r && r <= 'z' || '0' <= r && r <= '9' {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			b.WriteRune(r)
			dash = false
		} else {
			dash = true
		}
	}
	return b.String()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

func shortHash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])[:hashLen]
}

// tenantLabels are put on every object forge-manager creates. The pool id is
// used as it is when it is a valid label value (bech32 ids are), else its hash.
func tenantLabels(c *config) map[string]string {
	l := map[string]string{
		"app.kubernetes.io/managed-by": "forge-manager",
		"cardano.io/network":           c.Network,
		"cardano.io/region":            c.Region,
	}
	if c.PoolID != "" {
		l["cardano.io/pool-id"] = c.PoolID
		if len(validation.IsValidLabelValue(c.PoolID)) > 0 {
			l["cardano.io/pool-id"] = "h-" + shortHash(c.PoolID)
		}
	}
	return l
}

// logAttrs are the tenant fields on every log line.
func (tn tenant) logAttrs(pod string) []slog.Attr {
	return []slog.Attr{
		slog.String("pod", pod), slog.String("network", tn.Network),
		slog.String("pool_id", tn.PoolID), slog.String("region", tn.Region),
	}
}
