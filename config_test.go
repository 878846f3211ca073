package main

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// env is a fake environment for loadConfig.
type env map[string]string

func (e env) lookup(k string) (string, bool) { v, ok := e[k]; return v, ok }

// runEnv is the least a sidecar needs outside a cluster.
func runEnv(kv ...string) env {
	e := env{"POD_NAME": "bp-0", "KUBECONFIG": "/kubeconfig"}
	for i := 0; i+1 < len(kv); i += 2 {
		e[kv[i]] = kv[i+1]
	}
	return e
}

func TestConfigDefaults(t *testing.T) {
	c, err := loadConfig(runEnv().lookup, "run")
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"NAMESPACE", c.Namespace, "default"},
		{"NODE_SOCKET", c.NodeSocket, "/ipc/node.socket"},
		{"SOCKET_WAIT_TIMEOUT", c.SocketWaitTimeout, 600 * time.Second},
		{"SOURCE_KES_KEY", c.SourceKES, "/secrets/kes.skey"},
		{"TARGET_OP_CERT", c.TargetOpCert, "/ipc/node.cert"},
		{"NODE_METRICS_URL", c.NodeMetricsURL, "http://127.0.0.1:12798/metrics"},
		{"SIGHUP_CONFIRM_TIMEOUT", c.ConfirmTimeout, 5 * time.Second},
		{"LEASE_DURATION", c.LeaseDuration, 15 * time.Second},
		{"RENEW_DEADLINE", c.RenewDeadline, 10 * time.Second},
		{"RETRY_PERIOD", c.RetryPeriod, 2 * time.Second},
		{"API_TIMEOUT (derived)", c.APITimeout, 5 * time.Second},
		{"CRD_GROUP", c.CRDGroup, "cardano.io"},
		{"CRD_PLURAL", c.CRDPlural, "cardanoleaders"},
		{"METRICS_PORT", c.MetricsPort, 8000},
		{"CARDANO_NETWORK", c.Network, "mainnet"},
		{"NETWORK_MAGIC", c.NetworkMagic, uint32(764824073)},
		{"APPLICATION_TYPE", c.AppType, "block-producer"},
		{"CLUSTER_REGION", c.Region, "unknown"},
		{"CLUSTER_PRIORITY", c.Priority, 100},
		{"CLUSTER_NAMESPACE (derived)", c.ClusterNamespace, "default"},
		{"HEALTH_CHECK_INTERVAL", c.HealthInterval, 30 * time.Second},
		{"HEALTH_CHECK_TIMEOUT", c.HealthTimeout, 5 * time.Second},
		{"HEALTH_CHECK_FAILURE_THRESHOLD", c.HealthThreshold, 3},
	}
	for _, tc := range checks {
		if tc.got != tc.want {
			t.Errorf("%s: got %v; want %v", tc.name, tc.got, tc.want)
		}
	}
}

func TestConfigValues(t *testing.T) {
	tests := []struct {
		name  string
		env   env
		check func(*config) bool
	}{
		{"seconds as a bare number", runEnv("LEASE_DURATION", "30", "RENEW_DEADLINE", "20"), func(c *config) bool { return c.LeaseDuration == 30*time.Second && c.RenewDeadline == 20*time.Second }},
		{"fractional seconds", runEnv("RETRY_PERIOD", "1.5"), func(c *config) bool { return c.RetryPeriod == 1500*time.Millisecond }},
		{"go duration syntax", runEnv("SOCKET_WAIT_TIMEOUT", "1m30s"), func(c *config) bool { return c.SocketWaitTimeout == 90*time.Second }},
		{"boolean yes", runEnv("ENABLE_CLUSTER_MANAGEMENT", "no"), func(c *config) bool { return !c.ClusterManagement }},
		{"boolean case-insensitive", runEnv("ENABLE_CLUSTER_MANAGEMENT", "FALSE"), func(c *config) bool { return !c.ClusterManagement }},
		{"preprod magic derived", runEnv("CARDANO_NETWORK", "preprod"), func(c *config) bool { return c.NetworkMagic == 1 }},
		{"preview magic given", runEnv("CARDANO_NETWORK", "preview", "NETWORK_MAGIC", "2"), func(c *config) bool { return c.NetworkMagic == 2 }},
		{"custom network any magic", runEnv("CARDANO_NETWORK", "custom-testnet", "NETWORK_MAGIC", "12345", "SYSTEM_START", "2024-01-01T00:00:00Z"), func(c *config) bool { return c.NetworkMagic == 12345 }},
		{"empty metrics URL disables confirmation", runEnv("NODE_METRICS_URL", "", "MAX_TIP_LAG", "0"), func(c *config) bool { return c.NodeMetricsURL == "" }},
		{"a relay needs no tip check", runEnv("NODE_METRICS_URL", "", "APPLICATION_TYPE", "relay"), func(c *config) bool { return c.MaxTipLag == 600 }},
		{"empty optional is unset", runEnv("POOL_ID", ""), func(c *config) bool { return c.PoolID == "" }},
		{"log level any case", runEnv("LOG_LEVEL", "DEBUG"), func(c *config) bool { return c.LogLevel.String() == "DEBUG" }},
		{"explicit API timeout", runEnv("API_TIMEOUT", "3s"), func(c *config) bool { return c.APITimeout == 3*time.Second }},
		{"cluster namespace given", runEnv("CLUSTER_NAMESPACE", "global"), func(c *config) bool { return c.ClusterNamespace == "global" }},
		{"cluster defaults", clusterEnv(), func(c *config) bool {
			t := c.clusterTiming()
			return t.lease == 20*time.Second && t.renew == 12*time.Second && t.retry == 2*time.Second && t.preempt == 2*time.Minute && t.minHold == 10*time.Minute
		}},
		{"pool hex upper case", runEnv("POOL_ID_HEX", strings.Repeat("AB", 28)), func(c *config) bool { return len(c.PoolIDHex) == 56 }},
		{"relay", runEnv("APPLICATION_TYPE", "relay"), func(c *config) bool { return c.AppType == appRelay }},
		{"empty deadman binary disables the copy", runEnv("DEADMAN_BINARY", ""), func(c *config) bool { return c.DeadmanBinary == "" }},
		{"heartbeat beside the dead-man binary", runEnv("DEADMAN_BINARY", "/run/fm/forge-manager"), func(c *config) bool { return c.HeartbeatFile == "/run/fm/forge-manager.heartbeat" }},
		{"heartbeat by default", runEnv(), func(c *config) bool { return c.HeartbeatFile == "/ipc/forge-manager.heartbeat" }},
		{"shipped probe", runEnv(), func(c *config) bool {
			return c.Probe == deadmanProbe{period: time.Second, threshold: 2, timeout: time.Second, grace: time.Second}
		}},
		{"a faster probe buys a longer deadline", runEnv("RENEW_DEADLINE", "11s", "DEADMAN_PROBE_TIMEOUT", "500ms", "DEADMAN_PROBE_GRACE", "500ms"), func(c *config) bool { return c.RenewDeadline == 11*time.Second }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := loadConfig(tc.env.lookup, "run")
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(c) {
				t.Errorf("unexpected config %+v", c)
			}
		})
	}
}

// TestConfigErrors: every bad value is reported with the variable, the
// value and the rule.
func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		env  env
		cmd  string
		want string
	}{
		{"bad duration", runEnv("LEASE_DURATION", "15x"), "run", `LEASE_DURATION="15x": want a duration like 15s or a number of seconds`},
		{"negative duration", runEnv("RETRY_PERIOD", "-1s"), "run", `RETRY_PERIOD="-1s": want a duration`},
		{"renew deadline past lease", runEnv("RENEW_DEADLINE", "20s"), "run", `RENEW_DEADLINE="20s" must be shorter than LEASE_DURATION="15s" by at least 2s`},
		{"dead-man probe too slow for the margin", runEnv("RENEW_DEADLINE", "12s"), "run", `the dead-man probe kills the node up to 4s after the heartbeat runs out (DEADMAN_PROBE_PERIOD="1s" x DEADMAN_PROBE_FAILURE_THRESHOLD="2" + DEADMAN_PROBE_TIMEOUT="1s" + DEADMAN_PROBE_GRACE="1s"); with 1s margin that must fit in LEASE_DURATION - RENEW_DEADLINE = 3s`},
		{"probe threshold", runEnv("DEADMAN_PROBE_FAILURE_THRESHOLD", "0"), "run", `DEADMAN_PROBE_FAILURE_THRESHOLD="0": want a whole number from 1 to 100`},
		{"cluster management needs a region", runEnv("ENABLE_CLUSTER_MANAGEMENT", "true"), "run", `CLUSTER_REGION is required with ENABLE_CLUSTER_MANAGEMENT=true`},
		{"cluster renew deadline too close", clusterEnv("CLUSTER_RENEW_DEADLINE", "19s"), "run", `CLUSTER_RENEW_DEADLINE="19s" must be shorter than CLUSTER_LEASE_DURATION="20s" by at least 2s`},
		{"cluster lease in whole seconds", clusterEnv("CLUSTER_LEASE_DURATION", "20.5s"), "run", `CLUSTER_LEASE_DURATION="20.5s" must be a whole number of seconds`},
		{"cluster retry too slow", clusterEnv("CLUSTER_RETRY_PERIOD", "7s"), "run", `CLUSTER_RETRY_PERIOD="7s" must be at most half of CLUSTER_RENEW_DEADLINE="12s"`},
		{"cluster probe budget", clusterEnv("CLUSTER_LEASE_DURATION", "14", "CLUSTER_RENEW_DEADLINE", "11s"), "run", `must fit in CLUSTER_LEASE_DURATION - CLUSTER_RENEW_DEADLINE = 3s`},
		{"cluster API timeout", clusterEnv("CLUSTER_RENEW_DEADLINE", "4s", "CLUSTER_RETRY_PERIOD", "1s", "CLUSTER_LEASE_DURATION", "10"), "run", `API_TIMEOUT="5s" must be at most half of CLUSTER_RENEW_DEADLINE="4s"`},
		{"local failover must fit in the candidacy", clusterEnv("LEASE_DURATION", "18s", "RENEW_DEADLINE", "12s"), "run", `CLUSTER_LEASE_DURATION="20s" must be longer than LEASE_DURATION="18s" + 1.1 x RETRY_PERIOD="2s" + CLUSTER_RETRY_PERIOD="2s" = 22.2s`},
		{"preempt delay shorter than a lease", clusterEnv("CLUSTER_PREEMPT_DELAY", "10s"), "run", `CLUSTER_PREEMPT_DELAY="10s" must be at least CLUSTER_LEASE_DURATION="20s"`},
		{"cluster duration unparsable", clusterEnv("CLUSTER_MIN_HOLD", "ten minutes"), "run", `CLUSTER_MIN_HOLD="ten minutes"`},
		{"no margin", runEnv("RENEW_DEADLINE", "14s"), "run", `RENEW_DEADLINE="14s" must be shorter than LEASE_DURATION="15s" by at least 2s`},
		{"retry too long", runEnv("RETRY_PERIOD", "6s"), "run", `RETRY_PERIOD="6s" must be at most half of RENEW_DEADLINE="10s"`},
		{"lease not whole seconds", runEnv("LEASE_DURATION", "15.5s"), "run", `LEASE_DURATION="15.5s" must be a whole number of seconds`},
		{"api timeout too long", runEnv("API_TIMEOUT", "6s"), "run", `API_TIMEOUT="6s" must be at most half of RENEW_DEADLINE="10s"`},
		{"confirm timeout too long", runEnv("SIGHUP_CONFIRM_TIMEOUT", "9s"), "run", `SIGHUP_CONFIRM_TIMEOUT="9s" must be at most half of RENEW_DEADLINE="10s"`},
		{"magic mismatch", runEnv("CARDANO_NETWORK", "preprod", "NETWORK_MAGIC", "2"), "run", `NETWORK_MAGIC="2" does not match CARDANO_NETWORK="preprod": its magic is 1`},
		{"custom without magic", runEnv("CARDANO_NETWORK", "sanchonet"), "run", `NETWORK_MAGIC is required for the custom network CARDANO_NETWORK="sanchonet"`},
		{"custom without its genesis start", runEnv("CARDANO_NETWORK", "sanchonet", "NETWORK_MAGIC", "4"), "run", `SYSTEM_START is required for the custom network CARDANO_NETWORK="sanchonet"`},
		{"genesis start on a public network", runEnv("SYSTEM_START", "2024-01-01T00:00:00Z"), "run", `SYSTEM_START is built in for CARDANO_NETWORK="mainnet": set it only for a custom network`},
		{"KES period on a public network", runEnv("CARDANO_NETWORK", "preview", "SLOTS_PER_KES_PERIOD", "3600"), "run", `SLOTS_PER_KES_PERIOD is built in for CARDANO_NETWORK="preview"`},
		{"genesis start unparsable", runEnv("CARDANO_NETWORK", "sanchonet", "NETWORK_MAGIC", "4", "SYSTEM_START", "yesterday"), "run", `SYSTEM_START="yesterday": want a time like 2022-10-25T00:00:00Z (RFC 3339)`},
		{"no tip without the node's metrics", runEnv("NODE_METRICS_URL", ""), "run", `NODE_METRICS_URL="" leaves the node's tip unknown, so no replica could ever forge: set MAX_TIP_LAG=0`},
		{"mistyped bech32 pool id", runEnv("POOL_ID", "pool1pu5jlj4q9w9jlxeu370a3c9myx47md5j5m2str0naunn2q3lkdx"), "run", `POOL_ID="pool1pu5jlj4q9w9jlxeu370a3c9myx47md5j5m2str0naunn2q3lkdx": looks like a bech32 pool id but does not decode`},
		{"tip lag negative", runEnv("MAX_TIP_LAG", "-5"), "run", `MAX_TIP_LAG="-5": want a whole number from 0 to 1000000`},
		{"magic not a number", runEnv("NETWORK_MAGIC", "main"), "run", `NETWORK_MAGIC="main": want a whole number`},
		{"magic too large", runEnv("NETWORK_MAGIC", "4294967296"), "run", `NETWORK_MAGIC="4294967296": want a whole number`},
		{"network upper case", runEnv("CARDANO_NETWORK", "Mainnet"), "run", `CARDANO_NETWORK="Mainnet": want a lowercase DNS label`},
		{"pool hex not hex", runEnv("POOL_ID_HEX", strings.Repeat("zz", 28)), "run", `POOL_ID_HEX="zzzz`},
		{"pool hex short", runEnv("POOL_ID_HEX", "abcd"), "run", `POOL_ID_HEX="abcd": want 56 hex digits`},
		{"boolean strict", runEnv("ENABLE_CLUSTER_MANAGEMENT", "on"), "run", `ENABLE_CLUSTER_MANAGEMENT="on": want true, false, 1, 0, yes or no`},
		{"port zero", runEnv("METRICS_PORT", "0"), "run", `METRICS_PORT="0": want a whole number from 1 to 65535`},
		{"port too high", runEnv("METRICS_PORT", "70000"), "run", `METRICS_PORT="70000"`},
		{"relative path", runEnv("TARGET_KES_KEY", "ipc/kes.skey"), "run", `TARGET_KES_KEY="ipc/kes.skey": want an absolute path`},
		{"same target twice", runEnv("TARGET_VRF_KEY", "/ipc/kes.skey"), "run", `TARGET_VRF_KEY="/ipc/kes.skey" is the same file as TARGET_KES_KEY`},
		{"same target, spelt otherwise", runEnv("TARGET_VRF_KEY", "/ipc//kes.skey"), "run", `TARGET_VRF_KEY="/ipc//kes.skey" is the same file as TARGET_KES_KEY`},
		{"step-down over the probe's binary", runEnv("STEP_DOWN_FILE", "/ipc/forge-manager"), "run", `DEADMAN_BINARY="/ipc/forge-manager" is the same file as STEP_DOWN_FILE`},
		{"step-down on a key", runEnv("STEP_DOWN_FILE", "/secrets/kes.skey"), "step-down", `SOURCE_KES_KEY="/secrets/kes.skey" is the same file as STEP_DOWN_FILE`},
		{"application type", runEnv("APPLICATION_TYPE", "producer"), "run", `APPLICATION_TYPE="producer": want one of block-producer, relay, monitoring`},
		{"log level", runEnv("LOG_LEVEL", "trace"), "run", `LOG_LEVEL="trace": want debug, info, warn or error`},
		{"priority range", runEnv("CLUSTER_PRIORITY", "1000"), "run", `CLUSTER_PRIORITY="1000": want a whole number from 1 to 999`},
		{"empty with default", runEnv("NAMESPACE", ""), "run", `NAMESPACE="": must not be empty (unset it to use the default "default")`},
		{"health timeout", runEnv("HEALTH_CHECK_TIMEOUT", "30s"), "run", `HEALTH_CHECK_TIMEOUT="30s" must be shorter than HEALTH_CHECK_INTERVAL="30s"`},
		{"health URL", runEnv("HEALTH_CHECK_ENDPOINT", "localhost:12798/health"), "run", `HEALTH_CHECK_ENDPOINT="localhost:12798/health": want an http:// or https:// URL`},
		{"lease name", runEnv("LEASE_NAME", "My_Lease"), "run", `LEASE_NAME="My_Lease": want a lowercase DNS name`},
		{"lease name too long", runEnv("LEASE_NAME", strings.Repeat("a", 64)), "run", `at most 63 characters`},
		{"process name with slash", runEnv("CARDANO_NODE_PROCESS_NAME", "/usr/bin/cardano-node"), "run", `CARDANO_NODE_PROCESS_NAME="/usr/bin/cardano-node": want an executable name`},
		{"pod name missing", env{"KUBECONFIG": "/k"}, "run", `POD_NAME is required by run`},
		{"pod uid missing in cluster", env{"POD_NAME": "bp-0", "KUBERNETES_SERVICE_HOST": "10.0.0.1"}, "run", `POD_UID is required by run in a cluster`},
		{"no cluster at all", env{"POD_NAME": "bp-0"}, "run", `KUBECONFIG is required by run outside a cluster`},
		{"ticker", runEnv("POOL_TICKER", "MY POOL"), "run", `POOL_TICKER="MY POOL": want at most 16 letters and digits`},
		{"pool id control character", runEnv("POOL_ID", "pool\n1"), "run", `POOL_ID="pool\n1": want at most 256 printable characters`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadConfig(tc.env.lookup, tc.cmd)
			var ce *configError
			if !errors.As(err, &ce) {
				t.Fatalf("got %v; want a configuration error containing %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got:\n%v\nwant a line containing %q", err, tc.want)
			}
		})
	}
}

// TestConfigReportsEveryProblem: several bad variables give one line each,
// all at once, and one mistake is not reported twice.
func TestConfigReportsEveryProblem(t *testing.T) {
	e := env{
		"LEASE_DURATION": "15x", "METRICS_PORT": "eighty", "NODE_SOCKET": "node.socket",
		"APPLICATION_TYPE": "bp", "NETWORK_MAGIC": "x",
	}
	_, err := loadConfig(e.lookup, "run")
	var ce *configError
	if !errors.As(err, &ce) {
		t.Fatalf("got %v; want a configuration error", err)
	}
	want := []string{"LEASE_DURATION=", "METRICS_PORT=", "NODE_SOCKET=", "APPLICATION_TYPE=", "NETWORK_MAGIC=", "POD_NAME is required", "KUBECONFIG is required"}
	if len(ce.problems) != len(want) {
		t.Errorf("got %d problems; want %d:\n%s", len(ce.problems), len(want), err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in:\n%s", w, err)
		}
	}
}

func TestConfigObsoleteVariables(t *testing.T) {
	c, err := loadConfig(runEnv("SLEEP_INTERVAL", "5", "START_AS_NON_PRODUCING", "true").lookup, "run")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.notices) != 2 || !strings.Contains(c.notices[0], "SLEEP_INTERVAL is not used") {
		t.Errorf("notices %q; want one per obsolete variable", c.notices)
	}
}

// TestConfigCoordinationVariablesWarn: a CLUSTER_* coordination variable
// set while cluster management is off is reported: this StatefulSet runs
// its own election, whatever the variable says.
func TestConfigCoordinationVariablesWarn(t *testing.T) {
	c, err := loadConfig(runEnv("CLUSTER_PRIORITY", "10", "CLUSTER_KUBECONFIG", "/k", "CLUSTER_REGION", "eu").lookup, "run")
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(c.notices, "\n")
	for _, name := range []string{"CLUSTER_PRIORITY", "CLUSTER_KUBECONFIG"} {
		if !strings.Contains(got, name+" has no effect while ENABLE_CLUSTER_MANAGEMENT is false") {
			t.Errorf("no notice for %s in %q", name, got)
		}
	}
	if strings.Contains(got, "CLUSTER_REGION") {
		t.Errorf("CLUSTER_REGION names objects and labels: no notice wanted, got %q", got)
	}
}

// clusterEnv is runEnv with cluster management on in region eu.
func clusterEnv(kv ...string) env {
	return runEnv(append([]string{"ENABLE_CLUSTER_MANAGEMENT", "true", "CLUSTER_REGION", "eu"}, kv...)...)
}

// TestConfigCoordinationVariablesUsed: with cluster management on, every
// CLUSTER_* variable is used, so none is reported as ignored.
func TestConfigCoordinationVariablesUsed(t *testing.T) {
	c, err := loadConfig(clusterEnv("CLUSTER_PRIORITY", "10", "CLUSTER_KUBECONFIG", "/k", "CLUSTER_MIN_HOLD", "0",
		"CLUSTER_ENVIRONMENT", "staging", "CLUSTER_IDENTIFIER", "x", "CLUSTER_NAMESPACE", "global").lookup, "run")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.notices) != 0 {
		t.Errorf("notices %q; want none", c.notices)
	}
}

func TestConfigInitNeedsNoIdentity(t *testing.T) {
	if _, err := loadConfig(env{}.lookup, "init"); err != nil {
		t.Errorf("init with an empty environment: %v", err)
	}
}

// TestHelpListsEveryVariable: help is printed from the loader's own table,
// with each default.
func TestHelpListsEveryVariable(t *testing.T) {
	var b bytes.Buffer
	printHelp(&b)
	for _, s := range settingsOf(&config{}) {
		line := ""
		for _, l := range strings.Split(b.String(), "\n") {
			if strings.HasPrefix(l, s.name+" ") {
				line = l
			}
		}
		if line == "" {
			t.Errorf("help has no line for %s", s.name)
			continue
		}
		if s.def != "" && !strings.Contains(line, s.def) {
			t.Errorf("help line for %s lacks its default %q: %s", s.name, s.def, line)
		}
	}
	// Every variable the product specification names is in the table.
	spec := []string{"POD_NAME", "NAMESPACE", "POD_UID", "NODE_SOCKET", "SOCKET_WAIT_TIMEOUT", "SOURCE_KES_KEY", "SOURCE_VRF_KEY", "SOURCE_OP_CERT", "TARGET_KES_KEY", "TARGET_VRF_KEY", "TARGET_OP_CERT", "CARDANO_NODE_PROCESS_NAME", "NODE_METRICS_URL", "SIGHUP_CONFIRM_TIMEOUT", "LEASE_NAME", "LEASE_DURATION", "RENEW_DEADLINE", "RETRY_PERIOD", "API_TIMEOUT", "CRD_GROUP", "CRD_VERSION", "CRD_PLURAL", "CRD_NAME", "METRICS_PORT", "LOG_LEVEL", "KUBECONFIG", "POOL_ID", "POOL_ID_HEX", "POOL_NAME", "POOL_TICKER", "CARDANO_NETWORK", "NETWORK_MAGIC", "APPLICATION_TYPE", "ENABLE_CLUSTER_MANAGEMENT", "CLUSTER_REGION", "CLUSTER_PRIORITY", "CLUSTER_IDENTIFIER", "CLUSTER_ENVIRONMENT", "CLUSTER_KUBECONFIG", "CLUSTER_NAMESPACE", "HEALTH_CHECK_ENDPOINT", "HEALTH_CHECK_INTERVAL", "HEALTH_CHECK_TIMEOUT", "HEALTH_CHECK_FAILURE_THRESHOLD"}
	for _, name := range spec {
		if !strings.Contains(b.String(), "\n"+name+" ") {
			t.Errorf("specified variable %s missing from help", name)
		}
	}
}

// FuzzLoadConfig: no value of any variable makes the loader panic, and a
// config it accepts satisfies the timing rules. The seed corpus runs in the
// normal suite.
func FuzzLoadConfig(f *testing.F) {
	f.Add("LEASE_DURATION", "15x", "RETRY_PERIOD", "2")
	f.Add("NETWORK_MAGIC", "-1", "CARDANO_NETWORK", "preprod")
	f.Add("API_TIMEOUT", "1e9", "RENEW_DEADLINE", "0")
	f.Add("POOL_ID", "\xff\xfe", "POOL_ID_HEX", "")
	f.Add("METRICS_PORT", "99999999999999999999", "LOG_LEVEL", "")
	f.Add("HEALTH_CHECK_INTERVAL", "9223372036854775807ns", "HEALTH_CHECK_TIMEOUT", "1h")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		e := runEnv(k1, v1, k2, v2)
		all := settingsOf(&config{})
		for i, s := range all { // also aim the fuzzer's values at real names
			if len(k1) > 0 && int(k1[0])%len(all) == i {
				e[s.name] = v1
			}
		}
		c, err := loadConfig(e.lookup, "run")
		if err != nil {
			var ce *configError
			if !errors.As(err, &ce) || len(ce.problems) == 0 {
				t.Fatalf("error without problems: %v", err)
			}
			return
		}
		if c.LeaseDuration < c.RenewDeadline+2*time.Second || c.RenewDeadline < 2*c.RetryPeriod || c.APITimeout > c.RenewDeadline/2 || c.APITimeout <= 0 {
			t.Fatalf("accepted bad timing: %+v", c)
		}
		resolveTenant(c)
	})
}

// TestConfigurationDocIsCurrent: docs/configuration.md is `forge-manager
// help` as `make docs` writes it.
func TestConfigurationDocIsCurrent(t *testing.T) {
	var b bytes.Buffer
	printHelp(&b)
	want := "# Configuration reference\n\nGenerated by `make docs` from `forge-manager help`; do not edit.\n\n```\n" + b.String() + "```\n"
	got, err := os.ReadFile("docs/configuration.md")
	if err != nil || string(got) != want {
		t.Errorf("docs/configuration.md is stale: run make docs")
	}
}
