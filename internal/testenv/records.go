package testenv

import (
	"bufio"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// The stand-in node's forging record: one line per change, stamped on
// the monotonic clock every pod shares, and the intervals read back from
// it, from which tests judge overlaps.

// appendRecord writes a line to a stand-in record with the monotonic clock,
// as the stand-in itself does.
func appendRecord(path, what string, pid int) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%d %s %d\n", Monotonic(), what, pid)
}

// Monotonic is CLOCK_MONOTONIC in nanoseconds: the clock of the records.
func Monotonic() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// Interval is one span of forging by one node incarnation, in CLOCK_MONOTONIC
// nanoseconds; End is 0 while it lasts.
type Interval struct {
	Pod        string
	PID        int
	Start, End int64
}

// ForgingIntervals reads a pod's record: "on" opens an interval, "off"
// closes it, and the process's exit closes every open one. An exit is
// written by the pod after the process is gone, so intervals can only come
// out longer than they were.
func ForgingIntervals(pod, path string) ([]Interval, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Interval
	open := map[int]int{} // pid -> index in out
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ts int64
		var what string
		var pid int
		if _, err := fmt.Sscanf(sc.Text(), "%d %s %d", &ts, &what, &pid); err != nil {
			continue
		}
		switch what {
		case "on":
			if _, ok := open[pid]; !ok {
				open[pid] = len(out)
				out = append(out, Interval{Pod: pod, PID: pid, Start: ts})
			}
		case "off":
			if i, ok := open[pid]; ok {
				out[i].End = ts
				delete(open, pid)
			}
		case "exit":
			// The pod writes it when the node container's process is gone:
			// one incarnation runs at a time, so whatever is open ended,
			// even if the harness could not learn the PID (0).
			for p, i := range open {
				out[i].End = ts
				delete(open, p)
			}
		}
	}
	return out, sc.Err()
}
