package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// stepOut makes r step down until d from now, as the command does.
func stepOut(t *testing.T, w *world, r *replica, d time.Duration) {
	t.Helper()
	if err := writeStepDown(r.cfg.StepDownFile, w.clock.now().Add(d)); err != nil {
		t.Fatal(err)
	}
}

// TestStepDownHandsOverWithoutRestart (invariants 4, 5, 7): a step-down
// makes the leader disable forging, confirm it and release the Lease; the
// standby takes over at once; the node is never restarted; and the
// replica stays out until the time passes, then only stands by.
func TestStepDownHandsOverWithoutRestart(t *testing.T) {
	w, a := pair(t)
	pid := a.node.pid
	stepOut(t, w, a, time.Minute)
	w.runUntil(10*time.Second, "bp-1 forging", func() bool { return len(w.forgers()) == 1 && w.forgers()[0] == "bp-1" })
	if a.node.pid != pid || a.node.kills != 0 || a.node.probeKill != 0 {
		t.Errorf("bp-0's node: pid %d (was %d), %d kills, %d probe kills; want it untouched but for a SIGHUP", a.node.pid, pid, a.node.kills, a.node.probeKill)
	}
	if !strings.Contains(a.log.String(), `"msg":"released the Lease"`) {
		t.Error("bp-0 did not release the Lease: the standby waited for expiry")
	}
	w.run(40 * time.Second) // still inside the minute
	if why := a.s.ineligible(w.clock.now()); !strings.HasPrefix(why, "stepped down by an operator until") {
		t.Errorf("bp-0 is not out: %q", why)
	}
	w.onlyForger("bp-1")
	w.run(30 * time.Second) // past it: eligible again, and bp-1 keeps the lead
	if why := a.s.ineligible(w.clock.now()); why != "" {
		t.Errorf("bp-0 still out after the step-down ended: %q", why)
	}
	w.onlyForger("bp-1")
	w.noOverlap()
}

// TestStepDownEndedEarly: `step-down 0` (the file removed) ends it at the
// next pass.
func TestStepDownEndedEarly(t *testing.T) {
	w, a := pair(t)
	stepOut(t, w, a, time.Hour)
	w.runUntil(10*time.Second, "bp-1 forging", func() bool { return len(w.forgers()) == 1 && w.forgers()[0] == "bp-1" })
	os.Remove(a.cfg.StepDownFile)
	w.run(3 * time.Second)
	if why := a.s.ineligible(w.clock.now()); why != "" {
		t.Errorf("still out after step-down 0: %q", why)
	}
	w.onlyForger("bp-1")
	w.noOverlap()
}

// TestStepDownUnreadableKeepsOut (invariant 4): a step-down file that
// cannot be read or holds no time keeps the replica out, with a reason
// naming the file; removing it lets the replica lead again.
func TestStepDownUnreadableKeepsOut(t *testing.T) {
	w, a := pair(t)
	if err := os.WriteFile(a.cfg.StepDownFile, []byte("tomorrow\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w.runUntil(10*time.Second, "bp-1 forging", func() bool { return len(w.forgers()) == 1 && w.forgers()[0] == "bp-1" })
	if why := a.s.ineligible(w.clock.now()); !strings.Contains(why, "STEP_DOWN_FILE "+a.cfg.StepDownFile+" does not hold") {
		t.Errorf("reason %q; want the file named", why)
	}
	os.Remove(a.cfg.StepDownFile)
	w.run(3 * time.Second)
	if why := a.s.ineligible(w.clock.now()); why != "" {
		t.Errorf("still out after the file went: %q", why)
	}
	w.noOverlap()
}

// TestStepDownStandbyStaysOut: a standby that steps down does not take
// the Lease when the leader goes, for as long as it is out.
func TestStepDownStandbyStaysOut(t *testing.T) {
	w, a := pair(t)
	b := w.rep("bp-1")
	stepOut(t, w, b, 5*time.Minute)
	w.run(3 * time.Second)
	stepOut(t, w, a, time.Minute)
	w.run(time.Minute - 5*time.Second)
	if f := w.forgers(); len(f) != 0 {
		t.Errorf("forgers %v while both are stepped down; want none", f)
	}
	w.runUntil(30*time.Second, "bp-0 back", func() bool { return len(w.forgers()) == 1 && w.forgers()[0] == "bp-0" })
	w.noOverlap()
}

// TestParseStepDown: the argument's rules, each refused input named.
func TestParseStepDown(t *testing.T) {
	for _, tt := range []struct {
		arg  string
		want time.Duration
		bad  string
	}{
		{"30m", 30 * time.Minute, ""},
		{"0", 0, ""},
		{"0s", 0, ""},
		{"168h", maxStepDown, ""},
		{"169h", 0, `step-down "169h": want how long`},
		{"-5m", 0, `step-down "-5m": want how long`},
		{"soon", 0, `step-down "soon": want how long`},
		{"500ms", 0, `step-down "500ms": want at least 1s`},
	} {
		d, err := parseStepDown(tt.arg)
		if tt.bad != "" {
			if err == nil || !strings.Contains(err.Error(), tt.bad) || exitCode(err) != 2 {
				t.Errorf("%q: error %v; want a usage error %q", tt.arg, err, tt.bad)
			}
			continue
		}
		if err != nil || d != tt.want {
			t.Errorf("%q: %v, %v; want %v", tt.arg, d, err, tt.want)
		}
	}
}

// TestReadStepDown: no file is no step-down; a file is its time; anything
// else is an error that keeps the replica out.
func TestReadStepDown(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "step-down")
	now := time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC)
	if u, err := readStepDown(path); !u.IsZero() || err != nil || stepDownWhy(u, err, now) != "" {
		t.Errorf("no file: %v, %v; want no step-down", u, err)
	}
	if err := writeStepDown(path, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	u, err := readStepDown(path)
	if why := stepDownWhy(u, err, now); !strings.Contains(why, "until 2026-12-02T02:00:00Z") {
		t.Errorf("reason %q", why)
	}
	if why := stepDownWhy(u, err, now.Add(time.Hour)); why != "" {
		t.Errorf("at its end: %q; want none", why)
	}
	// Planted on the shared volume (invariant 8): neither followed, nor
	// blocked on, nor read whole; each keeps the replica out.
	secret := filepath.Join(dir, "kes.skey")
	os.WriteFile(secret, []byte(now.Add(time.Hour).Format(time.RFC3339)), 0o600)
	big := strings.Repeat(" ", 1<<20) + now.Add(time.Hour).Format(time.RFC3339)
	for name, plant := range map[string]func() error{
		"a directory": func() error { return os.Mkdir(path, 0o700) },
		"a FIFO":      func() error { return unix.Mkfifo(path, 0o600) },
		"a symlink":   func() error { return os.Symlink(secret, path) },
		"a huge file": func() error { return os.WriteFile(path, []byte(big), 0o600) },
	} {
		os.RemoveAll(path)
		if err := plant(); err != nil {
			t.Fatal(err)
		}
		u, err, ok := readStepDownWithin(path, 5*time.Second)
		if !ok {
			t.Errorf("%s: reading it blocked", name)
			continue
		}
		if err == nil || !strings.HasPrefix(stepDownWhy(u, err, now), "step-down file unreadable") {
			t.Errorf("%s: %v; want an error that keeps it out", name, err)
		}
		if err != nil && strings.Contains(err.Error(), "2026") {
			t.Errorf("%s: the error quotes the file: %v", name, err)
		}
	}
}

// TestWaitSteppedDown: the command reports done only once this replica
// neither leads nor forges with the node confirmed off, and says so when
// the status never gets there or does not answer.
func TestWaitSteppedDown(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := snapshot{Role: "leader", Forging: true, ForgingState: stateOn.String()}
		switch n := calls.Add(1); {
		case n == 2:
			st = snapshot{Role: "leader", ForgingState: stateDisabling.String()}
		case n == 3: // a standby's pass from before the file was read: it may lead next
			st = snapshot{Role: "standby", ForgingState: stateOff.String()}
		case n >= 4:
			st = snapshot{Role: "ineligible", ForgingState: stateOff.String(), Holder: "bp-1_uid", Reason: "stepped down by an operator until ..."}
		}
		json.NewEncoder(w).Encode(st)
	}))
	defer srv.Close()
	var out bytes.Buffer
	if err := waitSteppedDown(srv.URL, 10*time.Second, time.Now, &out); err != nil || !strings.Contains(out.String(), `the Lease holder is now "bp-1_uid"`) {
		t.Errorf("%v, %q; want done", err, out.String())
	}
	if calls.Load() != 4 {
		t.Errorf("%d looks; want done at the fourth, the first that read the step-down", calls.Load())
	}
	calls.Store(-1000) // leads for good
	if err := waitSteppedDown(srv.URL, 300*time.Millisecond, time.Now, &out); err == nil || !strings.Contains(err.Error(), "still leads") {
		t.Errorf("%v; want it to say the replica still leads", err)
	}
	srv.Close()
	if err := waitSteppedDown(srv.URL, 300*time.Millisecond, time.Now, &out); err == nil || !strings.Contains(err.Error(), "did not answer") {
		t.Errorf("%v; want it to say the status did not answer", err)
	}
}

// readStepDownWithin is readStepDown, or !ok if it has not returned
// within d (it blocked: on a FIFO, say).
func readStepDownWithin(path string, d time.Duration) (time.Time, error, bool) {
	type result struct {
		u   time.Time
		err error
	}
	ch := make(chan result, 1)
	go func() {
		u, err := readStepDown(path)
		ch <- result{u, err}
	}()
	select {
	case r := <-ch:
		return r.u, r.err, true
	case <-time.After(d):
		return time.Time{}, nil, false
	}
}
