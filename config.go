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
	AppType                                 string

	ClusterManagement                     bool
	Region                                string
	Priority                              int
	ClusterIdentifier, ClusterEnvironment string
	ClusterKubeconfig, ClusterNamespace   string

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
// it means, and how it is parsed into the config.
type setting struct {
	name    string
	def     string // "" means unset by default
	help    string
	emptyOK bool // an explicitly empty value is meaningful, not a mistake
	parse   func(c *config, v string) error
}

// The application types of SPEC 4; only a block producer ever holds keys.
const (
	appBlockProducer = "block-producer"
	appRelay         = "relay"
	appMonitoring    = "monitoring"
)

// knownMagic is the protocol magic of each public network: a known name with
// another magic is a copy-paste mistake that would point a pool at the wrong
// chain's objects.
var knownMagic = map[string]uint32{"mainnet": 764824073, "preprod": 1, "preview": 2}

var settings = []setting{
	{"POD_NAME", "", "run: required. This pod's name (downward API metadata.name); half of the Lease holder identity.", false, text(func(c *config) *string { return &c.PodName }, isDNSSubdomain)},
	{"NAMESPACE", "default", "Namespace of the Lease and CardanoLeader (downward API metadata.namespace).", false, text(func(c *config) *string { return &c.Namespace }, isDNSLabel)},
	{"POD_UID", "", "run in a cluster: required. This pod's UID (downward API metadata.uid); a pod recreated under the same name is a new holder.", false, text(func(c *config) *string { return &c.PodUID }, isIdentityPart)},

	{"NODE_SOCKET", "/ipc/node.socket", "cardano-node's socket. A successful connect() to it, not the file's existence, gates the first SIGHUP to each node incarnation.", false, path(func(c *config) *string { return &c.NodeSocket })},
	{"SOCKET_WAIT_TIMEOUT", "600s", "How long run waits for the node's socket before reporting not ready (it keeps waiting).", false, duration(func(c *config) *time.Duration { return &c.SocketWaitTimeout }, time.Second, 24*time.Hour)},
	{"CARDANO_NODE_PROCESS_NAME", "cardano-node", "Executable name of the node process to signal (exact match on comm or the base name of argv[0]; never PID 1).", false, text(func(c *config) *string { return &c.NodeProcessName }, isProcessName)},
	{"NODE_METRICS_URL", "http://127.0.0.1:12798/metrics", "The node's Prometheus endpoint, where every SIGHUP is confirmed (cardano_node_metrics_forging_enabled[_int]). Empty: no confirmation, a delivered signal counts.", true, httpURL(func(c *config) *string { return &c.NodeMetricsURL })},
	{"SIGHUP_CONFIRM_TIMEOUT", "5s", "How long to wait for the node to confirm a SIGHUP before retrying (enable) or terminating the node (disable).", false, duration(func(c *config) *time.Duration { return &c.ConfirmTimeout }, 100*time.Millisecond, 5*time.Minute)},

	{"SOURCE_KES_KEY", "/secrets/kes.skey", "KES signing key in the mounted Secret.", false, path(func(c *config) *string { return &c.SourceKES })},
	{"SOURCE_VRF_KEY", "/secrets/vrf.skey", "VRF signing key in the mounted Secret.", false, path(func(c *config) *string { return &c.SourceVRF })},
	{"SOURCE_OP_CERT", "/secrets/node.cert", "Operational certificate in the mounted Secret.", false, path(func(c *config) *string { return &c.SourceOpCert })},
	{"TARGET_KES_KEY", "/ipc/kes.skey", "Where cardano-node reads the KES key (its --shelley-kes-key).", false, path(func(c *config) *string { return &c.TargetKES })},
	{"TARGET_VRF_KEY", "/ipc/vrf.skey", "Where cardano-node reads the VRF key (its --shelley-vrf-key).", false, path(func(c *config) *string { return &c.TargetVRF })},
	{"TARGET_OP_CERT", "/ipc/node.cert", "Where cardano-node reads the certificate (its --shelley-operational-certificate).", false, path(func(c *config) *string { return &c.TargetOpCert })},
	{"HEARTBEAT_FILE", "", "Written by init and by run every pass; read by the dead-man probe. Default: DEADMAN_BINARY + .heartbeat (/ipc/forge-manager.heartbeat); the probe, run as that binary, finds it there without this variable.", false, path(func(c *config) *string { return &c.HeartbeatFile })},
	{"DEADMAN_BINARY", "/ipc/forge-manager", "init copies this binary here so the node container's livenessProbe can run it. Empty: no copy.", true, optionalPath(func(c *config) *string { return &c.DeadmanBinary })},
	{"DEADMAN_PROBE_PERIOD", "1s", "The node container's dead-man livenessProbe periodSeconds, as deployed: the loader checks the probe kills a node in time.", false, duration(func(c *config) *time.Duration { return &c.Probe.period }, time.Millisecond, time.Hour)},
	{"DEADMAN_PROBE_FAILURE_THRESHOLD", "2", "Its failureThreshold (2: one slow exec on a loaded machine restarts nothing).", false, integer(func(c *config) *int { return &c.Probe.threshold }, 1, 100)},
	{"DEADMAN_PROBE_TIMEOUT", "1s", "Its timeoutSeconds.", false, duration(func(c *config) *time.Duration { return &c.Probe.timeout }, time.Millisecond, time.Hour)},
	{"DEADMAN_PROBE_GRACE", "1s", "Its probe-level terminationGracePeriodSeconds. Period x threshold + timeout + grace + 1s must fit in LEASE_DURATION - RENEW_DEADLINE.", false, duration(func(c *config) *time.Duration { return &c.Probe.grace }, 0, time.Hour)},

	{"LEASE_NAME", "", "Lease name. Default: cardano-leader-{network}-{pool} with POOL_ID, else cardano-node-leader.", false, text(func(c *config) *string { return &c.LeaseName }, isObjectName)},
	{"LEASE_DURATION", "15s", "A standby takes an unreleased Lease only after seeing it unchanged this long on its own clock. Whole seconds.", false, duration(func(c *config) *time.Duration { return &c.LeaseDuration }, time.Second, time.Hour)},
	{"RENEW_DEADLINE", "10s", "A leader that has not renewed for this long disables forging without waiting for the API.", false, duration(func(c *config) *time.Duration { return &c.RenewDeadline }, 200*time.Millisecond, time.Hour)},
	{"RETRY_PERIOD", "2s", "How often the leader renews and standbys look at the Lease.", false, duration(func(c *config) *time.Duration { return &c.RetryPeriod }, 100*time.Millisecond, 10*time.Minute)},
	{"API_TIMEOUT", "", "Timeout of each API request. Default: RENEW_DEADLINE/2; at most that. Always cut to the time left before the renew deadline.", false, duration(func(c *config) *time.Duration { return &c.APITimeout }, 100*time.Millisecond, time.Hour)},

	{"CRD_GROUP", "cardano.io", "API group of CardanoLeader.", false, text(func(c *config) *string { return &c.CRDGroup }, isDNSSubdomain)},
	{"CRD_VERSION", "v1", "API version of CardanoLeader.", false, text(func(c *config) *string { return &c.CRDVersion }, isDNSLabel)},
	{"CRD_PLURAL", "cardanoleaders", "Resource (plural) of CardanoLeader.", false, text(func(c *config) *string { return &c.CRDPlural }, isDNSLabel)},
	{"CRD_NAME", "", "CardanoLeader object name. Default: the Lease name with POOL_ID, else cardano-leader.", false, text(func(c *config) *string { return &c.CRDName }, isObjectName)},

	{"METRICS_PORT", "8000", "Port of /metrics, /healthz, /readyz, /status (all interfaces).", false, integer(func(c *config) *int { return &c.MetricsPort }, 1, 65535)},
	{"LOG_LEVEL", "info", "debug, info, warn or error.", false, logLevel},
	{"KUBECONFIG", "", "Out of cluster only: kubeconfig file. In a pod the ServiceAccount is used.", false, path(func(c *config) *string { return &c.Kubeconfig })},

	{"POOL_ID", "", "Pool identifier (any string, e.g. a bech32 pool id). Set: multi-tenant names (see NAMES).", false, text(func(c *config) *string { return &c.PoolID }, isPoolID)},
	{"POOL_ID_HEX", "", "Pool id as 56 hex digits (the 28-byte pool key hash).", false, text(func(c *config) *string { return &c.PoolIDHex }, isPoolHex)},
	{"POOL_NAME", "", "Human-readable pool name, for status only.", false, text(func(c *config) *string { return &c.PoolName }, isFreeText)},
	{"POOL_TICKER", "", "Pool ticker, a metric label.", false, text(func(c *config) *string { return &c.PoolTicker }, isTicker)},
	{"CARDANO_NETWORK", "mainnet", "Network name: mainnet, preprod, preview, or a custom name (lowercase DNS label).", false, text(func(c *config) *string { return &c.Network }, isDNSLabel)},
	{"NETWORK_MAGIC", "764824073", "Network magic. Default: the known network's (mainnet 764824073, preprod 1, preview 2); required for a custom network.", false, magic},
	{"APPLICATION_TYPE", appBlockProducer, "block-producer, relay or monitoring. Relays and monitors never write credentials and never lead.", false, oneOf(func(c *config) *string { return &c.AppType }, appBlockProducer, appRelay, appMonitoring)},

	{"ENABLE_CLUSTER_MANAGEMENT", "false", "Cluster-wide (multi-region) coordination. Not implemented in this version: true is refused rather than ignored. Without it, each StatefulSet runs its own election: run one per pool.", false, boolean(func(c *config) *bool { return &c.ClusterManagement })},
	{"CLUSTER_REGION", "unknown", "Region of this StatefulSet (lowercase DNS label); a name part and a label.", false, text(func(c *config) *string { return &c.Region }, isDNSLabel)},
	{"CLUSTER_PRIORITY", "100", "Region priority, 1..999, lower wins.", false, integer(func(c *config) *int { return &c.Priority }, 1, 999)},
	{"CLUSTER_IDENTIFIER", "", "CardanoForgeCluster name. Default: {network}-{pool}-{region} with POOL_ID, else {network}-{region}.", false, text(func(c *config) *string { return &c.ClusterIdentifier }, isObjectName)},
	{"CLUSTER_ENVIRONMENT", "production", "Environment name, for status only.", false, text(func(c *config) *string { return &c.ClusterEnvironment }, isLabelValue)},
	{"CLUSTER_KUBECONFIG", "", "Kubeconfig of the API server holding cluster-wide objects. Default: this cluster's.", false, path(func(c *config) *string { return &c.ClusterKubeconfig })},
	{"CLUSTER_NAMESPACE", "", "Namespace of cluster-wide objects. Default: NAMESPACE.", false, text(func(c *config) *string { return &c.ClusterNamespace }, isDNSLabel)},

	{"HEALTH_CHECK_ENDPOINT", "", "HTTP(S) URL probed every HEALTH_CHECK_INTERVAL; a 2xx answer is healthy. Unset: only the node process and socket count.", false, httpURL(func(c *config) *string { return &c.HealthEndpoint })},
	{"HEALTH_CHECK_INTERVAL", "30s", "Time between health checks.", false, duration(func(c *config) *time.Duration { return &c.HealthInterval }, 100*time.Millisecond, time.Hour)},
	{"HEALTH_CHECK_TIMEOUT", "5s", "Timeout of one health check; shorter than the interval.", false, duration(func(c *config) *time.Duration { return &c.HealthTimeout }, 10*time.Millisecond, time.Hour)},
	{"HEALTH_CHECK_FAILURE_THRESHOLD", "3", "Consecutive failed checks that make this replica ineligible to forge (a leader hands over).", false, integer(func(c *config) *int { return &c.HealthThreshold }, 1, 100)},
}

// loadConfig reads every setting through getenv (os.LookupEnv in production)
// and validates the result for the subcommand. The error lists every problem,
// one per line.
func loadConfig(getenv func(string) (string, bool), cmd string) (*config, error) {
	c := &config{}
	var problems []string
	given, bad := map[string]bool{}, map[string]bool{}
	for _, s := range settings {
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
		if err := s.parse(c, v); err != nil {
			problems = append(problems, fmt.Sprintf("%s=%q: %v", s.name, v, err))
			bad[s.name] = true
			continue
		}
		given[s.name] = ok
	}
	_, c.inCluster = getenv("KUBERNETES_SERVICE_HOST")
	for name, why := range obsolete {
		if _, set := getenv(name); set {
			c.notices = append(c.notices, name+" is not used: "+why)
		}
	}
	sort.Strings(c.notices)
	problems = append(problems, c.validate(cmd, c.inCluster, given, bad)...)
	if len(problems) > 0 {
		return nil, &configError{problems}
	}
	return c, nil
}

// validate checks the relations between settings and fills in the derived
// defaults. given holds the variables set explicitly and parsed; bad those
// already reported, so one mistake is not reported twice.
func (c *config) validate(cmd string, inCluster bool, given, bad map[string]bool) []string {
	var p []string
	add := func(format string, a ...any) { p = append(p, fmt.Sprintf(format, a...)) }

	if cmd == "run" {
		if c.PodName == "" {
			add("POD_NAME is required by run: set it from the downward API (fieldRef metadata.name)")
		}
		if c.PodUID == "" && inCluster && !bad["POD_UID"] {
			add("POD_UID is required by run in a cluster: set it from the downward API (fieldRef metadata.uid)")
		}
		if !inCluster && c.Kubeconfig == "" && !bad["KUBECONFIG"] {
			add("KUBECONFIG is required by run outside a cluster (no KUBERNETES_SERVICE_HOST): point it at a kubeconfig file")
		}
	}
	if !anyBad(bad, "LEASE_DURATION", "RENEW_DEADLINE", "RETRY_PERIOD", "API_TIMEOUT", "DEADMAN_PROBE_PERIOD",
		"DEADMAN_PROBE_FAILURE_THRESHOLD", "DEADMAN_PROBE_TIMEOUT", "DEADMAN_PROBE_GRACE") {
		p = append(p, c.validateTiming(given)...)
	}
	if want, known := knownMagic[c.Network]; known && !bad["NETWORK_MAGIC"] {
		if !given["NETWORK_MAGIC"] {
			c.NetworkMagic = want
		} else if c.NetworkMagic != want {
			add(`NETWORK_MAGIC="%d" does not match CARDANO_NETWORK=%q: its magic is %d`, c.NetworkMagic, c.Network, want)
		}
	}
	if _, known := knownMagic[c.Network]; !known && !given["NETWORK_MAGIC"] && !bad["NETWORK_MAGIC"] && !bad["CARDANO_NETWORK"] {
		add("NETWORK_MAGIC is required for the custom network CARDANO_NETWORK=%q", c.Network)
	}
	for _, name := range coordinationVars {
		if given[name] && !c.ClusterManagement {
			c.notices = append(c.notices, name+" has no effect while ENABLE_CLUSTER_MANAGEMENT is false: this StatefulSet runs its own election, and another region running its own forges too")
		}
	}
	if c.ClusterManagement {
		add(`ENABLE_CLUSTER_MANAGEMENT="true": cluster-wide coordination is not implemented in this version, so forge-manager refuses rather than run without the protection you asked for. Run the pool's block producers as one StatefulSet in one region: false in two regions gives two elections, so two forgers`)
	}
	if c.HealthTimeout >= c.HealthInterval && !bad["HEALTH_CHECK_TIMEOUT"] && !bad["HEALTH_CHECK_INTERVAL"] {
		add(`HEALTH_CHECK_TIMEOUT="%s" must be shorter than HEALTH_CHECK_INTERVAL="%s"`, c.HealthTimeout, c.HealthInterval)
	}
	if c.ClusterNamespace == "" {
		c.ClusterNamespace = c.Namespace
	}
	if c.HeartbeatFile == "" {
		c.HeartbeatFile = heartbeatDefault(cmd, c.DeadmanBinary)
	}
	paths := map[string]string{}
	for _, kv := range [][2]string{{"TARGET_KES_KEY", c.TargetKES}, {"TARGET_VRF_KEY", c.TargetVRF}, {"TARGET_OP_CERT", c.TargetOpCert}, {"HEARTBEAT_FILE", c.HeartbeatFile}, {"NODE_SOCKET", c.NodeSocket}} {
		if other, dup := paths[kv[1]]; dup && kv[1] != "" {
			add("%s=%q is the same file as %s: each needs its own path", kv[0], kv[1], other)
		}
		paths[kv[1]] = kv[0]
	}
	return p
}

// coordinationVars mean something only with cluster-wide coordination.
var coordinationVars = []string{"CLUSTER_PRIORITY", "CLUSTER_IDENTIFIER", "CLUSTER_KUBECONFIG", "CLUSTER_NAMESPACE"}

func anyBad(bad map[string]bool, names ...string) bool {
	for _, n := range names {
		if bad[n] {
			return true
		}
	}
	return false
}

// validateTiming derives API_TIMEOUT and checks the timing rules of
// lease.go (timingProblems), which leave a replica that stopped renewing time
// to disable forging before any other replica may take the Lease.
func (c *config) validateTiming(given map[string]bool) []string {
	if !given["API_TIMEOUT"] {
		c.APITimeout = c.RenewDeadline / 2
	}
	return timingProblems(c.timing(), c.Probe)
}

// timing is the part of the configuration the election and the node side
// run on.
func (c *config) timing() timing {
	return timing{lease: c.LeaseDuration, renew: c.RenewDeadline, retry: c.RetryPeriod, api: c.APITimeout, confirm: c.ConfirmTimeout}
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
	for _, s := range settings {
		def := s.def
		if def == "" {
			def = "(unset)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.name, def, s.help)
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

func text(field func(*config) *string, check func(string) error) func(*config, string) error {
	return func(c *config, v string) error {
		if err := check(v); err != nil {
			return err
		}
		*field(c) = v
		return nil
	}
}

func path(field func(*config) *string) func(*config, string) error {
	return text(field, func(v string) error {
		if !filepath.IsAbs(v) {
			return fmt.Errorf("want an absolute path")
		}
		return nil
	})
}

func optionalPath(field func(*config) *string) func(*config, string) error {
	p := path(field)
	return func(c *config, v string) error {
		if v == "" {
			*field(c) = ""
			return nil
		}
		return p(c, v)
	}
}

func httpURL(field func(*config) *string) func(*config, string) error {
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

func duration(field func(*config) *time.Duration, min, max time.Duration) func(*config, string) error {
	return func(c *config, v string) error {
		d, err := parseDuration(v)
		if err != nil {
			return err
		}
		if d < min || d > max {
			return fmt.Errorf("want a duration from %s to %s", min, max)
		}
		*field(c) = d
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

func integer(field func(*config) *int, min, max int) func(*config, string) error {
	return func(c *config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < min || n > max {
			return fmt.Errorf("want a whole number from %d to %d", min, max)
		}
		*field(c) = n
		return nil
	}
}

func boolean(field func(*config) *bool) func(*config, string) error {
	return func(c *config, v string) error {
		switch strings.ToLower(v) {
		case "true", "1", "yes":
			*field(c) = true
		case "false", "0", "no":
			*field(c) = false
		default:
			return fmt.Errorf("want true, false, 1, 0, yes or no")
		}
		return nil
	}
}

func oneOf(field func(*config) *string, allowed ...string) func(*config, string) error {
	return text(field, func(v string) error {
		for _, a := range allowed {
			if v == a {
				return nil
			}
		}
		return fmt.Errorf("want one of %s", strings.Join(allowed, ", "))
	})
}

func magic(c *config, v string) error {
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return fmt.Errorf("want a whole number from 0 to 4294967295")
	}
	c.NetworkMagic = uint32(n)
	return nil
}

func logLevel(c *config, v string) error {
	levels := map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}
	l, ok := levels[strings.ToLower(v)]
	if !ok {
		return fmt.Errorf("want debug, info, warn or error")
	}
	c.LogLevel = l
	return nil
}

// The checks below state their rule as the error text.

func isDNSLabel(v string) error {
	if len(validation.IsDNS1123Label(v)) > 0 {
		return fmt.Errorf("want a lowercase DNS label: a-z, 0-9 and '-', starting and ending with a letter or digit, at most 63 characters")
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
		return fmt.Errorf("want a label value: letters, digits, '-', '_' and '.', at most 63 characters, starting and ending with a letter or digit")
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
	return nil
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
