package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseForging(t *testing.T) {
	tests := []struct {
		name, body string
		want       bool
		err        string
	}{
		{"suffix on", "cardano_node_metrics_forging_enabled_int 1\n", true, ""},
		{"suffix off", "# TYPE cardano_node_metrics_forging_enabled_int gauge\ncardano_node_metrics_forging_enabled_int 0\n", false, ""},
		{"no suffix", "cardano_node_metrics_forging_enabled 1\n", true, ""},
		{"labels and timestamp", `cardano_node_metrics_forging_enabled_int{host="x"} 1 1700000000000` + "\n", true, ""},
		{"float", "cardano_node_metrics_forging_enabled 1.0\n", true, ""},
		{"half is not off", "cardano_node_metrics_forging_enabled_int 0.5\n", false, "want exactly 0 or 1"},
		{"NaN is not off", "cardano_node_metrics_forging_enabled_int NaN\n", false, "want exactly 0 or 1"},
		{"two is not on", "cardano_node_metrics_forging_enabled_int 2\n", false, "want exactly 0 or 1"},
		{"similar name is not it", "cardano_node_metrics_forging_enabled_intx 1\ncardano_node_metrics_forging_enabled_int 0\n", false, ""},
		{"missing", "cardano_node_metrics_slotNum_int 5\n", false, "no cardano_node_metrics_forging_enabled_int"},
		{"bad value", "cardano_node_metrics_forging_enabled_int yes\n", false, "value"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, err := parseNodeMetrics(strings.NewReader(tc.body))
			got := g.forging
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, %v; want error containing %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// TestParseChainGauges: the tip's slot and the certificate's start period
// when exported, under either tracing's name; -1 when absent or not a
// whole number, which is "unknown", never 0.
func TestParseChainGauges(t *testing.T) {
	const on = "cardano_node_metrics_forging_enabled_int 1\n"
	tests := []struct {
		name, body     string
		slot, kesStart int64
	}{
		{"both", on + "cardano_node_metrics_slotNum_int 1.7e+08\ncardano_node_metrics_operationalCertificateStartKESPeriod_int 1500\n", 170000000, 1500},
		{"legacy KES name", on + "cardano_node_Forge_metrics_operationalCertificateStartKESPeriod_int 7\n", -1, 7},
		{"none", on, -1, -1},
		{"not whole", on + "cardano_node_metrics_slotNum_int 12.5\n", -1, -1},
		{"negative", on + "cardano_node_metrics_slotNum_int -3\n", -1, -1},
		{"NaN", on + "cardano_node_metrics_slotNum_int NaN\n", -1, -1},
		{"a longer name is another", on + "cardano_node_metrics_slotNum_intx 5\n", -1, -1},
	}
	for _, tc := range tests {
		g, err := parseNodeMetrics(strings.NewReader(tc.body))
		if err != nil || g.slot != tc.slot || g.kesStart != tc.kesStart {
			t.Errorf("%s: slot %d, KES start %d, %v; want %d, %d", tc.name, g.slot, g.kesStart, err, tc.slot, tc.kesStart)
		}
	}
}

// fakeProc builds a /proc tree: pid -> (comm, argv0, state, start).
func fakeProc(t *testing.T, procs map[int][4]string) string {
	root := t.TempDir()
	for pid, p := range procs {
		dir := filepath.Join(root, fmt.Sprint(pid))
		os.Mkdir(dir, 0o755)
		stat := fmt.Sprintf("%d (%s) %s 1 1 1 0 -1 4194560 100 0 0 0 1 1 0 0 20 0 1 0 %s 1000 100", pid, p[0], p[2], p[3])
		os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644)
		os.WriteFile(filepath.Join(dir, "cmdline"), []byte(p[1]+"\x00--flag\x00"), 0o644)
	}
	os.Mkdir(filepath.Join(root, "self"), 0o755) // not a PID
	return root
}

// TestFindNode: every process that may be the node; which of several is
// the node is the tracker's question (TestInvariant4SecondNodeProcess).
func TestFindNode(t *testing.T) {
	tests := []struct {
		name  string
		procs map[int][4]string
		want  []nodeProc
	}{
		{"by comm", map[int][4]string{1: {"pause", "/pause", "S", "1"}, 7: {"cardano-node", "/usr/local/bin/cardano-node", "S", "500"}}, []nodeProc{{7, 500}}},
		{"by argv0 when comm differs", map[int][4]string{9: {"cardano-node-wr", "/bin/cardano-node", "S", "42"}}, []nodeProc{{9, 42}}},
		{"comm with spaces and parens", map[int][4]string{5: {"cardano-node) (x", "/bin/other", "S", "3"}, 6: {"cardano-node", "x", "R", "4"}}, []nodeProc{{6, 4}}},
		{"never PID 1", map[int][4]string{1: {"cardano-node", "cardano-node", "S", "1"}}, nil},
		{"never itself", map[int][4]string{99: {"cardano-node", "cardano-node", "S", "1"}}, nil},
		{"zombie is dead", map[int][4]string{8: {"cardano-node", "", "Z", "9"}}, nil},
		{"substring is not a match", map[int][4]string{8: {"cardano-node-2", "/bin/cardano-node-2", "S", "9"}, 9: {"node", "/bin/node", "S", "9"}}, nil},
		{"two are both listed", map[int][4]string{8: {"cardano-node", "a", "S", "9"}, 10: {"cardano-node", "b", "S", "11"}}, []nodeProc{{10, 11}, {8, 9}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := procFS{root: fakeProc(t, tc.procs), self: 99}
			got, err := fs.findNode("cardano-node")
			sort.Slice(got, func(i, j int) bool { return got[i].PID > got[j].PID })
			if err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
	if _, err := (procFS{root: filepath.Join(t.TempDir(), "none")}).findNode("cardano-node"); err == nil {
		t.Error("an unreadable /proc is not an error: it would read as \"no node\"")
	}
}

// TestStaleSocket: a socket file left by a killed node does not count as up.
func TestStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.socket")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	if !socketAnswers(path) {
		t.Fatal("a listening socket does not answer")
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the stale file should remain: %v", err)
	}
	if socketAnswers(path) {
		t.Error("a stale socket file counts as a node that is up")
	}
}

// TestSignalIncarnation: a signal reaches exactly the incarnation found,
// never a process that took its place, through a pidfd and also when
// pidfd_open fails for any reason but "no such process" (here EMFILE):
// then kill(2) after the start-time check, so a leader never loses the
// means to disable its node.
func TestSignalIncarnation(t *testing.T) {
	for _, tc := range []struct {
		name  string
		pidfd func(int, int) (int, error)
	}{
		{"pidfd", unix.PidfdOpen},
		{"kill(2) when pidfd_open fails", func(int, int) (int, error) { return -1, unix.EMFILE }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func(f func(int, int) (int, error)) { pidfdOpen = f }(pidfdOpen)
			pidfdOpen = tc.pidfd
			signalIncarnation(t)
		})
	}
}

func signalIncarnation(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	fs := procFS{root: "/proc", self: os.Getpid()}
	_, start, _, err := fs.stat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	p := nodeProc{cmd.Process.Pid, start}
	if err := fs.signal(p, 0); err != nil {
		t.Fatalf("signal 0: %v", err)
	}
	if err := fs.signal(nodeProc{p.PID, start + 1}, unix.SIGTERM); !errors.Is(err, errNodeNotFound) {
		t.Errorf("a different incarnation was signalled: %v", err)
	}
	if err := fs.signal(p, unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGTERM {
		t.Errorf("process ended with %v; want SIGTERM", err)
	}
	if err := fs.signal(p, unix.SIGHUP); !errors.Is(err, errNodeNotFound) {
		t.Errorf("signal to an exited node: %v; want not found", err)
	}
}

// TestProcCannotTellIsNotGone: a process whose /proc entry cannot be read
// may be the node: an error, never "no node" or "gone".
func TestProcCannotTellIsNotGone(t *testing.T) {
	root := fakeProc(t, map[int][4]string{7: {"cardano-node", "/bin/cardano-node", "S", "500"}})
	stat := filepath.Join(root, "7", "stat")
	os.Remove(stat)
	os.Mkdir(stat, 0o755) // reading it fails, and not with "no such file"
	fs := procFS{root: root, self: 99}
	if got, err := fs.findNode("cardano-node"); err == nil {
		t.Errorf("findNode with an unreadable entry: %v, nil; want an error", got)
	}
	if ok, err := fs.alive(nodeProc{7, 500}); ok || err == nil {
		t.Errorf("alive with an unreadable entry: %v, %v; want false and an error", ok, err)
	}
	if ok, err := fs.alive(nodeProc{8, 500}); ok || err != nil {
		t.Errorf("alive of a process that is gone: %v, %v; want false, nil", ok, err)
	}
}

// TestTrackerCannotTellIsUnknown: some /proc entry could not be read, and
// the processes of the node's name that could be read all started after the
// sidecar: the unread one may be the node, so its state is unknown, not
// "off because everything visible is fresh".
func TestTrackerCannotTellIsUnknown(t *testing.T) {
	clock := newClock()
	n := newSimNode("bp-0", clock, nil)
	n.running = false
	n.procErr = os.ErrPermission
	n.extras = []nodeProc{{PID: 9, Start: n.self + 50}}
	tr := newNodeTracker(n, "cardano-node", 5*time.Second, time.Minute, true, slog.New(slog.NewJSONHandler(io.Discard, nil)), nil)
	tr.observe(context.Background(), clock.now())
	if tr.n.state != stateUnknown || tr.n.presence != nodeAmbiguous {
		t.Errorf("presence %d state %s; want ambiguous and unknown", tr.n.presence, tr.n.state)
	}
}
