package main

// Health, in three directions:
//   - the node's health as this replica sees it (HEALTH_CHECK_ENDPOINT),
//     which decides eligibility;
//   - this sidecar's own health for the kubelet and for people: /healthz,
//     /readyz, /status and /metrics on METRICS_PORT;
//   - the dead-man switch: a heartbeat the sidecar writes every pass, and
//     `forge-manager deadman`, the node container's livenessProbe, which
//     fails while credentials are in place and the heartbeat has run out.
//
// Dead-man timing, at the defaults (README has the table): the leader's last
// renew starts at s and its heartbeat says "credentials may stay until
// s+10s" (RENEW_DEADLINE). If the sidecar then freezes or dies, the probe
// (periodSeconds 1, failureThreshold 2, timeoutSeconds 1) fails by s+13s and
// the kubelet kills the node (probe terminationGracePeriodSeconds 1) by
// s+14s, a second (killMargin) before another replica may take the Lease at
// s+15s. The loader checks this budget from DEADMAN_PROBE_* (lease.go).

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// healthChecker polls HEALTH_CHECK_ENDPOINT in its own goroutine so a slow
// endpoint never holds up the control loop.
type healthChecker struct {
	url       string
	interval  time.Duration
	timeout   time.Duration
	threshold int
	log       *slog.Logger
	changed   chan struct{} // wakes the loop when healthy() flips

	mu       sync.Mutex
	failures int
	lastErr  string
}

func newHealthChecker(c *config, log *slog.Logger) *healthChecker {
	return &healthChecker{url: c.HealthEndpoint, interval: c.HealthInterval, timeout: c.HealthTimeout,
		threshold: c.HealthThreshold, log: log, changed: make(chan struct{}, 1)}
}

func (h *healthChecker) run(ctx context.Context) {
	if h.url == "" {
		return
	}
	client := &http.Client{Timeout: h.timeout}
	for {
		h.record(h.probe(ctx, client))
		select {
		case <-ctx.Done():
			return
		case <-time.After(h.interval):
		}
	}
}

func (h *healthChecker) probe(ctx context.Context, client *http.Client) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}

// record counts consecutive failures and wakes the loop on a change of
// verdict.
func (h *healthChecker) record(err error) {
	h.mu.Lock()
	was := h.failures < h.threshold
	if err != nil {
		h.failures++
		h.lastErr = err.Error()
	} else {
		h.failures, h.lastErr = 0, ""
	}
	is := h.failures < h.threshold
	failures := h.failures
	h.mu.Unlock()
	if was != is {
		if is {
			h.log.Info("health check passing again", "endpoint", h.url)
		} else {
			h.log.Warn("health check failing", "endpoint", h.url, "consecutive_failures", failures, "err", err)
		}
		select {
		case h.changed <- struct{}{}:
		default:
		}
	}
}

func (h *healthChecker) healthy() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.failures < h.threshold
}

func (h *healthChecker) lastError() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lastErr
}

// snapshot is what the loop last knew, for the HTTP handlers; written once
// per pass, read without locks.
type snapshot struct {
	Pod             string `json:"pod"`
	Identity        string `json:"identity"`
	Role            string `json:"role"` // leader, standby, ineligible
	Eligible        bool   `json:"eligible"`
	Reason          string `json:"reason,omitempty"`
	Holder          string `json:"leaseHolder"`
	Lease           string `json:"lease"`
	Epoch           int32  `json:"epoch"`
	LeaseUID        string `json:"leaseUID,omitempty"`
	RenewAgeSeconds *int64 `json:"secondsSinceRenew,omitempty"`
	Forging         bool   `json:"forging"`
	ForgingState    string `json:"nodeForgingState"`
	LastTransition  string `json:"lastTransition,omitempty"`
	NodePID         int    `json:"nodePID,omitempty"`
	NodeUp          bool   `json:"nodeUp"`
	Network         string `json:"network"`
	PoolID          string `json:"poolID,omitempty"`
	Region          string `json:"region"`
	Version         string `json:"version"`

	ready      bool
	renewedAt  time.Time
	fenceAt    time.Time
	lastChange time.Time
	passAt     time.Time // when the pass that wrote it ended, on the monotonic clock
}

// publish builds the snapshot at the end of a pass.
func (s *sidecar) publish(now time.Time, f leadership) {
	n := &s.node.n
	v := &snapshot{
		Pod: s.cfg.PodName, Identity: s.el.identity, Eligible: s.why == "", Reason: s.why,
		Holder: f.holder, Lease: s.cfg.Namespace + "/" + s.t.Lease, Epoch: f.epoch.Transitions, LeaseUID: f.epoch.UID,
		Forging: s.forging(), ForgingState: n.state.String(), NodePID: n.proc.PID, NodeUp: n.presence == nodeUp,
		Network: s.t.Network, PoolID: s.t.PoolID, Region: s.t.Region, Version: version,
		renewedAt: s.el.renewedAt, fenceAt: f.fenceAt, passAt: now,
	}
	v.Role = "standby"
	switch {
	case f.leading:
		v.Role = "leader"
	case s.why != "":
		v.Role = "ineligible"
	}
	if f.held {
		age := int64(now.Sub(s.el.renewedAt) / time.Second)
		v.RenewAgeSeconds = &age
	}
	v.lastChange = now
	if old := s.view.Load(); old != nil && old.Role == v.Role && old.Forging == v.Forging {
		v.lastChange = old.lastChange
	}
	v.LastTransition = v.lastChange.UTC().Format(time.RFC3339)
	// Ready: the node is up and this replica's state is settled: a leader
	// forging with confirmation, anyone else with its node certainly off.
	settled := n.state == stateOn || n.state == stateOff
	v.ready = !s.producer || (v.NodeUp && settled && f.leading == v.Forging)
	s.view.Store(v)
}

// serveHTTP serves the probes, /status and /metrics on port.
func serveHTTP(port int, s *sidecar) (*http.Server, error) {
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(port))
	if err != nil {
		return nil, fmt.Errorf("METRICS_PORT=%d: %w", port, err)
	}
	srv := &http.Server{Handler: s.handler(), ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second}
	go srv.Serve(ln)
	return srv, nil
}

// handler routes the endpoints of SPEC 8. Only GET and HEAD; anything else
// 405, unknown paths 404.
func (s *sidecar) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) { s.m.write(w) })
	mux.HandleFunc("GET /healthz", s.handleHealthz)
	mux.HandleFunc("GET /health", s.handleHealthz) // the predecessor's probe path
	mux.HandleFunc("GET /readyz", s.handleReadyz)
	mux.HandleFunc("GET /startup-status", s.handleReadyz)
	mux.HandleFunc("GET /status", s.handleStatus)
	mux.HandleFunc("/", http.NotFound)
	return onlyGetHead(mux)
}

func onlyGetHead(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// handleHealthz: the loop is alive, and a leader is within its renew
// deadline. A stuck loop (no pass for LEASE_DURATION) gets the sidecar
// restarted by the kubelet. Ages are on the monotonic clock.
func (s *sidecar) handleHealthz(w http.ResponseWriter, r *http.Request) {
	v := s.view.Load()
	if v == nil {
		http.Error(w, "starting: no pass yet", http.StatusServiceUnavailable)
		return
	}
	now := s.now()
	if age := now.Sub(v.passAt); age > s.cfg.LeaseDuration {
		http.Error(w, fmt.Sprintf("control loop stuck: last pass %s ago", age.Round(time.Second)), http.StatusServiceUnavailable)
		return
	}
	if v.Role == "leader" && now.After(v.fenceAt) {
		http.Error(w, "leader past its renew deadline", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

func (s *sidecar) handleReadyz(w http.ResponseWriter, r *http.Request) {
	v := s.view.Load()
	if v == nil || !v.ready {
		why := "starting"
		if v != nil {
			why = fmt.Sprintf("not settled: role %s, node up %t, forging %t %s", v.Role, v.NodeUp, v.Forging, v.Reason)
		}
		http.Error(w, why, http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

func (s *sidecar) handleStatus(w http.ResponseWriter, r *http.Request) {
	v := s.view.Load()
	if v == nil {
		http.Error(w, "starting", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// heartbeat is the file the dead-man probe reads. It is the sidecar's
// promise: "until this instant I can stop my node in time myself; after it,
// if the node holds credentials or may be forging, restart it". The instant
// is on CLOCK_BOOTTIME, one clock for every container on the machine and
// one that runs through a suspend, as other machines' clocks do. The record
// names the files it speaks for: the probe runs with the node container's
// environment, which need not name them.
type heartbeat struct {
	path  string
	pod   string
	files []string
	clock func() time.Duration // boottime; tests run a simulated one
}

type heartbeatRecord struct {
	UntilBoottimeNS int64  `json:"until_boottime_ns"`
	Boot            bool   `json:"boot,omitempty"`    // written by init: no sidecar pass yet
	Forging         bool   `json:"forging,omitempty"` // the node may be forging
	NodePID         int    `json:"node_pid,omitempty"`
	NodeStart       uint64 `json:"node_start,omitempty"` // the incarnation it speaks for
	// StopByBoottimeNS is the writer's stopBy: the latest its node may
	// forge, for a successor (0: none, the pod never held the Lease).
	StopByBoottimeNS int64    `json:"stop_by_boottime_ns,omitempty"`
	Leading          bool     `json:"leading,omitempty"` // the writer led: until is its renew deadline
	Files            []string `json:"files"`
	Pod              string   `json:"pod"`
	PID              int      `json:"pid"`
}

func boottime() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	return time.Duration(ts.Nano())
}

// beat is one heartbeat: for how long from now credentials may stay and the
// node forge, whether it may, which incarnation, and, when there is one, how
// long until stopBy (negative: passed).
type beat struct {
	valid, stopIn time.Duration
	stop          bool
	mayForge      bool
	leading       bool
	node          nodeProc
}

// write records a beat. Not fsynced: it matters only while the machine runs.
func (h heartbeat) write(b beat) error {
	now := h.clock()
	rec := heartbeatRecord{UntilBoottimeNS: int64(now + b.valid), Forging: b.mayForge, Leading: b.leading,
		NodePID: b.node.PID, NodeStart: b.node.Start, Files: h.files, Pod: h.pod, PID: os.Getpid()}
	if b.stop {
		rec.StopByBoottimeNS = int64(now + b.stopIn)
	}
	data, _ := json.Marshal(rec)
	tmp := filepath.Join(filepath.Dir(h.path), "."+filepath.Base(h.path)+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, h.path)
}

// bootHeartbeat is init's record: the keys are in place for the node's
// boot, and no sidecar has run. A node started non-producing cannot forge
// until a sidecar signals it, and a sidecar writes its own record first.
func bootHeartbeat(c *config) []byte {
	b, _ := json.Marshal(heartbeatRecord{Boot: true, Files: targets(credentials(c)), Pod: c.PodName, PID: os.Getpid()})
	return b
}

// heartbeatValidity is how long the probe may leave the node alone:
//   - a node that may forge and that the sidecar cannot stop (it cannot tell
//     which process is the node, or signals fail): not at all; the kubelet
//     restarts the node container, which knows its own process;
//   - a leader: until its renew deadline (dead-man timing above);
//   - a node that may forge after this replica held the Lease: until
//     stopBy less the probe's budget, so a dead sidecar's node is killed
//     before another replica may take over;
//   - anyone else: a lease duration (their keys are there only while the
//     node boots).
//
// A successor process not yet renewed has its predecessor's stopBy (forge.go
// facts), so it promises what its predecessor did.
func (s *sidecar) heartbeatValidity(now time.Time, f leadership) time.Duration {
	n := &s.node.n
	switch {
	case n.mayForge() && n.presence != nodeBooting && (n.presence == nodeAmbiguous || n.signalErr != nil):
		return 0 // a node replaying its ledger (socket not yet open) is not forging
	case f.leading:
		return f.fenceAt.Sub(now)
	case n.mayForge() && !f.stopBy.IsZero():
		return max(f.stopBy.Sub(now)-s.cfg.Probe.budget(), 0)
	}
	return s.cfg.LeaseDuration
}

// inheritance is the last heartbeat of a previous sidecar process in this
// pod (a container restart): when that process last renewed is unknown, so
// its promise stands until this one has renewed or seen the node off. It
// also says which node incarnation that process may have enabled: every
// enable is preceded by a heartbeat naming its node as forging.
type inheritance struct {
	active  bool          // the promise still bounds this process
	until   time.Duration // CLOCK_BOOTTIME
	stopBy  time.Duration // CLOCK_BOOTTIME; 0: the record named none
	leading bool          // the writer led: until is its renew deadline
	known   bool          // a previous sidecar process left a record
	node    nodeProc      // zero: unknown (a missing or unreadable record)
	forging bool
}

// inheritFrom reads the heartbeat left at path. init's boot record leaves
// nothing: no sidecar ran, so no node was told to forge. One missing or
// unreadable promised nothing that still holds, and any node may be forging.
func inheritFrom(path string) inheritance {
	b, err := os.ReadFile(path)
	var rec heartbeatRecord
	if err == nil && json.Unmarshal(b, &rec) == nil {
		return inheritance{active: !rec.Boot, known: !rec.Boot, until: time.Duration(rec.UntilBoottimeNS),
			stopBy: time.Duration(rec.StopByBoottimeNS), leading: rec.Leading,
			node:    nodeProc{rec.NodePID, rec.NodeStart},
			forging: rec.Forging || len(rec.Files) == 0} // a record of an older version says nothing: forging
	}
	return inheritance{active: true, known: true, forging: true}
}

// mayHaveEnabled tells whether the previous sidecar process may have
// enabled incarnation p: it did not say so in its last heartbeat otherwise.
// It holds whether or not the promise still bounds this process.
func (in inheritance) mayHaveEnabled(p nodeProc) bool {
	return in.known && in.forging && (in.node == nodeProc{} || in.node == p)
}

// runDeadman is the livenessProbe of the node container.
func runDeadman(c *config, w io.Writer) error {
	msg, err := deadman(c.HeartbeatFile, targets(credentials(c)), boottime())
	if err != nil {
		return err
	}
	fmt.Fprintln(w, msg)
	return nil
}

// deadman fails (restart the node) while credentials the heartbeat speaks
// for are present, or the node may be forging, and the heartbeat ran out,
// is missing or is unreadable. fallback are the files to look at without a
// readable heartbeat; now is CLOCK_BOOTTIME.
func deadman(path string, fallback []string, now time.Duration) (string, error) {
	b, err := os.ReadFile(path)
	var rec heartbeatRecord
	if err == nil {
		err = json.Unmarshal(b, &rec)
	}
	files := fallback
	if err == nil && len(rec.Files) > 0 {
		files = rec.Files
	}
	if !anyPresent(files...) && !rec.Forging {
		return "ok: no credentials in place", nil
	}
	switch left := time.Duration(rec.UntilBoottimeNS) - now; {
	case os.IsNotExist(err):
		return "", fmt.Errorf("dead-man: credentials present and no heartbeat at %s (init writes one, the sidecar renews it): restart the node so it comes back non-producing", path)
	case err != nil:
		return "", fmt.Errorf("dead-man: credentials present and heartbeat %s unreadable", path)
	case rec.Boot:
		return "ok: credentials in place for the node's boot; no sidecar pass yet", nil
	case left <= 0: // a validity of 0 has run out at once
		return "", fmt.Errorf("dead-man: the sidecar's heartbeat ran out %s ago with credentials present or the node forging: restart the node so it comes back non-producing", (-left).Round(time.Millisecond))
	}
	return "ok: heartbeat current", nil
}
