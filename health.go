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
// (periodSeconds 2, failureThreshold 1) fails by s+12s and the kubelet kills
// the node (probe terminationGracePeriodSeconds 1) by about s+13s, before a
// standby may take the Lease at s+15s.

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
}

// publish builds the snapshot at the end of a pass.
func (s *sidecar) publish(now time.Time, leading bool) {
	ep := s.el.epoch()
	v := &snapshot{
		Pod: s.cfg.PodName, Identity: s.el.identity, Eligible: s.why == "", Reason: s.why,
		Holder: s.el.holder(), Lease: s.cfg.Namespace + "/" + s.t.Lease, Epoch: ep.Transitions, LeaseUID: ep.UID,
		Forging: s.forging, ForgingState: s.node.forging.String(), NodePID: s.node.proc.PID, NodeUp: s.node.up,
		Network: s.t.Network, PoolID: s.t.PoolID, Region: s.t.Region, Version: version,
		renewedAt: s.el.renewedAt, fenceAt: s.el.fenceAt(),
	}
	v.Role = "standby"
	switch {
	case leading:
		v.Role = "leader"
	case s.why != "":
		v.Role = "ineligible"
	}
	if !s.el.renewedAt.IsZero() {
		age := int64(now.Sub(s.el.renewedAt) / time.Second)
		v.RenewAgeSeconds = &age
	}
	if old := s.view.Load(); old != nil {
		v.lastChange = old.lastChange
		if old.Role != v.Role || old.Forging != v.Forging {
			v.lastChange = now
		}
	} else {
		v.lastChange = now
	}
	v.LastTransition = v.lastChange.UTC().Format(time.RFC3339)
	// Ready: the node is up and this replica's state is settled: a leader
	// forging with confirmation, anyone else with nothing in flight.
	v.ready = s.node.up && s.node.pending == nil && (leading == s.forging || s.cfg.AppType != appBlockProducer)
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
// restarted by the kubelet.
func (s *sidecar) handleHealthz(w http.ResponseWriter, r *http.Request) {
	last := time.Unix(0, s.lastLoop.Load())
	if age := time.Since(last); s.lastLoop.Load() == 0 || age > s.cfg.LeaseDuration {
		http.Error(w, fmt.Sprintf("control loop stuck: last pass %s ago", age.Round(time.Second)), http.StatusServiceUnavailable)
		return
	}
	if v := s.view.Load(); v != nil && v.Role == "leader" && time.Now().After(v.fenceAt) {
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

// heartbeat is the file the dead-man probe reads. It holds the instant,
// on CLOCK_BOOTTIME (one clock for every container on the machine, and one
// that runs through a suspend, as other machines' clocks do), after which
// the node must not be holding credentials unless the sidecar renews it.
type heartbeat struct{ path string }

type heartbeatRecord struct {
	UntilBoottimeNS int64  `json:"until_boottime_ns"`
	Pod             string `json:"pod"`
	PID             int    `json:"pid"`
}

func boottime() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	return time.Duration(ts.Nano())
}

// write records that credentials may stay for `valid` from now. Not
// fsynced: it matters only while the machine runs.
func (h heartbeat) write(valid time.Duration, pod string) error {
	b, _ := json.Marshal(heartbeatRecord{UntilBoottimeNS: int64(boottime() + valid), Pod: pod, PID: os.Getpid()})
	tmp := filepath.Join(filepath.Dir(h.path), "."+filepath.Base(h.path)+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, h.path)
}

// heartbeatValidity: a leader's credentials may stay until its renew
// deadline; anyone else's only until a lease duration from now (they are
// there only while the node boots).
func (s *sidecar) heartbeatValidity(now time.Time, leading bool) time.Duration {
	if leading {
		return s.el.fenceAt().Sub(now)
	}
	return s.cfg.LeaseDuration
}

// runDeadman is the livenessProbe of the node container: exit 1 (restart the
// node) when a credential file is present and the heartbeat ran out; exit 0
// otherwise. No heartbeat at all means no sidecar ever ran, so the node was
// never told to forge.
func runDeadman(c *config, w io.Writer) error {
	present := anyPresent(c.TargetKES, c.TargetVRF, c.TargetOpCert)
	b, err := os.ReadFile(c.HeartbeatFile)
	if os.IsNotExist(err) || !present {
		fmt.Fprintf(w, "ok: credentials present %t, heartbeat present %t\n", present, err == nil)
		return nil
	}
	var rec heartbeatRecord
	if err != nil || json.Unmarshal(b, &rec) != nil {
		return fmt.Errorf("dead-man: credentials present and heartbeat %s unreadable", c.HeartbeatFile)
	}
	if left := time.Duration(rec.UntilBoottimeNS) - boottime(); left < 0 {
		return fmt.Errorf("dead-man: credentials present and the sidecar's heartbeat ran out %s ago: restart the node so it comes back non-producing", (-left).Round(time.Millisecond))
	}
	fmt.Fprintln(w, "ok: heartbeat current")
	return nil
}
