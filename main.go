// forge-manager keeps exactly one Cardano block producer forging in a
// Kubernetes StatefulSet and moves forging between replicas without
// restarting any node.
//
// Usage:
//
//	forge-manager init      initContainer: put the credentials in place so cardano-node can boot
//	forge-manager run       sidecar (the default): elect a leader, keep credentials and forging on
//	                        the leader only, report status, health and metrics
//	forge-manager deadman   livenessProbe of the node container: fails while credentials are in
//	                        place and the sidecar has stopped renewing
//	forge-manager step-down DURATION
//	                        in the sidecar (kubectl exec): hand over without restarting the node
//	                        and stay out of the election for DURATION; 0 ends it (stepdown.go)
//	forge-manager help      every environment variable, its default and meaning
//	forge-manager version   the version stamped at build time
//
// Configuration is by environment variables only; `forge-manager help`
// prints them all from the table in config.go.
//
// CONTRACT of init: when it exits 0, the three credential files exist at
// TARGET_KES_KEY, TARGET_VRF_KEY and TARGET_OP_CERT with mode 0600, owned by
// the user it runs as, each a complete copy of its source (written to a
// temporary file, synced and renamed into place). When it exits 1, it wrote
// nothing new, and its one line of output names the file and the problem,
// never key bytes. Exit 2 is a configuration error. cardano-node must be
// started non-producing: init's files let it boot, not forge.
//
// CONTRACT of run: the node forges only while this replica holds the Lease
// and renewed it less than RENEW_DEADLINE ago (lease.go has the rules and the
// timing arithmetic).
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// version is stamped at build time: -ldflags "-X main.version=...".
var version = "dev"

const usage = `forge-manager keeps exactly one Cardano block producer forging.

Usage: forge-manager [init|run|deadman|step-down DURATION|help|version]   (run is the default)

  init     initContainer: put the credentials in place so cardano-node can boot
  run      sidecar: Lease election, credentials on the leader only, SIGHUP, status, metrics
  deadman  livenessProbe of the node container: fails while credentials are in place
           and the sidecar stopped renewing
  step-down DURATION
           in the sidecar (kubectl exec POD -c forge-manager -- /forge-manager step-down 30m):
           hand over without restarting the node, then stay out of the election for
           DURATION (up to 168h); step-down 0 ends it
  help     this text
  version  the version

Configuration is by environment variables:

`

// commands are the valid subcommands, in the order usage lists them.
var commands = []string{"init", "run", "deadman", "step-down", "help", "version"}

// exitCode distinguishes a configuration or usage error (2) from a runtime
// failure (1).
func exitCode(err error) int {
	var ce *configError
	var ue *usageError
	if errors.As(err, &ce) || errors.As(err, &ue) {
		return 2
	}
	return 1
}

type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	err := run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "forge-manager:", err)
		os.Exit(exitCode(err))
	}
}

// run dispatches a subcommand. It returns instead of exiting so that tests
// drive it like main does.
func run(ctx context.Context, args []string, getenv func(string) (string, bool), stdout, stderr io.Writer) error {
	cmd := "run"
	if len(args) > 0 {
		cmd = args[0]
	}
	switch {
	case cmd == "step-down" && len(args) != 2:
		return &usageError{"step-down takes one argument, how long to stay out: forge-manager step-down 30m (0 ends a step-down)"}
	case cmd != "step-down" && len(args) > 1:
		return &usageError{fmt.Sprintf("%s takes no arguments (configuration is by environment variables; see forge-manager help)", cmd)}
	}
	switch cmd {
	case "help", "-h", "--help":
		printHelp(stdout)
		return nil
	case "version", "--version":
		fmt.Fprintln(stdout, "forge-manager", version)
		return nil
	case "init", "run", "deadman", "step-down":
	default:
		return &usageError{fmt.Sprintf("unknown command %q: want one of %s", cmd, strings.Join(commands, ", "))}
	}
	cfg, err := loadConfig(getenv, cmd)
	if err != nil {
		return err
	}
	tn := resolveTenant(cfg)
	log := newLogger(stderr, cfg.LogLevel, tn.logAttrs(cfg.PodName))
	switch cmd {
	case "init":
		return runInit(cfg, log)
	case "deadman":
		return runDeadman(cfg, stdout)
	case "step-down":
		return runStepDown(cfg, args[1], time.Now, stdout)
	}
	return runSidecar(ctx, cfg, tn, log)
}

// trouble is a condition that keeps this replica from part of its job: it
// is logged at WARN once when it starts and once when it ends (README, Observability),
// never on every pass; changes in between are DEBUG.
type trouble struct {
	what, ok string // the messages for start and end
	err      error  // the current problem; nil when none
}

func (tr *trouble) set(log *slog.Logger, err error) {
	switch {
	case err != nil && tr.err == nil:
		log.Warn(tr.what, "err", err.Error())
	case err == nil && tr.err != nil:
		log.Warn(tr.ok, "was", tr.err.Error())
	case err != nil && err.Error() != tr.err.Error():
		log.Debug(tr.what, "err", err.Error())
	}
	tr.err = err
}

// randomID stands in for POD_UID outside a cluster, so two runs of the same
// pod name are still two holders.
func randomID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// newLogger is the one logger: JSON lines on stderr with the tenant fields
// on every line.
func newLogger(w io.Writer, level slog.Level, attrs []slog.Attr) *slog.Logger {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})
	return slog.New(h.WithAttrs(attrs))
}

// runSidecar wires the sidecar and runs it until ctx ends (SIGTERM), then
// hands over. The health poller and the HTTP server run beside the loop
// and are joined before it returns.
func runSidecar(ctx context.Context, c *config, tn tenant, log *slog.Logger) error {
	rc, err := restConfig(c.inCluster, c.Kubeconfig)
	if err != nil {
		return err
	}
	crc, err := coordinationConfig(c.ClusterManagement, c.ClusterKubeconfig, rc)
	if err != nil {
		return err
	}
	client, err := newRESTClient(rc)
	if err != nil {
		return fmt.Errorf("API client: %w", err)
	}
	identity := c.PodName + "_" + c.PodUID
	if c.PodUID == "" {
		identity = c.PodName + "_" + randomID()
	}
	host, err := newHostNode(procFS{root: "/proc", self: os.Getpid()}, c.NodeProcessName, c.NodeSocket, c.NodeMetricsURL)
	if err != nil {
		return err
	}
	s := newSidecar(c, tn, log, time.Now, host)
	leases := &kubeLeases{rc: client, namespace: c.Namespace, name: tn.Lease, labels: tn.Labels}
	s.el = newElector(leases, identity, c.timing(), s.now)
	s.status = newStatusWriter(leaderObjectOf(client, c, tn), c.PodName, identity)
	s.events = newEventWriter(&kubeEvents{rc: client, namespace: c.Namespace, pod: c.PodName, podUID: c.PodUID, leader: tn.Leader},
		log, s.now, c.APITimeout, func(err error) { s.m.apiError(apiOp(err)) })
	s.events.async = true
	if c.ClusterManagement {
		if s.cl, err = wireCluster(c, tn, identity, crc, log, s.now); err != nil {
			return err
		}
	}
	log.Info("starting", "version", version, "identity", identity, "lease", c.Namespace+"/"+tn.Lease,
		"leader_object", tn.Leader, "application_type", c.AppType, "lease_duration", c.LeaseDuration.String(),
		"renew_deadline", c.RenewDeadline.String(), "retry_period", c.RetryPeriod.String(), "uid", os.Getuid())
	for _, n := range c.notices {
		log.Warn("configuration notice", "notice", n)
	}
	other := otherElection(c)
	s.other, s.otherName = &kubeLeases{rc: client, namespace: c.Namespace, name: other}, other
	srv, err := listen(c.MetricsPort, newStatusServer(s.board, s.m.write, s.now, c.LeaseDuration))
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	hctx, stopHealth := context.WithCancel(ctx)
	wg.Go(func() { s.health.run(hctx) })
	wg.Go(func() { srv.serve() })
	wg.Go(func() { s.events.run(ctx) })
	if c.LeaseWatch {
		s.watch = newLeaseWatch()
		s.el.resync = s.watch.ask
		f := &follower{api: leases, w: s.watch, now: s.now, log: log, timeout: c.APITimeout, retry: c.RetryPeriod, idle: watchIdle,
			failed: func(err error) { s.m.apiError(apiOp(err)) }}
		wg.Go(func() { f.run(ctx) })
	}
	err = s.run(ctx)
	stopHealth()
	srv.Close()
	wg.Wait()
	return err
}

// otherElection is the Lease this pool's replicas use with cluster
// management the other way round (SPEC 7: turning it on or off is a
// migration): with it on, the plain local Lease; off, the forging token in
// this namespace (its one-API-server default).
func otherElection(c *config) string {
	flipped := *c
	flipped.ClusterManagement = !c.ClusterManagement
	if c.ClusterManagement {
		return resolveTenant(&flipped).Lease
	}
	return resolveTenant(c).Token
}

// warnOtherElection says so when a held Lease of this pool exists under the
// other name: replicas configured the other way may be running their own
// election, and then two forge. A look once at start; no answer is no
// warning.
func warnOtherElection(ctx context.Context, api leaseAPI, name string, timeout time.Duration, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	l, err := api.get(ctx)
	if err != nil || deref(l.Spec.HolderIdentity) == "" {
		return
	}
	log.Warn("a forge-manager Lease of this pool is held under another name: replicas with ENABLE_CLUSTER_MANAGEMENT set the other way may be running their own election, and then two forge. Stop their forging first (docs/regions.md, migration)",
		"lease", name, "holder", deref(l.Spec.HolderIdentity))
}

// leaderObjectOf is the tenant's CardanoLeader.
func leaderObjectOf(rc *rest.RESTClient, c *config, tn tenant) *kubeLeaders {
	return &kubeLeaders{kubeObject{rc: rc, group: c.CRDGroup, version: c.CRDVersion, plural: c.CRDPlural,
		kind: "CardanoLeader", resource: "cardanoleader", namespace: c.Namespace, name: tn.Leader, labels: tn.Labels}}
}

// coordinationConfig is the coordination API server's client configuration:
// CLUSTER_KUBECONFIG, read once at start, else the pod's own API server. A
// file that cannot be read or names no usable context is a configuration
// error (exit 2).
func coordinationConfig(on bool, kubeconfig string, local *rest.Config) (*rest.Config, error) {
	if !on || kubeconfig == "" {
		return local, nil
	}
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, &configError{[]string{fmt.Sprintf("CLUSTER_KUBECONFIG=%q: %v", kubeconfig, err)}}
	}
	return rc, nil
}

// wireCluster builds the cluster-wide side (cluster.go) on the coordination
// API server rc.
func wireCluster(c *config, tn tenant, identity string, rc *rest.Config, log *slog.Logger, now func() time.Time) (*coordinator, error) {
	client, err := newRESTClient(rc)
	if err != nil {
		return nil, fmt.Errorf("coordination API client: %w", err)
	}
	token := newElector(&kubeLeases{rc: client, namespace: c.ClusterNamespace, name: tn.Token, labels: tn.ClusterLabels},
		c.Region+"/"+identity, c.clusterTiming().timing, now)
	api := &kubeCluster{
		cr: kubeObject{rc: client, group: c.CRDGroup, version: c.CRDVersion, plural: "cardanoforgeclusters",
			kind: "CardanoForgeCluster", resource: "cardanoforgecluster", namespace: c.ClusterNamespace, name: tn.Cluster, labels: tn.ClusterLabels},
		body: forgeClusterBody{Network: c.Network, Magic: c.NetworkMagic, PoolID: c.PoolID, PoolHex: c.PoolIDHex,
			PoolName: c.PoolName, Ticker: c.PoolTicker, Region: c.Region, Priority: c.Priority},
		candidacy: &kubeLeases{rc: client, namespace: c.ClusterNamespace, name: tn.Candidacy, labels: candidacyLabels(tn.ClusterLabels)},
		selector:  tn.Candidacies,
	}
	log.Info("cluster-wide coordination", "coordination_server", rc.Host, "namespace", c.ClusterNamespace,
		"token", tn.Token, "candidacy", tn.Candidacy, "forge_cluster", tn.Cluster)
	co := newCoordinator(c.clusterTiming(), c.Region, token, api, log, now, time.Now)
	co.mineName = tn.Candidacy
	return co, nil
}

// newSidecar builds the sidecar from the configuration: the one place that
// reads it for the loop. Whether this replica can forge at all is decided
// here: a relay or monitor gets no credentials and no heartbeat, and a
// reason never to forge. The elector and the status writer need the API
// and are wired by the caller.
func newSidecar(c *config, tn tenant, log *slog.Logger, now func() time.Time, host nodeAccess) *sidecar {
	s := &sidecar{
		log: log, now: now, sleep: time.Sleep, board: &board{},
		tm:    loopTiming{timing: c.timing(), probe: c.Probe.budget(), socketFails: c.HealthThreshold, maxTipLag: uint64(c.MaxTipLag)},
		chain: c.chain(),
		names: replicaNames{pod: c.PodName, lease: c.Namespace + "/" + tn.Lease, network: tn.Network,
			poolID: tn.PoolID, poolHex: c.PoolIDHex, region: tn.Region, nodeProcess: c.NodeProcessName},
	}
	s.m = newMetricSet(s.board, "pod", c.PodName, "cardano_network", c.Network, "pool_id", c.PoolID,
		"pool_ticker", c.PoolTicker, "application_type", c.AppType, "cluster_region", c.Region)
	if c.ClusterManagement {
		s.m.clusterGauges(s.board)
	}
	s.keys = keyFiles{log: log, count: s.m.credentialOp}
	s.hb = heartbeat{pod: c.PodName, clock: boottime}
	if c.AppType == appBlockProducer {
		s.keys.creds = credentials(c)
		s.hb.path, s.hb.files = c.HeartbeatFile, targets(s.keys.creds)
		s.stepDownFile = c.StepDownFile
	} else {
		s.never = "application type " + c.AppType + " never forges"
	}
	s.health = newHealthChecker(c.HealthEndpoint, c.HealthInterval, c.HealthTimeout, c.HealthThreshold, log)
	s.inherit = inheritFrom(c.HeartbeatFile)
	s.node = newNodeTracker(host, c.NodeProcessName, c.ConfirmTimeout, c.SocketWaitTimeout, c.NodeMetricsURL != "", log, s.m)
	if s.inherit.active {
		s.node.prev = &s.inherit
		s.node.unsure = now().Add(c.ConfirmTimeout) // the last process's last signal has been handled by then
	}
	s.sourceTrouble = trouble{what: "credentials unusable; not eligible to forge", ok: "credentials usable again"}
	s.counterTrouble = trouble{what: "the certificate's counter is ahead of what the chain accepts", ok: "the certificate's counter is within what the chain accepts"}
	s.nodeCertTrouble = trouble{what: "the node did not take the credential set in place", ok: "the node runs the credential set in place"}
	s.rejectTrouble = trouble{what: "mounted credential set refused; the last good set, if any, stays", ok: "mounted credential set valid again"}
	s.leaseTrouble = trouble{what: "Lease API calls failing", ok: "Lease API calls working again"}
	s.statusTrouble = trouble{what: "CardanoLeader status writes failing", ok: "CardanoLeader status writes working again"}
	s.clusterTrouble = trouble{what: "cluster-wide coordination calls failing", ok: "cluster-wide coordination calls working again"}
	s.heartbeatTrouble = trouble{what: "cannot write the heartbeat; the dead-man probe will restart the node", ok: "heartbeat written again"}
	return s
}
