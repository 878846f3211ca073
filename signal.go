package main

// The node side: finding the cardano-node process in the pod's shared
// process namespace, telling one incarnation from the next, signalling it,
// and reading back what it did (docs/design.md, The node).
//
// What a signal does is never assumed: after each SIGHUP the node's own
// forging gauge is read until it shows the wanted state or the confirmation
// timeout passes (forge.go decides what happens then).

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// nodeProc is one incarnation of the node: PIDs are reused, so the process
// start time (clock ticks since boot, /proc/PID/stat field 22) is part of
// its identity. A new start time means the node restarted.
type nodeProc struct {
	PID   int
	Start uint64
}

func (p nodeProc) String() string { return fmt.Sprintf("pid %d (start %d)", p.PID, p.Start) }

// errNodeNotFound: the incarnation is gone.
var errNodeNotFound = errors.New("node process not found")

// nodeAccess is how the loop reaches the node: the processes that may be it,
// the incarnation it tracks, its socket and its forging gauge. hostNode is
// the real one; tests substitute a simulated node.
type nodeAccess interface {
	// candidates lists every process that may be the node; an error means
	// /proc could not be read, which is not "no node".
	candidates() ([]nodeProc, error)
	// alive tells whether p still runs; an error means it cannot be told,
	// which is not "gone".
	alive(p nodeProc) (bool, error)
	signal(p nodeProc, sig unix.Signal) error
	socketAnswers() bool
	// gauges reads the node's metrics: the forging gauge exactly 0 or 1
	// (anything else is an error), and the chain gauges it exports.
	gauges(ctx context.Context) (nodeGauges, error)
	// started is when this sidecar started, in the unit of nodeProc.Start:
	// a node that started later was started non-producing by the kubelet.
	started() uint64
}

// hostNode is nodeAccess in the pod's shared process namespace.
type hostNode struct {
	fs         procFS
	name       string // CARDANO_NODE_PROCESS_NAME
	socket     string // NODE_SOCKET
	metricsURL string // NODE_METRICS_URL
	self       uint64
}

// newHostNode needs this process's own start time: without it every node
// would look started after the sidecar, so booted non-producing and off.
func newHostNode(fs procFS, name, socket, metricsURL string) (*hostNode, error) {
	h := &hostNode{fs: fs, name: name, socket: socket, metricsURL: metricsURL}
	_, self, _, err := fs.stat(fs.self)
	if err != nil {
		return nil, fmt.Errorf("read this process's start time in %s: %w", fs.root, err)
	}
	h.self = self
	return h, nil
}

func (h *hostNode) candidates() ([]nodeProc, error)          { return h.fs.findNode(h.name) }
func (h *hostNode) alive(p nodeProc) (bool, error)           { return h.fs.alive(p) }
func (h *hostNode) signal(p nodeProc, sig unix.Signal) error { return h.fs.signal(p, sig) }
func (h *hostNode) socketAnswers() bool                      { return socketAnswers(h.socket) }
func (h *hostNode) gauges(ctx context.Context) (nodeGauges, error) {
	return readNodeMetrics(ctx, h.metricsURL)
}
func (h *hostNode) started() uint64 { return h.self }

// procFS reads processes from a /proc; tests point root at a fake tree.
type procFS struct {
	root string // "/proc"
	self int    // our own PID, never a candidate
}

// findNode returns every process whose executable name (comm, or the base
// name of argv[0]) is name. PID 1 (the pod's pause process) and this
// process never match; zombies are dead. Which of several is the node is
// the caller's question: the incarnation it already tracks stays the node
// while it lives; without one, several matches are "cannot tell".
func (fs procFS) findNode(name string) ([]nodeProc, error) {
	entries, err := os.ReadDir(fs.root)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", fs.root, err)
	}
	var found []nodeProc
	var unreadable error
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == 1 || pid == fs.self {
			continue
		}
		comm, start, state, err := fs.stat(pid)
		switch {
		case gone(err) || state == 'Z' || state == 'X':
			continue // gone since ReadDir, or dead
		case err != nil:
			unreadable = err // it may be the node: "cannot tell", not "no node"
			continue
		}
		if comm == name || fs.argv0(pid) == name { // comm is cut at 15 bytes; argv[0] is not
			found = append(found, nodeProc{pid, start})
		}
	}
	return found, unreadable
}

// gone tells a process that exited from one that cannot be read.
func gone(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH)
}

// stat parses /proc/PID/stat: comm is between the first '(' and the last
// ')' (it may itself hold spaces and parentheses); state and starttime are
// fields 3 and 22.
func (fs procFS) stat(pid int) (comm string, start uint64, state byte, err error) {
	b, err := os.ReadFile(filepath.Join(fs.root, strconv.Itoa(pid), "stat"))
	if err != nil {
		return "", 0, 0, err
	}
	s := string(b)
	open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || close < open {
		return "", 0, 0, fmt.Errorf("malformed stat for pid %d", pid)
	}
	fields := strings.Fields(s[close+1:])
	if len(fields) < 20 {
		return "", 0, 0, fmt.Errorf("short stat for pid %d", pid)
	}
	start, err = strconv.ParseUint(fields[19], 10, 64)
	return s[open+1 : close], start, fields[0][0], err
}

func (fs procFS) argv0(pid int) string {
	b, err := os.ReadFile(filepath.Join(fs.root, strconv.Itoa(pid), "cmdline"))
	if err != nil || len(b) == 0 {
		return ""
	}
	if i := strings.IndexByte(string(b), 0); i >= 0 {
		b = b[:i]
	}
	return filepath.Base(string(b))
}

// alive tells whether p is still the same incarnation; an error other than
// "no such process" means it cannot be told.
func (fs procFS) alive(p nodeProc) (bool, error) {
	_, start, state, err := fs.stat(p.PID)
	switch {
	case gone(err):
		return false, nil
	case err != nil:
		return false, err
	}
	return start == p.Start && state != 'Z' && state != 'X', nil
}

// pidfdOpen is pidfd_open(2); a test makes it fail.
var pidfdOpen = unix.PidfdOpen

// errNotSignalable wraps EPERM from kill: the node runs as another user.
var errNotSignalable = errors.New("not permitted to signal the node: run the node and forge-manager containers as the same UID (runAsUser), or grant forge-manager CAP_KILL")

// signal sends sig to exactly the incarnation p. A pidfd pins the process
// while its start time is checked, so a PID reused in between is never
// signalled. When pidfd_open fails for any reason but "no such process" (an
// old kernel, a seccomp profile, no file descriptors left), kill(2) after
// the same check still reaches it: a reuse would need the PID to cycle in
// the microseconds between the check and the call.
func (fs procFS) signal(p nodeProc, sig unix.Signal) error {
	pidfd, err := pidfdOpen(p.PID, 0)
	switch {
	case errors.Is(err, unix.ESRCH):
		return fmt.Errorf("node %s: %w", p, errNodeNotFound)
	case err != nil:
		pidfd = -1
	default:
		defer unix.Close(pidfd)
	}
	switch ok, err := fs.alive(p); {
	case err != nil:
		return fmt.Errorf("node %s: cannot check it is still the node: %w", p, err)
	case !ok:
		return fmt.Errorf("node %s: %w", p, errNodeNotFound)
	}
	if pidfd >= 0 {
		err = unix.PidfdSendSignal(pidfd, sig, nil, 0)
	} else {
		err = unix.Kill(p.PID, sig)
	}
	switch {
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("node %s: %w", p, errNotSignalable)
	case errors.Is(err, unix.ESRCH):
		return fmt.Errorf("node %s: %w", p, errNodeNotFound)
	case err != nil:
		return fmt.Errorf("signal node %s: %w", p, err)
	}
	return nil
}

// socketAnswers tells whether something accepts connections on the node's
// socket. A socket file left by a killed node refuses (ECONNREFUSED), so
// this, not the file's existence, says the node is up.
func socketAnswers(path string) bool {
	c, err := net.DialTimeout("unix", path, 500*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// The node's forging gauge, with and without the _int suffix (docs/design.md, The node).
var forgingMetrics = []string{"cardano_node_metrics_forging_enabled_int", "cardano_node_metrics_forging_enabled"}

// The chain gauges read from the same page (cardano-node-facts G1): the
// tip's slot, and the loaded certificate's start KES period under the new
// and the legacy tracing's names.
var (
	slotMetrics     = []string{"cardano_node_metrics_slotNum_int"}
	kesStartMetrics = []string{"cardano_node_metrics_operationalCertificateStartKESPeriod_int",
		"cardano_node_Forge_metrics_operationalCertificateStartKESPeriod_int"}
)

// nodeGauges is one reading of the node's metrics. slot and kesStart are
// -1 when the node does not export them.
type nodeGauges struct {
	forging        bool
	slot, kesStart int64
}

// metricsClient reads the node's Prometheus endpoint. Local and small, so a
// short timeout: the control loop waits on it.
var metricsClient = &http.Client{Timeout: time.Second}

// readNodeMetrics fetches url and returns the node's gauges.
func readNodeMetrics(ctx context.Context, url string) (nodeGauges, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nodeGauges{}, err
	}
	resp, err := metricsClient.Do(req)
	if err != nil {
		return nodeGauges{}, fmt.Errorf("node metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nodeGauges{}, fmt.Errorf("node metrics %s: HTTP %d", url, resp.StatusCode)
	}
	return parseNodeMetrics(io.LimitReader(resp.Body, 4<<20))
}

// parseNodeMetrics reads Prometheus text exposition: lines "name value" or
// "name{labels} value". For the forging gauge only exactly 0 and 1 mean
// anything: NaN, 0.5 or 2 say the node cannot be understood, which is not
// "off", and its absence is an error. The chain gauges are whole numbers
// when present; anything else counts as not exported.
func parseNodeMetrics(r io.Reader) (nodeGauges, error) {
	g := nodeGauges{slot: -1, kesStart: -1}
	var forging string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := sample(line, forgingMetrics); ok && forging == "" {
			forging = v
		}
		if v, ok := sample(line, slotMetrics); ok && g.slot < 0 {
			g.slot = wholeNumber(v)
		}
		if v, ok := sample(line, kesStartMetrics); ok && g.kesStart < 0 {
			g.kesStart = wholeNumber(v)
		}
	}
	if err := sc.Err(); err != nil {
		return g, fmt.Errorf("node metrics: %w", err)
	}
	if forging == "" {
		return g, fmt.Errorf("node metrics: no %s or %s (is the node's PrometheusSimple backend on?)", forgingMetrics[0], forgingMetrics[1])
	}
	v, err := strconv.ParseFloat(forging, 64)
	if err != nil || (v != 0 && v != 1) {
		return g, fmt.Errorf("node metrics: forging gauge value %q: want exactly 0 or 1", truncate(forging, 32))
	}
	g.forging = v == 1
	return g, nil
}

// sample is the value of line if it is a sample of one of names ("" when
// the line has a name and no value).
func sample(line string, names []string) (string, bool) {
	for _, m := range names {
		rest, ok := strings.CutPrefix(line, m)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		if i := strings.LastIndexByte(rest, '}'); rest[0] == '{' && i >= 0 {
			rest = rest[i+1:]
		}
		if f := strings.Fields(rest); len(f) > 0 {
			return f[0], true
		}
		return "", true
	}
	return "", false
}

// wholeNumber is v as a non-negative integer, -1 if it is not one.
func wholeNumber(v string) int64 {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 || f > 1<<53 || f != float64(int64(f)) {
		return -1
	}
	return int64(f)
}

// nodeTracker follows the node's incarnations and what each was told: the
// observing half of the forging state machine (forge.go decides).
type nodeTracker struct {
	host        nodeAccess
	name        string        // CARDANO_NODE_PROCESS_NAME, for messages
	confirm     time.Duration // SIGHUP_CONFIRM_TIMEOUT
	confirmable bool          // NODE_METRICS_URL is set
	socketWait  time.Duration // SOCKET_WAIT_TIMEOUT
	log         *slog.Logger
	m           *metricSet

	n                           nodeState
	find, gauge, signals, waits trouble
	unsure                      time.Time    // nodeState.unsure of a node found running
	prev                        *inheritance // the previous sidecar process's last word, if any
	kills                       int          // SIGKILLs delivered, for the NodeKilled Event
}

func newNodeTracker(host nodeAccess, name string, confirm, socketWait time.Duration, confirmable bool, log *slog.Logger, m *metricSet) *nodeTracker {
	return &nodeTracker{host: host, name: name, confirm: confirm, confirmable: confirmable, socketWait: socketWait, log: log, m: m,
		find:    trouble{what: "node process not usable", ok: "node process found"},
		gauge:   trouble{what: "cannot read the node's forging gauge", ok: "node forging gauge readable again"},
		signals: trouble{what: "cannot signal the node; not eligible to forge", ok: "node can be signalled again"},
		waits:   trouble{what: "node socket still not answering; still waiting", ok: "node socket answers"},
	}
}

// observe finds the node incarnation, checks its socket and reads its gauge.
func (nt *nodeTracker) observe(ctx context.Context, now time.Time) {
	nt.track(now)
	n := &nt.n
	if n.presence != nodeBooting && n.presence != nodeUp {
		return
	}
	nt.checkSocket(now)
	nt.recheckSignal() // every pass: a replica that could not disable its node must not lead
	switch {
	case nt.confirmable && n.presence == nodeUp:
		nt.readGauge(ctx, now)
	case !nt.confirmable:
		n.confirmBlind(now, nt.confirm)
	}
}

// track keeps the incarnation it follows while that one lives (another
// process of the same name beside it changes nothing), and otherwise looks
// for exactly one.
func (nt *nodeTracker) track(now time.Time) {
	n := &nt.n
	if n.presence == nodeBooting || n.presence == nodeUp {
		switch ok, err := nt.host.alive(n.proc); {
		case err != nil || ok:
			nt.find.set(nt.log, err) // cannot tell: it stays the node
			return
		}
		nt.log.Warn("node process gone", "pid", n.proc.PID)
	}
	cands, err := nt.host.candidates()
	switch {
	case err == nil && len(cands) == 1:
		nt.found(cands[0], now)
		err = nil
	case err == nil && len(cands) == 0:
		// Gone is off. A socket that answers anyway belongs to a node we
		// cannot see: it may be forging.
		*n = nodeState{presence: nodeAbsent, state: stateOff}
		if nt.host.socketAnswers() {
			n.presence, n.state = nodeHidden, stateUnknown
		}
		err = errNodeNotFound
	case err != nil:
		*n = nodeState{presence: nodeAmbiguous, state: stateUnknown, findErr: err} // a process unread may be the node
	default:
		err = fmt.Errorf("%d processes named %s (%v): cannot tell which is the node", len(cands), nt.name, cands)
		*n = nodeState{presence: nodeAmbiguous, state: nt.unsignalled(cands), findErr: err}
	}
	nt.find.set(nt.log, err)
}

// unsignalled is the state of processes none of which this sidecar tracks:
// off if every one started after it (booted non-producing, and nobody else
// signals a node), else unknown.
func (nt *nodeTracker) unsignalled(cands []nodeProc) forgeState {
	for _, p := range cands {
		if p.Start < nt.host.started() {
			return stateUnknown
		}
	}
	return stateOff
}

func (nt *nodeTracker) found(p nodeProc, now time.Time) {
	fresh := p.Start >= nt.host.started()
	nt.n = nodeState{proc: p, presence: nodeBooting, fresh: fresh, seenAt: now, state: stateUnknown}
	switch {
	case fresh:
		nt.n.state = stateOff // the kubelet started it non-producing; nobody signalled it yet
	case nt.prev != nil && !nt.prev.mayHaveEnabled(p):
		nt.n.state = stateOff // the previous sidecar process never enabled it
	case nt.prev != nil:
		nt.n.unsure = nt.unsure // its last signal may still be in flight
	}
	nt.log.Info("node process found", "pid", p.PID, "started_after_sidecar", fresh)
}

// recheckSignal sends signal 0, which checks permission without effect: a
// node we may not signal (it needs the same UID or CAP_KILL) must never be
// made leader, and a leader that loses the means hands over.
func (nt *nodeTracker) recheckSignal() {
	err := nt.host.signal(nt.n.proc, 0)
	if errors.Is(err, errNodeNotFound) {
		return // gone: the next look finds out
	}
	nt.n.signalErr = err
	nt.signals.set(nt.log, err)
}

func (nt *nodeTracker) checkSocket(now time.Time) {
	n := &nt.n
	if n.presence == nodeUp && now.Sub(n.socketAt) < socketRecheck {
		return
	}
	n.socketAt = now
	switch {
	case nt.host.socketAnswers():
		if n.presence != nodeUp {
			nt.log.Info("node socket answers", "pid", n.proc.PID, "after", now.Sub(n.seenAt).Round(time.Millisecond).String())
		}
		n.presence, n.socketFails = nodeUp, 0
	case n.presence == nodeUp:
		n.socketFails++
	}
	var err error
	if n.presence != nodeUp && now.Sub(n.seenAt) > nt.socketWait {
		err = fmt.Errorf("node %s: socket not answering after %s", n.proc, now.Sub(n.seenAt).Round(time.Second))
	}
	nt.waits.set(nt.log, err)
}

// readGauge reads the forging gauge and moves the state by it.
func (nt *nodeTracker) readGauge(ctx context.Context, now time.Time) {
	n := &nt.n
	g, err := nt.host.gauges(ctx)
	r := readNone
	if err == nil {
		n.chain, n.chainAt = g, now
	}
	switch {
	case err != nil && n.gaugeErr == nil:
		n.gaugeErrSince = now
	case err == nil && g.forging:
		r = readOn
	case err == nil:
		r = readOff
	}
	n.gaugeErr = err
	nt.gauge.set(nt.log, err)
	was, failures := n.state, n.failures
	n.confirm(r, now, nt.confirm)
	if was == stateEnabling && n.state == stateOn && n.before != readOff && err == nil && g.kesStart >= 0 && g.kesStart != n.sendingKES {
		// New keys into a node whose gauge did not read 0 before: its 1
		// proves nothing, and
		// the node's KES gauge says it still runs another certificate
		// (SPEC 12, rotation). Not loaded (and not to be adopted as the
		// files in place): retried, backing off.
		n.state, n.loaded = stateUnknown, "not taken"
		n.failures = failures + 1
		n.retryAt = now.Add(backoff(n.failures, nt.confirm))
	}
	nt.noteState(was, now)
}

// noteState logs what a reading changed.
func (nt *nodeTracker) noteState(was forgeState, now time.Time) {
	n := &nt.n
	took := now.Sub(n.sent).Round(time.Millisecond).String()
	switch {
	case was == n.state:
	case was == stateEnabling && n.state == stateOn:
		nt.log.Info("forging enabled, confirmed by the node", "pid", n.proc.PID, "took", took)
	case was == stateEnabling:
		nt.log.Warn("node did not confirm forging; its state is unknown until it says; will retry", "pid", n.proc.PID,
			"attempts", n.failures, "retry_in", n.retryAt.Sub(now).Round(time.Millisecond).String(), "gauge_err", errString(n.gaugeErr))
	case was == stateDisabling:
		nt.log.Info("forging disabled, confirmed by the node", "pid", n.proc.PID, "took", took)
	case n.state == stateUnknown && n.fresh && !n.signalled:
		nt.log.Warn("node reports forging although it was never signalled: is it started with --start-as-non-producing-node? (or cardano-node issue #6113); treating it as forging",
			"pid", n.proc.PID)
	default:
		nt.log.Info("node forging state", "pid", n.proc.PID, "was", was.String(), "now", n.state.String())
	}
}

// hup sends one SIGHUP, the files already set for enable or not; false if
// it could not be delivered. Without a gauge, a delivered signal counts as
// done (NODE_METRICS_URL="").
func (nt *nodeTracker) hup(now time.Time, enable bool, digest string) bool {
	n := &nt.n
	if err := nt.host.signal(n.proc, unix.SIGHUP); err != nil {
		if !errors.Is(err, errNodeNotFound) {
			n.signalErr = err // a replica that cannot signal is not eligible: it hands over
			nt.signals.set(nt.log, err)
		}
		return false
	}
	n.signalErr = nil
	nt.signals.set(nt.log, nil)
	n.signalled, n.sent, n.before, n.beforeAt = true, now, n.lastRead, n.readAt
	reason := "disable"
	switch {
	case enable:
		reason, n.state, n.sending = "enable", stateEnabling, digest
	default:
		n.state = stateDisabling
	}
	nt.m.sighup(reason)
	nt.log.Debug("SIGHUP sent", "pid", n.proc.PID, "reason", reason)
	return true
}

// kill ends the node with SIGKILL: its forging threads stop with it, and the
// kubelet restarts it non-producing. SIGKILL, not SIGTERM, because a
// graceful shutdown may outlast the Lease. false if it could not be killed.
func (nt *nodeTracker) kill(why string) bool {
	n := &nt.n
	err := nt.host.signal(n.proc, unix.SIGKILL)
	nt.log.Error("killing the node", "pid", n.proc.PID, "why", why, "err", errString(err))
	if err != nil && !errors.Is(err, errNodeNotFound) {
		n.signalErr = err
		nt.signals.set(nt.log, err)
		return false
	}
	if err == nil {
		nt.m.nodeTerminated()
		nt.kills++
	}
	n.state = stateOff
	return true
}
