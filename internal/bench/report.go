package main

// The local figures as Markdown tables, one per figure, one column per
// mode in -modes order, and a last column with the target.

import (
	"fmt"
	"sort"
	"strings"
)

func printLocal(rs []*localResult) {
	printHandover(rs)
	printFailover(rs)
	printAPILoad(rs)
	printAPISummary(rs)
	printFootprint(rs)
}

// tableCols is the width of the table header last printed: row fills
// what a line leaves out, so every line has every column.
var tableCols int

// header starts a table with a column per mode and the extra columns.
func header(title string, rs []*localResult, extra ...string) {
	cols := []string{""}
	for _, r := range rs {
		cols = append(cols, r.label)
	}
	cols = append(cols, extra...)
	tableCols = len(cols)
	fmt.Printf("### %s\n\n| %s |\n|%s\n", title, strings.Join(cols, " | "), strings.Repeat("---|", len(cols)))
}

// row prints one line: label, cell(r) per mode, then the extra cells.
func row(rs []*localResult, label string, cell func(r *localResult) string, extra ...string) {
	cells := []string{label}
	for _, r := range rs {
		cells = append(cells, cell(r))
	}
	cells = append(cells, extra...)
	for len(cells) < tableCols {
		cells = append(cells, "")
	}
	fmt.Printf("| %s |\n", strings.Join(cells, " | "))
}

func printHandover(rs []*localResult) {
	header("Planned handover: SIGTERM to the leader pod -> the new node forging", rs, "target")
	row(rs, "runs", func(r *localResult) string { return fmt.Sprint(len(r.planned)) })
	row(rs, "median", func(r *localResult) string { return ms(median(r.planned)) }, "watch: < 250 ms (the issue: 3s)")
	row(rs, "worst", func(r *localResult) string { return ms(worst(r.planned)) }, "watch: < 500 ms (the issue: 3s)")
	overlapRow(rs)
	fmt.Println()
}

func printFailover(rs []*localResult) {
	header("Unplanned failover: leader pod killed -> the new node forging", rs, "target")
	row(rs, "runs", func(r *localResult) string { return fmt.Sprint(len(r.unplanned)) })
	row(rs, "from the kill: median", func(r *localResult) string { return sec(median(r.unplanned)) })
	row(rs, "from the kill: worst", func(r *localResult) string { return sec(worst(r.unplanned)) },
		"18s (LEASE_DURATION + RETRY_PERIOD + 1s; the issue)")
	row(rs, "runs with the last renew read", func(r *localResult) string { return fmt.Sprint(len(r.sinceRenew)) })
	row(rs, "from the killed leader's last renew: median", func(r *localResult) string { return sec(median(r.sinceRenew)) })
	row(rs, "from the killed leader's last renew: worst", func(r *localResult) string { return sec(worst(r.sinceRenew)) },
		"watch: <= 15.30s (LEASE_DURATION + 0.3s)")
	overlapRow(rs)
	fmt.Printf("\n(last renew: the Lease's spec.renewTime read right after the kill, the start of the leader's last write that landed, on the records' clock)\n\n")
}

// overlapRow is the overlap check over every run of the mode, both kinds.
func overlapRow(rs []*localResult) {
	row(rs, "overlaps (forging intervals checked, all runs of the mode)", func(r *localResult) string {
		return fmt.Sprintf("%d (%d)", r.overlaps, r.intervals)
	}, "0")
}

// forgeManagerResources are what the sidecar's Role lets it touch on the
// local API server (deploy/rbac).
var forgeManagerResources = map[string]bool{"leases": true, "cardanoleaders": true, "cardanoleaders/status": true, "events": true}

// printAPILoad is every request forge-manager's resources saw, per verb,
// with the Lease reads and watches always shown.
func printAPILoad(rs []*localResult) {
	keys := map[string]bool{"GET leases": true, "LIST leases": true, "WATCH leases": true, "PUT leases": true}
	for _, r := range rs {
		for k, v := range r.api {
			_, res, _ := strings.Cut(k, " ")
			if forgeManagerResources[res] && v >= 0.005 {
				keys[k] = true
			}
		}
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	header(fmt.Sprintf("API load in steady state (%s, 3 replicas: requests/s, apiserver_request_total less a control-plane-only baseline)", *idle), rs)
	for _, k := range sorted {
		row(rs, k, func(r *localResult) string { return fmt.Sprintf("%.2f", r.api[k]) })
	}
	row(rs, "Lease watches open at the window's end (apiserver_longrunning_requests)", func(r *localResult) string {
		return fmt.Sprintf("%.0f", r.openWatches)
	})
	fmt.Printf("\n(apiserver_request_total counts a WATCH when it ends, and forge-manager ends one after 5 minutes: the open watches are the watch line; the baseline is subtracted, so noise can show as a small negative rate)\n\n")
}

// printAPISummary reads the per-verb rates as per-replica figures: the
// leader's renew is the only Lease PUT, the Lease GETs are the standbys'
// polls, and CardanoLeader writes are its status patches and creates.
func printAPISummary(rs []*localResult) {
	header("API load per replica in steady state", rs, "predecessor (Python, per its code: every 5s)")
	row(rs, "leader: requests/s", func(r *localResult) string {
		return fmt.Sprintf("%.2f (Lease PUT %.2f/s)", r.api["PUT leases"]+leaderObject(r, false), r.api["PUT leases"])
	}, "0.60 (Lease GET + PATCH, status PATCH)")
	row(rs, "leader: Lease renews per RETRY_PERIOD (2s)", func(r *localResult) string {
		return fmt.Sprintf("%.2f", r.api["PUT leases"]*2)
	}, "0.4 (a PATCH every 5s)")
	row(rs, "leader: writes/min", func(r *localResult) string {
		return fmt.Sprintf("%.1f (Lease renews %.1f)", (r.api["PUT leases"]+leaderObject(r, true))*60, r.api["PUT leases"]*60)
	}, "24 (Lease PATCH + status PATCH)")
	row(rs, "each standby: Lease GETs/s (periodic reads)", func(r *localResult) string {
		return fmt.Sprintf("%.2f", r.api["GET leases"]/2)
	}, "0.20")
	row(rs, "each standby: Lease LISTs + WATCHes ended/min; Lease watches open, all replicas", func(r *localResult) string {
		return fmt.Sprintf("%.2f; %.0f open", (r.api["LIST leases"]+r.api["WATCH leases"])*60/2, r.openWatches)
	}, "0; 0")
	row(rs, "CardanoLeader writes/min", func(r *localResult) string { return fmt.Sprintf("%.2f", leaderObject(r, true)*60) }, "12")
	row(rs, "CardanoLeader requests/min (all verbs)", func(r *localResult) string { return fmt.Sprintf("%.2f", leaderObject(r, false)*60) }, "12")
	row(rs, "all three replicas: requests/s", func(r *localResult) string { return fmt.Sprintf("%.2f", forgeManagerRate(r)) }, "1.00")
	fmt.Println()
}

// leaderObject is the rate of requests on CardanoLeader and its status;
// writes only: every verb but GET, LIST and WATCH.
func leaderObject(r *localResult, writesOnly bool) float64 {
	sum := 0.0
	for k, v := range r.api {
		verb, res, _ := strings.Cut(k, " ")
		read := verb == "GET" || verb == "LIST" || verb == "WATCH"
		if strings.HasPrefix(res, "cardanoleaders") && !(writesOnly && read) {
			sum += v
		}
	}
	return sum
}

func forgeManagerRate(r *localResult) float64 {
	sum := 0.0
	for k, v := range r.api {
		if _, res, _ := strings.Cut(k, " "); forgeManagerResources[res] {
			sum += v
		}
	}
	return sum
}

func printFootprint(rs []*localResult) {
	header(fmt.Sprintf("Sidecar footprint in steady state (%s idle; standbys: each of the two)", *idle), rs)
	mib := func(v int64) string { return fmt.Sprintf("%.1f MiB", float64(v)/(1<<20)) }
	for _, f := range []struct {
		what string
		cell func(footprint) string
	}{
		{"resident memory (VmRSS)", func(f footprint) string { return mib(f.rss) }},
		{"peak resident memory (VmHWM)", func(f footprint) string { return mib(f.hwm) }},
		{"of which heap and stacks (RssAnon)", func(f footprint) string { return mib(f.anon) }},
		{"CPU seconds per hour", func(f footprint) string { return fmt.Sprintf("%.1f", f.cpuPerHour) }},
	} {
		row(rs, "leader: "+f.what, func(r *localResult) string { return f.cell(r.leader) })
		row(rs, "standby: "+f.what, func(r *localResult) string {
			var cells []string
			for _, s := range r.standbys {
				cells = append(cells, f.cell(s))
			}
			return strings.Join(cells, " / ")
		})
	}
	row(rs, "highest VmHWM of a sidecar through the failovers and handovers", func(r *localResult) string { return mib(r.peak) })
	fmt.Println()
}
