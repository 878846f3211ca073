package main

// The configuration: one struct, filled from the environment by one table and
// checked by one function. The same table prints `forge-manager help`, so the
// help text and the loader cannot disagree.

import (
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// config is everything forge-manager reads from its environment.
type config struct {
	PodName, Namespace, PodUID string

	NodeSocket        string
	SocketWaitTimeout time.Duration
	NodeProcessName   string
	NodeMetricsURL    string
	ConfirmTimeout    time.Duration

	SourceKES, SourceVRF, SourceOpCert string
	TargetKES, TargetVRF, TargetOpCert string
	HeartbeatFile                      string
	StepDownFile                       string
	DeadmanBinary                      string
	Probe                              deadmanProbe

	LeaseName                                 string
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	APITimeout                                time.Duration

	CRDGroup, CRDVersion, CRDPlural, CRDName string

	MetricsPort int
	LogLevel    slog.Level
	Kubeconfig  string

	PoolID, PoolIDHex, PoolName, PoolTicker string
	Network                                 string
	NetworkMagic                            uint32
	MaxTipLag                               int
	SystemStart                             time.Time
	SlotLength                              time.Duration
	KESPeriodSlots, MaxKESEvolutions        int
	AppType                                 string

	ClusterManagement                     bool
	LeaseWatch                            bool // LEASE_WATCH (watch.go)
	Region                                string
	Priority                              int
	ClusterIdentifier, ClusterEnvironment string
	ClusterKubeconfig, ClusterNamespace   string
	ClusterLease, ClusterRenew            time.Duration
	ClusterRetry                          time.Duration
	PreemptDelay, MinHold                 time.Duration

	HealthEndpoint                string
	HealthInterval, HealthTimeout time.Duration
	HealthThreshold               int

	inCluster bool     // KUBERNETES_SERVICE_HOST is set: use the pod's ServiceAccount
	notices   []string // set variables the predecessor read and this program does not
}

// obsolete are the predecessor's variables that have no meaning here. Set,
// they are reported (not silently ignored) and do not stop the program.
var obsolete = map[string]string{
	"SLEEP_INTERVAL":         "the loop runs every RETRY_PERIOD (default 2s)",
	"START_AS_NON_PRODUCING": "forge-manager init puts the keys in place for the node's boot",
	"DISABLE_SOCKET_CHECK":   "the socket is always checked, by a connect() and not the file's existence",
}

// setting is one environment variable: its default as shown in help, what
// it means, and how it is parsed into its field.
type setting struct {
	name    string
	def     string // "" means unset by default
	help    string
	emptyOK bool   // an explicitly empty value is meaningful, not a mistake
	unused  string // accepted and not used by this version: the notice when it is set
	parse   func(v string) error
}

// noCoordination is the notice for a cluster-wide coordination variable set
// while that coordination is off.
const noCoordination = "has no effect while ENABLE_CLUSTER_MANAGEMENT is false: this StatefulSet " +
	"runs its own election, and another region running its own forges too"

// poolInSpec is the notice for a pool detail only the CardanoForgeCluster
// shows.
const poolInSpec = "is used only with ENABLE_CLUSTER_MANAGEMENT=true, in the spec.pool of the CardanoForgeCluster it creates"

// The application types; only a block producer ever holds keys.
const (
	appBlockProducer = "block-producer"
	appRelay         = "relay"
	appMonitoring    = "monitoring"
)

// knownMagic is the protocol magic of each public network: a known name with
// another magic is a copy-paste mistake that would point a pool at the wrong
// chain's objects.
var knownMagic = map[string]uint32{"mainnet": 764824073, "preprod": 1, "preview": 2}

// settingsOf binds every variable to its field of c. The same table prints
// `forge-manager help`, so the help text and the loader cannot disagree.
func settingsOf(c *config) []setting {
	return []setting{
		{name: "POD_NAME", parse: text(&c.PodName, isDNSSubdomain),
			help: "run: required. This pod's name (downward API metadata.name); half of the Lease " +
				"holder identity."},
		{name: "NAMESPACE", def: "default", parse: text(&c.Namespace, isDNSLabel),
			help: "Namespace of the Lease and CardanoLeader (downward API metadata.namespace)."},
		{name: "POD_UID", parse: text(&c.PodUID, isIdentityPart),
			help: "run in a cluster: required. This pod's UID (downward API metadata.uid); a pod " +
				"recreated under the same name is a new holder."},

		{name: "NODE_SOCKET", def: "/ipc/node.socket", parse: path(&c.NodeSocket),
			help: "cardano-node's socket. A successful connect() to it, not the file's existence, gates" +
				" the first SIGHUP to each node incarnation."},
		{name: "SOCKET_WAIT_TIMEOUT", def: "600s", parse: duration(&c.SocketWaitTimeout, time.Second, 24*time.Hour),
			help: "How long run waits for the node's socket before reporting not ready (it keeps " +
				"waiting)."},
		{name: "CARDANO_NODE_PROCESS_NAME", def: "cardano-node", parse: text(&c.NodeProcessName, isProcessName),
			help: "Executable name of the node process to signal (exact match on comm or the base name " +
				"of argv[0]; never PID 1)."},
		{name: "NODE_METRICS_URL", def: "http://127.0.0.1:12798/metrics", emptyOK: true, parse: httpURL(&c.NodeMetricsURL),
			help: "The node's Prometheus endpoint, where every SIGHUP is confirmed " +
				"(cardano_node_metrics_forging_enabled[_int]). Empty: no confirmation, a delivered " +
				"signal counts."},
		{name: "SIGHUP_CONFIRM_TIMEOUT", def: "5s", parse: duration(&c.ConfirmTimeout, 100*time.Millisecond, 5*time.Minute),
			help: "How long to wait for the node to confirm a SIGHUP before retrying (enable) or " +
				"terminating the node (disable)."},

		{name: "SOURCE_KES_KEY", def: "/secrets/kes.skey", parse: path(&c.SourceKES),
			help: "KES signing key in the mounted Secret."},
		{name: "SOURCE_VRF_KEY", def: "/secrets/vrf.skey", parse: path(&c.SourceVRF),
			help: "VRF signing key in the mounted Secret."},
		{name: "SOURCE_OP_CERT", def: "/secrets/node.cert", parse: path(&c.SourceOpCert),
			help: "Operational certificate in the mounted Secret."},
		{name: "TARGET_KES_KEY", def: "/ipc/kes.skey", parse: path(&c.TargetKES),
			help: "Where cardano-node reads the KES key (its --shelley-kes-key)."},
		{name: "TARGET_VRF_KEY", def: "/ipc/vrf.skey", parse: path(&c.TargetVRF),
			help: "Where cardano-node reads the VRF key (its --shelley-vrf-key)."},
		{name: "TARGET_OP_CERT", def: "/ipc/node.cert", parse: path(&c.TargetOpCert),
			help: "Where cardano-node reads the certificate (its --shelley-operational-certificate)."},
		{name: "HEARTBEAT_FILE", parse: path(&c.HeartbeatFile),
			help: "Written by init and by run every pass; read by the dead-man probe. Default: " +
				"DEADMAN_BINARY + .heartbeat (/ipc/forge-manager.heartbeat); the probe, run as that " +
				"binary, finds it there without this variable."},
		{name: "STEP_DOWN_FILE", def: "/ipc/forge-manager.step-down", parse: path(&c.StepDownFile),
			help: "Written by `forge-manager step-down DURATION` (kubectl exec into the sidecar); while " +
				"the time in it is ahead, run does not forge and stays out of the election. On the pod's " +
				"in-memory volume: it survives a sidecar restart and ends with the pod."},
		{name: "DEADMAN_BINARY", def: "/ipc/forge-manager", emptyOK: true, parse: optionalPath(&c.DeadmanBinary),
			help: "init copies this binary here so the node container's livenessProbe can run it. " +
				"Empty: no copy."},
		{name: "DEADMAN_PROBE_PERIOD", def: "1s", parse: duration(&c.Probe.period, time.Millisecond, time.Hour),
			help: "The node container's dead-man livenessProbe periodSeconds, as deployed: the loader " +
				"checks the probe kills a node in time."},
		{name: "DEADMAN_PROBE_FAILURE_THRESHOLD", def: "2", parse: integer(&c.Probe.threshold, 1, 100),
			help: "Its failureThreshold (2: one slow exec on a loaded machine restarts nothing)."},
		{name: "DEADMAN_PROBE_TIMEOUT", def: "1s", parse: duration(&c.Probe.timeout, time.Millisecond, time.Hour),
			help: "Its timeoutSeconds."},
		{name: "DEADMAN_PROBE_GRACE", def: "1s", parse: duration(&c.Probe.grace, 0, time.Hour),
			help: "Its probe-level terminationGracePeriodSeconds. Period x threshold + timeout + grace " +
				"+ 1s must fit in LEASE_DURATION - RENEW_DEADLINE."},

		{name: "LEASE_NAME", parse: text(&c.LeaseName, isObjectName),
			help: "Lease name. Default: cardano-leader-{network}-{pool} with POOL_ID, else cardano-" +
				"node-leader."},
		{name: "LEASE_DURATION", def: "15s", parse: duration(&c.LeaseDuration, time.Second, time.Hour),
			help: "A standby takes an unreleased Lease only after seeing it unchanged this long on its " +
				"own clock. Whole seconds."},
		{name: "RENEW_DEADLINE", def: "10s", parse: duration(&c.RenewDeadline, 200*time.Millisecond, time.Hour),
			help: "A leader that has not renewed for this long disables forging without waiting for the" +
				" API."},
		{name: "RETRY_PERIOD", def: "2s", parse: duration(&c.RetryPeriod, 100*time.Millisecond, 10*time.Minute),
			help: "How often the leader renews and standbys look at the Lease."},
		{name: "LEASE_WATCH", def: "true", parse: boolean(&c.LeaseWatch),
			help: "Follow the Lease with a watch: a standby learns of every renew and release when it " +
				"happens, takes a released Lease at once and an expired one at its exact expiry, and " +
				"sends no periodic request. false: every replica reads the Lease every RETRY_PERIOD " +
				"(for a proxy that cuts long requests)."},
		{name: "API_TIMEOUT", parse: duration(&c.APITimeout, 100*time.Millisecond, time.Hour),
			help: "Timeout of each API request. Default: RENEW_DEADLINE/2; at most that. Always cut to " +
				"the time left before the renew deadline."},

		{name: "CRD_GROUP", def: "cardano.io", parse: text(&c.CRDGroup, isDNSSubdomain),
			help: "API group of CardanoLeader."},
		{name: "CRD_VERSION", def: "v1", parse: text(&c.CRDVersion, isDNSLabel),
			help: "API version of CardanoLeader."},
		{name: "CRD_PLURAL", def: "cardanoleaders", parse: text(&c.CRDPlural, isDNSLabel),
			help: "Resource (plural) of CardanoLeader."},
		{name: "CRD_NAME", parse: text(&c.CRDName, isObjectName),
			help: "CardanoLeader object name. Default: the Lease name with POOL_ID, else cardano-" +
				"leader."},

		{name: "METRICS_PORT", def: "8000", parse: integer(&c.MetricsPort, 1, 65535),
			help: "Port of /metrics, /healthz, /readyz, /status (all interfaces)."},
		{name: "LOG_LEVEL", def: "info", parse: logLevel(&c.LogLevel),
			help: "debug, info, warn or error."},
		{name: "KUBECONFIG", parse: path(&c.Kubeconfig),
			help: "Out of cluster only: kubeconfig file. In a pod the ServiceAccount is used."},

		{name: "POOL_ID", parse: text(&c.PoolID, isPoolID),
			help: "Pool identifier (any string, e.g. a bech32 pool id). Set: multi-tenant names (see " +
				"NAMES)."},
		{name: "POOL_ID_HEX", parse: text(&c.PoolIDHex, isPoolHex),
			unused: poolInSpec,
			help:   "Pool id as 56 hex digits (the 28-byte pool key hash)."},
		{name: "POOL_NAME", parse: text(&c.PoolName, isFreeText),
			unused: poolInSpec,
			help:   "Human-readable pool name."},
		{name: "POOL_TICKER", parse: text(&c.PoolTicker, isTicker),
			help: "Pool ticker, a metric label."},
		{name: "CARDANO_NETWORK", def: "mainnet", parse: text(&c.Network, isDNSLabel),
			help: "Network name: mainnet, preprod, preview, or a custom name (lowercase DNS label)."},
		{name: "NETWORK_MAGIC", def: "764824073", parse: magic(&c.NetworkMagic),
			help: "Network magic. Default: the known network's (mainnet 764824073, preprod 1, preview " +
				"2); required for a custom network."},
		{name: "MAX_TIP_LAG", def: "600", parse: integer(&c.MaxTipLag, 0, 1000000),
			help: "Slots the node's tip (cardano_node_metrics_slotNum_int) may lag the wall-clock slot" +
				" before this replica is ineligible (a leader hands over). 600 slots of 1 s: a node at " +
				"the tip waits that long without a block about once in 10^11 gaps. 0 turns the check off" +
				" (required with NODE_METRICS_URL=\"\")."},
		{name: "SYSTEM_START", parse: rfc3339(&c.SystemStart),
			help: "Custom network only, and required there: the time of slot 0 (RFC 3339). For a " +
				"network with a Byron era, the time slot 0 would have had at SLOT_LENGTH: the Shelley " +
				"start minus its first slot x SLOT_LENGTH. Built in for mainnet, preprod and preview."},
		{name: "SLOT_LENGTH", def: "1s", parse: duration(&c.SlotLength, time.Millisecond, time.Minute),
			help: "Custom network only: the slot length of its Shelley genesis."},
		{name: "SLOTS_PER_KES_PERIOD", def: "129600", parse: integer(&c.KESPeriodSlots, 1, 1<<30),
			help: "Custom network only: slotsPerKESPeriod of its Shelley genesis."},
		{name: "MAX_KES_EVOLUTIONS", def: "62", parse: integer(&c.MaxKESEvolutions, 1, 1<<16),
			help: "Custom network only: maxKESEvolutions of its Shelley genesis."},
		{name: "APPLICATION_TYPE", def: appBlockProducer, parse: oneOf(&c.AppType, appBlockProducer, appRelay, appMonitoring),
			help: "block-producer, relay or monitoring. Relays and monitors never write credentials and" +
				" never lead."},

		{name: "ENABLE_CLUSTER_MANAGEMENT", def: "false", parse: boolean(&c.ClusterManagement),
			help: "Cluster-wide coordination (docs/regions.md): one forger for the pool across " +
				"StatefulSets, regions and Kubernetes clusters, through a forging token Lease in the " +
				"coordination API server. Without it, each StatefulSet runs its own election: run one " +
				"per pool."},
		{name: "CLUSTER_REGION", def: "unknown", parse: text(&c.Region, isDNSLabel),
			help: "Region of this StatefulSet (lowercase DNS label); a name part and a label. Required" +
				" with ENABLE_CLUSTER_MANAGEMENT, distinct per StatefulSet of a pool."},
		{name: "CLUSTER_PRIORITY", def: "100", parse: integer(&c.Priority, 1, 999),
			unused: noCoordination,
			help: "Region priority, 1..999, lower wins: the spec.priority of the CardanoForgeCluster " +
				"this replica creates. The object's spec, once it exists, is the operator's and wins."},
		{name: "CLUSTER_IDENTIFIER", parse: text(&c.ClusterIdentifier, isObjectName),
			unused: noCoordination,
			help: "CardanoForgeCluster name. Default: {network}-{pool}-{region} with POOL_ID, else " +
				"{network}-{region}."},
		{name: "CLUSTER_ENVIRONMENT", def: "production", parse: text(&c.ClusterEnvironment, isLabelValue),
			unused: noCoordination,
			help: "Environment name: the cardano.io/environment label on the cluster-wide objects, and" +
				" in /status."},
		{name: "CLUSTER_KUBECONFIG", parse: path(&c.ClusterKubeconfig),
			unused: noCoordination,
			help: "Kubeconfig file (mounted from a Secret) of the coordination API server, which holds " +
				"the forging token, the candidacies and the CardanoForgeClusters. Read once at start. " +
				"Default: this pod's own API server."},
		{name: "CLUSTER_NAMESPACE", parse: text(&c.ClusterNamespace, isDNSLabel),
			unused: noCoordination,
			help:   "Namespace of the cluster-wide objects. Default: NAMESPACE."},
		{name: "CLUSTER_LEASE_DURATION", def: "20s", parse: duration(&c.ClusterLease, time.Second, time.Hour),
			unused: noCoordination,
			help: "The forging token is taken over only after it was seen unchanged this long; a " +
				"candidacy not renewed this long is not live. Whole seconds."},
		{name: "CLUSTER_RENEW_DEADLINE", def: "12s", parse: duration(&c.ClusterRenew, 200*time.Millisecond, time.Hour),
			unused: noCoordination,
			help:   "A token holder that has not renewed for this long disables forging."},
		{name: "CLUSTER_RETRY_PERIOD", def: "2s", parse: duration(&c.ClusterRetry, 100*time.Millisecond, 10*time.Minute),
			unused: noCoordination,
			help: "How often the token is renewed or observed, candidacies written and read, and the " +
				"CardanoForgeCluster read."},
		{name: "CLUSTER_PREEMPT_DELAY", def: "2m", parse: duration(&c.PreemptDelay, time.Second, 24*time.Hour),
			unused: noCoordination,
			help: "The token holder hands over to a better region only after that region's candidacy " +
				"has been live and better this long without a break. At least CLUSTER_LEASE_DURATION."},
		{name: "CLUSTER_MIN_HOLD", def: "10m", parse: duration(&c.MinHold, 0, 24*time.Hour),
			unused: noCoordination,
			help:   "...and only after it has held the token this long."},

		{name: "HEALTH_CHECK_ENDPOINT", parse: httpURL(&c.HealthEndpoint),
			help: "HTTP(S) URL probed every HEALTH_CHECK_INTERVAL; a 2xx answer is healthy. Unset: only" +
				" the node process and socket count."},
		{name: "HEALTH_CHECK_INTERVAL", def: "30s", parse: duration(&c.HealthInterval, 100*time.Millisecond, time.Hour),
			help: "Time between health checks."},
		{name: "HEALTH_CHECK_TIMEOUT", def: "5s", parse: duration(&c.HealthTimeout, 10*time.Millisecond, time.Hour),
			help: "Timeout of one health check; shorter than the interval."},
		{name: "HEALTH_CHECK_FAILURE_THRESHOLD", def: "3", parse: integer(&c.HealthThreshold, 1, 100),
			help: "Consecutive failed checks that make this replica ineligible to forge (a leader hands" +
				" over)."},
	}
}

// loadConfig reads every setting through getenv (os.LookupEnv in production),
// fills in the derived defaults and validates the result for the
// subcommand. The error lists every problem, one per line.
func loadConfig(getenv func(string) (string, bool), cmd string) (*config, error) {
	c := &config{}
	problems, given, bad := c.read(getenv)
	_, c.inCluster = getenv("KUBERNETES_SERVICE_HOST")
	c.notices = notices(getenv, given, settingsOf(c), c.ClusterManagement)
	c.derive(cmd, given, bad)
	problems = append(problems, c.validate(cmd, given, bad)...)
	if len(problems) > 0 {
		return nil, &configError{problems}
	}
	return c, nil
}

// read parses each variable into its field. given holds the variables set
// explicitly and parsed; bad those already reported, so one mistake is not
// reported twice.
func (c *config) read(getenv func(string) (string, bool)) (problems []string, given, bad map[string]bool) {
	given, bad = map[string]bool{}, map[string]bool{}
	for _, s := range settingsOf(c) {
		v, ok := getenv(s.name)
		if ok && v == "" && !s.emptyOK {
			if s.def != "" {
				problems = append(problems, fmt.Sprintf(`%s="": must not be empty (unset it to use the default %q)`, s.name, s.def))
				continue
			}
			ok = false // an empty optional variable is the same as an unset one
		}
		if !ok {
			v = s.def
		}
		if v == "" && !(ok && s.emptyOK) {
			continue
		}
		if err := s.parse(v); err != nil {
			problems = append(problems, fmt.Sprintf("%s=%q: %v", s.name, v, err))
			bad[s.name] = true
			continue
		}
		given[s.name] = ok
	}
	return problems, given, bad
}

// notices are the variables set that this version accepts and does not use,
// and the predecessor's that it does not know: reported, never silently
// ignored, and no reason to stop.
func notices(getenv func(string) (string, bool), given map[string]bool, settings []setting, cluster bool) []string {
	var out []string
	for _, s := range settings {
		if (s.unused == noCoordination || s.unused == poolInSpec) && cluster {
			continue
		}
		if s.unused != "" && given[s.name] {
			out = append(out, s.name+" "+s.unused)
		}
	}
	for name, why := range obsolete {
		if _, set := getenv(name); set {
			out = append(out, name+" is not used: "+why)
		}
	}
	sort.Strings(out)
	return out
}

// derive fills in the defaults that follow from other settings.
func (c *config) derive(cmd string, given, bad map[string]bool) {
	if !given["API_TIMEOUT"] {
		c.APITimeout = c.RenewDeadline / 2
	}
	if want, known := knownMagic[c.Network]; known && !given["NETWORK_MAGIC"] && !bad["NETWORK_MAGIC"] {
		c.NetworkMagic = want
	}
	if c.ClusterNamespace == "" {
		c.ClusterNamespace = c.Namespace
	}
	if c.HeartbeatFile == "" {
		c.HeartbeatFile = heartbeatDefault(cmd, c.DeadmanBinary)
	}
}

// validate checks the relations between settings.
func (c *config) validate(cmd string, given, bad map[string]bool) []string {
	var p []string
	add := func(format string, a ...any) { p = append(p, fmt.Sprintf(format, a...)) }
	if cmd == "run" {
		p = append(p, c.validateRun(bad)...)
	}
	if !anyBad(bad, "LEASE_DURATION", "RENEW_DEADLINE", "RETRY_PERIOD", "API_TIMEOUT", "DEADMAN_PROBE_PERIOD",
		"DEADMAN_PROBE_FAILURE_THRESHOLD", "DEADMAN_PROBE_TIMEOUT", "DEADMAN_PROBE_GRACE") {
		p = append(p, timingProblems(c.timing(), c.Probe, "")...)
	}
	want, known := knownMagic[c.Network]
	switch {
	case known && given["NETWORK_MAGIC"] && c.NetworkMagic != want:
		add(`NETWORK_MAGIC="%d" does not match CARDANO_NETWORK=%q: its magic is %d`, c.NetworkMagic, c.Network, want)
	case !known && !given["NETWORK_MAGIC"] && !bad["NETWORK_MAGIC"] && !bad["CARDANO_NETWORK"]:
		add("NETWORK_MAGIC is required for the custom network CARDANO_NETWORK=%q", c.Network)
	}
	p = append(p, c.validateChain(cmd, given, bad)...)
	if c.ClusterManagement {
		p = append(p, c.validateCluster(given, bad)...)
	}
	if c.HealthTimeout >= c.HealthInterval && !bad["HEALTH_CHECK_TIMEOUT"] && !bad["HEALTH_CHECK_INTERVAL"] {
		add(`HEALTH_CHECK_TIMEOUT="%s" must be shorter than HEALTH_CHECK_INTERVAL="%s"`, c.HealthTimeout, c.HealthInterval)
	}
	return append(p, c.distinctPaths()...)
}

// chainSettings are the genesis parameters a custom network needs.
var chainSettings = []string{"SYSTEM_START", "SLOT_LENGTH", "SLOTS_PER_KES_PERIOD", "MAX_KES_EVOLUTIONS"}

// validateChain: the chain's clock is built in for the public networks and
// given for a custom one; the tip check needs the node's metrics.
func (c *config) validateChain(cmd string, given, bad map[string]bool) []string {
	var p []string
	_, known := knownChains[c.Network]
	for _, name := range chainSettings {
		if known && given[name] {
			p = append(p, fmt.Sprintf("%s is built in for CARDANO_NETWORK=%q: set it only for a custom network", name, c.Network))
		}
	}
	if !known && !given["SYSTEM_START"] && !bad["SYSTEM_START"] && !bad["CARDANO_NETWORK"] {
		p = append(p, fmt.Sprintf("SYSTEM_START is required for the custom network CARDANO_NETWORK=%q (systemStart of its "+
			"Shelley genesis), so the wall-clock slot and the KES period can be known", c.Network))
	}
	if cmd == "run" && c.AppType == appBlockProducer && c.NodeMetricsURL == "" && c.MaxTipLag != 0 && !bad["MAX_TIP_LAG"] {
		p = append(p, `NODE_METRICS_URL="" leaves the node's tip unknown, so no replica could ever forge: set MAX_TIP_LAG=0 `+
			"to forge without a tip check, or set NODE_METRICS_URL")
	}
	return p
}

// chain is the network's slot clock.
func (c *config) chain() slotClock {
	if sc, ok := knownChains[c.Network]; ok {
		return sc
	}
	return slotClock{zero: c.SystemStart, slotLength: c.SlotLength, kesPeriodSlots: uint64(c.KESPeriodSlots),
		maxEvolutions: uint64(c.MaxKESEvolutions), since: c.SystemStart}
}

// validateCluster checks the cluster-wide coordination's settings: the
// token's timing by the local Lease's rules, and the hysteresis against it.
func (c *config) validateCluster(given, bad map[string]bool) []string {
	var p []string
	if !given["CLUSTER_REGION"] && !bad["CLUSTER_REGION"] {
		p = append(p, "CLUSTER_REGION is required with ENABLE_CLUSTER_MANAGEMENT=true: each StatefulSet of the pool "+
			"needs its own region name, or two of them would share one candidacy")
	}
	if anyBad(bad, "CLUSTER_LEASE_DURATION", "CLUSTER_RENEW_DEADLINE", "CLUSTER_RETRY_PERIOD", "API_TIMEOUT",
		"SIGHUP_CONFIRM_TIMEOUT", "DEADMAN_PROBE_PERIOD", "DEADMAN_PROBE_FAILURE_THRESHOLD", "DEADMAN_PROBE_TIMEOUT", "DEADMAN_PROBE_GRACE") {
		return p
	}
	p = append(p, timingProblems(c.clusterTiming().timing, c.Probe, "CLUSTER_")...)
	// Rule 2: a region's standby takes its local Lease (LEASE_DURATION and
	// one jittered RETRY_PERIOD after the last renew) and renews the
	// candidacy (one CLUSTER_RETRY_PERIOD) before the candidacy lapses, so
	// a local failover keeps the lead in the region.
	if need := c.LeaseDuration + c.RetryPeriod*11/10 + c.ClusterRetry; c.ClusterLease <= need && !anyBad(bad, "LEASE_DURATION", "RETRY_PERIOD") {
		p = append(p, fmt.Sprintf(`CLUSTER_LEASE_DURATION="%s" must be longer than LEASE_DURATION="%s" + 1.1 x RETRY_PERIOD="%s" + CLUSTER_RETRY_PERIOD="%s" = %s, `+
			`so a region's standby becomes its local leader and renews the region's candidacy before it lapses (a local failover keeps the lead in the region)`,
			c.ClusterLease, c.LeaseDuration, c.RetryPeriod, c.ClusterRetry, need))
	}
	// A candidacy seen once stays live for a lease duration; one that must
	// be better for longer than that was really renewed all along.
	if c.PreemptDelay < c.ClusterLease && !bad["CLUSTER_PREEMPT_DELAY"] {
		p = append(p, fmt.Sprintf(`CLUSTER_PREEMPT_DELAY="%s" must be at least CLUSTER_LEASE_DURATION="%s"`, c.PreemptDelay, c.ClusterLease))
	}
	return p
}

// validateRun checks what run needs: its identity and an API server.
func (c *config) validateRun(bad map[string]bool) []string {
	var p []string
	if c.PodName == "" {
		p = append(p, "POD_NAME is required by run: set it from the downward API (fieldRef metadata.name)")
	}
	if c.PodUID == "" && c.inCluster && !bad["POD_UID"] {
		p = append(p, "POD_UID is required by run in a cluster: set it from the downward API (fieldRef metadata.uid)")
	}
	if !c.inCluster && c.Kubeconfig == "" && !bad["KUBECONFIG"] {
		p = append(p, "KUBECONFIG is required by run outside a cluster (no KUBERNETES_SERVICE_HOST): "+
			"point it at a kubeconfig file")
	}
	return p
}

// distinctPaths: each file forge-manager writes or connects to has its own
// path.
func (c *config) distinctPaths() []string {
	var p []string
	paths := map[string]string{}
	for _, kv := range [][2]string{{"TARGET_KES_KEY", c.TargetKES}, {"TARGET_VRF_KEY", c.TargetVRF},
		{"TARGET_OP_CERT", c.TargetOpCert}, {"HEARTBEAT_FILE", c.HeartbeatFile}, {"NODE_SOCKET", c.NodeSocket},
		{"STEP_DOWN_FILE", c.StepDownFile}, {"DEADMAN_BINARY", c.DeadmanBinary}, {"SOURCE_KES_KEY", c.SourceKES},
		{"SOURCE_VRF_KEY", c.SourceVRF}, {"SOURCE_OP_CERT", c.SourceOpCert}} {
		clean := filepath.Clean(kv[1])
		if other, dup := paths[clean]; dup && kv[1] != "" {
			p = append(p, fmt.Sprintf("%s=%q is the same file as %s: each needs its own path", kv[0], kv[1], other))
		}
		paths[clean] = kv[0]
	}
	return p
}

func anyBad(bad map[string]bool, names ...string) bool {
	for _, n := range names {
		if bad[n] {
			return true
		}
	}
	return false
}

// timing is the part of the configuration the election and the node side
// run on.
func (c *config) timing() timing {
	return timing{lease: c.LeaseDuration, renew: c.RenewDeadline, retry: c.RetryPeriod,
		api: c.APITimeout, confirm: c.ConfirmTimeout}
}

// clusterTiming is the forging token's timing and the preemption
// hysteresis (cluster.go).
func (c *config) clusterTiming() clusterTiming {
	return clusterTiming{
		timing:  timing{lease: c.ClusterLease, renew: c.ClusterRenew, retry: c.ClusterRetry, api: c.APITimeout, confirm: c.ConfirmTimeout},
		preempt: c.PreemptDelay, minHold: c.MinHold,
	}
}

// heartbeatDefault: beside the dead-man binary, so the probe, which runs as
// that binary with the node container's environment, finds it by its own
// path.
func heartbeatDefault(cmd, deadmanBinary string) string {
	if cmd == "deadman" {
		if exe, err := os.Executable(); err == nil {
			return exe + ".heartbeat"
		}
	}
	if deadmanBinary != "" {
		return deadmanBinary + ".heartbeat"
	}
	return "/ipc/forge-manager.heartbeat"
}

// configError carries every configuration problem; main prints one per line
// and exits 2.
type configError struct{ problems []string }

func (e *configError) Error() string {
	return "invalid configuration:\n  " + strings.Join(e.problems, "\n  ")
}

// printHelp writes the usage text: subcommands, then every variable with its
// default and meaning, from the table the loader reads.
func printHelp(w io.Writer) {
	fmt.Fprint(w, usage)
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIABLE\tDEFAULT\tMEANING")
	for _, s := range settingsOf(&config{}) {
		def := s.def
		if def == "" {
			def = "(unset)"
		}
		help := s.help
		if s.unused != "" {
			help += " Accepted; not used by this version."
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.name, def, help)
	}
	tw.Flush()
	fmt.Fprint(w, helpNames)
}

const helpNames = `
NAMES (with POOL_ID set): Lease and CardanoLeader cardano-leader-{network}-{pool},
CardanoForgeCluster {network}-{pool}-{region}. A part that is not already a
lowercase DNS label, or a name over 63 characters, gets a 10-digit hash of the
full values so distinct pools never share a name.
Durations take Go syntax (15s, 1m) or a number of seconds. Booleans take
true/false/1/0/yes/no. A bad value stops the program with exit code 2.
`

// The parsers below turn one variable's text into a config field; the error
// text is the rule, the caller adds the variable and the value.

func text(field *string, check func(string) error) func(string) error {
	return func(v string) error {
		if err := check(v); err != nil {
			return err
		}
		*field = v
		return nil
	}
}

func path(field *string) func(string) error {
	return text(field, func(v string) error {
		if !filepath.IsAbs(v) {
			return fmt.Errorf("want an absolute path")
		}
		return nil
	})
}

func optionalPath(field *string) func(string) error {
	p := path(field)
	return func(v string) error {
		if v == "" {
			*field = ""
			return nil
		}
		return p(v)
	}
}

func httpURL(field *string) func(string) error {
	return text(field, func(v string) error {
		if v == "" {
			return nil
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("want an http:// or https:// URL with a host")
		}
		return nil
	})
}

func duration(field *time.Duration, min, max time.Duration) func(string) error {
	return func(v string) error {
		d, err := parseDuration(v)
		if err != nil {
			return err
		}
		if d < min || d > max {
			return fmt.Errorf("want a duration from %s to %s", min, max)
		}
		*field = d
		return nil
	}
}

// parseDuration takes Go syntax (15s, 1m30s) or a bare number of seconds, as
// the predecessor's variables were plain seconds.
func parseDuration(v string) (time.Duration, error) {
	if v != "" && strings.Trim(v, "0123456789.") == "" {
		v += "s"
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("want a duration like 15s or a number of seconds")
	}
	return d, nil
}

func integer(field *int, min, max int) func(string) error {
	return func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < min || n > max {
			return fmt.Errorf("want a whole number from %d to %d", min, max)
		}
		*field = n
		return nil
	}
}

func rfc3339(field *time.Time) func(string) error {
	return func(v string) error {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return fmt.Errorf("want a time like 2022-10-25T00:00:00Z (RFC 3339)")
		}
		*field = t.UTC()
		return nil
	}
}

func boolean(field *bool) func(string) error {
	return func(v string) error {
		switch strings.ToLower(v) {
		case "true", "1", "yes":
			*field = true
		case "false", "0", "no":
			*field = false
		default:
			return fmt.Errorf("want true, false, 1, 0, yes or no")
		}
		return nil
	}
}

func oneOf(field *string, allowed ...string) func(string) error {
	return text(field, func(v string) error {
		for _, a := range allowed {
			if v == a {
				return nil
			}
		}
		return fmt.Errorf("want one of %s", strings.Join(allowed, ", "))
	})
}

func magic(field *uint32) func(string) error {
	return func(v string) error {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return fmt.Errorf("want a whole number from 0 to 4294967295")
		}
		*field = uint32(n)
		return nil
	}
}

func logLevel(field *slog.Level) func(string) error {
	levels := map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo,
		"warn": slog.LevelWarn, "error": slog.LevelError}
	return func(v string) error {
		l, ok := levels[strings.ToLower(v)]
		if !ok {
			return fmt.Errorf("want debug, info, warn or error")
		}
		*field = l
		return nil
	}
}

// The checks below state their rule as the error text.

func isDNSLabel(v string) error {
	if len(validation.IsDNS1123Label(v)) > 0 {
		return fmt.Errorf("want a lowercase DNS label: a-z, 0-9 and '-', " +
			"starting and ending with a letter or digit, at most 63 characters")
	}
	return nil
}

func isDNSSubdomain(v string) error {
	if len(validation.IsDNS1123Subdomain(v)) > 0 {
		return fmt.Errorf("want a lowercase DNS name: a-z, 0-9, '-' and '.', at most 253 characters")
	}
	return nil
}

// isObjectName is the rule for names forge-manager gives objects: DNS-1123
// and at most 63 characters, so the same name can also be a label value.
func isObjectName(v string) error {
	if len(validation.IsDNS1123Subdomain(v)) > 0 || len(v) > 63 {
		return fmt.Errorf("want a lowercase DNS name: a-z, 0-9, '-' and '.', at most 63 characters")
	}
	return nil
}

func isLabelValue(v string) error {
	if len(validation.IsValidLabelValue(v)) > 0 {
		return fmt.Errorf("want a label value: letters, digits, '-', '_' and '.', " +
			"at most 63 characters, starting and ending with a letter or digit")
	}
	return nil
}

func isIdentityPart(v string) error {
	if len(v) > 128 || strings.ContainsFunc(v, notPrintable) || strings.Contains(v, " ") {
		return fmt.Errorf("want at most 128 printable characters without spaces")
	}
	return nil
}

func isProcessName(v string) error {
	if len(v) > 255 || strings.ContainsAny(v, "/ ") || strings.ContainsFunc(v, notPrintable) {
		return fmt.Errorf("want an executable name without '/' or spaces")
	}
	return nil
}

func isPoolID(v string) error {
	if len(v) > 256 || strings.ContainsFunc(v, notPrintable) {
		return fmt.Errorf("want at most 256 printable characters")
	}
	// A pool id binds the election to the keys (SPEC 12): one mistyped
	// would silently bind nothing.
	if _, ok := poolIDHex(v); !ok && looksLikePoolID(v) {
		return fmt.Errorf("looks like a bech32 pool id but does not decode (a typo? want pool1 and 51 more characters with a valid checksum)")
	}
	return nil
}

// looksLikePoolID: pool1 and 51 more bech32 characters, the shape of a
// pool id; a plain name such as pool1-bp is not one.
func looksLikePoolID(v string) bool {
	l := strings.ToLower(v)
	return len(l) == 56 && strings.HasPrefix(l, "pool1") && strings.Trim(l[5:], bech32Charset) == ""
}

func isPoolHex(v string) error {
	if len(v) != 56 || strings.Trim(strings.ToLower(v), "0123456789abcdef") != "" {
		return fmt.Errorf("want 56 hex digits (the 28-byte pool key hash)")
	}
	return nil
}

func isFreeText(v string) error {
	if len(v) > 128 || strings.ContainsFunc(v, notPrintable) {
		return fmt.Errorf("want at most 128 printable characters")
	}
	return nil
}

func isTicker(v string) error {
	if len(v) > 16 || strings.ContainsFunc(v, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9')
	}) {
		return fmt.Errorf("want at most 16 letters and digits")
	}
	return nil
}

func notPrintable(r rune) bool { return r < 0x20 || r == 0x7f || r == 0xfffd }
