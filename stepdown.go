package main

// A step-down without restarting a node (README, Maintenance):
//
//	kubectl exec POD -c forge-manager -- /forge-manager step-down 30m
//
// writes the moment the step-down ends to STEP_DOWN_FILE, then watches this
// pod's /status until the handover is done. While that moment is ahead the
// sidecar counts itself not eligible, so the rest follows from rules that
// already hold: a leader disables forging, confirms it and only then
// releases the Lease, and a standby takes it at once (SPEC 3, invariants 4,
// 5 and 7); the replica then takes no Lease and no forging token until the
// moment passes. The node only gets the disabling SIGHUP: it keeps running,
// synced. `step-down 0` ends a step-down early.
//
// Fail closed (invariant 4): a file that exists but cannot be read, or does
// not hold a time, keeps the replica out, with a reason naming the file. The
// end is wall-clock time, written by one process and read by another: a
// clock step changes how long the replica stays out, never whether it may
// forge beside another.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// maxStepDown bounds one step-down: a maintenance window, not a way to
// retire a replica (that is scaling the StatefulSet down).
const maxStepDown = 7 * 24 * time.Hour

// stepDownPoll is how often the command looks at /status while it waits.
const stepDownPoll = 200 * time.Millisecond

// readStepDown is the end of the step-down in path: zero when there is no
// file; an error, which keeps the replica out, when it cannot be read.
//
// The file is on a volume the node container shares, so it is opened as
// key paths are inspected (invariant 8): without following a link, without
// blocking on a FIFO, a regular file only, and at most stepDownMax bytes.
func readStepDown(path string) (time.Time, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("STEP_DOWN_FILE %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return time.Time{}, fmt.Errorf("STEP_DOWN_FILE %s is not a regular file: run forge-manager step-down 0 to remove it", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, stepDownMax+1))
	if err != nil {
		return time.Time{}, fmt.Errorf("STEP_DOWN_FILE %s: %w", path, err)
	}
	until, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(string(b)))
	if err != nil || len(b) > stepDownMax {
		// Its content is not quoted: a mistyped path could name a key.
		return time.Time{}, fmt.Errorf("STEP_DOWN_FILE %s does not hold an RFC 3339 time: run forge-manager step-down 0 to remove it", path)
	}
	return until, nil
}

// stepDownMax: an RFC 3339 time with nanoseconds and a zone is 35 bytes.
const stepDownMax = 64

// readStepDown looks at STEP_DOWN_FILE; a new step-down is an Event.
func (s *sidecar) readStepDown() {
	until, err := readStepDown(s.stepDownFile)
	if err == nil && !until.Equal(s.stepUntil) && s.now().Before(until) {
		s.say(false, false, "SteppedDown", "StepDown", fmt.Sprintf("%s stepped down by an operator until %s: it hands over and stays out of the election",
			s.names.pod, until.UTC().Format(time.RFC3339)))
	}
	s.stepUntil, s.stepErr = until, err
}

// stepDownWhy says why a step-down keeps this replica out ("" if none
// does) at now.
func stepDownWhy(until time.Time, err error, now time.Time) string {
	switch {
	case err != nil:
		return "step-down file unreadable, so this replica stays out: " + err.Error()
	case now.Before(until):
		return fmt.Sprintf("stepped down by an operator until %s (forge-manager step-down 0 ends it)", until.UTC().Format(time.RFC3339))
	}
	return ""
}

// parseStepDown reads the command's one argument: a duration up to
// maxStepDown, or 0 to end a step-down.
func parseStepDown(arg string) (time.Duration, error) {
	d, err := time.ParseDuration(arg)
	if arg == "0" {
		d, err = 0, nil
	}
	if err != nil || d < 0 || d > maxStepDown {
		return 0, &usageError{fmt.Sprintf("step-down %q: want how long to stay out, a Go duration from 1s to %s (30m, 2h), or 0 to end a step-down",
			arg, maxStepDown)}
	}
	if d > 0 && d < time.Second {
		return 0, &usageError{fmt.Sprintf("step-down %q: want at least 1s", arg)}
	}
	return d, nil
}

// runStepDown is `forge-manager step-down DURATION`.
func runStepDown(c *config, arg string, now func() time.Time, stdout io.Writer) error {
	d, err := parseStepDown(arg)
	if err != nil {
		return err
	}
	if c.AppType != appBlockProducer {
		return &usageError{fmt.Sprintf("step-down: APPLICATION_TYPE=%s never forges, so it has nothing to step down from", c.AppType)}
	}
	if d == 0 {
		if _, err := removeFile(c.StepDownFile); err != nil {
			return fmt.Errorf("ending the step-down: %w", err)
		}
		fmt.Fprintf(stdout, "step-down ended: %s may forge and lead again\n", c.PodName)
		return nil
	}
	until := now().Add(d)
	if err := writeStepDown(c.StepDownFile, until); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s steps down until %s: it does not forge and stays out of the election (forge-manager step-down 0 ends it)\n",
		c.PodName, until.UTC().Format(time.RFC3339))
	t := c.timing()
	// The next pass, a confirmed disable, and the releases (the forging
	// token's, the status, the Lease's): 24 s at the defaults.
	return waitSteppedDown(fmt.Sprintf("http://127.0.0.1:%d/status", c.MetricsPort), t.retry+t.confirm+3*t.api+shutdownSlack, now, stdout)
}

// writeStepDown writes until to path, atomically: the sidecar reads either
// the old file or the new.
func writeStepDown(path string, until time.Time) error {
	if err := writeAtomic(path, []byte(until.UTC().Format(time.RFC3339Nano)+"\n"), 0o600); err != nil {
		return fmt.Errorf("writing STEP_DOWN_FILE %s: %w", path, err)
	}
	return nil
}

// waitSteppedDown polls the sidecar's /status until this replica neither
// leads nor forges, for at most budget: the next pass, a confirmed disable
// and the release.
func waitSteppedDown(url string, budget time.Duration, now func() time.Time, stdout io.Writer) error {
	client := &http.Client{Timeout: time.Second}
	start := now()
	var last error
	for {
		var st snapshot
		last = getJSON(client, url, &st)
		// The reason proves the pass read the file before its election
		// step: a snapshot from before could show a standby about to lead.
		if last == nil && st.Role != "leader" && !st.Forging && st.ForgingState == stateOff.String() && strings.HasPrefix(st.Reason, "stepped down") {
			fmt.Fprintf(stdout, "done in %s: forging off (confirmed by the node), not leading; the Lease holder is now %q\n",
				now().Sub(start).Round(time.Millisecond), st.Holder)
			return nil
		}
		if now().Sub(start) > budget {
			break
		}
		time.Sleep(stepDownPoll)
	}
	if last != nil {
		return fmt.Errorf("the step-down is written, but this pod's status did not answer (%w): see kubectl logs -c forge-manager", last)
	}
	return fmt.Errorf("the step-down is written, but after %s this replica still leads or its node is not confirmed off: see kubectl logs -c forge-manager", budget)
}

func getJSON(client *http.Client, url string, v any) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
