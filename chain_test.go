package main

import (
	"strings"
	"testing"
	"time"
)

// TestKESExpiry: the published vector (mainnet, start period 372, expires
// 2022-03-20T21:44:51Z, as cardano-cli kes-period-info reports) and values
// computed by hand for preprod and preview: period 162 begins at slot
// 162 x 129600 = 20995200, which is 1655683200 + 20995200 = 1676678400
// (2023-02-18T00:00:00Z) on preprod, whose slot 0 at 1 s would have been
// 86400 s before its Shelley start; and 1666656000 + 20995200 =
// 1687651200 (2023-06-25T00:00:00Z) on preview.
func TestKESExpiry(t *testing.T) {
	for _, tc := range []struct {
		network string
		c0      uint64
		want    string
	}{
		{"mainnet", 372, "2022-03-20T21:44:51Z"},
		{"preprod", 100, "2023-02-18T00:00:00Z"},
		{"preview", 100, "2023-06-25T00:00:00Z"},
	} {
		sc := knownChains[tc.network]
		w, err := sc.kesWindow(tc.c0, time.Date(2022, 12, 1, 0, 0, 0, 0, time.UTC))
		if err != nil {
			t.Fatal(err)
		}
		if got := w.expires.UTC().Format(time.RFC3339); got != tc.want {
			t.Errorf("%s c0=%d expires %s, want %s", tc.network, tc.c0, got, tc.want)
		}
	}
}

// TestKESWindow: a certificate forges from its start period through 61
// periods later, and is refused before and after, each with its reason.
func TestKESWindow(t *testing.T) {
	sc := knownChains["mainnet"]
	period := func(p uint64, offset time.Duration) time.Time { return sc.timeOf(p * 129600).Add(offset) }
	cases := []struct {
		name      string
		at        time.Time
		remaining uint64
		problem   string
	}{
		{"one second before the start period", period(372, -time.Second), 63, "not valid yet"},
		{"the start period's first slot", period(372, 0), 62, ""},
		{"the last valid period's last second", period(434, -time.Second), 1, ""},
		{"the expiry instant", period(434, 0), 0, "expired at 2022-03-20T21:44:51Z"},
	}
	for _, tc := range cases {
		w, err := sc.kesWindow(372, tc.at)
		if err != nil {
			t.Fatal(err)
		}
		if w.remaining != tc.remaining || !strings.Contains(w.problem(), tc.problem) || (tc.problem == "") != (w.problem() == "") {
			t.Errorf("%s: remaining %d, problem %q; want %d, %q", tc.name, w.remaining, w.problem(), tc.remaining, tc.problem)
		}
	}
	if _, err := sc.slotAt(time.Date(2019, 1, 1, 0, 0, 0, 0, time.UTC)); err == nil {
		t.Error("a time before the Shelley era gave a slot")
	}
}
