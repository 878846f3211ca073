package main

// The node's health as this replica sees it (HEALTH_CHECK_ENDPOINT), which
// decides eligibility. This sidecar's own health for the kubelet is in
// status.go; the dead-man switch in deadman.go.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"
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

	mu        sync.Mutex
	failures  int  // consecutive failed checks
	good      int  // consecutive good checks
	failed    bool // a check failed since the last healthRecoveryProbes good ones in a row
	down      bool // failures reached the threshold, and no recovery since
	lastErr   string
	changedAt time.Time
}

// healthRecoveryProbes: good checks in a row that end a failure, so a
// flapping endpoint neither bounces a leader nor a region (SPEC 7 rule 5).
const healthRecoveryProbes = 3

// healthView is the checker's verdict at one instant.
type healthView struct {
	healthy    bool
	failures   int       // consecutive failed checks
	recovering bool      // failed, and not yet healthRecoveryProbes good checks in a row since
	changedAt  time.Time // the check that last changed the counts' verdict
	message    string
}

// penalty is what the node's health adds to the region's effective
// priority: healthPenalty per consecutive failure, and once while
// recovering.
func (v healthView) penalty() int {
	switch {
	case v.failures > 0:
		return healthPenalty * v.failures
	case v.recovering:
		return healthPenalty
	}
	return 0
}

// newHealthChecker polls url (HEALTH_CHECK_ENDPOINT; "" none) every
// interval; threshold consecutive failures make the node unhealthy.
func newHealthChecker(url string, interval, timeout time.Duration, threshold int, log *slog.Logger) *healthChecker {
	return &healthChecker{url: url, interval: interval, timeout: timeout,
		threshold: threshold, log: log, changed: make(chan struct{}, 1)}
}

func (h *healthChecker) run(ctx context.Context) {
	if h.url == "" {
		return
	}
	client := h.client()
	for {
		h.record(h.probe(ctx, client))
		select {
		case <-ctx.Done():
			return
		case <-time.After(h.interval):
		}
	}
}

// client is the checks' HTTP client. Its transport is Go's default, so an
// https:// endpoint is verified against the system roots, read once per
// process: on Linux the first of /etc/ssl/certs/ca-certificates.crt (in the
// image: Debian's bundle, hack/ca-certificates.sh) and the like, or
// $SSL_CERT_FILE instead; plus every file in /etc/ssl/certs and
// /etc/pki/tls/certs, or in $SSL_CERT_DIR instead.
func (h *healthChecker) client() *http.Client {
	return &http.Client{Timeout: h.timeout}
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

// record counts consecutive failures and good checks, and wakes the loop on
// a change of verdict: threshold failures in a row make the node unhealthy,
// healthRecoveryProbes good checks in a row healthy again.
func (h *healthChecker) record(err error) {
	h.mu.Lock()
	was := !h.down
	before := h.viewLocked()
	if err != nil {
		h.failures, h.good, h.failed, h.lastErr = h.failures+1, 0, true, err.Error()
	} else {
		h.failures, h.good = 0, h.good+1
	}
	h.down = h.failures >= h.threshold || (h.down && h.good < healthRecoveryProbes)
	if h.good >= healthRecoveryProbes {
		h.failed, h.lastErr = false, ""
	}
	if v := h.viewLocked(); v.failures != before.failures || v.recovering != before.recovering || v.healthy != before.healthy {
		h.changedAt = time.Now()
	}
	is := !h.down
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
	return !h.down
}

// view is the verdict now.
func (h *healthChecker) view() healthView {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.viewLocked()
}

func (h *healthChecker) viewLocked() healthView {
	return healthView{healthy: !h.down, failures: h.failures, recovering: h.failed && h.good < healthRecoveryProbes,
		changedAt: h.changedAt, message: h.lastErr}
}

func (h *healthChecker) lastError() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lastErr
}
