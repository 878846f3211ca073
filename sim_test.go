package main

// A simulated world for the forging core, in virtual time and without root
// or a control plane: replicas running the real pass (sidecar.iterate) over
// the in-memory Lease of lease_test.go, each beside a simulated
// cardano-node that behaves as docs/design.md (The node) says the real one does (one thread
// per SIGHUP, the last to finish wins; a file that is not a regular file is
// missing; a gauge that can lie at boot), a kubelet that restarts it, and
// the dead-man probe reading the real heartbeat file. Verdicts come from
// the simulated nodes' own records of when they forged.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"forge-manager/internal/testenv"
)

// span is one interval of forging by one node incarnation; end is zero
// while it lasts.
type span struct {
	pod        string
	pid        int
	start, end time.Time
}

// simHUP is a SIGHUP being handled: it read the files when it was
// delivered and takes effect at `at`.
type simHUP struct {
	at     time.Time
	result *bool // nil: no change (a corrupt file, a wedged node)
}

// simNode is one pod's cardano-node and process table: nodeAccess.
type simNode struct {
	pod   string
	clock *fakeClock
	files []string // the --shelley-* paths it was started with
	self  uint64   // the sidecar's start, in ticks

	pid     int
	start   uint64
	running bool
	upAt    time.Time // the socket answers from here (replay done)
	on      bool      // forging now
	hups    int       // SIGHUPs received by this incarnation
	handled int       // ...and handled
	pending []simHUP

	// Faults and knobs.
	replay    time.Duration
	boot1     bool                      // the gauge reads 1 until the first SIGHUP is handled (#6113)
	gaugeErr  error                     // the gauge cannot be read
	wedged    bool                      // a SIGHUP never disables
	hupDelay  func(n int) time.Duration // time to handle the nth SIGHUP (1-based) of an incarnation
	signalErr error                     // every signal fails with this
	killErr   error                     // SIGKILL fails with this
	extras    []nodeProc                // other processes with the node's name
	procErr   error                     // /proc cannot be read
	noSocket  bool                      // its socket does not answer
	hidden    bool                      // not in our PID namespace; its socket answers
	onSignal  func(unix.Signal)         // called with every signal delivered
	gaugeLag  time.Duration             // each gauge read takes this long
	tipLag    uint64                    // its tip is this many slots behind the wall clock
	noTip     bool                      // it exports no slotNum
	tipAhead  uint64                    // its tip is this many slots ahead of the wall clock
	kesStart  int64                     // while forging, the start KES period it reports (0: none)
	exportKES bool                      // it exports the KES gauge: the period of the certificate it loaded
	refuseKES bool                      // a reload keeps the old keys (MismatchedKesKey), forging on
	slowOn    time.Duration             // if set, a SIGHUP that enables takes this long

	restartAt time.Time
	dieAt     time.Time     // the kubelet's SIGKILL after the probe's grace
	delay     time.Duration // the kubelet's restart delay
	kills     int           // SIGKILLs from the sidecar
	probeKill int           // kills by the dead-man probe
	sent      []string      // every signal sent, in order: "hup", "kill", "0"
	spans     []span
	ticks     uint64
}

func newSimNode(pod string, clock *fakeClock, files []string) *simNode {
	n := &simNode{pod: pod, clock: clock, files: files, self: 100, ticks: 100, replay: time.Second,
		delay: time.Second, hupDelay: func(int) time.Duration { return 20 * time.Millisecond }}
	n.boot()
	return n
}

// boot starts a new incarnation, started after the sidecar, non-producing.
// Like the real node it exits at once when a key file is missing.
func (n *simNode) boot() {
	for _, f := range n.files {
		if st, err := os.Stat(f); err != nil || !st.Mode().IsRegular() {
			n.running, n.restartAt = false, n.clock.now().Add(n.delay)
			return
		}
	}
	n.ticks += 10
	n.pid, n.start, n.running, n.on, n.hups, n.handled, n.pending = n.pid+1, n.ticks, true, false, 0, 0, nil
	n.upAt = n.clock.now().Add(n.replay)
}

// advance applies every SIGHUP handled by now, and restarts a dead node
// when the kubelet would.
func (n *simNode) advance() {
	now := n.clock.now()
	sort.SliceStable(n.pending, func(i, j int) bool { return n.pending[i].at.Before(n.pending[j].at) })
	for len(n.pending) > 0 && !n.pending[0].at.After(now) {
		h := n.pending[0]
		n.pending = n.pending[1:]
		n.handled++
		if h.result != nil {
			n.setForging(*h.result, h.at)
		}
	}
	if n.running && !n.dieAt.IsZero() && !now.Before(n.dieAt) {
		n.die(n.dieAt)
	}
	if !n.running && !n.restartAt.IsZero() && !now.Before(n.restartAt) {
		n.restartAt = time.Time{}
		n.boot()
	}
}

func (n *simNode) setForging(on bool, at time.Time) {
	if on == n.on {
		return
	}
	n.on = on
	if on {
		n.spans = append(n.spans, span{pod: n.pod, pid: n.pid, start: at})
	} else {
		n.spans[len(n.spans)-1].end = at
	}
}

func (n *simNode) die(at time.Time) {
	n.setForging(false, at)
	n.running, n.pending, n.restartAt, n.dieAt = false, nil, at.Add(n.delay), time.Time{}
}

func (n *simNode) proc() nodeProc { return nodeProc{n.pid, n.start} }

func (n *simNode) candidates() ([]nodeProc, error) {
	n.advance()
	if n.procErr != nil {
		return n.extras, n.procErr // what could be read, and the error
	}
	var out []nodeProc
	if n.running && !n.hidden {
		out = append(out, n.proc())
	}
	return append(out, n.extras...), n.procErr
}

func (n *simNode) alive(p nodeProc) (bool, error) {
	n.advance()
	if n.procErr != nil {
		return false, n.procErr
	}
	return n.running && p == n.proc(), nil
}

func (n *simNode) signal(p nodeProc, sig unix.Signal) error {
	n.advance()
	n.sent = append(n.sent, map[unix.Signal]string{0: "0", unix.SIGHUP: "hup", unix.SIGKILL: "kill"}[sig])
	switch {
	case !n.running || p != n.proc():
		return fmt.Errorf("node %s: %w", p, errNodeNotFound)
	case n.signalErr != nil:
		return n.signalErr
	case sig == unix.SIGKILL && n.killErr != nil:
		return n.killErr
	case sig == unix.SIGKILL:
		n.kills++
		n.die(n.clock.now())
	case sig == unix.SIGHUP:
		n.hups++
		h := simHUP{at: n.clock.now().Add(n.hupDelay(n.hups)), result: n.readFiles()}
		if n.exportKES && h.result != nil && *h.result && !(n.refuseKES && n.on) {
			n.kesStart = certPeriodOf(n.files)
		}
		if n.slowOn > 0 && h.result != nil && *h.result {
			h.at = n.clock.now().Add(n.slowOn)
		}
		n.pending = append(n.pending, h)
	}
	if n.onSignal != nil {
		n.onSignal(sig)
	}
	return nil
}

// delivered lists the signals with an effect (SIGHUP, SIGKILL) sent since
// the from-th.
func (n *simNode) delivered(from int) string {
	var out []string
	for _, s := range n.sent[from:] {
		if s != "0" {
			out = append(out, s)
		}
	}
	return strings.Join(out, " ")
}

// forgedOnce tells whether any incarnation of this node ever forged.
func (n *simNode) forgedOnce() bool { return len(n.spans) > 0 }

// certPeriodOf is the start KES period of the certificate among files.
func certPeriodOf(files []string) int64 {
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if typ, raw, err := envelopeOf(b); err == nil && typ == "NodeOperationalCertificate" {
			if oc, err := parseOpCert(raw); err == nil {
				return int64(oc.kesPeriod)
			}
		}
	}
	return 0
}

// readFiles is what a SIGHUP handler decides from the files: all present,
// forging; any missing (or not a regular file), not forging, unless wedged.
func (n *simNode) readFiles() *bool {
	for _, f := range n.files {
		if st, err := os.Stat(f); err != nil || !st.Mode().IsRegular() {
			if n.wedged {
				return nil
			}
			return ptr(false)
		}
	}
	return ptr(true)
}

func (n *simNode) socketAnswers() bool {
	n.advance()
	return n.running && !n.noSocket && !n.clock.now().Before(n.upAt)
}

func (n *simNode) gauges(ctx context.Context) (nodeGauges, error) {
	if err := slowCall(ctx, n.clock, n.gaugeLag); err != nil {
		return nodeGauges{}, err
	}
	n.advance()
	wall, _ := knownChains["mainnet"].slotAt(n.clock.now())
	g := nodeGauges{forging: n.on, slot: int64(wall - n.tipLag + n.tipAhead), kesStart: -1}
	if n.noTip {
		g.slot = -1
	}
	if n.on && n.kesStart != 0 {
		g.kesStart = n.kesStart
	}
	switch {
	case n.gaugeErr != nil:
		return nodeGauges{}, n.gaugeErr
	case !n.running:
		return nodeGauges{}, errors.New("connection refused")
	case n.boot1 && n.handled == 0:
		g.forging = true
	}
	return g, nil
}

func (n *simNode) started() uint64 { return n.self }

// flakyLeases is one replica's view of the shared Lease: it can be cut off
// (every call hangs until its timeout, as through a dropped network) and
// watched (check runs before each call).
type flakyLeases struct {
	m      *memLeases
	clock  *fakeClock
	down   bool
	refuse error         // every call fails at once with this (an API server answering 503)
	lag    time.Duration // every write takes this long
	slow   time.Duration // every call takes this long, cut by its context
	check  func(ctx context.Context, op string)
	// overrun: a call cut at its deadline returns this much later, as a real
	// one does (the timer fires, then the caller is scheduled).
	overrun time.Duration
	// lose makes the next call of that op land on the server with its
	// answer lost: the caller times out.
	lose  string
	after func(op string) // runs after a call landed
}

func (f *flakyLeases) through(ctx context.Context, op string) error {
	if f.check != nil {
		f.check(ctx, op)
	}
	if f.refuse != nil {
		return f.refuse
	}
	if f.slow > 0 {
		if err := slowCall(ctx, f.clock, f.slow); err != nil {
			return fmt.Errorf("%s lease: %w", op, err)
		}
	}
	if !f.down {
		return nil
	}
	if dl, ok := ctx.Deadline(); ok {
		f.clock.advance(max(time.Until(dl), 0) + f.overrun)
	}
	return fmt.Errorf("%s lease: %w", op, context.DeadlineExceeded)
}

func (f *flakyLeases) get(ctx context.Context) (*coordinationv1.Lease, error) {
	if err := f.through(ctx, "get"); err != nil {
		return nil, err
	}
	return f.m.get(ctx)
}

func (f *flakyLeases) create(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	if err := f.through(ctx, "create"); err != nil {
		return nil, err
	}
	return f.m.create(ctx, l)
}

func (f *flakyLeases) update(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	if err := f.through(ctx, "update"); err != nil {
		return nil, err
	}
	f.clock.advance(f.lag)
	got, err := f.m.update(ctx, l)
	if f.after != nil {
		f.after("update")
	}
	if f.lose == "update" {
		f.lose = ""
		if dl, ok := ctx.Deadline(); ok {
			f.clock.advance(max(time.Until(dl), 0))
		}
		return nil, fmt.Errorf("update lease: %w", context.DeadlineExceeded)
	}
	return got, err
}

// memLeaders is a CardanoLeader in memory.
type memLeaders struct {
	obj     *leaderObject
	patches []leaderStatus
	before  func(ctx context.Context, op string) error // runs first in every call
}

func (m *memLeaders) get(ctx context.Context) (*leaderObject, error) {
	if m.before != nil {
		if err := m.before(ctx, "get"); err != nil {
			return nil, err
		}
	}
	if m.obj == nil {
		return nil, apierrors.NewNotFound(schema.GroupResource{Group: "cardano.io", Resource: "cardanoleaders"}, "cardano-leader")
	}
	o := *m.obj
	return &o, nil
}

func (m *memLeaders) create(ctx context.Context) (*leaderObject, error) {
	m.obj = &leaderObject{}
	m.obj.Metadata.UID = "leader-uid" // the server gives every object one
	return m.get(ctx)
}

func (m *memLeaders) patchStatus(ctx context.Context, st leaderStatus) (*leaderObject, error) {
	if m.before != nil {
		if err := m.before(ctx, "patch"); err != nil {
			return nil, err
		}
	}
	m.patches = append(m.patches, st)
	m.obj.Status = st
	return m.get(ctx)
}

// slowCall advances the clock by d, or to ctx's deadline if that comes
// first, and then fails as a cut request does.
func slowCall(ctx context.Context, c *fakeClock, d time.Duration) error {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		c.advance(max(time.Until(dl), 0))
		return context.DeadlineExceeded
	}
	c.advance(d)
	return nil
}

// replica is one simulated pod: sidecar, node, kubelet and probe.
type replica struct {
	name    string
	dir     string
	cfg     *config
	s       *sidecar
	node    *simNode
	api     *flakyLeases
	log     *bytes.Buffer
	next    time.Time // the sidecar's next pass
	probeAt time.Time
	fails   int
	stopped bool            // the sidecar is dead or frozen
	cl      *clusterReplica // with cluster management (cluster_sim_test.go)
	watch   *simWatch       // with LEASE_WATCH (the default)
}

// world is the cluster: one Lease, one clock, the replicas.
type world struct {
	t       *testing.T
	clock   *fakeClock
	leases  *memLeases
	leaders *memLeaders
	reps    []*replica
	// With regions (cluster_sim_test.go): the coordination server, and
	// each region's own local Lease.
	cluster *memCluster
	locals  map[string]*memLeases
}

var parallelTests sync.Map // the tests already made parallel

// Worlds share nothing (each has its own clock, Lease and replicas), so
// their tests run in parallel: make unit in half the time on 2 cores. A
// test that swaps a package variable (pidfdOpen) or the umask must not
// build a world.
func newWorld(t *testing.T) *world {
	if _, again := parallelTests.LoadOrStore(t, true); !again { // some tests build several
		t.Parallel()
	}
	return &world{t: t, clock: &fakeClock{t: simEpoch}, leases: &memLeases{}, leaders: &memLeaders{}}
}

// boottime is the simulated CLOCK_BOOTTIME of every pod.
func (w *world) boottime() time.Duration { return w.clock.now().Sub(time.Unix(0, 0)) }

// add starts a pod: init puts the keys in place, then the node boots and
// the sidecar starts. kv is extra environment for the sidecar.
func (w *world) add(name string, kv ...string) *replica {
	w.t.Helper()
	dir := w.t.TempDir()
	e := keyEnv(w.t, dir)
	e["DEADMAN_BINARY"] = ""
	e["POD_NAME"], e["KUBECONFIG"] = name, "/kubeconfig"
	for i := 0; i+1 < len(kv); i += 2 {
		e[kv[i]] = kv[i+1]
	}
	c, err := loadConfig(e.lookup, "run")
	if err != nil {
		w.t.Fatal(err)
	}
	if err := runInit(c, slog.New(slog.NewJSONHandler(io.Discard, nil))); err != nil {
		w.t.Fatal(err)
	}
	r := &replica{name: name, dir: dir, cfg: c, log: &bytes.Buffer{}}
	r.node = newSimNode(name, w.clock, targets(credentials(c)))
	r.api = &flakyLeases{m: w.leases, clock: w.clock}
	if c.ClusterManagement {
		r.api.m = w.locals[c.Region]
	}
	w.startSidecar(r)
	r.probeAt = w.clock.now().Add(c.Probe.period)
	w.reps = append(w.reps, r)
	return r
}

// startSidecar starts (or restarts) r's sidecar process for the same pod
// incarnation: the node it finds is older than it unless restarted since.
func (w *world) startSidecar(r *replica) {
	log := slog.New(slog.NewJSONHandler(r.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := newSidecar(r.cfg, resolveTenant(r.cfg), log, w.clock.now, r.node)
	s.el = newElector(r.api, r.name+"_uid", r.cfg.timing(), w.clock.now)
	s.status = newStatusWriter(w.leaders, r.name, r.name+"_uid")
	s.hb.clock = w.boottime
	s.sleep = w.clock.advance
	r.s, r.stopped, r.next = s, false, w.clock.now()
	if r.watch != nil {
		r.watch.gone = true
	}
	if r.cfg.LeaseWatch {
		s.watch = newLeaseWatch()
		s.el.resync = s.watch.ask
		r.watch = r.api.m.follow(s.watch, w.clock, func() bool { return r.api.down || r.stopped })
	}
	w.wireCluster(r)
	r.node.self = r.node.ticks + 1 // this process started after the node
}

func (w *world) rep(name string) *replica {
	for _, r := range w.reps {
		if r.name == name {
			return r
		}
	}
	w.t.Fatalf("no replica %s", name)
	return nil
}

// run moves the world on for d, one event at a time: sidecar passes, probe
// runs, node restarts.
func (w *world) run(d time.Duration) {
	end := w.clock.now().Add(d)
	same, last := 0, time.Time{}
	for {
		w.wake() // a write from outside the passes (a shutdown, a hand edit)
		r, at, probe := w.nextEvent()
		if at.After(end) {
			w.clock.setTo(end)
			break
		}
		if same++; !at.Equal(last) {
			same, last = 0, at
		}
		if same > 10000 { // passes that wake each other without time passing: a hot loop
			w.dump()
			w.t.Fatalf("livelock: 10000 passes at %v", at)
		}
		w.clock.setTo(at)
		if probe {
			w.probe(r)
			continue
		}
		if r.watch != nil {
			r.api.m.recover(r.watch)
		}
		wait := r.s.iterate(context.Background())
		r.next = w.clock.now().Add(wait)
		w.wake()
	}
	for _, r := range w.reps {
		r.node.advance()
	}
}

// wake applies every replica's sightings, and runs a pass now for one
// that calls for it (loop.go pause).
func (w *world) wake() {
	for _, r := range w.reps {
		if !r.stopped && r.s.takeSightings() {
			r.next = w.clock.now()
		}
	}
}

func (w *world) nextEvent() (*replica, time.Time, bool) {
	var best *replica
	var at time.Time
	var probe bool
	for _, r := range w.reps {
		if !r.stopped && (best == nil || r.next.Before(at)) {
			best, at, probe = r, r.next, false
		}
		if best == nil || r.probeAt.Before(at) {
			best, at, probe = r, r.probeAt, true
		}
	}
	return best, at, probe
}

// probe is the node container's livenessProbe: forge-manager deadman on the
// real heartbeat file; after the failure threshold the kubelet kills the
// node container (after the probe's grace) and restarts it.
func (w *world) probe(r *replica) {
	p := r.cfg.Probe
	r.probeAt = w.clock.now().Add(p.period)
	r.node.advance()
	if !r.node.running || !r.node.dieAt.IsZero() {
		return
	}
	if _, err := deadman(r.cfg.HeartbeatFile, targets(credentials(r.cfg)), w.boottime()); err == nil {
		r.fails = 0
		return
	}
	if r.fails++; r.fails < p.threshold {
		return
	}
	r.fails = 0
	r.node.probeKill++
	r.node.dieAt = w.clock.now().Add(p.timeout + p.grace) // the worst case: it runs, and forges, until then
}

// runUntil runs the world in steps of 10 ms until cond holds.
func (w *world) runUntil(limit time.Duration, what string, cond func() bool) {
	w.t.Helper()
	for end := w.clock.now().Add(limit); !cond(); {
		if !w.clock.now().Before(end) {
			w.dump()
			w.t.Fatalf("%s: not within %s", what, limit)
		}
		w.run(10 * time.Millisecond)
	}
}

// forgers lists the pods whose node forges now.
func (w *world) forgers() []string {
	var out []string
	for _, r := range w.reps {
		r.node.advance()
		if r.node.on {
			out = append(out, r.name)
		}
	}
	return out
}

// onlyForger fails the test unless exactly pod forges now.
func (w *world) onlyForger(pod string) {
	w.t.Helper()
	if f := w.forgers(); len(f) != 1 || f[0] != pod {
		w.t.Errorf("forgers %v; want only %s", f, pod)
	}
}

// settle runs until exactly one node forges and returns it.
func (w *world) settle(limit time.Duration) string {
	w.t.Helper()
	for end := w.clock.now().Add(limit); w.clock.now().Before(end); {
		w.run(100 * time.Millisecond)
		if f := w.forgers(); len(f) == 1 {
			return f[0]
		}
	}
	w.t.Fatalf("no single forger within %s: %v", limit, w.forgers())
	return ""
}

// overlapSpans is how long each pair of spans of different pods overlapped,
// for spans ending after from.
func (w *world) overlapSpans(from time.Time) []time.Duration {
	var out []time.Duration
	all := w.spans()
	for i := range all {
		for j := i + 1; j < len(all); j++ {
			a, b := all[i], all[j]
			if a.pod == b.pod {
				continue
			}
			if d := minTime(w.end(a), w.end(b)).Sub(maxTime(a.start, b.start, from)); d > 0 {
				out = append(out, d)
			}
		}
	}
	return out
}

func (w *world) spans() []span {
	var all []span
	for _, r := range w.reps {
		all = append(all, r.node.spans...)
	}
	return all
}

func (w *world) end(s span) time.Time {
	if s.end.IsZero() {
		return w.clock.now()
	}
	return s.end
}

// overlaps lists every instant two nodes forged at once, from the records.
func (w *world) overlaps() []string {
	var all []span
	for _, r := range w.reps {
		all = append(all, r.node.spans...)
	}
	end := func(s span) time.Time {
		if s.end.IsZero() {
			return w.clock.now().Add(time.Hour)
		}
		return s.end
	}
	var out []string
	for i := range all {
		for j := i + 1; j < len(all); j++ {
			a, b := all[i], all[j]
			if a.pod != b.pod && a.start.Before(end(b)) && b.start.Before(end(a)) {
				from, to := maxTime(a.start, b.start), minTime(end(a), end(b))
				out = append(out, fmt.Sprintf("%s and %s for %s", a.pod, b.pod, to.Sub(from)))
			}
		}
	}
	return out
}

// noOverlap fails the test if two nodes ever forged at once.
func (w *world) noOverlap() {
	w.t.Helper()
	if o := w.overlaps(); len(o) > 0 {
		w.dump()
		w.t.Errorf("two nodes forged at once: %v", o)
	}
}

func (w *world) dump() {
	for _, r := range w.reps {
		lines := strings.Split(strings.TrimSpace(r.log.String()), "\n")
		if len(lines) > 60 {
			lines = lines[len(lines)-60:]
		}
		w.t.Logf("--- %s: spans %v, signals %v\n%s", r.name, r.node.spans, r.node.sent, strings.Join(lines, "\n"))
	}
}

func (c *fakeClock) setTo(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.t) {
		c.t = t
	}
}

func maxTime(ts ...time.Time) time.Time {
	m := ts[0]
	for _, t := range ts[1:] {
		if t.After(m) {
			m = t
		}
	}
	return m
}

// keyEnv is an environment with sources and targets under dir, the
// sources the three test keys.
func keyEnv(t *testing.T, dir string) env {
	t.Helper()
	src, dst := filepath.Join(dir, "secrets"), filepath.Join(dir, "ipc")
	os.MkdirAll(src, 0o700)
	os.MkdirAll(dst, 0o700)
	for name, b := range testSecrets() {
		if err := os.WriteFile(filepath.Join(src, name), b, 0o400); err != nil {
			t.Fatal(err)
		}
	}
	return env{
		"SOURCE_KES_KEY": filepath.Join(src, "kes.skey"), "SOURCE_VRF_KEY": filepath.Join(src, "vrf.skey"),
		"SOURCE_OP_CERT": filepath.Join(src, "node.cert"),
		"TARGET_KES_KEY": filepath.Join(dst, "kes.skey"), "TARGET_VRF_KEY": filepath.Join(dst, "vrf.skey"),
		"TARGET_OP_CERT": filepath.Join(dst, "node.cert"), "HEARTBEAT_FILE": filepath.Join(dst, "hb"),
		"DEADMAN_BINARY": filepath.Join(dst, "forge-manager"), "STEP_DOWN_FILE": filepath.Join(dst, "step-down"),
	}
}

// putSecret replaces a source file as a Secret update would (a new file,
// read-only): writing over a 0400 file works only as root.
func putSecret(t testing.TB, path string, data []byte) {
	t.Helper()
	os.Remove(path)
	if err := os.WriteFile(path, data, 0o400); err != nil {
		t.Fatal(err)
	}
}

// envelope is a cardano text envelope like the real key files; the bytes
// are fake, and the tests look for them in logs and metrics.
func envelope(typ, secret string) []byte {
	return []byte(fmt.Sprintf(`{"type": %q, "description": "test key", "cborHex": "5820%x"}`, typ, secret))
}

// testSecrets are three key files whose hex holds the marker "secret",
// which the no-leak checks look for (leaksKey).
func testSecrets() map[string][]byte { return testenv.FakeKeys("secret") }

// rotate mounts a new valid set as a KES rotation does: a new KES key and
// a certificate for it with the next counter.
func rotate(t testing.TB, c *config, marker string) {
	t.Helper()
	set := testenv.Keys(testenv.KeySpec{Marker: marker, Counter: 1, KESPeriod: testenv.MainnetKESPeriod(simEpoch), KES: 1, CertFor: 1})
	for name, path := range map[string]string{"kes.skey": c.SourceKES, "vrf.skey": c.SourceVRF, "node.cert": c.SourceOpCert} {
		putSecret(t, path, set[name])
	}
}

// simEpoch is when a simulated world's clock starts: the present hour, so
// the test keys' certificate (valid from the period before now) is valid
// in it, and the wall-clock slot is mainnet's.
var simEpoch = time.Now().Truncate(time.Hour)
