package main

// The node side: finding the cardano-node process in the pod's shared
// process namespace, telling one incarnation from the next, signalling it,
// and reading back what it did (SPEC 2).
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

// errNodeNotFound: no process of that name in this PID namespace.
var errNodeNotFound = errors.New("node process not found")

// procFS reads processes from a /proc; tests point root at a fake tree.
type procFS struct {
	root string // "/proc"
	self int    // our own PID, never a candidate
}

// findNode returns the one process whose executable name (comm, or the base
// name of argv[0]) is name. PID 1 (the pod's pause process) and this process
// never match; zombies are dead. Two matches are an error: which one forges
// cannot be told, so neither is trusted.
func (fs procFS) findNode(name string) (nodeProc, error) {
	entries, err := os.ReadDir(fs.root)
	if err != nil {
		return nodeProc{}, fmt.Errorf("read %s: %w", fs.root, err)
	}
	var found []nodeProc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == 1 || pid == fs.self {
			continue
		}
		comm, start, state, err := fs.stat(pid)
		if err != nil || state == 'Z' || state == 'X' {
			continue // gone since ReadDir, or dead
		}
		if comm == name || fs.argv0(pid) == name { // comm is cut at 15 bytes; argv[0] is not
			found = append(found, nodeProc{pid, start})
		}
	}
	switch len(found) {
	case 0:
		return nodeProc{}, errNodeNotFound
	case 1:
		return found[0], nil
	}
	return nodeProc{}, fmt.Errorf("%d processes named %s (%v): cannot tell which is the node", len(found), name, found)
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

// alive tells whether p is still the same incarnation.
func (fs procFS) alive(p nodeProc) bool {
	_, start, state, err := fs.stat(p.PID)
	return err == nil && start == p.Start && state != 'Z' && state != 'X'
}

// errNotSignalable wraps EPERM from kill: the node runs as another user.
var errNotSignalable = errors.New("not permitted to signal the node: run the node and forge-manager containers as the same UID (runAsUser), or grant forge-manager CAP_KILL")

// signal sends sig to exactly the incarnation p. A pidfd pins the process
// while its start time is checked, so a PID reused in between is never
// signalled (Linux 5.3+; older kernels fall back to kill(2)).
func (fs procFS) signal(p nodeProc, sig unix.Signal) error {
	pidfd, err := unix.PidfdOpen(p.PID, 0)
	switch {
	case errors.Is(err, unix.ESRCH):
		return fmt.Errorf("node %s: %w", p, errNodeNotFound)
	case errors.Is(err, unix.ENOSYS):
		pidfd = -1
	case err != nil:
		return fmt.Errorf("node %s: pidfd_open: %w", p, err)
	default:
		defer unix.Close(pidfd)
	}
	if !fs.alive(p) {
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

// The node's forging gauge, with and without the _int suffix (SPEC 2).
var forgingMetrics = []string{"cardano_node_metrics_forging_enabled_int", "cardano_node_metrics_forging_enabled"}

// metricsClient reads the node's Prometheus endpoint. Local and small, so a
// short timeout: the control loop waits on it.
var metricsClient = &http.Client{Timeout: time.Second}

// readForging fetches url and returns the node's forging gauge.
func readForging(ctx context.Context, url string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err
	}
	resp, err := metricsClient.Do(req)
	if err != nil {
		return false, fmt.Errorf("node metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("node metrics %s: HTTP %d", url, resp.StatusCode)
	}
	return parseForging(io.LimitReader(resp.Body, 4<<20))
}

// parseForging finds the forging gauge in Prometheus text exposition: a line
// "name value" or "name{labels} value".
func parseForging(r io.Reader) (bool, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		for _, m := range forgingMetrics {
			rest, ok := strings.CutPrefix(line, m)
			if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
				continue
			}
			if i := strings.LastIndexByte(rest, '}'); rest[0] == '{' && i >= 0 {
				rest = rest[i+1:]
			}
			f := strings.Fields(rest)
			if len(f) == 0 {
				return false, fmt.Errorf("node metrics: %s has no value", m)
			}
			v, err := strconv.ParseFloat(f[0], 64)
			if err != nil {
				return false, fmt.Errorf("node metrics: %s value %q: %w", m, f[0], err)
			}
			return v >= 1, nil
		}
	}
	if err := sc.Err(); err != nil {
		return false, fmt.Errorf("node metrics: %w", err)
	}
	return false, fmt.Errorf("node metrics: no %s or %s (is the node's PrometheusSimple backend on?)", forgingMetrics[0], forgingMetrics[1])
}
