package main

// The control loop of `forge-manager run`. Each iteration looks at the
// world (node process, socket, forging gauge, Lease) and moves it towards
// one rule: the node forges if and only if this replica leads, is eligible,
// and renewed within RENEW_DEADLINE. It is level-triggered (SPEC 3
// invariant 6): a restarted node, a missed signal or a file removed by hand
// is just another difference to repair on the next iteration.
//
// Node incarnations. A node process is identified by PID and start time. One
// that started after this sidecar is taken to be non-producing (it must be
// started with --start-as-non-producing-node) until we signal it. Its gauge
// is read all the same: a 1 there is believed when it means "disable"
// (fail closed), never as the confirmation of an enable we did not send
// (cardano-node issues #6113 and #6576 report it reading 1 at boot). One
// already running when this sidecar started is of unknown state and is asked
// through its gauge.
//
// Files. A node reads the three files at boot and exits if one is missing,
// so they are in place whenever no node is up: while no process runs, and
// while one boots (before its socket answers; a SIGHUP then would kill it).
// Once the socket answers, only a forging leader keeps them.
//
// Signals. One SIGHUP at a time, each confirmed through the gauge within
// SIGHUP_CONFIRM_TIMEOUT. An enable that is not confirmed is retried with
// back-off. A disable that is not confirmed is retried while the Lease is
// still ours; once the Lease could pass to another replica, the node is
// killed instead (it restarts non-producing). A disable never waits for an
// enable in flight: the files go first, and the gauge is read again after.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Loop timing. pollPending: how often the gauge is read while a SIGHUP
// awaits confirmation (cardano-node answers within milliseconds).
// socketRecheck: once the node's socket has answered, it is connected to
// again only this often; each connect is a session the node opens and logs.
const (
	pollPending   = 100 * time.Millisecond
	maxBackoff    = 30 * time.Second
	socketRecheck = 30 * time.Second
)

type tristate int8

const (
	unknown tristate = iota
	off
	on
)

func (t tristate) String() string { return [...]string{"unknown", "off", "on"}[t] }

// nodeState is what the loop knows of the current node incarnation.
type nodeState struct {
	proc        nodeProc
	found       bool
	fresh       bool // started after this sidecar: non-producing until signalled
	signalled   bool // we sent this incarnation a SIGHUP: its gauge is trusted
	up          bool // a connect() to its socket succeeded: it may be signalled
	seenAt      time.Time
	socketAt    time.Time // last connect() to the socket
	socketFails int       // consecutive failed connects since it answered
	forging     tristate
	confirmed   bool   // forging was read from the node's gauge
	loaded      string // digest of the credentials it last enabled with
	pending     *hup
	failures    int // consecutive unconfirmed enables
	retryAt     time.Time
	signalErr   error // EPERM: not eligible while it lasts
	metricErr   error
	findErr     error
	waitWarned  bool // SOCKET_WAIT_TIMEOUT passed, said once
	bootWarned  bool // forging before any signal, said once
}

// hup is a SIGHUP awaiting confirmation.
type hup struct {
	want bool
	sent time.Time
}

// sidecar is the state of `forge-manager run`.
type sidecar struct {
	cfg    *config
	t      tenant
	log    *slog.Logger
	now    func() time.Time
	el     *elector
	proc   procFS
	creds  []credential
	status *statusWriter
	health *healthChecker
	m      *metricSet
	hb     heartbeat

	selfStart uint64 // our own start time in clock ticks, to tell fresh node incarnations
	node      nodeState
	sources   [][]byte
	digest    string
	sourceErr error
	leading   bool // as of the last iteration, for transition logs
	forging   bool // confirmed, as of the last iteration
	why       string
	lastLoop  atomic.Int64 // unix nanos of the last completed iteration, for /healthz
	view      atomic.Pointer[snapshot]
}

// runSidecar wires the sidecar and runs it until ctx ends (SIGTERM), then
// hands over.
func runSidecar(ctx context.Context, c *config, t tenant, log *slog.Logger) error {
	rc, err := restConfig(c)
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
	s := newSidecar(c, t, log, time.Now)
	s.el = newElector(&kubeLeases{rc: client, namespace: c.Namespace, name: t.Lease, labels: t.Labels}, identity, c, s.now)
	s.status = newStatusWriter(&kubeLeaders{rc: client, c: c, name: t.Leader, labels: t.Labels}, c.PodName, identity)
	log.Info("starting", "version", version, "identity", identity, "lease", c.Namespace+"/"+t.Lease,
		"leader_object", t.Leader, "application_type", c.AppType, "lease_duration", c.LeaseDuration.String(),
		"renew_deadline", c.RenewDeadline.String(), "retry_period", c.RetryPeriod.String(), "uid", os.Getuid())
	for _, n := range c.notices {
		log.Warn("ignoring a variable of the predecessor", "notice", n)
	}
	srv, err := serveHTTP(c.MetricsPort, s)
	if err != nil {
		return err
	}
	defer srv.Close()
	go s.health.run(ctx)
	return s.run(ctx)
}

func newSidecar(c *config, t tenant, log *slog.Logger, now func() time.Time) *sidecar {
	s := &sidecar{
		cfg: c, t: t, log: log, now: now,
		proc:  procFS{root: "/proc", self: os.Getpid()},
		creds: credentials(c),
		hb:    heartbeat{path: c.HeartbeatFile},
	}
	_, s.selfStart, _, _ = s.proc.stat(os.Getpid())
	s.health = newHealthChecker(c, log)
	s.m = newMetricSet(c, s)
	return s
}

// run is the loop. It returns nil after a clean handover on SIGTERM.
func (s *sidecar) run(ctx context.Context) error {
	for {
		wait := s.iterate(ctx)
		select {
		case <-ctx.Done():
			return s.shutdown()
		case <-s.health.changed:
		case <-time.After(wait):
		}
	}
}

// iterate is one pass: observe, elect, act, report. It returns how long to
// sleep before the next pass.
func (s *sidecar) iterate(ctx context.Context) time.Duration {
	now := s.now()
	s.readSources()
	s.observeNode(ctx, now)
	why := s.ineligible()
	if s.el.due(now) {
		if err := s.el.step(ctx, why == ""); err != nil {
			s.m.apiError(apiOp(err))
			s.log.Debug("lease", "err", err)
		}
	}
	now = s.now()
	leading := s.el.leading(now)
	want := leading && why == "" && s.el.epochTrusted()
	s.reconcile(ctx, now, want)
	if leading && why != "" && s.nodeOff() {
		s.releaseLease(ctx, why)
		leading = false
	}
	s.noteTransitions(now, leading, why)
	s.report(ctx, now, leading)
	return s.nextWake(now)
}

// readSources re-reads the Secret's files each pass: a rotated key is picked
// up without a restart, and a broken Secret makes the replica ineligible.
func (s *sidecar) readSources() {
	if s.cfg.AppType != appBlockProducer {
		return
	}
	data, digest, err := readSources(s.creds)
	if err != nil {
		if s.sourceErr == nil || s.sourceErr.Error() != err.Error() {
			s.log.Error("credentials unusable; not eligible to forge", "err", err)
		}
		s.sourceErr = err
		return
	}
	if s.sourceErr != nil {
		s.log.Info("credentials usable again")
	}
	s.sources, s.digest, s.sourceErr = data, digest, nil
}

// observeNode finds the node incarnation, checks its socket and reads its
// gauge where the gauge is trusted.
func (s *sidecar) observeNode(ctx context.Context, now time.Time) {
	p, err := s.proc.findNode(s.cfg.NodeProcessName)
	n := &s.node
	if err != nil {
		if n.found {
			s.log.Warn("node process gone", "pid", n.proc.PID)
		} else if n.findErr == nil || n.findErr.Error() != err.Error() {
			s.log.Info("node process not found", "name", s.cfg.NodeProcessName, "err", err)
		}
		*n = nodeState{findErr: err, forging: off, seenAt: n.seenAt}
		return
	}
	if !n.found || p != n.proc {
		fresh := p.Start >= s.selfStart
		*n = nodeState{proc: p, found: true, fresh: fresh, seenAt: now, forging: unknown}
		if fresh {
			n.forging = off
		}
		s.log.Info("node process found", "pid", p.PID, "started_after_sidecar", fresh)
		// Signal 0 checks permission without effect: a node we may not
		// signal must never be made leader (SPEC 2: same UID or CAP_KILL).
		if err := s.proc.signal(p, 0); errors.Is(err, errNotSignalable) {
			n.signalErr = err
			s.log.Error("cannot signal the node; not eligible to forge", "err", err)
		}
	}
	if !n.up || now.Sub(n.socketAt) >= socketRecheck {
		n.socketAt = now
		if socketAnswers(s.cfg.NodeSocket) {
			if !n.up {
				s.log.Info("node socket answers", "pid", p.PID, "after", now.Sub(n.seenAt).Round(time.Millisecond).String())
			}
			n.up, n.socketFails = true, 0
		} else if n.up {
			n.socketFails++
		}
	}
	if !n.up && !n.waitWarned && now.Sub(n.seenAt) > s.cfg.SocketWaitTimeout {
		n.waitWarned = true
		s.log.Warn("node socket still not answering; still waiting", "pid", p.PID, "socket", s.cfg.NodeSocket,
			"waited", now.Sub(n.seenAt).Round(time.Second).String())
	}
	if s.cfg.NodeMetricsURL == "" || !n.up {
		return
	}
	v, err := readForging(ctx, s.cfg.NodeMetricsURL)
	if err != nil {
		if n.metricErr == nil {
			s.log.Warn("cannot read the node's forging gauge", "err", err)
		}
		n.metricErr = err
		return
	}
	n.metricErr, n.confirmed = nil, true
	n.forging = off
	if v {
		n.forging = on
		if n.fresh && !n.signalled && !n.bootWarned {
			n.bootWarned = true
			s.log.Warn("node reports forging although it was never signalled: is it started with --start-as-non-producing-node? (or cardano-node issue #6113); treating it as forging",
				"pid", p.PID)
		}
	}
}

// ineligible says why this replica may not forge now ("" if it may).
func (s *sidecar) ineligible() string {
	n := &s.node
	switch {
	case s.cfg.AppType != appBlockProducer:
		return "application type " + s.cfg.AppType + " never forges"
	case s.sourceErr != nil:
		return "credentials unusable: " + s.sourceErr.Error()
	case !n.found:
		return "node process not found"
	case n.signalErr != nil:
		return n.signalErr.Error()
	case !n.up:
		return "node socket not answering yet"
	case n.socketFails >= s.cfg.HealthThreshold:
		return "node socket stopped answering"
	case !s.health.healthy():
		return "health check failing: " + s.health.lastError()
	}
	return ""
}

// reconcile moves the node towards want.
func (s *sidecar) reconcile(ctx context.Context, now time.Time, want bool) {
	if s.cfg.AppType != appBlockProducer {
		return
	}
	n := &s.node
	switch {
	case !n.found && socketAnswers(s.cfg.NodeSocket):
		// A node answers that we cannot see: the pod lacks
		// shareProcessNamespace. It must not have keys we cannot take back.
		s.removeCreds()
	case !n.found || !n.up:
		s.placeCreds() // for its boot; no signal before the socket answers
	case want:
		s.enable(now)
	default:
		s.disable(now)
	}
}

// enable keeps the files current and the node forging.
func (s *sidecar) enable(now time.Time) {
	n := &s.node
	changed := s.placeCreds()
	if p := n.pending; p != nil {
		if !p.want { // a disable in flight: let it finish first
			s.checkDisable(now, p)
			return
		}
		switch {
		case n.forging == on && n.confirmed:
			n.pending, n.failures, n.loaded = nil, 0, s.digest
			s.log.Info("forging enabled, confirmed by the node", "pid", n.proc.PID, "took", now.Sub(p.sent).Round(time.Millisecond).String())
		case s.cfg.NodeMetricsURL == "":
			n.pending, n.loaded, n.forging = nil, s.digest, on // nothing to ask: a delivered signal counts
		case now.Sub(p.sent) < s.cfg.ConfirmTimeout:
			return
		default:
			n.pending = nil
			n.failures++
			n.retryAt = now.Add(backoff(n.failures, s.cfg.ConfirmTimeout))
			s.log.Warn("node did not confirm forging; will retry", "pid", n.proc.PID, "attempts", n.failures,
				"retry_in", n.retryAt.Sub(now).Round(time.Millisecond).String(), "gauge_err", errString(n.metricErr))
			return
		}
	}
	if n.fresh && !n.signalled {
		// A gauge of 1 before our first signal is no confirmation (#6113):
		// enable explicitly.
		if !now.Before(n.retryAt) {
			s.hup(now, true)
		}
		return
	}
	if n.forging == on && n.loaded == "" && !changed {
		n.loaded = s.digest // forging already (we restarted): adopt what is on disk
	}
	if n.forging == on && !changed && n.loaded == s.digest {
		return
	}
	if now.Before(n.retryAt) {
		return
	}
	s.hup(now, true)
}

// disable takes the files away and makes sure the node stops forging.
func (s *sidecar) disable(now time.Time) {
	n := &s.node
	s.removeCreds()
	if p := n.pending; p != nil && !p.want {
		s.checkDisable(now, p)
		return
	}
	if p := n.pending; p != nil && p.want {
		// An enable in flight is overtaken: the files are gone, and this
		// signal's handler may finish before or after that one's; the gauge
		// is read again on every pass.
		n.pending = nil
		s.hup(now, false)
		return
	}
	if n.forging == off {
		return
	}
	s.hup(now, false)
}

// checkDisable confirms a pending disable or escalates (SPEC 3 invariant 5).
func (s *sidecar) checkDisable(now time.Time, p *hup) {
	n := &s.node
	switch {
	case n.forging == off && (n.confirmed || s.cfg.NodeMetricsURL == ""):
		n.pending = nil
		s.log.Info("forging disabled, confirmed by the node", "pid", n.proc.PID, "took", now.Sub(p.sent).Round(time.Millisecond).String())
	case s.cfg.NodeMetricsURL == "":
		n.pending, n.forging = nil, off
	case now.Before(s.killDeadline(now, p)):
	case s.el.leading(now):
		// Still ours: no other replica can start, so ask again.
		s.log.Warn("node did not confirm the disable; signalling again", "pid", n.proc.PID)
		n.pending = nil
		s.hup(now, false)
	default:
		s.terminateNode(now, "disable not confirmed before another replica may take the Lease")
	}
}

// killDeadline is when an unconfirmed disable ends in terminating the node:
// SIGHUP_CONFIRM_TIMEOUT after the signal, and never later than the last
// moment before a standby may take the Lease (if that moment has passed, the
// first unconfirmed look is enough).
func (s *sidecar) killDeadline(now time.Time, p *hup) time.Time {
	d := p.sent.Add(s.cfg.ConfirmTimeout)
	if !s.el.leading(now) {
		if stop := s.el.mustStopBy(); stop.Before(d) {
			d = stop
		}
	}
	return d
}

// hup sends one SIGHUP after the files were set for want.
func (s *sidecar) hup(now time.Time, want bool) {
	n := &s.node
	err := s.proc.signal(n.proc, unix.SIGHUP)
	if errors.Is(err, errNotSignalable) {
		if n.signalErr == nil {
			s.log.Error("cannot signal the node; not eligible to forge", "err", err)
		}
		n.signalErr = err
		return
	}
	if err != nil {
		s.log.Warn("SIGHUP failed", "err", err)
		return
	}
	n.signalErr = nil
	n.signalled = true
	n.pending = &hup{want: want, sent: now}
	reason := "disable"
	if want {
		reason = "enable"
	}
	s.m.sighup(reason)
	s.log.Debug("SIGHUP sent", "pid", n.proc.PID, "reason", reason)
}

// terminateNode kills the node: its forging threads stop with it, and the
// kubelet restarts it non-producing. SIGKILL, not SIGTERM, because a
// graceful shutdown may outlast the Lease.
func (s *sidecar) terminateNode(now time.Time, why string) {
	n := &s.node
	err := s.proc.signal(n.proc, unix.SIGKILL)
	s.log.Error("terminating the node", "pid", n.proc.PID, "why", why, "err", errString(err))
	s.m.nodeTerminated()
	if err == nil || errors.Is(err, errNodeNotFound) {
		n.pending, n.forging = nil, off
	}
}

// placeCreds writes every credential that is missing or differs; it
// reports whether any was written.
func (s *sidecar) placeCreds() bool {
	if s.sources == nil {
		return false // nothing valid to write; what is there stays
	}
	changed := false
	for i, cr := range s.creds {
		wrote, err := ensureFile(cr.target, s.sources[i])
		if err != nil {
			s.log.Error("cannot write credential", "file", cr.targetVar, "err", err)
			continue
		}
		if wrote {
			changed = true
			s.m.credentialOp("write", cr.targetVar)
		}
	}
	return changed
}

func (s *sidecar) removeCreds() {
	for _, cr := range s.creds {
		removed, err := removeFile(cr.target)
		if err != nil {
			s.log.Error("cannot remove credential", "file", cr.targetVar, "err", err)
		}
		if removed {
			s.m.credentialOp("remove", cr.targetVar)
		}
	}
}

// nodeOff: the node certainly is not forging (no process, or confirmed off
// with nothing in flight).
func (s *sidecar) nodeOff() bool {
	n := &s.node
	return !n.found || (n.forging == off && n.pending == nil)
}

// releaseLease gives the Lease up once the node is off, so a healthy
// replica takes over at once instead of waiting for expiry.
func (s *sidecar) releaseLease(ctx context.Context, why string) {
	if err := s.el.release(ctx); err != nil {
		s.m.apiError(apiOp(err))
		s.log.Warn("could not release the Lease; it will expire", "err", err)
		return
	}
	s.log.Info("released the Lease", "why", why)
}

// noteTransitions logs and counts real changes, once each.
func (s *sidecar) noteTransitions(now time.Time, leading bool, why string) {
	forging := s.node.forging == on && s.node.pending == nil && (s.node.confirmed || s.cfg.NodeMetricsURL == "")
	if leading != s.leading {
		s.m.leadershipChange()
		if leading {
			s.log.Info("acquired the Lease", "epoch", s.el.epoch().String())
		} else if !s.el.renewedAt.IsZero() && !now.Before(s.el.fenceAt()) {
			s.m.fenced()
			s.log.Warn("fenced: no successful renew within RENEW_DEADLINE; forging disabled", "renew_deadline", s.cfg.RenewDeadline.String())
		} else {
			s.log.Info("lost the Lease", "holder", s.el.holder())
		}
	}
	if why != s.why && why != "" {
		s.log.Info("not eligible to forge", "why", why)
	} else if why != s.why {
		s.log.Info("eligible to forge")
	}
	s.leading, s.forging, s.why = leading, forging, why
}

// report writes the heartbeat, the CardanoLeader status (leader only, on
// change) and the snapshot behind /status and /metrics.
func (s *sidecar) report(ctx context.Context, now time.Time, leading bool) {
	if s.cfg.AppType == appBlockProducer {
		if err := s.hb.write(s.heartbeatValidity(now, leading), s.cfg.PodName); err != nil {
			s.log.Error("cannot write the heartbeat; the dead-man probe will restart the node", "file", s.cfg.HeartbeatFile, "err", err)
		}
	}
	if leading {
		s.syncStatus(ctx, now, s.forging, s.why)
	} else {
		s.status.forget()
	}
	s.publish(now, leading)
	s.lastLoop.Store(now.UnixNano())
}

func (s *sidecar) syncStatus(ctx context.Context, now time.Time, forging bool, why string) {
	cctx, cancel := s.el.callContext(ctx)
	defer cancel()
	wrote, err := s.status.sync(cctx, now, leaderFacts{forging: forging, why: why, epoch: s.el.epoch()})
	if err != nil {
		s.m.apiError(apiOp(err))
		s.log.Debug("CardanoLeader status", "err", err)
	} else if wrote {
		s.log.Debug("CardanoLeader status written", "forging", forging)
	}
}

// nextWake is how long the loop may sleep: until the next election round,
// the renew deadline, or the next look at a pending signal.
func (s *sidecar) nextWake(now time.Time) time.Duration {
	if s.node.pending != nil {
		return pollPending
	}
	wait := s.el.wakeAt(now).Sub(now)
	if !s.node.up {
		wait = min(wait, s.cfg.RetryPeriod) // look for the node's socket
	}
	return max(wait, time.Millisecond)
}

// shutdownBudget: the handover on SIGTERM, inside the 30s grace period of
// the shipped manifests. A disable gets SIGHUP_CONFIRM_TIMEOUT, then a kill,
// then the release one API_TIMEOUT.
func (s *sidecar) shutdownBudget() time.Duration {
	return s.cfg.ConfirmTimeout + s.cfg.APITimeout + 2*time.Second
}

// shutdown is the graceful handover (SPEC 3 invariant 7): disable, confirm,
// then release the Lease so a standby takes over within one retry.
func (s *sidecar) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.shutdownBudget())
	defer cancel()
	holder := s.el.holder() == s.el.identity
	if holder || !s.nodeOff() {
		s.log.Info("stopping: disabling forging before handing over")
		for ctx.Err() == nil {
			now := s.now()
			s.observeNode(ctx, now)
			if s.cfg.AppType == appBlockProducer && s.node.found && s.node.up {
				s.disable(now)
			}
			if s.nodeOff() || !s.node.up {
				break
			}
			time.Sleep(pollPending)
		}
	}
	if !s.nodeOff() && s.node.up {
		s.terminateNode(s.now(), "disable not confirmed before shutdown")
	}
	if holder {
		s.syncStatus(ctx, s.now(), false, "shutting down")
		s.releaseLease(ctx, "shutting down")
	}
	s.report(ctx, s.now(), false)
	s.log.Info("stopped")
	return nil
}

func backoff(failures int, base time.Duration) time.Duration {
	d := base
	for i := 1; i < failures && d < maxBackoff; i++ {
		d *= 2
	}
	return min(d, maxBackoff)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// randomID stands in for POD_UID outside a cluster, so two runs of the same
// pod name are still two holders.
func randomID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
