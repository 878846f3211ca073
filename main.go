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
	"syscall"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// version is stamped at build time: -ldflags "-X main.version=...".
var version = "dev"

const usage = `forge-manager keeps exactly one Cardano block producer forging.

Usage: forge-manager [init|run|deadman|help|version]   (run is the default)

  init     initContainer: put the credentials in place so cardano-node can boot
  run      sidecar: Lease election, credentials on the leader only, SIGHUP, status, metrics
  deadman  livenessProbe of the node container: fails while credentials are in place
           and the sidecar stopped renewing
  help     this text
  version  the version

Configuration is by environment variables:

`

// commands are the valid subcommands, in the order usage lists them.
var commands = []string{"init", "run", "deadman", "help", "version"}

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
	if len(args) > 1 {
		return &usageError{fmt.Sprintf("%s takes no arguments (configuration is by environment variables; see forge-manager help)", cmd)}
	}
	switch cmd {
	case "help", "-h", "--help":
		printHelp(stdout)
		return nil
	case "version", "--version":
		fmt.Fprintln(stdout, "forge-manager", version)
		return nil
	case "init", "run", "deadman":
	default:
		return &usageError{fmt.Sprintf("unknown command %q: want one of %s", cmd, strings.Join(commands, ", "))}
	}
	cfg, err := loadConfig(getenv, cmd)
	if err != nil {
		return err
	}
	t := resolveTenant(cfg)
	log := newLogger(stderr, cfg.LogLevel, t.logAttrs(cfg.PodName))
	switch cmd {
	case "init":
		return runInit(cfg, log)
	case "deadman":
		return runDeadman(cfg, stdout)
	}
	return runSidecar(ctx, cfg, t, log)
}

// restConfig is the pod's ServiceAccount in a cluster, else KUBECONFIG.
func restConfig(c *config) (*rest.Config, error) {
	if c.inCluster {
		rc, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster API config: %w", err)
		}
		return rc, nil
	}
	rc, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("KUBECONFIG=%q: %w", c.Kubeconfig, err)
	}
	return rc, nil
}

// newRESTClient is the one API client: client-go's REST client with only
// the coordination/v1 types registered (custom resources travel as JSON), so
// the binary carries no generated clientset.
func newRESTClient(rc *rest.Config) (*rest.RESTClient, error) {
	rc = rest.CopyConfig(rc)
	scheme := runtime.NewScheme()
	if err := coordinationv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	rc.APIPath = "/apis"
	rc.GroupVersion = &coordinationv1.SchemeGroupVersion
	rc.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	rc.ContentType = runtime.ContentTypeJSON
	rc.UserAgent = "forge-manager/" + version
	// HTTP/1.1: a request that timed out takes its connection with it, so
	// after a partition the next request dials afresh instead of queueing
	// on a dead HTTP/2 connection until its health check notices (30-45s).
	rc.TLSClientConfig.NextProtos = []string{"http/1.1"}
	// Far above the ~1 request/s a replica sends; the limiter must never
	// make a renew wait.
	rc.QPS, rc.Burst = 50, 100
	return rest.RESTClientFor(rc)
}

// trouble is a condition that keeps this replica from part of its job: it
// is logged at WARN once when it starts and once when it ends (SPEC 8),
// never on every pass; changes in between are DEBUG.
type trouble struct {
	what, ok string // the messages for start and end
	err      error  // the current problem; nil when none
}

func (t *trouble) set(log *slog.Logger, err error) {
	switch {
	case err != nil && t.err == nil:
		log.Warn(t.what, "err", err.Error())
	case err == nil && t.err != nil:
		log.Warn(t.ok, "was", t.err.Error())
	case err != nil && err.Error() != t.err.Error():
		log.Debug(t.what, "err", err.Error())
	}
	t.err = err
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
