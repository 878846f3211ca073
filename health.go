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

	mu       sync.Mutex
	failures int
	lastErr  string
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
