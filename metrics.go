package main

// Metrics, declared once, on a private set (README, Observability). The predecessor's names
// are kept with their meanings made true: cardano_forging_enabled is what
// the node confirmed, not what was intended. Gauges are read from the loop's
// last snapshot at scrape time; counters are bumped by the loop. Every
// series carries the tenant labels; no label ever holds key material or an
// error text.

import (
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

type metricSet struct {
	set      *metrics.Set
	labels   string // the tenant labels, rendered once
	keysPool string // the key_pool_id of forge_manager_keys_info now
}

// newMetricSet declares every series on b, with labels (key, value pairs)
// on each.
func newMetricSet(b *board, labels ...string) *metricSet {
	metrics.ExposeMetadata(true) // # TYPE lines, for scrapers that want them
	m := &metricSet{set: metrics.NewSet(), labels: renderLabels(labels...)}
	view := func(f func(v *snapshot) float64) func() float64 {
		return func() float64 {
			if v := b.load(); v != nil {
				return f(v)
			}
			return 0
		}
	}
	m.gauge("cardano_forging_enabled", view(func(v *snapshot) float64 { return b2f(v.Forging) }))
	m.gauge("cardano_leader_status", view(func(v *snapshot) float64 { return b2f(v.Role == "leader") }))
	m.gauge("forge_manager_eligible", view(func(v *snapshot) float64 { return b2f(v.Eligible) }))
	m.gauge("forge_manager_leadership_epoch", view(func(v *snapshot) float64 { return float64(v.Epoch) }))
	m.gauge("forge_manager_node_process_found", view(func(v *snapshot) float64 { return b2f(v.NodePID != 0) }))
	m.gauge("forge_manager_lease_renew_age_seconds", view(func(v *snapshot) float64 {
		if v.renewedAt.IsZero() {
			return -1 // never renewed by this process
		}
		return time.Since(v.renewedAt).Seconds()
	}))
	// The node's forging state as a state set: unknown is not off, and an
	// alert can tell "cannot tell" from "not forging".
	for st := stateUnknown; st <= stateDisabling; st++ {
		name := st.String()
		m.gauge("forge_manager_node_forging_state", view(func(v *snapshot) float64 { return b2f(v.ForgingState == name) }), "state", name)
	}
	// The chain and the keys (SPEC 12); -1 while unknown.
	opt := func(f func(c *chainSnapshot) *int64) func() float64 {
		return view(func(v *snapshot) float64 {
			if p := f(&v.Chain); p != nil {
				return float64(*p)
			}
			return -1
		})
	}
	m.gauge("cardano_node_tip_lag_slots", opt(func(c *chainSnapshot) *int64 { return c.TipLagSlots }))
	m.gauge("cardano_opcert_counter", opt(func(c *chainSnapshot) *int64 { return c.OpCertCounter }))
	m.gauge("cardano_kes_period_start", opt(func(c *chainSnapshot) *int64 { return c.KESPeriodStart }))
	m.gauge("cardano_kes_period_current", opt(func(c *chainSnapshot) *int64 { return c.KESPeriod }))
	m.gauge("cardano_kes_periods_remaining", opt(func(c *chainSnapshot) *int64 { return c.KESPeriodsRemaining }))
	m.gauge("cardano_kes_expiry_timestamp_seconds", view(func(v *snapshot) float64 {
		t, err := time.Parse(time.RFC3339, v.Chain.KESExpires)
		if err != nil {
			return -1
		}
		return float64(t.Unix())
	}))
	m.gauge("forge_manager_node_certificate_mismatch", view(func(v *snapshot) float64 { return b2f(v.Chain.NodeCertificateMismatch != "") }))
	m.gauge("forge_manager_credentials_refused", view(func(v *snapshot) float64 { return b2f(v.Chain.CredentialsRefused != "") }))
	m.gauge("forge_manager_build_info", func() float64 { return 1 }, "version", version, "goversion", runtime.Version())
	// Created up front so every series exists from the first scrape.
	m.leadershipChanges()
	m.counter("forge_manager_self_fencing_total")
	m.counter("forge_manager_node_terminations_total")
	for _, r := range []string{"enable", "disable"} {
		m.counter("cardano_sighup_signals_total", "reason", r)
	}
	// Every operation apiOp can name (kube.go's wrapAPI callers): a counter
	// that first appears at 1 shows no increase(), so the first failures
	// would be invisible to ForgeManagerAPIErrors.
	for _, op := range []string{"get", "create", "update", "patch", "list", "watch", "other"} {
		m.counter("forge_manager_api_errors_total", "operation", op)
	}
	return m
}

// clusterGauges declares the cluster-wide series (cluster.go), with
// cluster management only: this region a live candidate, this pod holding
// the forging token, the node's health, the region's effective priority.
func (m *metricSet) clusterGauges(b *board) {
	view := func(f func(v *clusterSnapshot) float64) func() float64 {
		return func() float64 {
			if v := b.load(); v != nil && v.Cluster != nil {
				return f(v.Cluster)
			}
			return 0
		}
	}
	m.gauge("cardano_forge_cluster_enabled", view(func(v *clusterSnapshot) float64 { return b2f(v.Candidate) }))
	m.gauge("cardano_forge_leadership_active", view(func(v *clusterSnapshot) float64 { return b2f(v.HoldsToken) }))
	m.gauge("cardano_forge_health_status", view(func(v *clusterSnapshot) float64 { return b2f(v.Healthy) }))
	m.gauge("cardano_forge_priority", view(func(v *clusterSnapshot) float64 { return float64(v.EffectivePriority) }))
	m.gauge("forge_manager_cluster_rank", view(func(v *clusterSnapshot) float64 { return float64(v.Rank) }))
}

// keysInfo names the pool the loaded keys prove (opcert.go), whatever
// POOL_ID says: an alert sums forging by it across namespaces and
// elections, so the same keys forging under two of them is seen. Called by
// the loop only.
func (m *metricSet) keysInfo(pool string) {
	if pool == m.keysPool {
		return
	}
	if m.keysPool != "" {
		m.set.UnregisterMetric(m.name("forge_manager_keys_info", "key_pool_id", m.keysPool))
	}
	m.keysPool = pool
	if pool != "" {
		m.gauge("forge_manager_keys_info", func() float64 { return 1 }, "key_pool_id", pool)
	}
}

func (m *metricSet) name(name string, kv ...string) string {
	extra := renderLabels(kv...)
	if extra != "" {
		return name + "{" + m.labels + "," + extra + "}"
	}
	return name + "{" + m.labels + "}"
}

func (m *metricSet) gauge(name string, f func() float64, kv ...string) {
	m.set.GetOrCreateGauge(m.name(name, kv...), f)
}

func (m *metricSet) counter(name string, kv ...string) *metrics.Counter {
	return m.set.GetOrCreateCounter(m.name(name, kv...))
}

func (m *metricSet) leadershipChanges() *metrics.Counter {
	return m.counter("cardano_leadership_changes_total")
}

func (m *metricSet) leadershipChange() { m.leadershipChanges().Inc() }
func (m *metricSet) fenced()           { m.counter("forge_manager_self_fencing_total").Inc() }
func (m *metricSet) nodeTerminated()   { m.counter("forge_manager_node_terminations_total").Inc() }
func (m *metricSet) sighup(reason string) {
	m.counter("cardano_sighup_signals_total", "reason", reason).Inc()
}
func (m *metricSet) apiError(operation string) {
	m.counter("forge_manager_api_errors_total", "operation", operation).Inc()
}

// credentialOp counts a write or remove of one file, named by its kind.
func (m *metricSet) credentialOp(op, targetVar string) {
	file := strings.ToLower(strings.TrimPrefix(targetVar, "TARGET_"))
	m.counter("cardano_credential_operations_total", "operation", op, "file", file).Inc()
}

// write is the /metrics body: this set, then the process's own (resident
// memory, CPU seconds, open files, Go runtime).
func (m *metricSet) write(w io.Writer) {
	m.set.WritePrometheus(w)
	metrics.WriteProcessMetrics(w)
}

// renderLabels renders k="v" pairs with Prometheus escaping.
func renderLabels(kv ...string) string {
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%s", kv[i], strconv.Quote(kv[i+1]))
	}
	return b.String()
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
