// Command cardano-node is a stand-in for the real cardano-node in
// forge-manager's tests and demo. The real node cannot run here (it needs
// the chain and hours of sync), so this one imitates what forge-manager
// depends on, as docs/design.md (The node) describes, including the
// dangerous parts:
//
//   - at start it exits if a credential file is missing, unreadable or
//     invalid, or if the VRF key has "other" permission bits;
//   - a SIGHUP during the first -early-window kills it (no handler yet);
//   - during -replay a SIGHUP does not change forging, and the socket is
//     not open yet;
//   - after that it opens -socket-path (removing a stale file), and starts
//     forging only without -start-as-non-producing-node;
//   - each SIGHUP is handled on its own goroutine after -hup-delay: all three
//     files present and valid enables forging, any one missing (or a
//     directory, or a dangling link) disables it, a present but empty or
//     corrupt file changes nothing;
//   - faults on demand: -ignore-disable (a wedged node that never stops
//     forging on SIGHUP), -drop-hups N (lost signals), -metrics-broken-file
//     (while it exists the forging gauge cannot be read), -idle D (not a
//     node at all: a process of the same name, as `cardano-node --version`
//     under kubectl exec, that only waits D and exits);
//   - it serves cardano_node_metrics_forging_enabled_int on
//     127.0.0.1:-metrics-port/metrics, with cardano_node_metrics_slotNum_int
//     (mainnet's wall-clock slot less the number in -tip-lag-file; none with
//     -no-tip) and, while forging, the loaded certificate's
//     operationalCertificateStartKESPeriod_int; and /health (503 while the
//     file -unhealthy-file exists). Unlike the real node it does not check
//     the KES key against the certificate: forge-manager refuses such a set
//     before any SIGHUP.
//
// Every change of forging is appended to -record as "<CLOCK_MONOTONIC ns>
// <on|off> <pid>", the record the tests check for overlaps. It is never
// part of the forge-manager binary.
package main

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

var (
	kesPath      = flag.String("shelley-kes-key", "", "KES signing key")
	vrfPath      = flag.String("shelley-vrf-key", "", "VRF signing key")
	certPath     = flag.String("shelley-operational-certificate", "", "operational certificate")
	socketPath   = flag.String("socket-path", "", "node socket")
	nonProducing = flag.Bool("start-as-non-producing-node", false, "start without forging")
	oldFlag      = flag.Bool("non-producing-node", false, "the pre-10.5.1 name of -start-as-non-producing-node")
	earlyWindow  = flag.Duration("early-window", 300*time.Millisecond, "a SIGHUP this early kills the node")
	replay       = flag.Duration("replay", 2*time.Second, "ledger replay: SIGHUP has no effect on forging, no socket")
	hupDelay     = flag.Duration("hup-delay", 20*time.Millisecond, "time to handle one SIGHUP (re-reading genesis and keys)")
	metricsPort  = flag.Int("metrics-port", 12798, "Prometheus port on 127.0.0.1")
	noSuffix     = flag.Bool("nosuffix", false, "name the gauge cardano_node_metrics_forging_enabled")
	record       = flag.String("record", "", "append forging changes here")
	unhealthy    = flag.String("unhealthy-file", "", "while this file exists, /health answers 503")
	stuck        = flag.Bool("ignore-disable", false, "fault: a SIGHUP never disables forging (a wedged node)")
	dropHUPs     = flag.Int("drop-hups", 0, "fault: the first N SIGHUPs after startup are lost")
	brokenGauge  = flag.String("metrics-broken-file", "", "fault: while this file exists, /metrics answers 503")
	idle         = flag.Duration("idle", 0, "not a node: wait this long and exit (a second process of the node's name)")
	tipLagFile   = flag.String("tip-lag-file", "", "while this file exists, its number is how many slots the tip lags the wall clock")
	noTip        = flag.Bool("no-tip", false, "export no slotNum (ChainDB metrics off)")
	// The default is mainnet's: its Shelley start (1596059091) less its
	// first Shelley slot (4492800).
	slotZero = flag.Int64("slot-zero", 1596059091-4492800, "Unix time slot 0 would have had at 1 s slots: the tip follows the wall clock from it, less -tip-lag-file")
)

// loadedKES is the start KES period of the certificate the forge state was
// made from; -1 while there is none (not forging), when the node exports
// no KES gauges.
var loadedKES atomic.Int64

var (
	forging atomic.Bool
	mu      sync.Mutex // orders a handler's decision with its record line
	rec     *os.File
)

func main() {
	flag.Parse()
	if *idle > 0 {
		time.Sleep(*idle)
		return
	}
	log.SetFlags(log.Lmicroseconds)
	log.SetPrefix(fmt.Sprintf("cardano-node[%d] ", os.Getpid()))
	if err := checkAtStart(); err != nil {
		log.Printf("startup failed: %v", err)
		os.Exit(1)
	}
	if *record != "" {
		f, err := os.OpenFile(*record, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			log.Fatalf("record: %v", err)
		}
		rec = f
	}
	note("start")
	go serveMetrics()

	// Until the handler is installed, SIGHUP has its default action: the
	// process terminates, as the real node does early in its startup.
	time.Sleep(*earlyWindow)
	hups := make(chan os.Signal, 16)
	signal.Notify(hups, syscall.SIGHUP)
	kernelUp := atomic.Bool{}
	go func() {
		for range hups {
			if !kernelUp.Load() {
				log.Printf("BlockForgingUpdate NotEffective: changing block forging is not effective until consensus has started")
				continue
			}
			go handleHUP()
		}
	}()
	time.Sleep(*replay)
	kernelUp.Store(true)
	loadedKES.Store(-1)
	if !*nonProducing && !*oldFlag {
		loadedKES.Store(certKESPeriod(*certPath))
		setForging(true, "kernel up, forging from start")
	}
	listen()
	select {}
}

// checkAtStart is the node's boot-time read of its credentials.
func checkAtStart() error {
	for _, p := range []string{*kesPath, *vrfPath, *certPath} {
		if p == "" {
			return errors.New("all three of --shelley-kes-key, --shelley-vrf-key, --shelley-operational-certificate are required")
		}
		if err := valid(p); err != nil {
			return err
		}
	}
	st, err := os.Stat(*vrfPath)
	if err != nil {
		return err
	}
	if st.Mode().Perm()&0o007 != 0 {
		return fmt.Errorf("VRF private key file at: %s has \"other\" file permissions. Please remove all \"other\" file permissions", *vrfPath)
	}
	return nil
}

// valid reads one credential file the way the node does: a text envelope
// with hex CBOR.
func valid(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("Error file not found at: %s (%v)", path, err)
	}
	var env struct{ Type, CBORHex string }
	if err := json.Unmarshal(b, &env); err != nil || env.Type == "" {
		return fmt.Errorf("%s: not a text envelope", path)
	}
	if _, err := hex.DecodeString(env.CBORHex); err != nil || env.CBORHex == "" {
		return fmt.Errorf("%s: bad cborHex", path)
	}
	return nil
}

// missing is the node's doesFileExist: false also for a directory or a
// dangling symlink.
func missing(path string) bool {
	st, err := os.Stat(path)
	return err != nil || !st.Mode().IsRegular()
}

var dropped atomic.Int32

func handleHUP() {
	if int(dropped.Add(1)) <= *dropHUPs {
		log.Printf("SIGHUP lost (fault injection)")
		return
	}
	time.Sleep(*hupDelay)
	for _, p := range []string{*vrfPath, *certPath, *kesPath} {
		if missing(p) {
			if *stuck {
				log.Printf("SIGHUP: %s missing, but this node is wedged (fault injection)", p)
				return
			}
			setForging(false, "DisabledBlockForging: "+p+" missing")
			return
		}
	}
	for _, p := range []string{*vrfPath, *certPath, *kesPath} {
		if err := valid(p); err != nil {
			log.Printf("BlockForgingUpdateError: %v. Block forging is not reconfigured.", err)
			return
		}
	}
	loadedKES.Store(certKESPeriod(*certPath))
	setForging(true, "EnabledBlockForging")
}

// certKESPeriod reads a certificate's start KES period, as the node's KES
// gauges report it: the CBOR is [[bytes(32), counter, period, bytes(64)],
// bytes(32)]. -1 if it cannot be read that way.
func certKESPeriod(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	var env struct{ CBORHex string }
	json.Unmarshal(b, &env)
	raw, err := hex.DecodeString(env.CBORHex)
	if err != nil || len(raw) < 4+32 || raw[0] != 0x82 || raw[1] != 0x84 {
		return -1
	}
	rest := raw[4+32:]
	var vals [2]int64
	for i := range vals {
		if len(rest) == 0 {
			return -1
		}
		info := rest[0] & 0x1f
		n := map[byte]int{24: 1, 25: 2, 26: 4, 27: 8}[info]
		if rest[0]>>5 != 0 || (info >= 24 && (n == 0 || len(rest) < 1+n)) {
			return -1
		}
		v := int64(info)
		if n > 0 {
			v = 0
		}
		for _, c := range rest[1 : 1+n] {
			v = v<<8 | int64(c)
		}
		vals[i], rest = v, rest[1+n:]
	}
	return vals[1]
}

// tipSlot is the slot of the stand-in's chain tip now.
func tipSlot() int64 {
	tip := time.Now().Unix() - *slotZero
	if b, err := os.ReadFile(*tipLagFile); err == nil {
		var lag int64
		fmt.Sscan(string(b), &lag)
		tip -= lag
	}
	return tip
}

func setForging(on bool, why string) {
	mu.Lock()
	defer mu.Unlock()
	log.Printf("BlockForgingUpdate %s", why)
	if forging.Swap(on) != on {
		if on {
			note("on")
		} else {
			note("off")
		}
	}
}

// note appends one record line with the machine-wide monotonic clock.
func note(what string) {
	if rec == nil {
		return
	}
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	fmt.Fprintf(rec, "%d %s %d\n", ts.Nano(), what, os.Getpid())
}

func listen() {
	if *socketPath == "" {
		return
	}
	os.Remove(*socketPath) // a killed node leaves its socket file behind
	l, err := net.Listen("unix", *socketPath)
	if err != nil {
		log.Fatalf("socket: %v", err)
	}
	log.Printf("socket open at %s", *socketPath)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}

func serveMetrics() {
	name := "cardano_node_metrics_forging_enabled_int"
	if *noSuffix {
		name = "cardano_node_metrics_forging_enabled"
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		if exists(*brokenGauge) {
			http.Error(w, "metrics unavailable (fault injection)", http.StatusServiceUnavailable)
			return
		}
		v := 0
		if forging.Load() {
			v = 1
		}
		fmt.Fprintf(w, "# TYPE %s gauge\n%s %d\n", name, name, v)
		if !*noTip {
			fmt.Fprintf(w, "cardano_node_metrics_slotNum_int %d\n", tipSlot())
		}
		if k := loadedKES.Load(); k >= 0 && forging.Load() {
			fmt.Fprintf(w, "cardano_node_metrics_operationalCertificateStartKESPeriod_int %d\n", k)
		}
	})
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		if exists(*unhealthy) {
			http.Error(w, "unhealthy", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "OK")
	})
	if err := http.ListenAndServe(fmt.Sprintf("127.0.0.1:%d", *metricsPort), mux); err != nil {
		log.Printf("metrics: %v", err)
	}
}

func exists(path string) bool {
	if path == "" {
		return false
	}
	_, err := os.Stat(path)
	return err == nil
}
