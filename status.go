package main

// The status board and the HTTP surface (README, Observability). The loop publishes a
// snapshot at the end of every pass; /healthz, /readyz, /status and the
// metrics' gauges read the last one, never the loop's own state, so a
// handler cannot block or race a pass.

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// board holds the last snapshot; written once per pass, read without locks.
type board struct{ last atomic.Pointer[snapshot] }

func (b *board) load() *snapshot   { return b.last.Load() }
func (b *board) store(v *snapshot) { b.last.Store(v) }

// snapshot is what the loop knew at the end of a pass.
type snapshot struct {
	Pod             string `json:"pod"`
	Identity        string `json:"identity"`
	Role            string `json:"role"` // leader, standby, ineligible
	Eligible        bool   `json:"eligible"`
	Reason          string `json:"reason,omitempty"`
	Holder          string `json:"leaseHolder"`
	Lease           string `json:"lease"`
	Epoch           int32  `json:"epoch"`
	LeaseUID        string `json:"leaseUID,omitempty"`
	RenewAgeSeconds *int64 `json:"secondsSinceRenew,omitempty"`
	Forging         bool   `json:"forging"`
	ForgingState    string `json:"nodeForgingState"`
	LastTransition  string `json:"lastTransition,omitempty"`
	NodePID         int    `json:"nodePID,omitempty"`
	NodeUp          bool   `json:"nodeUp"`
	Network         string `json:"network"`
	PoolID          string `json:"poolID,omitempty"`
	Region          string `json:"region"`
	Version         string `json:"version"`
	// Cluster is the cluster-wide view (cluster.go); nil without cluster
	// management.
	Cluster *clusterSnapshot `json:"cluster,omitempty"`
	// Chain is what the node's chain and the credentials say (SPEC 12).
	Chain chainSnapshot `json:"chain"`

	ready      bool
	renewedAt  time.Time
	fenceAt    time.Time
	lastChange time.Time
	passAt     time.Time // when the pass that wrote it ended, on the monotonic clock
}

// clusterSnapshot is what /status and the cluster metrics say of the
// region: the token's holder, this region's place in the ranking (1 is
// first; 0 when not known or not a candidate), its effective state and
// priority as its local leader last evaluated them.
type clusterSnapshot struct {
	TokenHolder       string `json:"tokenHolder"`
	HoldsToken        bool   `json:"holdsToken"`
	Rank              int    `json:"rank"`
	Candidates        int    `json:"liveCandidates"`
	EffectiveState    string `json:"effectiveState,omitempty"`
	EffectivePriority int    `json:"effectivePriority,omitempty"`
	Candidate         bool   `json:"candidate"`
	Reason            string `json:"reason,omitempty"`
	Healthy           bool   `json:"healthy"`
	LocalLeader       bool   `json:"localLeader"`
}

// chainSnapshot: the node's tip against the wall clock, and the loaded
// certificate's identity and KES window. Pointers are nil when unknown.
type chainSnapshot struct {
	TipSlot             *int64 `json:"tipSlot,omitempty"`
	TipLagSlots         *int64 `json:"tipLagSlots,omitempty"`
	MaxTipLag           uint64 `json:"maxTipLag"`
	KeysPoolID          string `json:"keysPoolID,omitempty"` // the pool the cold key proves, bech32
	KeysPoolIDHex       string `json:"keysPoolIDHex,omitempty"`
	OpCertCounter       *int64 `json:"opCertCounter,omitempty"`
	KESPeriodStart      *int64 `json:"kesPeriodStart,omitempty"`
	KESPeriod           *int64 `json:"kesPeriod,omitempty"`
	KESPeriodsRemaining *int64 `json:"kesPeriodsRemaining,omitempty"`
	KESExpires          string `json:"kesExpires,omitempty"`
	NodeKESPeriodStart  *int64 `json:"nodeKesPeriodStart,omitempty"` // the node's own gauge, when exported
	CredentialsRefused  string `json:"credentialsRefused,omitempty"`
	// NodeCertificateMismatch: the node, forging with the set in place,
	// reports another certificate's start period: it did not take the set.
	NodeCertificateMismatch string `json:"nodeCertificateMismatch,omitempty"`
	// HighestOpCertCounter is the record on the Lease (counter.go);
	// CounterWarning says when the set's counter is beyond what the chain
	// accepts after it.
	HighestOpCertCounter *int64 `json:"highestOpCertCounter,omitempty"`
	CounterWarning       string `json:"counterWarning,omitempty"`
}

// statusServer answers the endpoints from the board.
type statusServer struct {
	board   *board
	metrics func(io.Writer)
	now     func() time.Time
	stuck   time.Duration // LEASE_DURATION: a loop silent this long is stuck
}

func newStatusServer(b *board, metrics func(io.Writer), now func() time.Time, stuck time.Duration) *statusServer {
	return &statusServer{board: b, metrics: metrics, now: now, stuck: stuck}
}

// httpServer is the listening server; serve runs until Close.
type httpServer struct {
	*http.Server
	ln net.Listener
}

// listen opens METRICS_PORT for st's endpoints.
func listen(port int, st *statusServer) (*httpServer, error) {
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(port))
	if err != nil {
		return nil, fmt.Errorf("METRICS_PORT=%d: %w", port, err)
	}
	srv := &http.Server{Handler: st.handler(), ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second}
	return &httpServer{Server: srv, ln: ln}, nil
}

func (h *httpServer) serve() { h.Serve(h.ln) }

// handler routes the endpoints. Only GET and HEAD; anything else 405,
// unknown paths 404.
func (st *statusServer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) { st.metrics(w) })
	mux.HandleFunc("GET /healthz", st.handleHealthz)
	mux.HandleFunc("GET /health", st.handleHealthz) // the predecessor's probe path
	mux.HandleFunc("GET /readyz", st.handleReadyz)
	mux.HandleFunc("GET /startup-status", st.handleReadyz)
	mux.HandleFunc("GET /status", st.handleStatus)
	mux.HandleFunc("/", http.NotFound)
	return onlyGetHead(mux)
}

func onlyGetHead(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// handleHealthz: the loop is alive, and a leader is within its renew
// deadline. A stuck loop (no pass for LEASE_DURATION) gets the sidecar
// restarted by the kubelet. Ages are on the monotonic clock.
func (st *statusServer) handleHealthz(w http.ResponseWriter, r *http.Request) {
	v := st.board.load()
	if v == nil {
		http.Error(w, "starting: no pass yet", http.StatusServiceUnavailable)
		return
	}
	now := st.now()
	if age := now.Sub(v.passAt); age > st.stuck {
		http.Error(w, fmt.Sprintf("control loop stuck: last pass %s ago", age.Round(time.Second)), http.StatusServiceUnavailable)
		return
	}
	if v.Role == "leader" && now.After(v.fenceAt) {
		http.Error(w, "leader past its renew deadline", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

func (st *statusServer) handleReadyz(w http.ResponseWriter, r *http.Request) {
	v := st.board.load()
	if v == nil || !v.ready {
		why := "starting"
		if v != nil {
			why = fmt.Sprintf("not settled: role %s, node up %t, forging %t %s", v.Role, v.NodeUp, v.Forging, v.Reason)
		}
		http.Error(w, why, http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

func (st *statusServer) handleStatus(w http.ResponseWriter, r *http.Request) {
	v := st.board.load()
	if v == nil {
		http.Error(w, "starting", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
