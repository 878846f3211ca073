package main

import (
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func tenantFor(t testing.TB, kv ...string) tenant {
	t.Helper()
	c, err := loadConfig(runEnv(kv...).lookup, "run")
	if err != nil {
		t.Fatal(err)
	}
	return resolveTenant(c)
}

const bech32Pool = "pool1pu5jlj4q9w9jlxeu370a3c9myx47md5j5m2str0naunn2q3lkdy"

func TestTenantNames(t *testing.T) {
	tests := []struct {
		name                  string
		env                   []string
		lease, leader, clustr string
	}{
		{"single tenant keeps the predecessor's names", nil, "cardano-node-leader", "cardano-leader", "mainnet-unknown"},
		{"single tenant with region", []string{"CLUSTER_REGION", "us-east-1"}, "cardano-node-leader", "cardano-leader", "mainnet-us-east-1"},
		{"simple pool id", []string{"POOL_ID", "mypool", "CLUSTER_REGION", "eu-west-1"}, "cardano-leader-mainnet-mypool", "cardano-leader-mainnet-mypool", "mainnet-mypool-eu-west-1"},
		{"upper case pool id gets a hash", []string{"POOL_ID", "MYPOOL"}, "cardano-leader-mainnet-mypool-74b8c3579b", "cardano-leader-mainnet-mypool-74b8c3579b", "mainnet-mypool-unknown-4a759c2989"},
		{"bech32 pool id is shortened with a hash", []string{"POOL_ID", bech32Pool, "CARDANO_NETWORK", "preprod"}, "cardano-leader-preprod-pool1pu5jlj4q9w9jlxeu370a3c9m-0ae6731260", "cardano-leader-preprod-pool1pu5jlj4q9w9jlxeu370a3c9m-0ae6731260", "preprod-pool1pu5jlj4q9w9jlxeu370a3c9myx47md5j5m2str0-a258ce8cce"},
		{"custom network with a dash is hashed", []string{"POOL_ID", "p1", "CARDANO_NETWORK", "custom-net", "NETWORK_MAGIC", "42", "SYSTEM_START", "2024-01-01T00:00:00Z"}, "cardano-leader-custom-net-p1-019614e524", "cardano-leader-custom-net-p1-019614e524", "custom-net-p1-unknown-4cf9aea457"},
		{"overrides win", []string{"POOL_ID", "mypool", "LEASE_NAME", "my-lease", "CRD_NAME", "my-leader", "CLUSTER_IDENTIFIER", "my-cluster"}, "my-lease", "my-leader", "my-cluster"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tn := tenantFor(t, tc.env...)
			if tn.Lease != tc.lease || tn.Leader != tc.leader || tn.Cluster != tc.clustr {
				t.Errorf("got lease %q leader %q cluster %q;\nwant lease %q leader %q cluster %q", tn.Lease, tn.Leader, tn.Cluster, tc.lease, tc.leader, tc.clustr)
			}
		})
	}
}

func TestTenantLabels(t *testing.T) {
	tests := []struct {
		name   string
		env    []string
		poolID string // "" means no pool label
	}{
		{"no pool", nil, ""},
		{"bech32 id is a valid label value", []string{"POOL_ID", bech32Pool}, bech32Pool},
		{"id with spaces is hashed", []string{"POOL_ID", "My Pool"}, "h-" + shortHash("My Pool")},
		{"long id is hashed", []string{"POOL_ID", strings.Repeat("a", 64)}, "h-" + shortHash(strings.Repeat("a", 64))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := tenantFor(t, tc.env...).Labels
			if l["app.kubernetes.io/managed-by"] != "forge-manager" || l["cardano.io/network"] != "mainnet" || l["cardano.io/region"] != "unknown" {
				t.Errorf("missing fixed labels: %v", l)
			}
			if got := l["cardano.io/pool-id"]; got != tc.poolID {
				t.Errorf("pool-id label %q; want %q", got, tc.poolID)
			}
			checkLabels(t, l)
		})
	}
}

func checkNames(t testing.TB, tn tenant) {
	t.Helper()
	for _, n := range []string{tn.Lease, tn.Leader, tn.Cluster} {
		if errs := validation.IsDNS1123Label(n); len(errs) > 0 {
			t.Errorf("name %q is not a DNS-1123 label: %v", n, errs)
		}
	}
}

func checkLabels(t testing.TB, l map[string]string) {
	t.Helper()
	for k, v := range l {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			t.Errorf("label key %q: %v", k, errs)
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			t.Errorf("label %s=%q: %v", k, v, errs)
		}
	}
}

// TestTenantNamesDistinct: distinct (network, pool) pairs never share a
// name, including the pairs that collided in the predecessor.
func TestTenantNamesDistinct(t *testing.T) {
	pools := []string{
		"STAKE-POOL-A", "STAKE-POOL-B", "stake-pool-a", "stake_pool_a", "stake.pool.a", "Stake Pool A",
		"mypool", "MYPOOL", "MyPool", "my-pool", "my", "pool",
		bech32Pool, "poolx" + bech32Pool[5:], "poolx" + bech32Pool[5:] + "2", // a pool1... must decode
		strings.Repeat("a", 62), strings.Repeat("a", 63), strings.Repeat("a", 64),
		"-", "--", "é", "e",
	}
	networks := [][2]string{{"mainnet", ""}, {"preprod", ""}, {"preview", ""}, {"custom-net", "7"}, {"custom", "7"}, {"net-mypool", "7"}}
	seen := map[string]string{}
	for _, nw := range networks {
		for _, p := range pools {
			kv := []string{"POOL_ID", p, "CARDANO_NETWORK", nw[0]}
			if nw[1] != "" {
				kv = append(kv, "NETWORK_MAGIC", nw[1], "SYSTEM_START", "2024-01-01T00:00:00Z")
			}
			tn := tenantFor(t, kv...)
			checkNames(t, tn)
			checkLabels(t, tn.Labels)
			key := fmt.Sprintf("%s/%q", nw[0], p)
			if prev, dup := seen[tn.Lease]; dup {
				t.Errorf("%s and %s share the Lease name %q", prev, key, tn.Lease)
			}
			seen[tn.Lease] = key
		}
	}
}

// FuzzTenantNames: any accepted configuration gives valid names and labels.
func FuzzTenantNames(f *testing.F) {
	f.Add("STAKE-POOL-A", "mainnet", "us-east-1")
	f.Add(bech32Pool, "custom-testnet", "eu")
	f.Add("", "preprod", "unknown")
	f.Add(strings.Repeat("-", 300), "a", "b")
	f.Fuzz(func(t *testing.T, pool, network, region string) {
		kv := []string{"POOL_ID", pool, "CARDANO_NETWORK", network, "NETWORK_MAGIC", "764824073", "CLUSTER_REGION", region}
		if _, known := knownChains[network]; !known {
			kv = append(kv, "SYSTEM_START", "2024-01-01T00:00:00Z")
		}
		c, err := loadConfig(runEnv(kv...).lookup, "run")
		if err != nil {
			return // rejected inputs never reach the names
		}
		tn := resolveTenant(c)
		checkNames(t, tn)
		checkLabels(t, tn.Labels)
	})
}

// TestTenantClusterNames: with cluster management the local names carry the
// region (two regions' StatefulSets may share a namespace), the token is
// one per pool, the candidacy one per region, all valid and distinct.
func TestTenantClusterNames(t *testing.T) {
	tests := []struct {
		name                                 string
		env                                  []string
		lease, token, candidacy, forgeClustr string
	}{
		{"single tenant", []string{"CLUSTER_REGION", "eu"}, "cardano-node-leader-mainnet-eu", "cardano-forge-mainnet", "cardano-candidate-mainnet-eu", "mainnet-eu"},
		{"pool", []string{"POOL_ID", "mypool", "CLUSTER_REGION", "us-east-1"}, "cardano-leader-mainnet-mypool-us-east-1", "cardano-forge-mainnet-mypool", "cardano-candidate-mainnet-mypool-us-east-1", "mainnet-mypool-us-east-1"},
		{"long pool id", []string{"POOL_ID", bech32Pool, "CLUSTER_REGION", "eu"}, "cardano-leader-mainnet-pool1pu5jlj4q9w9jlxeu370a3c9m-c4be2ad315", "cardano-forge-mainnet-pool1pu5jlj4q9w9jlxeu370a3c9my-4f1e4aa756", "cardano-candidate-mainnet-pool1pu5jlj4q9w9jlxeu370a3-c4be2ad315", "mainnet-pool1pu5jlj4q9w9jlxeu370a3c9myx47md5j5m2str0-c4be2ad315"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tn := tenantFor(t, append([]string{"ENABLE_CLUSTER_MANAGEMENT", "true"}, tc.env...)...)
			if tn.Lease != tc.lease || tn.Token != tc.token || tn.Candidacy != tc.candidacy || tn.Cluster != tc.forgeClustr {
				t.Errorf("got lease %q token %q candidacy %q cluster %q;\nwant %q %q %q %q", tn.Lease, tn.Token, tn.Candidacy, tn.Cluster, tc.lease, tc.token, tc.candidacy, tc.forgeClustr)
			}
			for _, n := range []string{tn.Lease, tn.Leader, tn.Token, tn.Candidacy, tn.Cluster} {
				if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 || len(n) > 63 {
					t.Errorf("%q: %v", n, errs)
				}
			}
		})
	}
	seen := map[string]string{}
	for _, pool := range []string{"", "a", "a-b", "A", bech32Pool, "poolx" + bech32Pool[5:]} {
		for _, region := range []string{"eu", "us", "eu-west"} {
			for _, network := range []string{"mainnet", "preprod"} {
				tn := tenantFor(t, "ENABLE_CLUSTER_MANAGEMENT", "true", "POOL_ID", pool, "CLUSTER_REGION", region, "CARDANO_NETWORK", network)
				who := network + "/" + pool + "/" + region
				for kind, n := range map[string]string{"lease": tn.Lease, "candidacy": tn.Candidacy, "cluster": tn.Cluster, "token-" + region: tn.Token} {
					if other, dup := seen[kind+" "+n]; dup && other != who && !strings.HasPrefix(kind, "token") {
						t.Errorf("%s %q for both %s and %s", kind, n, other, who)
					}
					seen[kind+" "+n] = who
				}
			}
		}
	}
}

// TestTenantCandidacySelector: the list of candidacies finds this pool's,
// in every region, and never another pool's or a single-tenant pool's.
func TestTenantCandidacySelector(t *testing.T) {
	sel := func(kv ...string) string {
		return tenantFor(t, append([]string{"ENABLE_CLUSTER_MANAGEMENT", "true", "CLUSTER_REGION", "eu"}, kv...)...).Candidacies
	}
	if got, want := sel("POOL_ID", "p1"), "app.kubernetes.io/managed-by=forge-manager,cardano.io/network=mainnet,cardano.io/role=candidacy,cardano.io/pool-id=p1"; got != want {
		t.Errorf("pool selector %q; want %q", got, want)
	}
	if got := sel(); !strings.HasSuffix(got, ",!cardano.io/pool-id") {
		t.Errorf("single-tenant selector %q does not exclude pools", got)
	}
	l := candidacyLabels(tenantFor(t, "ENABLE_CLUSTER_MANAGEMENT", "true", "CLUSTER_REGION", "us", "POOL_ID", "p1").ClusterLabels)
	if l["cardano.io/role"] != "candidacy" || l["cardano.io/pool-id"] != "p1" || l["cardano.io/environment"] != "production" {
		t.Errorf("candidacy labels %v", l)
	}
}
